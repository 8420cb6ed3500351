"""Active learning against random picking on the generated LCD digits (or any labeled
YOLO folder / workspace): labels each strategy needs to reach 90% of the full-data
mAP50-95, and their ratio (aim: <= 0.7).

    .venv/bin/python bench/simulate.py                      # generates 600 LCD images
    .venv/bin/python bench/simulate.py DATASET --rounds 4 --seeds 3 --epochs 30

Slow on CPU (every round trains a model): the defaults train 2 strategies x 3 seeds x
5 models + 3 full-data models. Prints a table and, last, `ratio: X` (combined / random).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", type=Path, help="Labeled YOLO folder or workspace (default: generated digits).")
    ap.add_argument("--combined", default="least_confidence:1", help="The active-learning strategy (diverse batches by default).")
    ap.add_argument("--n", type=int, default=600, help="Images to generate when no DATASET is given.")
    ap.add_argument("--initial", type=int, default=50)
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from boxloop.simulate import simulate
    from boxloop.synth import DIGITS_TRAIN, generate_images

    out = args.out or Path(tempfile.mkdtemp(prefix="boxloop-bench-simulate-"))
    dataset = args.dataset
    if dataset is None:  # re-running with the same --out resumes the simulation where it stopped
        dataset = out / "digits"
        if not (dataset / "data.yaml").is_file():
            generate_images(dataset, n=args.n, seed=0)
    train = {**DIGITS_TRAIN, "model": args.model, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch}
    result = simulate(
        dataset, strategies=["random", args.combined], initial=args.initial, budget=args.budget,
        rounds=args.rounds, seeds=range(args.seeds), out=out / "sim", train=train, say=print,
    )
    print(f"full-data mAP50-95 per seed: {result.full_map50_95}")
    _print_curves(result)
    for strategy, n in result.labels_needed.items():
        print(f"{strategy:40s} {'not reached' if n is None else f'{n:.0f} labels'} to 90% of full-data mAP50-95")
    print(f"curves: {result.csv}")
    for plot in result.plots:
        print(f"plot: {plot}")
    rnd, comb = result.labels_needed.get("random"), result.labels_needed.get(args.combined)
    print(f"ratio: {comb / rnd:.2f}" if rnd and comb else "ratio: n/a (a strategy never reached the target)")


def _print_curves(result) -> None:  # type: ignore[no-untyped-def]
    """Mean ± std mAP50-95 per labeled count, and the labels to reach lower shares of the
    full-data mAP too (the aim is at 90%; the lower ones show where the curves part)."""
    from boxloop.report.simulation import read_simulation, summarize
    from boxloop.simulate import labels_to_reach

    sim = read_simulation(result.csv)
    for strategy, points in summarize(sim.rows, "map50_95").items():
        curve = "  ".join(f"{p.labeled_images:.0f}: {p.mean:.3f}±{p.std:.3f}" for p in points)
        print(f"{strategy:24s} mAP50-95 by labels  {curve}")
    rows = [{"strategy": r.strategy, "seed": r.seed, "round": r.round, "labeled_images": r.labeled_images,
             "map50_95": r.map50_95} for r in sim.rows]
    for share in (0.5, 0.7):
        needed = labels_to_reach(rows, {s: share * v for s, v in result.full_map50_95.items()})
        shown = ", ".join(f"{s} {'not reached' if n is None else f'{n:.0f}'}" for s, n in needed.items())
        print(f"labels to {share:.0%} of full-data mAP50-95: {shown}")


if __name__ == "__main__":
    main()
