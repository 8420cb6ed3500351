"""Active learning against random picking on the generated LCD digits (or any labeled
YOLO folder / workspace): labels each strategy needs to reach 90% of the full-data
mAP50-95, and their ratio (aim: <= 0.7). What it measured, with the commands: bench/RESULTS.md.

    .venv/bin/python bench/simulate.py --out bench/out/sim   # generates 400 LCD images
    .venv/bin/python bench/simulate.py DATASET --rounds 4 --seeds 3 --epochs 30 --cold
    .venv/bin/python bench/simulate.py --pretrain 300 --pretrain-epochs 40 --initial 20 --budget 20 \
        --rounds 8 --epochs 5 --aggregation sum --out bench/out/pre   # from a trained checkpoint
    .venv/bin/python bench/simulate.py --videos 40 --frames 10 ...    # a pool of filmed displays
    .venv/bin/python bench/simulate.py --rare 0.25 --pretrain 200 ...  # a quarter shot at night
    .venv/bin/python bench/simulate.py --rare-classes 4,7 --pretrain 200 ...  # 4s and 7s rare
    .venv/bin/python bench/simulate.py --empty 0.75 --n 800 --pretrain 200 ...  # 3 frames in 4 read no digit
    .venv/bin/python bench/simulate.py ... --retrain-random 400 --retrain-combined 280  # label sets retrained

The protocol: each round fine-tunes the previous round's model for --epochs (warm start,
as `boxloop round --model previous` does; --cold trains every round from scratch), and the
full-data reference trains once from --model for --full-epochs (default: the epochs that give
it about the optimizer steps a strategy's last model has accumulated over its rounds, so the
ceiling is trained as well as what it is compared with, and at least 3x --epochs). If the
reference still scores below a strategy's round, the bench prints a WARNING and measures
the last lines against the best model of each seed (the reference or any round) instead.
--pretrain N first trains a checkpoint on N generated images of another seed (none of the
dataset's) and starts every chain and the reference from it, at a fine-tuning learning rate:
from scratch, when a small model leaves its zero-mAP plateau varies by about a round between
seeds, as much as the effect measured. On a CPU, a fixed number of epochs from scratch gives
a small set few optimizer steps, so cold curves track the step count more than the choice
of images.

Slow on CPU (every round trains a model): the defaults train 2 strategies x 3 seeds x
7 models + 3 full-data models, about 2 h on 2 cores. Re-running with the same --out
resumes, and with a larger --rounds runs only the new rounds (give --full-epochs: the
default follows --rounds, and a reference trained for other epochs is refused; so are the
pool and the checkpoint an --out holds, under other --n, --videos/--frames or --pretrain
flags). Prints the curves, the labels to 90% where each curve crosses it (between rounds),
`ratio: X` (combined / random, at the first round that reaches it), the labels each needs
to reach random's mAP at the most labels it was given (random's own curve: no ceiling
needed) and, where --rounds take a chain to the whole pool, the labels to 90% of that
chain's whole-pool model: a full-data model trained as the rounds train it.

--videos K makes the pool the way a user with a camera on a display gets one: K generated
displays, each filmed as a sequence of --frames frames (the counter counts up, the camera
jitters), added with `boxloop add --sequence` and labeled, so the test split holds whole
displays none of the pool's frames show. Neighbouring frames are near-duplicates: what a
strategy gains by not labeling the same display twice shows here, not on the default
pool, whose every image is a new display.

--rare F shoots a fraction F of the default pool's images at night (dark, noisy, soft; the
test split gets its share), a condition the --pretrain checkpoint has not seen: the long
tail a user's weights are unsure on, where labels picked by uncertainty should buy most.

--rare-classes C,.. keeps only --rare-keep (0.1) of the generated images that show one of
those classes, in the pool, the test split and the --pretrain images: a long tail of classes,
which mAP weighs as much as the common ones.

--empty F makes a share F of the generated images read no digit (a display switched off, unlit,
showing dashes or letters, or not in the picture), as frames filmed at a machine often do.
Random picking spends that share of its labels on them; a strategy that looks at the
detector's doubt picks fewer, and more crowded images instead. So the bench also counts the
boxes each strategy's labels held (simulation.csv's labeled_boxes): an image with nothing in
it is quick to label, one with five digits slow.

--steps S is the fixed-step protocol: every round trains a new model from the checkpoint for
about S optimizer steps, and the full-data reference is one more such training, so it is the
ceiling by construction, if S is enough for the whole pool (on a CPU it is not: see
RESULTS.md).

--retrain-random N,.. and --retrain-combined N,.. take the labels a chain held at N labels and
train them once from --model exactly as the full-data reference trains (its recipe, its
epochs), then say whether that model reaches 90% of the reference: the worth of the labels a
strategy picked, apart from the optimizer steps a warm-started chain took on its way there.
They bound the ratio (the combined strategy needs at most the fewest labels that reach it
and more than the most that do not, and random likewise) and, where a count that misses and
a larger one that reaches bracket 90% for both, estimate it where the line between them
crosses 90%. With --retrain-steps every set trains for about the reference's optimizer steps
instead (its epochs x the pool / the labels): at the reference's epochs a smaller set also
takes fewer steps, which counts against the strategy that needs fewer labels. Where a retrained
set scores above its seed's reference, the bench prints a WARNING and reads the ratio again
against 90% of the best model of each seed (the reference or any retrained set).
--retrain-seeds S,.. retrains only those seeds' sets and reads the others' already retrained:
one seed's gap filled on a free core. --retrain-repeat K trains them again with training seed K
(batch order and augmentation), in their own folders: how far one retraining moves run to run.
--retrain-scaled-patience (with --retrain-steps) scales early stopping's patience as the epochs
are, so a small set waits as many optimizer steps for a better val score as the reference does
(with the default patience, 50 epochs, sets of a sixth of the pool's images stopped after
42-60% of their steps); a set whose retraining with patience 50 ran every epoch is read from
it (early stopping never fired, so a longer patience trains the same model).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

# DIGITS_TRAIN's rate teaches yolov8n from scratch; fine-tuning a trained checkpoint at it undoes
# the checkpoint (measured with the --pretrain 300 checkpoint, 0.58 mAP50-95 on the digits: 5
# epochs on 20 of them at batch 4 left 0.11 at lr0 0.002, 0.55 at 2e-4; on 160 of them 0.59 and
# 0.63, on 240 held-out images).
FINE_TUNE_LR0 = 0.0002

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", type=Path, help="Labeled YOLO folder or workspace (default: generated digits).")
    ap.add_argument("--combined", default="least_confidence:1", help="The active-learning strategy (diverse batches by default).")
    ap.add_argument("--n", type=int, default=400, help="Images to generate when no DATASET is given.")
    ap.add_argument("--videos", type=int, default=0, metavar="K",
                    help="Instead of --n images, generate K displays filmed as frame sequences (a pool of near-duplicates).")
    ap.add_argument("--frames", type=int, default=10, help="Frames per display with --videos.")
    ap.add_argument("--rare", type=float, default=0.0, metavar="F",
                    help="Shoot a fraction F of the generated images at night (dark, noisy, soft), a condition "
                         "the --pretrain checkpoint never saw: a long tail, pool and test split alike.")
    ap.add_argument("--rare-classes", default="", metavar="C,..",
                    help="Make these classes rare (e.g. 4,7): of the generated images that show one, only --rare-keep "
                         "are kept, in the pool, the test split and the --pretrain images alike (a long tail of classes).")
    ap.add_argument("--rare-keep", type=float, default=0.1, help="The share of images showing a --rare-classes class kept.")
    ap.add_argument("--empty", type=float, default=None, metavar="F",
                    help="A fraction F of the generated pool and test split reads no digit (display off, unlit, "
                         "dashes or letters, or out of the picture), as frames filmed at a machine mostly are "
                         "(default: the generator's 0.05).")
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10, help="Epochs per round.")
    ap.add_argument("--full-epochs", type=int, default=None, help="Epochs of the full-data reference (default: step-matched to a strategy's rounds; --epochs with --cold).")
    ap.add_argument("--aggregation", default=None, choices=("max", "mean", "sum"),
                    help="How the combined strategy folds an image's box uncertainties (default: max).")
    ap.add_argument("--cold", action="store_true", help="Train every round from scratch instead of fine-tuning the last model.")
    ap.add_argument("--steps", type=int, default=None, metavar="S",
                    help="The fixed-step protocol: every round trains a model from --model (or the --pretrain checkpoint) "
                         "for about S optimizer steps, whatever its label count, and the full-data reference is one more "
                         "such training on every label (implies --cold; replaces --epochs and --full-epochs).")
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--model", default="yolov8n.yaml", help="Model yaml (from scratch) or .pt weights every chain and the reference start from.")
    ap.add_argument("--pretrain", type=int, default=0, metavar="N",
                    help="Start every chain and the reference from a checkpoint trained on N other generated images "
                         "(a disjoint draw, none of DATASET's), as a user fine-tunes weights instead of training from scratch.")
    ap.add_argument("--pretrain-epochs", type=int, default=20, help="Epochs of the --pretrain checkpoint.")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default=None, help="Where the rounds train and predict: cpu, 0, 0,1 (default: cpu).")
    ap.add_argument("--lr0", type=float, default=None,
                    help=f"Initial learning rate (default: the digits' from-scratch rate, 0.002, from a yaml; {FINE_TUNE_LR0} from .pt weights or --pretrain).")
    ap.add_argument("--retrain-random", type=_counts, default=(), metavar="N,..",
                    help="Retrain the labels random's chain of every seed held at N labels once from --model, as the "
                         "full-data reference trains, and say whether that reaches 90%% of it (the labels' worth, "
                         "apart from the steps a warm-started chain took to get there).")
    ap.add_argument("--retrain-combined", type=_counts, default=(), metavar="N,..",
                    help="The same for the --combined strategy's chains. Two processes given the same flags share "
                         "the retrainings (each skips the ones the other is running): e.g. one per core under taskset.")
    ap.add_argument("--retrain-seeds", type=_seeds, default=None, metavar="S,..",
                    help="Retrain only these seeds' label sets (e.g. 1, to fill one seed's gap on a free core); "
                         "the other seeds' sets already retrained are read and printed, none is started for them.")
    ap.add_argument("--retrain-repeat", type=int, default=None, metavar="K",
                    help="Retrain the label sets again with training seed K (Ultralytics' seed: batch order and "
                         "augmentation; default 0) in their own *-repeatK folders, to see how far one retraining's "
                         "mAP moves from run to run; the readout is that repeat's.")
    ap.add_argument("--retrain-steps", action="store_true",
                    help="Retrain each label set for about the reference's optimizer steps (its epochs x the pool / "
                         "the labels) instead of its epochs: the same compute for every set, so a smaller one is not "
                         "also trained less (kept apart from the epoch-matched retrainings, in *-steps folders).")
    ap.add_argument("--retrain-scaled-patience", action="store_true",
                    help="With --retrain-steps: scale early stopping's patience like the epochs (the reference's "
                         "patience x the pool / the labels), so a small set is not stopped long before its steps "
                         "are taken (in *-patienceP folders; a set whose patience-50 retraining ran every epoch "
                         "is read from it, as the same training).")
    ap.add_argument("--no-reference", action="store_true",
                    help="Chains only: no full-data reference (the readings against random's own curve still print; "
                         "those against the reference read nan).")
    ap.add_argument("--only", choices=("random", "combined"), default=None,
                    help="Run one side's chains (and no reference), so two processes (one per core) share an --out; a last run "
                         "without it reads both.")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.retrain_repeat is not None and args.retrain_repeat < 1:
        ap.error("--retrain-repeat K: K is 1 or more (training seed 0 is the retraining without it)")
    if args.retrain_repeat is not None and not (args.retrain_random or args.retrain_combined):
        ap.error("--retrain-repeat retrains the --retrain-random / --retrain-combined sets: name them")
    if args.retrain_scaled_patience and not args.retrain_steps:
        ap.error("--retrain-scaled-patience scales patience as --retrain-steps scales the epochs: add --retrain-steps")
    if args.retrain_steps and args.steps is not None:
        ap.error("--steps already trains every model for the same steps: leave out --retrain-steps")
    if args.steps is not None and args.full_epochs is not None:
        ap.error("--steps trains the full-data reference as a round: leave out --full-epochs")
    args.cold = args.cold or args.steps is not None
    if args.device:  # the runs' workspaces read it as [train] device, to train and predict (not a setting of the run)
        os.environ["BOXLOOP_TRAIN_DEVICE"] = args.device

    from boxloop.config import TrainConfig
    from boxloop.simulate import simulate
    from boxloop.synth import DIGITS_TRAIN

    args.tail = _parse_classes(args.rare_classes, args.rare_keep)
    out = args.out or Path(tempfile.mkdtemp(prefix="boxloop-bench-simulate-"))
    dataset = args.dataset
    if dataset is None and args.videos:
        dataset = _video_workspace(out / "videos", args.videos, args.frames)
    elif dataset is None:  # re-running with the same --out resumes the simulation where it stopped
        dataset = out / "digits"
        made = {"images": args.n, "seed": 0, **({"night": args.rare} if args.rare else {}), **_tail_record(args),
                **({"empty": args.empty} if args.empty is not None else {})}
        # data.yaml is written last, so it marks a complete pool; other flags need their record too
        there = (dataset / "data.yaml").is_file() and (len(made) == 2 or (out / "digits.json").is_file())
        if not _made_with(out / "digits.json", made, exists=there):
            _generate(dataset, args.n, 0, args.tail, args.empty)
            if args.rare:
                print(f"pool: {_night(dataset, args.rare)} of {args.n} images shot at night")
            _record(out / "digits.json", made)
    if args.pretrain:
        args.model = str(_pretrained(out / "pretrain", args))
    from boxloop.backends.ultralytics import resolve_model_arg

    from_yaml = resolve_model_arg(args.model)[1]  # the project's one rule for a yaml vs weights
    lr0 = args.lr0 or (DIGITS_TRAIN["extra"]["lr0"] if from_yaml else FINE_TUNE_LR0)
    train = {**DIGITS_TRAIN, "model": args.model, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
             "extra": {**DIGITS_TRAIN["extra"], "lr0": lr0}}
    if args.steps is not None:  # the last weights after S steps: no epoch picked on a few val images
        train = {**train, "steps": args.steps, "extra": {**train["extra"], "val": False, "close_mosaic": 0}}
    full_epochs = args.full_epochs or (args.epochs if args.cold else _matched_epochs(dataset, args))
    full_train = train if args.steps is not None else {**train, "epochs": full_epochs}
    if not args.cold:
        train = {**train, "model": "previous", "scratch": args.model}
    t0 = time.perf_counter()
    result = simulate(
        dataset, strategies=[s for side, s in (("random", "random"), ("combined", args.combined))
                             if args.only in (None, side)],
        initial=args.initial, budget=args.budget, full_data=not args.no_reference and args.only is None,
        rounds=args.rounds, seeds=range(args.seeds), out=out / "sim", train=train, full_data_train=full_train,
        aggregation=args.aggregation, say=print,
    )
    each = f"{args.steps} optimizer steps" if args.steps is not None else f"{args.epochs} epochs"
    print(f"{'cold' if args.cold else 'warm-started'} rounds of {each}, full data "
          f"{each if args.steps is not None else f'{full_epochs} epochs'}, "
          f"from {args.model}, lr0 {lr0}; "
          f"{time.perf_counter() - t0:.0f} s this run")
    print(f"full-data mAP50-95 per seed: {result.full_map50_95}")
    rows = _rows(result)
    ceiling = result.best_map50_95  # the reference, or a round where one scored above it
    _print_curves(result, ceiling)
    for strategy, n in result.labels_needed.items():
        print(f"{strategy:40s} {_reached(n, result.boxes_needed.get(strategy))} to 90% of full-data mAP50-95")
    for note in result.notes:
        print(f"WARNING {note}")
    print(f"curves: {result.csv}")
    for plot in result.plots:
        print(f"plot: {plot}")
    from boxloop.simulate import labels_to_reach

    if args.rare and args.dataset is None and not args.videos:
        _print_share(out / "sim", {p.name for p, _ in _night_draws(dataset, args.rare)}, "night shots")
    if args.tail and args.dataset is None and not args.videos:
        _print_share(out / "sim", _showing(dataset, args.tail[0]), f"images showing class {args.rare_classes}")
    if args.dataset is None and not args.videos:
        boxes = _boxes_per_image(dataset)
        if args.empty is not None:
            _print_share(out / "sim", {n for n, k in boxes.items() if k == 0}, "images reading no digit")
        _print_boxes(out / "sim", boxes)
    if ceiling != result.full_map50_95:
        print("the reference is no ceiling: the targets below are 90% of the best model of each seed, "
              f"the reference or a strategy's round: {ceiling}")
    targets = {s: 0.9 * v for s, v in ceiling.items()}
    crossed = labels_to_reach(rows, targets, interpolate=True)
    boxes = labels_to_reach(rows, targets, interpolate=True, count="labeled_boxes")
    for strategy, n in crossed.items():
        print(f"{strategy:40s} {_reached(n, boxes.get(strategy))} to 90%, where the curve crosses it")
    rnd, comb = crossed.get("random"), crossed.get(args.combined)
    print(f"ratio (where the curves cross 90%): {comb / rnd:.2f}" if rnd and comb else "ratio (where the curves cross 90%): n/a")
    first = labels_to_reach(rows, targets)  # at the first round that reaches it
    rnd, comb = first.get("random"), first.get(args.combined)
    most = max(r["labeled_images"] for r in rows)
    pool = next((len(names) for _, _, names in _picks(out / "sim")), None)  # images outside the test split
    if rnd and comb:
        rb, cb = (labels_to_reach(rows, targets, count="labeled_boxes").get(s) for s in ("random", args.combined))
        print(f"ratio in boxes drawn: {cb / rb:.2f}" if rb and cb else "ratio in boxes drawn: n/a")
        print(f"ratio: {comb / rnd:.2f}")
    elif comb:  # random has not reached it by the last round: it needs more than the most labels given
        hint = "the whole pool is labeled by then" if pool is not None and most >= pool else "run more --rounds"
        print(f"ratio: < {comb / most:.2f} (random did not reach 90% within {most} labels; {hint})")
    else:
        print("ratio: n/a (the combined strategy never reached the target; run more --rounds)")
    _print_matched(rows, args.combined)
    if pool is not None:
        _print_whole_pool(rows, pool, args.combined)
    if args.retrain_random or args.retrain_combined:
        run_train = {**full_train, "allow_missing_classes": True}  # exactly as simulate trains the reference
        wanted = {"random": args.retrain_random, args.combined: args.retrain_combined}
        recipe = full_train.get("steps") or f"{full_train['epochs']} epochs"
        if args.retrain_repeat is not None:
            recipe = f"training seed {args.retrain_repeat}, {recipe}"
        if args.retrain_steps:
            if pool is None:
                raise SystemExit("--retrain-steps: no chain's pool size found under --out")
            recipe = f"{recipe} x {pool} images / the labels: the reference's optimizer steps"
        if args.retrain_scaled_patience:
            recipe = (f"{recipe}; its patience scaled likewise (sets that ran every epoch with patience "
                      f"{run_train.get('patience', TrainConfig.patience)} read from those retrainings)")
        steps_pool = pool if args.retrain_steps else None
        _print_retrained(_retrain_all(out, result, wanted, args, run_train, steps_pool), result.full_map50_95,
                         args.combined, f"labels retrained once from the start as the full-data reference is "
                                        f"({recipe}), against 90% of it:")
        means = _print_run_to_run(out, result, wanted, args, run_train, steps_pool)
        if means:
            _print_retrained(means, result.full_map50_95, args.combined,
                             "the same with each set's mAP50-95 the mean of its training seeds:", ", mean of training seeds")


def _print_matched(rows: list[dict], combined: str) -> None:
    """The labels each strategy needs to reach the mAP50-95 random has with the most labels it
    was given, per seed: a target random reaches by construction, so it needs no ceiling. It
    is not the aim's measure (90% of the full data's mAP); it shows what the labels random
    spent bought where a warm-started chain's mAP still grows with every round's training."""
    from boxloop.simulate import labels_to_reach

    mine = [r for r in rows if r["strategy"] == "random"]
    if not mine:
        return
    most = max(r["labeled_images"] for r in mine)
    last = {r["seed"]: r["map50_95"] or 0.0 for r in mine if r["labeled_images"] == most}
    needed = labels_to_reach(rows, last, interpolate=True)
    rnd, comb = needed.get("random"), needed.get(combined)
    print(f"to random's mAP50-95 at {most} labels ({sum(last.values()) / len(last):.3f} mean): random "
          f"{_reached(rnd, None)}, {combined} {_reached(comb, None)}"
          + (f"; ratio {comb / rnd:.2f}" if rnd and comb else ""))


def _print_whole_pool(rows: list[dict], pool: int, combined: str) -> None:
    """Where a chain's rounds reach the whole pool, its last model is a full-data model trained
    the way the rounds train (warm-started, round after round), which the one-shot reference
    only approximates: for each such chain, the labels each strategy needs to reach 90% of
    that model's mAP50-95 (per seed, where the curve crosses it, and at the first round that
    reaches it) and their ratio, the aim's measure under the protocol the strategies ran."""
    from boxloop.simulate import labels_to_reach

    for ref in dict.fromkeys(("random", combined)):
        whole = {r["seed"]: r["map50_95"] or 0.0 for r in rows if r["strategy"] == ref and r["labeled_images"] >= pool}
        if not whole or len(whole) < len({r["seed"] for r in rows}):
            continue
        targets = {s: 0.9 * v for s, v in whole.items()}
        crossed, first = labels_to_reach(rows, targets, interpolate=True), labels_to_reach(rows, targets)
        rnd, comb = crossed.get("random"), crossed.get(combined)
        ratio = f"; ratio {comb / rnd:.2f}" if rnd and comb else ""
        if ratio and first.get("random") and first.get(combined):
            ratio += f" ({first[combined] / first['random']:.2f} at the first round that reaches it)"
        print(f"to 90% of {ref}'s whole-pool model ({pool} labels, mAP50-95 {sum(whole.values()) / len(whole):.3f} "
              f"mean): random {_reached(rnd, None)}, {combined} {_reached(comb, None)}{ratio}")


def _seeds(text: str) -> tuple[int, ...]:
    """--retrain-seeds: seeds such as 1 or 0,2."""
    seeds = _ints(text, "seeds such as 0,2", least=0, bad="seeds are 0 or more")
    if not seeds:
        raise argparse.ArgumentTypeError(f"seeds are 0 or more; got {text!r}")
    return seeds


def _counts(text: str) -> tuple[int, ...]:
    """--retrain-* values: label counts such as 280,400."""
    return _ints(text, "label counts such as 280,400", least=1, bad="label counts must be positive")


def _ints(text: str, example: str, *, least: int, bad: str) -> tuple[int, ...]:
    """A comma-separated list of integers, each at least ``least``, for an argparse type."""
    try:
        values = tuple(int(n) for n in text.split(",") if n.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{example}; got {text!r}") from None
    if any(n < least for n in values):
        raise argparse.ArgumentTypeError(f"{bad}; got {text!r}")
    return values


def _retrain_all(out: Path, result, wanted: dict[str, tuple[int, ...]], args: argparse.Namespace,  # type: ignore[no-untyped-def]
                 train: dict, steps_pool: int | None) -> dict[tuple[str, int, int], float | None]:
    """(strategy, seed, labels) -> test mAP50-95 of that chain's labels at that count, retrained
    once from the start with ``train`` (the full-data reference's recipe; given ``steps_pool``,
    its epochs scaled by ``steps_pool`` / labels); None where another process is still running it.
    Seed by seed, so two processes work on the same seed's first; the ones skipped are tried
    once more at the end, when the other process may have finished them. Seeds outside
    --retrain-seeds give only the sets already retrained (absent from the result otherwise)."""
    from boxloop.errors import InputError

    done: dict[tuple[str, int, int], float | None] = {}
    jobs = _retrain_jobs(result, wanted)
    for last in (False, True):
        for strategy, seed, n in [j for j in jobs if done.get(j) is None]:
            start = args.retrain_seeds is None or seed in args.retrain_seeds
            try:
                m, _ = _retrained_set(out, strategy, seed, n, args, train, steps_pool, args.retrain_repeat, start=start)
            except InputError as e:  # the round lock: another process is retraining it
                chain = _retraining(out, strategy, seed, n, args.aggregation, train, steps_pool, None)[0].name
                print(f"{chain} at {n} labels: skipped ({e})" if not last else f"{chain} at {n} labels: still running")
                done[strategy, seed, n] = None
                continue
            if m is not None or start:
                done[strategy, seed, n] = m
    return done


def _retrain_jobs(result, wanted: dict[str, tuple[int, ...]]) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    """(strategy, seed, labels) of every label set asked for, seed by seed."""
    return [(strategy, seed, n) for seed in sorted(result.full_map50_95) for strategy, counts in wanted.items()
            for n in counts]


def _retrained_set(out: Path, strategy: str, seed: int, labels: int, args: argparse.Namespace, train: dict,
                   steps_pool: int | None, repeat: int | None, *, start: bool) -> tuple[float | None, Path]:
    """(test mAP50-95, the folder it was read from) of one label set's retraining (see
    ``_retraining``), started where ``start`` and it is not done yet, else (None, its folder).
    With --retrain-scaled-patience, a set whose patience-50 retraining ran every epoch is
    read from that one: early stopping never fired there, so a longer patience trains the
    same model."""
    scaled = args.retrain_scaled_patience
    chain, folder, recipe = _retraining(out, strategy, seed, labels, args.aggregation, train, steps_pool, repeat,
                                        scaled_patience=scaled)
    m = _retrained(chain, folder, labels, args.initial, args.budget, recipe, start=False)
    if m is None and scaled:
        _, plain, plain_recipe = _retraining(out, strategy, seed, labels, args.aggregation, train, steps_pool, repeat)
        unstopped = _retrained(chain, plain, labels, args.initial, args.budget, plain_recipe, start=False)
        if unstopped is not None and _epochs_run(plain) == plain_recipe["epochs"]:
            return unstopped, plain
    if m is None and start:
        m = _retrained(chain, folder, labels, args.initial, args.budget, recipe)
    return m, folder


def _retraining(out: Path, strategy: str, seed: int, labels: int, aggregation: str | None, train: dict,
                steps_pool: int | None, repeat: int | None, *, scaled_patience: bool = False) -> tuple[Path, Path, dict]:
    """(the chain's workspace, the retraining's folder, its recipe) of one label set: ``train``,
    its epochs scaled by ``steps_pool`` / labels where given (a *-steps folder; with
    ``scaled_patience`` its early-stopping patience too, in a *-patienceP folder), and with
    training seed ``repeat`` where given (a *-repeatK folder; none is training seed 0)."""
    from boxloop.simulate import run_folder

    chain = run_folder(strategy, seed, aggregation)
    folder, recipe = out / "retrain" / f"{chain}-n{labels}", train
    if steps_pool is not None:
        folder, recipe = folder.with_name(folder.name + "-steps"), _steps_matched(train, steps_pool, labels)
        if scaled_patience:
            recipe = _patience_matched(recipe, train, steps_pool, labels)
            folder = folder.with_name(f"{folder.name}-patience{recipe['patience']}")
    if repeat is not None:
        folder = folder.with_name(f"{folder.name}-repeat{repeat}")
        recipe = {**recipe, "extra": {**recipe.get("extra", {}), "seed": repeat}}
    return out / "sim" / chain, folder, recipe


def _print_run_to_run(out: Path, result, wanted: dict[str, tuple[int, ...]], args: argparse.Namespace,  # type: ignore[no-untyped-def]
                      train: dict, steps_pool: int | None) -> dict[tuple[str, int, int], float | None]:
    """Each label set retrained with more than one training seed (--retrain-repeat): its mAP50-95
    per training seed, the epochs each ran (early stopping on the set's few val images ends
    some long before the rest), their range, and how many reach 90% of its seed's reference.
    Returns each retrained set's mean over its training seeds, or nothing where none was repeated."""
    lines, means = [], {}
    for strategy, seed, n in _retrain_jobs(result, wanted):
        _, base, recipe = _retraining(out, strategy, seed, n, args.aggregation, train, steps_pool, None)
        bases = [base]  # with scaled patience, repeats are read from either folder (see _retrained_set)
        if args.retrain_scaled_patience:
            bases.append(_retraining(out, strategy, seed, n, args.aggregation, train, steps_pool, None,
                                     scaled_patience=True)[1])
        repeats = sorted({int(k) for base in bases for p in base.parent.glob(f"{base.name}-repeat*")
                          if (k := p.name.rpartition("-repeat")[2]).isdigit()})
        got, ran = {}, {}
        for k in [0, *repeats]:  # training seed 0 is the retraining without --retrain-repeat
            m, folder = _retrained_set(out, strategy, seed, n, args, train, steps_pool, k or None, start=False)
            if m is not None:
                got[k], ran[k] = m, _epochs_run(folder)
        if got:
            means[strategy, seed, n] = sum(got.values()) / len(got)
        if len(got) > 1:
            target = 0.9 * result.full_map50_95[seed]
            lines.append(f"  seed {seed} {strategy:24s} {n:4d} labels: "
                         + " / ".join(f"{m:.3f}" for m in got.values())
                         + f" (training seeds {' / '.join(map(str, got))}; epochs "
                         + " / ".join(str(e or "?") for e in ran.values())
                         + f" of {recipe['epochs']}): "
                         f"range {max(got.values()) - min(got.values()):.3f}; "
                         f"{sum(m >= target for m in got.values())} of {len(got)} reach {target:.3f}")
    if not lines:
        return {}
    print("run to run (the same labels retrained with other training seeds, --retrain-repeat):", *lines, sep="\n")
    return means


def _epochs_run(folder: Path) -> int | None:
    """Epochs the retraining in ``folder`` ran before it ended (fewer than asked where
    Ultralytics' early stopping cut it short): the rows of its results.csv."""
    runs = sorted(folder.glob("runs/*/results.csv"))
    return len(runs[-1].read_text().splitlines()) - 1 if runs else None


def _patience_matched(recipe: dict, train: dict, pool: int, labels: int) -> dict:
    """``recipe`` with early stopping's patience (``train``'s, else boxloop's default) scaled by
    ``pool`` / ``labels``: as many optimizer steps without a better val score as ``train``'s
    patience allows ``pool`` images."""
    from boxloop.config import TrainConfig

    return {**recipe, "patience": max(1, round(train.get("patience", TrainConfig.patience) * pool / labels))}


def _steps_matched(train: dict, pool: int, labels: int) -> dict:
    """``train`` with its epochs scaled so ``labels`` images take about the optimizer steps
    ``pool`` images take in its epochs."""
    return {**train, "epochs": max(1, round(train["epochs"] * pool / labels))}


def _retrained(chain: Path, folder: Path, labels: int, initial: int, budget: int, train: dict,
               *, start: bool = True) -> float | None:
    """Test mAP50-95 of the labels ``chain`` (a simulation run's workspace) held when it had
    ``labels`` of them outside the test split, trained once from ``train["model"]`` as the
    full-data reference is: a workspace of the chain's items, those labels, their train/val
    splits and the test split, and one round of budget 0 in it (resumed where it stopped).
    Not ``start``: only a retraining already finished, else None (nothing made)."""
    import shutil
    from dataclasses import replace

    from boxloop import ledger
    from boxloop.loop import RoundPlan, run_round
    from boxloop.workspace import Workspace

    if labels < initial or (labels - initial) % budget:
        raise SystemExit(f"--retrain: {labels} labels is no round's count (--initial {initial}, then {budget} a round)")
    made = {"chain": str(chain), "labels": labels, "train": train}
    if not _made_with(folder / "retrain.json", made, exists=(folder / "ready").is_file()):
        if not start:
            return None
        shutil.rmtree(folder, ignore_errors=True)
        with Workspace.open(chain) as src:
            first = dict(src.store.conn.execute("SELECT item_id, MIN(round) FROM labels GROUP BY item_id"))
            items = src.store.items()
            test = {it.id for it in items if it.split == "test"}
            keep = {i for i, r in first.items() if r is not None and r <= (labels - initial) // budget}  # round r's picks
            if len(keep - test) != labels:
                raise SystemExit(f"{chain}: its rounds reached {len(set(first) - test)} labels, not {labels}: "
                                 "run more --rounds")
            truth = src.store.latest_labels(keep)
            with Workspace.init(folder, classes=src.classes) as ws, ws.store.transaction():
                for it in items:
                    ws.store.add_item(replace(it, split=it.split if it.id in keep else None, labeled_round=None))
                for i in sorted(keep):
                    ws.store.add_label(i, truth[i], source="oracle", round=0)
        _record(folder / "retrain.json", made)
        (folder / "ready").write_text(f"{labels} labels of {chain.name}\n")  # last: the copy is complete
    with Workspace.open(folder) as ws:
        rec = ledger.finished_rounds(ws.store).get(1)
        if rec is None and not start:
            return None
        if rec is None:
            print(f"{chain.name} at {labels} labels: retraining")
            rec = run_round(ws, RoundPlan(budget=0, strategy="random", train=train, test_fraction=0.0), say=print)
        return float(rec.map50_95 or 0.0)


def _print_retrained(done: dict[tuple[str, int, int], float | None], reference: dict[int, float], combined: str,
                     header: str, reading: str = "") -> None:
    """Each retrained label set against 90% of its seed's reference, and what they say of the
    ratio. Where a retrained set scores above its seed's reference, the reference is no ceiling:
    the ratio is read again against 90% of the best model of each seed (the reference or any
    retrained set), as the chains' lines are."""
    print(header)
    points: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for (strategy, seed, n), m in sorted(done.items(), key=lambda kv: (kv[0][1], kv[0][0] != "random", kv[0][2])):
        target = 0.9 * reference[seed]
        if m is None:
            print(f"  seed {seed} {strategy:24s} {n:4d} labels: running in another process; re-run to read it")
            continue
        print(f"  seed {seed} {strategy:24s} {n:4d} labels: mAP50-95 {m:.3f} against {target:.3f}: "
              f"{'reached' if m >= target else 'not reached'}")
        points.setdefault((strategy, seed), []).append((n, m))
    _print_retrained_ratio(points, reference, combined, reading)
    above = [(strategy, seed, n, m) for (strategy, seed), pts in sorted(points.items()) for n, m in pts
             if m > reference[seed]]
    if above:
        best = {seed: max([v, *(m for _, s, _, m in above if s == seed)]) for seed, v in reference.items()}
        listed = ", ".join(f"seed {seed} {strategy} {n} labels {m:.3f} against {reference[seed]:.3f}"
                           for strategy, seed, n, m in above)
        print(f"WARNING retrained sets score above their seed's reference ({listed}): it is no ceiling; "
              f"against 90% of the best model of each seed ({', '.join(f'{v:.3f}' for v in best.values())}):")
        _print_retrained_ratio(points, best, combined, f"{reading}, to the best model")


def _print_retrained_ratio(points: dict[tuple[str, int], list[tuple[int, float]]], ceiling: dict[int, float],
                           combined: str, against: str) -> None:
    """The ratio's bounds against 90% of each seed's ``ceiling`` (mAP taken to grow with the labels
    of one chain), from the fewest labels that reached it and the most that did not, and where each strategy's
    retrained points cross it, linear between the count that misses and the next that reaches."""
    seeds = sorted(ceiling)
    reach = {(s, seed): _bracket(points.get((s, seed), []), 0.9 * ceiling[seed])
             for s in ("random", combined) for seed in seeds}

    def mean(strategy: str, i: int) -> float | None:
        vals = [reach[strategy, seed][i] for seed in seeds]
        return None if None in vals else sum(vals) / len(vals)  # type: ignore[arg-type]

    missed, reached, crossed = ({s: mean(s, i) for s in ("random", combined)} for i in range(3))
    bound = _bounds((missed[combined], reached[combined]), (missed["random"], reached["random"]))
    if bound is None:
        print(f"ratio (retrained{against}): n/a (needs, in every seed, a random count that misses 90% and a "
              f"{combined} count that reaches it, or the other way round)")
    else:
        print(f"ratio (retrained{against}): {bound} (means of seeds: {combined} reaches 90% with "
              f"{_count(reached[combined])} labels, not with {_count(missed[combined])}; random with "
              f"{_count(reached['random'])}, not with {_count(missed['random'])})")
    if len(seeds) > 1:
        print(f"ratio (retrained{against}) seed by seed: " + ", ".join(
            f"seed {seed} {_bounds(reach[combined, seed][:2], reach['random', seed][:2]) or 'n/a'}" for seed in seeds))
    if crossed["random"] and crossed[combined]:
        print(f"ratio (retrained{against}, where the points cross 90%): {crossed[combined] / crossed['random']:.2f} "
              f"({combined} {crossed[combined]:.0f} labels, random {crossed['random']:.0f}; mean of seeds)")


def _bounds(combined: tuple[float | None, float | None], random: tuple[float | None, float | None]) -> str | None:
    """The ratio's bounds from the (most labels that missed, fewest that reached) of the combined
    strategy and of random: below the combined's reaching count over random's missing one, above
    the combined's missing count over random's reaching one; None where neither is known."""
    (c_missed, c_reached), (r_missed, r_reached) = combined, random
    upper = c_reached / r_missed if c_reached and r_missed else None
    lower = c_missed / r_reached if c_missed and r_reached else None
    return " and ".join(b for b in (lower and f"> {lower:.2f}", upper and f"< {upper:.2f}") if b) or None


def _bracket(points: list[tuple[int, float]], target: float) -> tuple[int | None, int | None, float | None]:
    """(the most labels that missed ``target``, the fewest that reached it, the count where the
    line between the last miss below the first reach and that reach crosses it) of one chain's
    retrained (labels, mAP) points; None where there is none."""
    missed = max((n for n, m in points if m < target), default=None)
    first = min((n for n, m in points if m >= target), default=None)
    below = [(n, m) for n, m in points if m < target and first is not None and n < first]
    if not below:
        return missed, first, None
    (n0, m0), m1 = max(below), dict(points)[first]
    return missed, first, n0 + (first - n0) * (target - m0) / (m1 - m0)


def _count(n: float | None) -> str:
    return "?" if n is None else f"{n:.0f}"


def _reached(labels: float | None, boxes: float | None) -> str:
    """"N labels (B boxes)", "N labels" where the boxes are unknown, or "not reached"."""
    if labels is None:
        return "not reached"
    return f"{labels:.0f} labels" + ("" if boxes is None else f" ({boxes:.0f} boxes)")


def _pretrained(folder: Path, args: argparse.Namespace) -> Path:
    """best.pt of args.model trained for --pretrain-epochs on --pretrain generated images of
    another seed (the dataset is seed 0), made once per --out: a start that knows LCD digits
    but has seen none of the pool's or the test split's images, so the chains compare which
    labels they add, not when a model trained from scratch leaves its zero-mAP plateau."""
    from boxloop.backends.ultralytics import train_yolo
    from boxloop.synth import DIGITS_TRAIN

    weights = folder / "weights.pt"
    made = {"images": args.pretrain, "epochs": args.pretrain_epochs, "model": args.model, "imgsz": args.imgsz,
            **_tail_record(args)}
    if _made_with(folder / "weights.json", made, exists=weights.is_file()):
        print(f"pretrained checkpoint: {weights} (re-used)")
        return weights
    data = folder / "digits"
    if not (data / "data.yaml").is_file():
        _generate(data, args.pretrain, 1, args.tail)
    t0 = time.perf_counter()
    result = train_yolo(data / "data.yaml", model=args.model, run_dir=folder / "run", epochs=args.pretrain_epochs,
                        imgsz=args.imgsz, batch=args.batch, extra={**DIGITS_TRAIN["extra"], "val": False})
    _record(folder / "weights.json", made)
    os.replace(result.weights, weights)  # written last: its presence means the checkpoint is complete
    print(f"pretrained checkpoint: {weights} ({args.pretrain} images of seed 1, {args.pretrain_epochs} epochs, "
          f"{time.perf_counter() - t0:.0f} s)")
    return weights


def _video_workspace(folder: Path, videos: int, frames: int) -> Path:
    """A workspace of ``videos`` generated displays (seeds 1000.., none of the default pool's
    or the checkpoint's scenes), each added as one frame sequence with its labels; made once
    per --out (the ``ready`` file is written last: without it, an interrupted build is redone)."""
    import shutil

    from boxloop.formats.yolo import parse_class_names
    from boxloop.ingest import add_images, add_labels
    from boxloop.synth import generate_sequence
    from boxloop.workspace import Workspace

    ws_dir, ready = folder / "workspace", folder / "ready"
    if _made_with(folder / "pool.json", {"displays": videos, "frames": frames}, exists=ready.is_file()):
        return ws_dir
    shutil.rmtree(ws_dir, ignore_errors=True)
    displays = [generate_sequence(folder / "displays" / f"display_{k:03d}", n_frames=frames, seed=1000 + k)
                for k in range(videos)]
    ws = Workspace.init(ws_dir, classes=parse_class_names(displays[0] / "data.yaml"))
    report = add_images(ws, [d / "images" for d in displays], sequence=True)
    for d in displays:
        report.problems.extend(add_labels(ws, d, format="yolo").problems)
    if report.problems or len(ws.store.latest_labels()) != videos * frames:
        raise SystemExit(f"{ws_dir}: the generated displays did not import cleanly: {next(iter(report.problems), '')}")
    ws.close()
    _record(folder / "pool.json", {"displays": videos, "frames": frames})
    ready.write_text(f"{videos} displays x {frames} frames\n")
    print(f"pool: {videos} displays x {frames} frames, as sequences in {ws_dir}")
    return ws_dir


def _night_draws(dataset: Path, fraction: float, seed: int = 0):  # type: ignore[no-untyped-def]
    """(path, rng) of each generated image shot at night: which ones depends only on seed and
    the name's place, and each rng goes on to draw that image's darkness and noise."""
    import numpy as np

    for k, path in enumerate(sorted(p for p in (dataset / "images").iterdir() if p.suffix == ".jpg")):
        rng = np.random.default_rng([seed, k, 7])
        if rng.random() < fraction:
            yield path, rng


def _night(dataset: Path, fraction: float, seed: int = 0) -> int:
    """Darken, soften and add sensor noise to a fraction of a generated YOLO folder's images;
    the boxes stay where they are. Returns how many. Images are rewritten atomically: an
    interrupted pass is redone from the pool."""
    import numpy as np
    from PIL import Image, ImageFilter

    if not 0.0 < fraction <= 1.0:
        raise SystemExit(f"--rare must lie in (0, 1], got {fraction}")
    count = 0
    for path, rng in _night_draws(dataset, fraction, seed):
        img = Image.open(path).convert("RGB").filter(ImageFilter.GaussianBlur(1.2))
        a = np.asarray(img, np.float32) * rng.uniform(0.25, 0.4) + 8
        a += rng.normal(0, 9, a.shape[:2])[..., None]
        tmp = path.with_name(path.name + ".part")  # not an image name: never taken for one
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)
        count += 1
    return count


def _parse_classes(text: str, keep: float) -> tuple[frozenset[int], float] | None:
    """--rare-classes and --rare-keep, checked: (class ids, share kept), or None."""
    if not text:
        return None
    try:
        classes = frozenset(int(c) for c in text.split(","))
    except ValueError:
        raise SystemExit(f"--rare-classes takes class ids such as 4,7; got {text!r}") from None
    if not classes <= set(range(10)) or not 0.0 < keep <= 1.0:
        raise SystemExit(f"--rare-classes must name digits 0-9 and --rare-keep lie in (0, 1]; got {text!r}, {keep}")
    return classes, keep


def _tail_record(args: argparse.Namespace) -> dict:
    return {"rare_classes": sorted(args.tail[0]), "rare_keep": args.tail[1]} if args.tail else {}


def _generate(out: Path, n: int, seed: int, tail: tuple[frozenset[int], float] | None,
              empty: float | None = None) -> None:
    """n generated images of ``seed`` in a YOLO folder; with ``tail`` (classes, keep), an image
    showing one of the classes is kept with probability keep (drawn from seed and its index, so
    a re-run keeps the same ones) and the draw goes on until n are kept, in a folder beside
    ``out`` that takes its name when done (a folder with data.yaml is a complete one). ``empty``:
    the share of images that read no digit (None: the generator's default)."""
    import shutil

    import numpy as np

    from boxloop.synth import generate_images

    more = {} if empty is None else {"empty_fraction": empty}
    if tail is None:
        generate_images(out, n=n, seed=seed, **more)
        return
    classes, keep = tail
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    kept, i = 0, 0
    while kept < n:
        stem = f"lcd_{i:05d}"
        generate_images(part, n=1, seed=seed, start=i, **more)
        label = part / "labels" / f"{stem}.txt"
        if _classes_in(label) & classes and np.random.default_rng([seed, i, 11]).random() >= keep:
            (part / "images" / f"{stem}.jpg").unlink()
            label.unlink()
        else:
            kept += 1
        i += 1
    shutil.rmtree(out, ignore_errors=True)
    os.replace(part, out)
    generate_images(out, n=0, seed=seed)  # data.yaml again: the one written names the .part folder
    shown = len(_showing(out, classes))
    print(f"{out}: {n} images of {i} drawn; {shown} show class {','.join(map(str, sorted(classes)))}")


def _showing(dataset: Path, classes: frozenset[int]) -> set[str]:
    """Names of a YOLO folder's images whose labels hold one of ``classes``."""
    return {label.stem + ".jpg" for label in (dataset / "labels").glob("*.txt") if _classes_in(label) & classes}


def _label_boxes(label: Path):  # type: ignore[no-untyped-def]
    """The boxes a YOLO label file holds (Detections, in normalized coordinates)."""
    from boxloop.formats.yolo import read_yolo_labels

    return read_yolo_labels(label.read_text(), width=1, height=1, source=str(label)).labels


def _classes_in(label: Path) -> set[int]:
    """Class ids a YOLO label file holds."""
    return set(_label_boxes(label).class_id.tolist())


def _picks(sim: Path):  # type: ignore[no-untyped-def]
    """(chain, names of the images it picked, names of its pool's images) for each chain."""
    import sqlite3

    for db in sorted(sim.glob("*/boxloop.db")):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            picked = [Path(u).name for (u,) in conn.execute(
                "SELECT i.uri FROM selection_items s JOIN items i ON i.id = s.item_id")]
            pool = [Path(u).name for (u,) in conn.execute("SELECT uri FROM items WHERE split IS NOT 'test'")]
        if picked:
            yield db.parent.name, picked, pool


def _print_share(sim: Path, names: set[str], what: str) -> None:
    """Share of ``what`` (the image names in ``names``) among each chain's picks, against the pool's:
    does a strategy find the tail, or pick around it (a detector that misses a dark display
    outright shows no doubtful box there for uncertainty to see)."""
    for chain, picked, pool in _picks(sim):
        share = sum(n in names for n in picked) / len(picked)
        print(f"{what} among {chain}'s {len(picked)} picks: {share:.2f} "
              f"(of its pool: {sum(n in names for n in pool) / max(1, len(pool)):.2f})")


def _boxes_per_image(dataset: Path) -> dict[str, int]:
    """Boxes each image of a YOLO folder holds, by image name."""
    return {label.stem + ".jpg": len(_label_boxes(label)) for label in (dataset / "labels").glob("*.txt")}


def _print_boxes(sim: Path, boxes: dict[str, int]) -> None:
    """Boxes per picked image for each chain, against the pool's: a label costs an annotator
    more where the image holds more boxes, so labels counted in images can flatter a strategy
    that picks crowded images (or, on a pool of empty frames, one that skips them)."""
    for chain, picked, pool in _picks(sim):
        print(f"boxes per image among {chain}'s {len(picked)} picks: "
              f"{sum(boxes.get(n, 0) for n in picked) / len(picked):.2f} "
              f"(its pool: {sum(boxes.get(n, 0) for n in pool) / max(1, len(pool)):.2f})")


def _made_with(record: Path, settings: dict, *, exists: bool) -> bool:
    """Whether what ``record`` describes (made once per --out) is there and was made with
    ``settings``; made with others is an error, not a silent re-use that would measure the
    old pool or checkpoint under the new flags. Made before records were kept: re-used."""
    if not exists:
        return False
    if record.is_file():
        made = json.loads(record.read_text())
        if made != settings:
            changed = ", ".join(f"{k} {made.get(k)} -> {v}" for k, v in settings.items() if made.get(k) != v)
            raise SystemExit(f"{record}: what is there was made with {made}; this run asks for {changed}: "
                             "give another --out")
    return True


def _record(record: Path, settings: dict) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings) + "\n")


def _rows(result) -> list[dict]:  # type: ignore[no-untyped-def]
    from boxloop.report.simulation import read_simulation

    return [{"strategy": r.strategy, "seed": r.seed, "round": r.round, "labeled_images": r.labeled_images,
             "labeled_boxes": r.labeled_boxes, "map50_95": r.map50_95} for r in read_simulation(result.csv).rows]


def _matched_epochs(dataset: Path, args: argparse.Namespace) -> int:
    """Epochs that give the full-data reference about the optimizer steps a warm-started
    strategy's last model has accumulated: every round trains --epochs on the labels it has
    (initial, initial + budget, ...), the reference trains on all of them (80%: the test split
    is held out), and never fewer than 3x --epochs: on a pool several times the budget, the
    same steps spread over more images leave the reference below the strategies (measured:
    11 epochs on a 960-image pool gave 0.50 mAP50-95 against 0.54-0.60 for the 260-label
    chains; 30 epochs on a 640-image pool gave 0.67 against 0.43-0.49; both before
    boxloop.modeling.small_data_recipe kept a step per batch past 500 training images, when
    those references, on 768 and 512 of them, took one step per 16 batches at batch 4)."""
    if (dataset / "images").is_dir():
        n = sum(1 for p in (dataset / "images").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    else:  # a workspace
        from boxloop.workspace import Workspace

        ws = Workspace.open(dataset)
        n = ws.store.count_items()
        ws.close()
    pool = max(1, round(0.8 * n))
    seen = sum(min(pool, args.initial + r * args.budget) for r in range(args.rounds + 1))
    return max(3 * args.epochs, math.ceil(args.epochs * seen / pool))


def _print_curves(result, ceiling: dict[int, float]) -> None:  # type: ignore[no-untyped-def]
    """Mean ± std mAP50-95 per labeled count, and the labels to reach lower shares of the
    ceiling too (the aim is at 90%; the lower ones show where the curves part)."""
    from boxloop.report.simulation import read_simulation, summarize
    from boxloop.simulate import labels_to_reach

    for strategy, points in summarize(read_simulation(result.csv).rows, "map50_95").items():
        curve = "  ".join(f"{p.labeled_images:.0f}: {p.mean:.3f}±{p.std:.3f}" for p in points)
        print(f"{strategy:24s} mAP50-95 by labels  {curve}")
    rows = _rows(result)
    for share in (0.5, 0.7):
        needed = labels_to_reach(rows, {s: share * v for s, v in ceiling.items()})
        shown = ", ".join(f"{s} {'not reached' if n is None else f'{n:.0f}'}" for s, n in needed.items())
        print(f"labels to {share:.0%} of the ceiling's mAP50-95: {shown}")


if __name__ == "__main__":
    main()
