"""Simulation: replay active learning on a fully labeled dataset with an oracle annotator,
so strategies can be compared (mean ± std over seeds) on the same frozen test split.

The labels are hidden; each strategy starts from the same seeded initial set, and every
round runs the same code as a real round (:func:`boxloop.loop.run_round`) with the oracle
as the annotation tool.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import ledger
from .atomic import write_text_atomic
from .errors import InputError
from .loop import Oracle, RoundPlan, run_round, sample_initial
from .scoring import parse_strategy
from .scoring.pool import AGGREGATIONS
from .workspace import CONFIG_NAME, Workspace

__all__ = [
    "MIN_REFERENCE_MAP", "SIMULATION_COLUMNS", "SIMULATION_OPTIONAL", "SimulationResult", "best_models", "labels_to_reach",
    "reference_below", "reference_untrained",
    "run_folder", "simulate",
]

log = logging.getLogger(__name__)
SIMULATION_COLUMNS = ("strategy", "seed", "round", "labeled_images", "labeled_boxes", "map50", "map50_95")
SIMULATION_OPTIONAL = frozenset({"labeled_boxes"})  # a CSV written before the column was kept still reads
META_SETTINGS = "simulation.settings"  # what a run's workspace was made with (a re-run resumes only the same)
# a full-data mAP50-95 below this: the model learned next to nothing, and 90% of it is no level
# to reach (every round "reaches" a target of 0)
MIN_REFERENCE_MAP = 0.01


@dataclass(frozen=True)
class SimulationResult:
    csv: Path
    summary_csv: Path
    full_map50_95: dict[int, float]
    labels_needed: dict[str, float | None]
    plots: tuple[Path, ...] = ()  # the curves as SVG files beside the CSV
    notes: tuple[str, ...] = ()  # what makes the comparison doubtful (a full-data reference that is no ceiling)
    # the boxes those labels held: an annotator's cost, which images alone hide where a strategy picks
    # crowded images, or skips the ones that show nothing (quick to label)
    boxes_needed: dict[str, float | None] = field(default_factory=dict)
    # where the reference is no ceiling (notes): labels to 90% of the best model of each seed instead
    best_map50_95: dict[int, float] = field(default_factory=dict)
    labels_needed_best: dict[str, float | None] = field(default_factory=dict)


def _truth_workspace(dataset: Path, out: Path) -> Workspace:
    """The labeled dataset as a workspace: the given workspace, or a YOLO folder imported once,
    keeping the split its folders say (a ``test/`` folder is the test split every strategy is
    scored on)."""
    from .formats.yolo import parse_class_names
    from .ingest import add_labels, find_class_file

    if (dataset / CONFIG_NAME).is_file():
        return Workspace.open(dataset)
    names_file = find_class_file(dataset)
    if names_file is None:
        raise InputError(f"{dataset}: neither a boxloop workspace nor a YOLO folder with data.yaml/classes.txt")
    truth_dir = out / "truth"
    ws = Workspace.init(truth_dir, classes=parse_class_names(names_file))
    if not ws.store.latest_labels():
        report = add_labels(ws, dataset, format="yolo", split="folders")
        if report.problems:
            log.warning("%d problem(s) importing %s; first: %s", len(report.problems), dataset, next(iter(report.problems)))
    return ws


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-") or "strategy"


def simulate(
    dataset: str | Path,
    *,
    strategies: Sequence[str],
    initial: int = 50,
    budget: int = 50,
    rounds: int = 5,
    seeds: Sequence[int] = (0,),
    out: str | Path,
    train: Mapping[str, Any] | None = None,
    full_data_train: Mapping[str, Any] | None = None,
    backend_factory: Callable[[list[str]], Any] | None = None,
    test_fraction: float = 0.2,
    full_data: bool = True,
    aggregation: str | None = None,
    say: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Run every strategy for ``rounds`` rounds per seed; write ``simulation.csv`` (one row
    per strategy, seed and evaluation; ``labeled_images`` counts the labels outside the
    frozen test split, the ones the strategy chose or started from, ``labeled_boxes`` the
    boxes they hold) and ``simulation_summary.csv`` (labels each strategy needed to reach 90%
    of the full-data mAP50-95, and the boxes drawn by then: an image with nothing in it is
    quick to label, one crowded with boxes is slow). ``full_data_train`` overrides ``train``
    for the full-data reference (one training on every label: with warm-started rounds,
    ``model="previous"``, a strategy's last model has trained round after round, so the
    reference may need more epochs to be a fair ceiling). ``aggregation`` (max, mean, sum)
    is how the strategies' scorers fold an image's box scores into one, recorded with the
    runs it changes (not the random baseline's). ``backend_factory`` (tests)
    replaces training with a ready detector."""
    say = say or (lambda m: log.info(m))
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    if not strategies:
        raise InputError("give at least one strategy, e.g. --strategies random,least_confidence")
    if aggregation is not None and aggregation not in AGGREGATIONS:
        raise InputError(f"unknown aggregation {aggregation!r}; known: {', '.join(AGGREGATIONS)}")
    truth_ws = _truth_workspace(Path(dataset).absolute(), out)
    truth = truth_ws.store.latest_labels()
    items = [it for it in truth_ws.store.items() if it.id in truth]
    classes = truth_ws.classes
    rows: list[dict[str, Any]] = []
    full: dict[int, float] = {}
    result: SimulationResult | None = None
    alike = _trained_alike(train, full_data_train)
    for seed in seeds:
        test_ids = _test_split(items, truth_ws, test_fraction, seed)
        test_boxes = sum(len(truth[i]) for i in test_ids)
        from .split import FEW_TEST_BOXES

        thin = (f": under {FEW_TEST_BOXES} boxes, its mAP is noisy and the strategies' curves may cross by chance "
                "(a larger --test-fraction, or a dataset with a test/ folder, steadies it)") if test_boxes < FEW_TEST_BOXES else ""
        say(f"seed {seed}: every strategy is scored on the same test split of {len(test_ids)} images, "
            f"{test_boxes} boxes{thin}")
        candidates = [it.id for it in items if it.id not in test_ids]
        if initial > len(candidates):
            raise InputError(
                f"--initial {initial} is larger than the {len(candidates)} labeled images outside the test split"
            )
        start = sample_initial(candidates, initial, seed)
        runs = [*strategies, *(["full-data"] if full_data else [])]
        for strategy in runs:
            name = run_folder(strategy, seed, aggregation)
            n_rounds = 1 if strategy == "full-data" else rounds + 1
            run_train = dict(full_data_train if strategy == "full-data" and full_data_train is not None else train or {})
            run_train.setdefault("allow_missing_classes", True)  # a small seeded start may miss a class
            settings = {
                "dataset": str(Path(dataset).absolute()), "strategy": strategy, "seed": seed, "initial": initial,
                "budget": budget, "rounds": n_rounds, "test_fraction": test_fraction, "train": run_train,
                "backend": "given" if backend_factory else "trained",
            }
            if aggregation and _scores_boxes(strategy):
                settings["aggregation"] = aggregation  # the baseline and the reference never score boxes
            ws, finished = _run_workspace(out / name, classes, settings)
            if not finished:
                _reveal(ws, items, truth, test_ids, start if strategy != "full-data" else candidates, settings)
            done = ledger.finished_rounds(ws.store)
            say(f"simulating {strategy} (seed {seed})" + (f": rounds {', '.join(map(str, done))} already done" if done else ""))
            backend = backend_factory(classes) if backend_factory else None
            oracle = Oracle({i: truth[i] for i in candidates})
            for r in range(n_rounds):
                last = r == n_rounds - 1
                rec, round_seed = done.get(r + 1), seed + 1000 * r
                if rec is not None and not last and budget > 0 and not ledger.selected(ws.store, r + 1):
                    # the last round of a run with fewer --rounds: it selects now, and the run goes on
                    ledger.reopen_round(ws.store, r + 1, {"budget": budget, "strategy": strategy, "seed": round_seed})
                    rec = None
                if rec is None:  # run it (or resume it where an interruption left it)
                    plan = RoundPlan(
                        budget=0 if last else budget, strategy=strategy, seed=round_seed, train=run_train,
                        aggregation=aggregation,
                        backend=backend, test_fraction=0.0,
                    )
                    rec = run_round(ws, plan, annotator=oracle, say=say)
                if strategy == "full-data":
                    full[seed] = float(rec.map50_95 or 0.0)
                else:
                    rows.append({
                        # what the strategy paid for: the frozen test split's labels are not counted
                        "strategy": strategy, "seed": seed, "round": rec.round,
                        "labeled_images": rec.labeled_images - len(test_ids),
                        "labeled_boxes": rec.labeled_boxes - test_boxes,
                        "map50": rec.map50, "map50_95": rec.map50_95,
                    })
            ws.close()
            result = _write_outputs(out, rows, full, alike=alike)  # after every run: an interrupted simulation keeps its curves
    return result if result is not None else _write_outputs(out, rows, full, alike=alike)


def _trained_alike(train: Mapping[str, Any] | None, full_data_train: Mapping[str, Any] | None) -> bool:
    """Whether the full-data reference trains exactly as every round does: the same settings,
    a fixed number of optimizer steps (not epochs, which give more labels more training), and
    every round from the same start (not fine-tuning the last round's model)."""
    train = dict(train or {})
    same = full_data_train is None or dict(full_data_train) == train
    return same and bool(train.get("steps")) and train.get("model") != "previous"


def run_folder(strategy: str, seed: int, aggregation: str | None = None) -> str:
    """The folder, under a simulation's ``out``, of one strategy's run (its workspace) for one
    seed; "full-data" names the reference's. The aggregation is in the name where it changes
    the run: not for the random baseline or the reference, which never score boxes."""
    return f"{_slug(strategy)}{f'-{aggregation}' if aggregation and _scores_boxes(strategy) else ''}-s{seed}"


def _scores_boxes(strategy: str) -> bool:
    return strategy != "full-data" and not _is_random_baseline(strategy)


def _is_random_baseline(strategy: str) -> bool:
    try:
        return parse_strategy(strategy).is_random_baseline
    except InputError:  # a preset of the run's boxloop.toml ("video"), resolved by the round
        return False


def _run_workspace(path: Path, classes: Sequence[str], settings: Mapping[str, Any]) -> tuple[Workspace, bool]:
    """(the run's workspace, whether its labels are already revealed): a new one, or the one
    an earlier, interrupted simulation with the same settings left (a re-run goes on from
    there, or further when asked for more rounds). One made with other settings is an error,
    never overwritten."""
    if not (path / CONFIG_NAME).is_file():
        return Workspace.init(path, classes=classes), False
    ws = Workspace.open(path)
    made = ws.store.get_meta(META_SETTINGS)
    if made is None and not ws.store.items():
        return ws, False  # made, then interrupted before the labels were revealed
    old = json.loads(made) if made is not None else None
    if old is None or _but_rounds(old) != _but_rounds(json.loads(_settings_json(settings))):
        ws.close()
        raise InputError(
            f"{path}: left by a simulation with other settings ({_settings_diff(made, settings)}); "
            "give another --out or delete that folder"
        )
    if old.get("rounds", 0) < settings["rounds"]:  # extended: record how far it now goes
        ws.store.set_meta(META_SETTINGS, _settings_json(settings))
    return ws, True


def _but_rounds(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings that must match for a run to be resumed: all but the number of rounds (more
    rounds extend a finished run, fewer read the first ones)."""
    return {k: v for k, v in settings.items() if k != "rounds"}


def _settings_json(settings: Mapping[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _settings_diff(made: str | None, settings: Mapping[str, Any]) -> str:
    if made is None:
        return "none recorded"
    old, new = json.loads(made), json.loads(_settings_json(settings))
    diff = [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(diff) or "none recorded"


def _write_outputs(
    out: Path, rows: Sequence[Mapping[str, Any]], full: Mapping[int, float], *, alike: bool = False
) -> SimulationResult:
    """simulation.csv, simulation_summary.csv and the SVG curves, from the runs so far."""
    from .report.simulation import write_plots

    csv_path = _write_csv(out / "simulation.csv", SIMULATION_COLUMNS, rows)
    targets = {s: 0.9 * v for s, v in full.items()}
    needed = labels_to_reach(rows, targets) if full else {}
    boxes = labels_to_reach(rows, targets, count="labeled_boxes") if full else {}
    best = best_models(rows, full)
    needed_best = labels_to_reach(rows, {s: 0.9 * v for s, v in best.items()}) if full else {}
    # one number a cell (a spreadsheet reads it): the mean over seeds, then each seed's
    seeds = sorted(set(full) | set(best))
    by_seed = {f"{name}_seed{seed}": values.get(seed) for name, values in (("full_data_map50_95", full),
                                                                            ("best_map50_95", best)) for seed in seeds}
    summary = _write_csv(
        out / "simulation_summary.csv",
        ("strategy", "labels_to_90pct_full_map50_95", "boxes_to_90pct_full_map50_95", "full_data_map50_95",
         "labels_to_90pct_best_map50_95", "best_map50_95", *by_seed),
        [{"strategy": s, "labels_to_90pct_full_map50_95": n, "boxes_to_90pct_full_map50_95": boxes.get(s),
          "full_data_map50_95": _mean(full), "labels_to_90pct_best_map50_95": needed_best.get(s),
          "best_map50_95": _mean(best), **by_seed} for s, n in needed.items()],
    )
    plots = write_plots(csv_path, full_map50_95=sum(full.values()) / len(full) if full else None) if rows else []
    return SimulationResult(
        csv_path, summary, dict(full), needed, tuple(plots),
        (*reference_untrained(full, best), *reference_below(rows, full, alike=alike)), boxes, best, needed_best,
    )


def _mean(values: Mapping[int, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


def best_models(rows: Sequence[Mapping[str, Any]], full: Mapping[int, float]) -> dict[int, float]:
    """Per seed, the best mAP50-95 of the full-data reference and every strategy's round: a
    reference trained too short for its data scores below models trained on a subset of it,
    and 90% of it is then a target too low to tell the strategies apart (both reach it early);
    a model the seed's labels did train is a ceiling the full data reaches at least."""
    return {seed: max([ref, *((r["map50_95"] or 0.0) for r in rows if r["seed"] == seed)]) for seed, ref in full.items()}


def reference_untrained(full: Mapping[int, float], best: Mapping[int, float]) -> list[str]:
    """One note per seed whose full-data reference learned next to nothing (mAP50-95 below
    MIN_REFERENCE_MAP): there is no level to reach, and every strategy would seem to reach it
    with its first labels."""
    notes = []
    for seed, ref in sorted(full.items()):
        if ref >= MIN_REFERENCE_MAP:
            continue
        also = " nor did any round" if best.get(seed, ref) < MIN_REFERENCE_MAP else ""
        notes.append(
            f"seed {seed}: the full-data model scored mAP50-95 {ref:.3f}: it learned next to nothing{also}, so there "
            "is no level to reach; train longer (--epochs, --full-epochs), at a larger --imgsz, or from weights "
            "(--model your.pt) on a fresh --out"
        )
    return notes


def reference_below(
    rows: Sequence[Mapping[str, Any]], full: Mapping[int, float], *, alike: bool = False
) -> list[str]:
    """One note per seed whose full-data reference scored below some strategy's round: a
    reference trained too short for its data is no ceiling, and "labels to 90% of it" then
    measures against a target that is too low (fewer labels look enough). ``alike``: the
    reference trained exactly as the rounds did (``--steps``), so a subset of the labels
    taught more in the same steps than all of them: the steps are too few for the full data."""
    notes = []
    for seed, ref in sorted(full.items()):
        mine = [r for r in rows if r["seed"] == seed and (r["map50_95"] or 0.0) > ref]
        if not mine:
            continue
        top = max(mine, key=lambda r: r["map50_95"])
        advice = (
            "trained alike, for the same steps, the full data taught less than these labels: the steps are too "
            "few for all of them to pay off, give more --steps on a fresh --out"
            if alike else "train it longer (--full-epochs) on a fresh --out"
        )
        notes.append(
            f"seed {seed}: the full-data reference (mAP50-95 {ref:.3f}) is below {top['strategy']} at "
            f"{top['labeled_images']} labels ({top['map50_95']:.3f}), so it is no ceiling and the labels to 90% of it "
            f"are too few; {advice}"
        )
    return notes


def _test_split(items: Sequence[Any], truth_ws: Workspace, fraction: float, seed: int) -> set[str]:
    """The dataset's own test split if it has one, else a seeded one shared by all strategies."""
    existing = {it.id for it in items if it.split == "test"}
    if existing:
        return existing
    groups: dict[str, list[str]] = {}
    for it in items:
        groups.setdefault(it.video_id or it.id, []).append(it.id)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    order = [keys[i] for i in rng.permutation(len(keys))]
    want = max(1, round(fraction * len(items)))
    out: set[str] = set()
    for k in order:
        if len(out) >= want:
            break
        out.update(groups[k])
    return out


def _reveal(
    ws: Workspace, items: Sequence[Any], truth: Mapping[str, Any], test_ids: set[str], labeled: Sequence[str],
    settings: Mapping[str, Any],
) -> None:
    """Copy the items (same files, no re-indexing), reveal the test and initial labels, and
    record the run's settings, in one transaction."""
    from dataclasses import replace

    store = ws.store
    with store.transaction():
        for it in items:
            store.add_item(replace(it, split=None, labeled_round=None))
        for i in [*test_ids, *labeled]:
            store.add_label(i, truth[i], source="oracle", round=0)
        store.set_split(dict.fromkeys(test_ids, "test"))
        store.set_meta(META_SETTINGS, _settings_json(settings))


def labels_to_reach(
    rows: Sequence[Mapping[str, Any]],
    target_by_seed: Mapping[int, float],
    *,
    interpolate: bool = False,
    count: str = "labeled_images",
) -> dict[str, float | None]:
    """Per strategy, the mean over seeds of the first labeled-image count whose mAP50-95
    reaches the seed's target (None when some seed never reaches it, or a row lacks the
    count, or the target is below 90% of MIN_REFERENCE_MAP: a model that learned nothing sets no
    level). ``interpolate``: the count where the straight line between that round and the
    one before it crosses the target, so a curve that just misses at one round is told apart
    from one far below. ``count``: the column counted, "labeled_boxes" for the boxes drawn."""
    out: dict[str, float | None] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        counts = []
        for seed, target in target_by_seed.items():
            mine = sorted((r for r in rows if r["strategy"] == strategy and r["seed"] == seed), key=lambda r: r["round"])
            hit = None
            if target < 0.9 * MIN_REFERENCE_MAP:
                mine = []
            for before, row in zip([None, *mine], mine):
                value = row["map50_95"] or 0.0
                if value < target:
                    continue
                if row.get(count) is None or (interpolate and before is not None and before.get(count) is None):
                    break  # a CSV from before the column was kept: the count is unknown
                hit = float(row[count])
                if interpolate and before is not None:
                    low = before["map50_95"] or 0.0
                    hit = before[count] + (hit - before[count]) * (target - low) / (value - low)
                break
            counts.append(hit)
        out[strategy] = None if any(c is None for c in counts) else float(np.mean(counts))
    return out


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns))
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in columns})
    return write_text_atomic(path, buf.getvalue())
