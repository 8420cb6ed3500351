"""One round of the loop, and the oracle that lets a simulation run the same code.

A round is train → evaluate (frozen test split) → predict the pool → select → push, and
with an annotator that answers at once (the oracle) or ``wait``, pull. Every step is
recorded in the round ledger; running a round again after an interruption resumes at the
step that did not finish. One round at a time per workspace (a lock file says who holds it).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import ledger
from .errors import InputError, NothingToSelect
from .split import assign_splits
from .types import Detections, RoundRecord, Selection
from .workspace import Workspace

__all__ = [
    "PUSH_TARGETS",
    "STEPS",
    "Annotator",
    "Oracle",
    "RoundPlan",
    "round_lock",
    "run_round",
]

log = logging.getLogger(__name__)
STEPS = ("train", "evaluate", "predict", "select", "push", "pull")
PUSH_TARGETS = ("none", "files", "labelstudio")
Say = Callable[[str], None]


class Annotator(Protocol):
    """Where a selection goes to be labeled, and where its labels come back from."""

    name: str

    def push(self, ws: Workspace, selection: Selection) -> dict[str, Any]: ...

    def pull(self, ws: Workspace, selection: Selection) -> dict[str, Any]:
        """Bring back what is done; the result has ``done`` (bool: every task answered)."""
        ...


@dataclass
class Oracle:
    """An annotator who knows the truth: labels every pushed item at once with its true
    boxes (a simulation's replay of a fully labeled dataset)."""

    truth: Mapping[str, Detections]
    name: str = "oracle"

    def push(self, ws: Workspace, selection: Selection) -> dict[str, Any]:
        return {"pushed": len(selection.item_ids)}

    def pull(self, ws: Workspace, selection: Selection) -> dict[str, Any]:
        from .annotation.acceptance import acceptance, sum_acceptance

        rnd = int(ws.store.get_meta("round", "0") or 0)
        mv = selection.model_version
        prelabels = ws.store.predictions(mv, selection.item_ids) if mv else {}
        # the pre-labels push would have drawn
        shown = ws.prelabel_conf(mv)
        rows = []
        with ws.store.transaction():
            for item_id in selection.item_ids:
                if item_id not in self.truth:
                    raise InputError(f"the oracle has no true labels for item {item_id} ({ws.store.get_item(item_id).uri})")
                truth = self.truth[item_id]
                ws.store.add_label(item_id, truth, source="oracle", round=rnd)
                pre = prelabels.get(item_id)
                if pre is not None and pre.confidence is not None:
                    rows.append({**acceptance(pre[pre.confidence >= shown], truth), "prelabel_conf": shown})
        return {"done": True, "labeled": len(selection.item_ids), "acceptance": sum_acceptance(rows)}


@dataclass
class _FilesAnnotator:
    """Pushes the selection as a pre-labeled YOLO zip; labels come back with `boxloop add labels`."""

    name: str = "files"

    def push(self, ws: Workspace, selection: Selection) -> dict[str, Any]:
        from .export import export_dataset

        rnd = ws.store.get_meta("round", "0")
        # a flickering frame's imputed box is drawn in (listed in the zip's imputed.csv), as push sends it
        done = export_dataset(
            ws, format="yolo", what="prelabeled", zip=True, ids=list(selection.item_ids),
            model_version=selection.model_version, out=ws.exports_dir / f"round-{rnd}-prelabeled.zip", batch=True,
        )
        return {"pushed": len(selection.item_ids), "path": str(done.path), "imputed": done.imputed_boxes}

    def pull(self, ws: Workspace, selection: Selection) -> dict[str, Any]:
        open_ids = {t["item_id"] for t in ws.store.tasks("files", status="open")}
        left = [i for i in selection.item_ids if i in open_ids]
        return {"done": not left, "waiting_for": len(left)}


@dataclass
class _LabelStudioAnnotator:
    name: str = "labelstudio"

    def push(self, ws: Workspace, selection: Selection) -> dict[str, Any]:
        from .annotation.labelstudio import push

        # as `boxloop push`: a flickering frame's imputed box goes out flagged, the object the model lost there
        report = push(ws, selection=selection.id)
        return {k: v for k, v in vars(report).items() if isinstance(v, (int, float, str))}

    def pull(self, ws: Workspace, selection: Selection) -> dict[str, Any]:
        from .annotation.labelstudio import pull
        from .annotation.review import META_REVIEW_PROJECT

        report = pull(ws)
        open_ids = {t["item_id"] for t in ws.store.tasks("labelstudio", status="open")}
        left = [i for i in selection.item_ids if i in open_ids]
        out = {k: v for k, v in vars(report).items() if isinstance(v, (int, float, str))}
        review = ws.store.get_meta(META_REVIEW_PROJECT)
        if review:  # labels corrected on review meanwhile go into the next training too
            r = pull(ws, project=review)
            out.update(corrected=r.corrected, confirmed=r.confirmed)
        return {**out, "acceptance": report.acceptance, "done": not left, "waiting_for": len(left)}


def annotator_for(push: str) -> Annotator | None:
    if push not in PUSH_TARGETS:
        raise InputError(f"unknown --push {push!r}; known: {', '.join(PUSH_TARGETS)}")
    return {"none": None, "files": _FilesAnnotator(), "labelstudio": _LabelStudioAnnotator()}[push]


@dataclass(frozen=True)
class RoundPlan:
    """What a round does. ``train`` overrides boxloop.toml [train] (model, epochs, imgsz,
    batch, device, patience, extra); ``model="previous"`` fine-tunes the newest trained
    model (``scratch``: what to start from before there is one). ``aggregation`` overrides
    [select] aggregation (how an image's box uncertainties become one). ``backend`` is a ready
    detector (tests: the fake), used instead of training."""

    budget: int = 50
    strategy: str | None = None
    diverse: bool | None = None
    seed: int = 0
    aggregation: str | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    backend: Any = None
    wait: bool = False
    poll_seconds: float = 10.0
    test_fraction: float = 0.1
    val_fraction: float = 0.2


@contextmanager
def round_lock(ws: Workspace, doing: str = "a round (boxloop round)") -> Iterator[None]:
    """Hold the workspace's lock for work that trains (a round, `boxloop train`, serve's
    retraining): a second one on the same workspace gets a clear error naming the first."""
    path = ws.root / ".round.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid, _, what = f.read().strip().partition("\t")
            raise InputError(
                f"{what or 'a round'} is already running on {ws.root} (pid {pid or 'of another process'}); "
                "wait for it or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\t{doing}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def run_round(
    ws: Workspace,
    plan: RoundPlan,
    *,
    annotator: Annotator | None = None,
    say: Say | None = None,
    sleep: Callable[[float], None] | None = None,
) -> RoundRecord:
    """Run (or resume) the current round and return its ledger record."""
    import time

    say = say or (lambda msg: log.info(msg))
    sleep = sleep or time.sleep
    if plan.budget < 0:
        raise InputError(f"--budget must be >= 0, got {plan.budget}")
    with round_lock(ws):
        store = ws.store
        rnd = ledger.open_round(store, {"budget": plan.budget, "strategy": plan.strategy, "seed": plan.seed})
        done = ledger.step_results(store, rnd)
        results: dict[str, dict[str, Any]] = {k: v["result"] for k, v in done.items() if v["status"] == "done"}
        if results:
            say(f"round {rnd}: resuming after {', '.join(results)}")
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("train", lambda: _train(ws, plan, rnd, say)),
            ("evaluate", lambda: _evaluate(ws, plan, results["train"]["model_version"])),
        ]
        budget = plan.budget
        if budget > 0 and "predict" not in results and _nothing_to_pick(store):
            say(f"round {rnd}: no unlabeled image left to pick (the pool is empty, or all of it is out for "
                "labeling): this round trains and evaluates only; `boxloop add images PATH` grows the pool")
            budget = 0
        if budget > 0:
            steps += [
                ("predict", lambda: _predict(ws, plan, results["train"]["model_version"])),
                ("select", lambda: _select(ws, plan, results["train"]["model_version"])),
            ]
            if annotator is not None:
                steps.append(("push", lambda: annotator.push(ws, store.selection(results["select"]["selection"]))))
                if plan.wait or isinstance(annotator, Oracle):
                    steps.append(("pull", lambda: _pull(ws, plan, annotator, results, say, sleep)))
        for name, run in steps:
            if name in results:
                continue
            if name in ("push", "pull") and results.get("select", {}).get("selection", "") is None:
                break  # nothing was selected: no batch to send or wait for
            say(f"round {rnd}: {name}")
            started = ledger.start_step(store, rnd, name)
            try:
                results[name] = run()
            except BaseException as e:
                ledger.finish_step(store, rnd, name, started, {"error": str(e) or type(e).__name__}, ok=False)
                raise
            ledger.finish_step(store, rnd, name, started, results[name])
            if results[name].get("note"):
                say(f"round {rnd}: {results[name]['note']}")
        ledger.finish_round(store, rnd)
        ledger.write_history_csv(ws)
        return next(r for r in ledger.history(store) if r.round == rnd)


def _nothing_to_pick(store: Any) -> bool:
    """Whether no unlabeled image is left that a selection could pick (none in the pool, or
    every one out for labeling)."""
    counts = store.count_by_state()
    return counts["pool"] + counts["prelabeled"] == 0


def _train(ws: Workspace, plan: RoundPlan, rnd: int, say: Say) -> dict[str, Any]:
    store = ws.store
    labels = store.latest_labels()
    if not labels:
        raise InputError("no labeled images yet: add some with `boxloop add labels PATH` before a round")
    if not store.items(split="test"):
        report = assign_splits(store, val=plan.val_fraction, test=plan.test_fraction, seed=plan.seed)
        if not report.totals["test"]:
            # checked before training: the round's evaluation would fail after it
            raise InputError(
                f"no test split to evaluate on, and none could be made from the {len(labels)} labeled images: "
                "it is drawn only from labeled images not yet in train/val (at least 3 of them); label more "
                "images (`boxloop add labels`, or `boxloop select` + `push` + `pull`): the next ones make it"
            )
        say(f"no test split yet: made one of {report.totals['test']} labeled images (frozen from now on)")
        if report.warning:
            say(report.warning)
    else:
        assign_splits(store, val=plan.val_fraction, test=0.0, seed=plan.seed)
    train_ids = [it.id for it in store.items(split="train") if it.id in labels]
    result = {
        "labeled_images": len(labels),
        "labeled_boxes": int(sum(len(d) for d in labels.values())),
        "train_images": len(train_ids),
    }
    if plan.backend is not None:
        version = f"{getattr(plan.backend, 'name', 'backend')}-r{rnd}"
        store.add_model_version(version, backend=getattr(plan.backend, "name", "backend"), classes=ws.classes, round=rnd)
        return {**result, "model_version": version}
    from .modeling import train

    options = dict(plan.train)
    if options.get("model") == "previous":
        # warm start: fine-tune the newest trained model on the grown label set
        trained = [v for v in store.model_versions() if v["path"] and str(v["path"]).endswith(".pt")]
        options["model"] = trained[-1]["path"] if trained else options.pop("scratch", None)
        if options["model"] is None:
            del options["model"]
    options.pop("scratch", None)
    outcome = train(ws, **options, on_epoch=lambda e, n: e <= n and say(f"round {rnd}: train epoch {e}/{n}"))
    return {**result, "model_version": outcome.version, "weights": str(outcome.weights)}


def _evaluate(ws: Workspace, plan: RoundPlan, version: str) -> dict[str, Any]:
    from .modeling import evaluate_model

    _, metrics = evaluate_model(ws, model=version, backend=plan.backend)
    keep = ("map50", "map50_95", "per_class_ap", "precision", "recall")
    return {k: metrics[k] for k in keep if k in metrics}


def _predict(ws: Workspace, plan: RoundPlan, version: str) -> dict[str, Any]:
    from .modeling import embed_labeled, predict
    from .selection import compares_with_labeled

    report = predict(ws, model=version, scope="unlabeled", backend=plan.backend)
    out = {"items": report.items, "boxes": report.boxes, "problems": len(report.problems)}
    name = plan.strategy or ws.config.select.strategy
    strategy = ws.config.select.presets.get(name, name)
    if compares_with_labeled(strategy, ws.config.select.diverse if plan.diverse is None else plan.diverse):
        out["labeled_embedded"] = embed_labeled(ws, version, backend=plan.backend).items
    if "consistency" in strategy:
        flipped = predict(ws, model=version, scope="unlabeled", backend=plan.backend, hflip=True)
        out["mirrored"] = flipped.items
    return out


def _select(ws: Workspace, plan: RoundPlan, version: str) -> dict[str, Any]:
    from .scoring import ScoreOptions
    from .selection import select

    cfg = ws.config.select
    strategy = plan.strategy or cfg.strategy
    strategy = cfg.presets.get(strategy, strategy)
    diverse = cfg.diverse if plan.diverse is None else plan.diverse
    try:
        report = select(
            ws.store, budget=plan.budget, strategy=strategy, diverse=diverse, seed=plan.seed,
            model_version=version, exclude=ws.store.skipped_item_ids(),
            options=ScoreOptions(aggregation=plan.aggregation or cfg.aggregation),
        )
    except NothingToSelect as e:  # the round still trained and evaluated: it ends here, not stuck at select
        return {"selection": None, "selected": 0, "strategy": strategy, "note": str(e)}
    return {"selection": report.selection.id, "selected": len(report.selection.item_ids), "strategy": strategy}


def _pull(
    ws: Workspace, plan: RoundPlan, annotator: Annotator, results: dict[str, dict[str, Any]], say: Say,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    selection = ws.store.selection(results["select"]["selection"])
    sent = (results.get("push") or {}).get("path")
    how = (f": bring {sent} back corrected with `boxloop add labels` (from another shell)" if sent
           else " in the annotation tool")
    said, polls = None, 0
    while True:
        out = annotator.pull(ws, selection)
        if out.get("done"):
            return out
        left = out.get("waiting_for", "?")
        if left != said or polls % 30 == 0:  # when it changes, else now and then: not a line a poll
            say(f"waiting for {left} image(s) to be labeled{how}; Ctrl-C stops, and the same command goes on waiting")
            said = left
        polls += 1
        sleep(plan.poll_seconds)


def sample_initial(ids: list[str], n: int, seed: int) -> list[str]:
    """A seeded random initial labeled set."""
    rng = np.random.default_rng(seed)
    return [ids[i] for i in sorted(rng.choice(len(ids), size=n, replace=False))]
