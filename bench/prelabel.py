"""The pre-label threshold each model version earns on the test split (`boxloop evaluate`,
[labelstudio] prelabel_conf = "auto") against the fixed 0.25 users keep by default: the drawing
the pre-labels save on the batches the rounds actually sent out, images the threshold was not
chosen on (and, picked by active learning, harder than the test split). Prints per round the
threshold chosen and the seconds saved per image at it, at 0.25 and at the best threshold in
hindsight (chosen on the batch itself: an upper bound), and as the last line ``ratio: X`` =
seconds saved over all batches at the chosen thresholds / at 0.25.

    .venv/bin/python -u bench/prelabel.py                       # runs `boxloop demo` first (~20 min)
    .venv/bin/python -u bench/prelabel.py demo-out/workspace    # any workspace that ran rounds

Seconds saved follow boxloop.annotation.acceptance's cost model (7 s to draw a box, 1 s to
keep a pre-drawn one, 3 s to fix one, 1.5 s to delete one), against the labels the batch came
back with.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's select module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace", nargs="?", type=Path, help="a workspace whose rounds ran (default: run the demo)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/prelabel"), help="where the demo runs")
    ap.add_argument("--labeled", type=int, default=120)
    ap.add_argument("--pool", type=int, default=360)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()

    from boxloop.annotation.acceptance import (
        PRELABEL_GRID,
        best_prelabel_conf,
        prelabel_savings,
        prelabel_threshold,
    )
    from boxloop.ledger import history, step_results
    from boxloop.workspace import Workspace

    root = args.workspace
    if root is None:
        root = args.out / "workspace"
        if not (root / "boxloop.toml").is_file():
            subprocess.run(
                [str(Path(sys.executable).with_name("boxloop")), "demo", "--out", str(args.out),
                 "--labeled", str(args.labeled), "--pool", str(args.pool), "--rounds", str(args.rounds),
                 "--budget", str(args.budget), "--epochs", str(args.epochs)],
                check=True,
            )
    ws = Workspace.open(root)
    store = ws.store
    grid = sorted({*PRELABEL_GRID, 0.25})
    print(f"{'round':>5} {'model':>6} {'batch':>5} {'test boxes':>10} {'chosen':>6} {'s/img chosen':>12} "
          f"{'s/img 0.25':>10} {'hindsight':>9} {'s/img hindsight':>15}")
    total_chosen = total_fixed = total_best = 0.0
    images = 0
    for rec in history(store):
        selected = step_results(store, rec.round).get("select", {}).get("result") or {}
        if not selected.get("selection"):
            continue
        sel = store.selection(selected["selection"])
        mv = sel.model_version
        evaluation = store.evaluation(mv) if mv else None
        if not mv or not evaluation or "prelabel" not in evaluation:
            print(f"{rec.round:>5}: model {mv} has no evaluation with pre-label savings; run `boxloop evaluate --model {mv}`")
            continue
        labels = store.latest_labels(list(sel.item_ids))
        if not labels:
            continue
        preds = store.predictions(mv, list(labels))
        saved = prelabel_savings(preds, labels, grid=grid)
        chosen = prelabel_threshold("auto", evaluation)
        at_chosen = saved[round(chosen, 4)]  # the grid holds every threshold "auto" picks, and 0.25
        hindsight = best_prelabel_conf(saved)
        n = len(labels)
        print(f"{rec.round:>5} {mv:>6} {n:>5} {evaluation['prelabel']['boxes']:>10} {chosen:>6.2f} {at_chosen:>12.2f} "
              f"{saved[0.25]:>10.2f} {hindsight:>9.2f} {saved[hindsight]:>15.2f}")
        total_chosen += at_chosen * n
        total_fixed += saved[0.25] * n
        total_best += saved[hindsight] * n
        images += n
    if not images:
        sys.exit(f"{root}: no round sent out a batch that came back labeled")
    print(f"over {images} images: {total_chosen / images:.2f} s an image saved at the chosen thresholds, "
          f"{total_fixed / images:.2f} at 0.25, {total_best / images:.2f} in hindsight")
    print(f"ratio: {total_chosen / total_fixed:.2f}" if total_fixed > 0 else "ratio: n/a (0.25 saved nothing)")


if __name__ == "__main__":
    main()
