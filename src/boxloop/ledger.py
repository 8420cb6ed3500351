"""The round ledger: what each round cost and bought, from the rounds/round_steps tables.

A round's steps store their results as JSON (``train``: model_version, labeled_images,
labeled_boxes; ``evaluate``: map50, map50_95, per_class_ap; ``pull``: acceptance counts);
the ledger joins them into one :class:`RoundRecord` per round and keeps ``runs/history.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .annotation.acceptance import (
    ACCEPTANCE_KEYS,
    acceptance_words,
    saved_per_image,
    threshold_text,
)
from .atomic import write_text_atomic
from .store import Store
from .types import RoundRecord
from .workspace import Workspace

__all__ = [
    "HISTORY_COLUMNS",
    "before_the_rounds",
    "describe_round",
    "finish_round",
    "finish_step",
    "finished_rounds",
    "history",
    "models_outside_rounds",
    "models_text",
    "open_round",
    "reopen_round",
    "selected",
    "start_step",
    "step_results",
    "unfinished_round",
    "where_it_stopped",
    "write_history_csv",
]

HISTORY_COLUMNS = (
    "round", "labeled_images", "labeled_boxes", "model_version", "map50", "map50_95",
    "accepted", "adjusted", "deleted", "added", "saved_s_per_image", "prelabel_conf", "prelabel_models",
    "per_class_ap", "seconds",
)


def open_round(store: Store, config: Mapping[str, Any] | None = None) -> int:
    """The round to work on: the newest unfinished one, else a new one (numbered from 1).
    Labels pulled from now on belong to it (store meta ``round``)."""
    row = store.conn.execute("SELECT round, finished_at FROM rounds ORDER BY round DESC LIMIT 1").fetchone()
    if row is not None and row["finished_at"] is None:
        return int(row["round"])
    rnd = 1 if row is None else int(row["round"]) + 1
    with store.transaction() as c:
        c.execute(
            "INSERT INTO rounds (round, started_at, config) VALUES (?,?,?)",
            (rnd, time.time(), json.dumps(dict(config or {}))),
        )
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('round', ?)", (str(rnd),))
    return rnd


def step_results(store: Store, rnd: int) -> dict[str, dict[str, Any]]:
    """{step: {"status", "seconds", "result"}} of a round, in the order the steps ran."""
    rows = store.conn.execute(
        "SELECT step, status, seconds, result FROM round_steps WHERE round=? ORDER BY started_at", (rnd,)
    )
    return {r["step"]: {"status": r["status"], "seconds": r["seconds"], "result": json.loads(r["result"])} for r in rows}


def start_step(store: Store, rnd: int, step: str) -> float:
    t = time.time()
    with store.transaction() as c:
        c.execute(
            "INSERT OR REPLACE INTO round_steps (round, step, status, started_at) VALUES (?,?,'running',?)",
            (rnd, step, t),
        )
    return t


def finish_step(store: Store, rnd: int, step: str, started: float, result: Mapping[str, Any], *, ok: bool = True) -> None:
    with store.transaction() as c:
        c.execute(
            "UPDATE round_steps SET status=?, seconds=?, result=? WHERE round=? AND step=?",
            ("done" if ok else "failed", time.time() - started, json.dumps(dict(result)), rnd, step),
        )


def finish_round(store: Store, rnd: int) -> None:
    with store.transaction() as c:
        c.execute("UPDATE rounds SET finished_at=? WHERE round=?", (time.time(), rnd))


def selected(store: Store, rnd: int) -> bool:
    """Whether the round picked a batch (a round run with budget 0 trains and evaluates only)."""
    return step_results(store, rnd).get("select", {}).get("status") == "done"


def reopen_round(store: Store, rnd: int, config: Mapping[str, Any] | None = None) -> None:
    """Mark the newest round unfinished again, so that the next ``run_round`` runs the steps it
    skipped (the selection of a round first run with budget 0) and keeps those it did;
    ``config`` replaces the settings recorded when it was opened."""
    newest = store.conn.execute("SELECT MAX(round) FROM rounds").fetchone()[0]
    if newest != rnd:
        raise ValueError(f"only the newest round ({newest}) can be reopened, not round {rnd}")
    with store.transaction() as c:
        c.execute("UPDATE rounds SET finished_at=NULL WHERE round=?", (rnd,))
        if config is not None:
            c.execute("UPDATE rounds SET config=? WHERE round=?", (json.dumps(dict(config)), rnd))
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('round', ?)", (str(rnd),))


def unfinished_round(store: Store) -> int | None:
    """The newest round if it did not run to the end (``run_round`` resumes it), else None."""
    row = store.conn.execute("SELECT round, finished_at FROM rounds ORDER BY round DESC LIMIT 1").fetchone()
    return None if row is None or row["finished_at"] is not None else int(row["round"])


def where_it_stopped(store: Store, rnd: int) -> str:
    """A line on an unfinished round: the steps it finished, the one that failed (with its
    error) or was interrupted, and how to go on."""
    steps = step_results(store, rnd)
    done = [k for k, v in steps.items() if v["status"] == "done"]
    parts = [f"round {rnd} is unfinished", f"done: {', '.join(done)}" if done else "no step done yet"]
    for name, v in steps.items():
        error = v["result"].get("error", "?") if v["status"] == "failed" else None
        if error == "KeyboardInterrupt":
            parts.append(f"{name} was interrupted")
        elif error is not None:
            parts.append(f"{name} failed: {error}")
        elif v["status"] == "running":
            parts.append(f"{name} was interrupted (or is running now)")
    return "; ".join(parts) + "; `boxloop round` resumes it"


def describe_round(store: Store, rec: RoundRecord) -> str:
    """One line on a round: its model, labels and mAP, what changed since the round before, and
    what people did with the pre-labels of its batch, once it came back."""
    earlier = [r for r in history(store) if r.round < rec.round]
    scored = next((r for r in reversed(earlier) if r.map50_95 is not None), None)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    labels = f"{rec.labeled_images} labeled images"
    if earlier:
        labels += f" ({rec.labeled_images - earlier[-1].labeled_images:+d})"
    gain = ""
    if scored is not None and rec.map50_95 is not None:
        gain = f" ({rec.map50_95 - scored.map50_95:+.3f} since round {scored.round})"
    line = f"round {rec.round}: model {rec.model_version}, {labels}, mAP50 {fmt(rec.map50)}, mAP50-95 {fmt(rec.map50_95)}{gain}"
    return line + (f"; its batch came back: {acceptance_words(rec.acceptance)}" if rec.acceptance else "")



def finished_rounds(store: Store) -> dict[int, RoundRecord]:
    """The rounds that ran to the end: round → its record."""
    finished = {int(r[0]) for r in store.conn.execute("SELECT round FROM rounds WHERE finished_at IS NOT NULL")}
    return {r.round: r for r in history(store) if r.round in finished}


def history(store: Store) -> list[RoundRecord]:
    """One record per round, oldest first. A round's pre-label acceptance is what the store
    recorded for the labels that came back in it (a waiting round's pulls, a later `boxloop
    pull`, a corrected zip brought back with `boxloop add labels`), else its pull step's.
    Round 0, when there is one, is the work done before the first `boxloop round`
    (:func:`before_the_rounds`)."""
    recorded = store.acceptance_by_round()
    models = store.acceptance_models()
    first = before_the_rounds(store, recorded)
    if first is not None and 0 in models:
        first = replace(first, prelabel_models=models[0])
    out = [] if first is None else [first]
    for row in store.conn.execute("SELECT round FROM rounds ORDER BY round").fetchall():
        steps = step_results(store, row["round"])
        train = steps.get("train", {}).get("result", {})
        ev = steps.get("evaluate", {}).get("result", {})
        pulled = steps.get("pull", {}).get("result", {})
        out.append(
            RoundRecord(
                round=int(row["round"]),
                labeled_images=int(train.get("labeled_images", 0)),
                labeled_boxes=int(train.get("labeled_boxes", 0)),
                model_version=train.get("model_version"),
                map50=ev.get("map50"),
                map50_95=ev.get("map50_95"),
                per_class_ap=ev.get("per_class_ap", {}),
                acceptance=recorded.get(int(row["round"])) or pulled.get("acceptance", {}),
                seconds={k: round(v["seconds"], 2) for k, v in steps.items() if v["seconds"] is not None},
                # whose pre-labels came back: as recorded, else (an oracle's round) the round's own model's
                prelabel_models=models.get(int(row["round"])) or (
                    {str(train.get("model_version")): int(pulled["acceptance"].get("items", 0))}
                    if pulled.get("acceptance") and train.get("model_version") else {}
                ),
            )
        )
    return out


def before_the_rounds(store: Store, recorded: Mapping[int | None, Mapping[str, float]] | None = None) -> RoundRecord | None:
    """Round 0: what was done step by step before the first `boxloop round` (or with none
    yet): the newest model made by then (`boxloop train`, or a model of one's own; another
    detector's imported predictions only once evaluated) with its mAP where it was evaluated, the human labels there were when it was
    made, and the acceptance of batches that came back corrected (`export --what
    prelabeled`, then `add labels`). None when there is neither such a model nor such a
    batch."""
    recorded = store.acceptance_by_round() if recorded is None else recorded
    start = store.conn.execute("SELECT MIN(started_at) FROM rounds").fetchone()[0]
    until = time.time() if start is None else float(start)
    model = store.conn.execute(
        "SELECT m.id, m.created_at, m.meta, e.metrics FROM model_versions m "
        "LEFT JOIN evaluations e ON e.model_version = m.id AND e.split = 'test' "
        "WHERE m.created_at < ? AND (m.path IS NOT NULL OR e.metrics IS NOT NULL) "
        "ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
        (until,),
    ).fetchone()
    acceptance = recorded.get(0) or {}
    if model is None and not acceptance:
        return None
    labels = store.latest_labels(as_of=until if model is None else float(model["created_at"]))
    metrics = json.loads(model["metrics"]) if model is not None and model["metrics"] else {}
    trained = json.loads(model["meta"]).get("seconds") if model is not None else None
    return RoundRecord(
        round=0,
        labeled_images=len(labels),
        labeled_boxes=int(sum(len(d) for d in labels.values())),
        model_version=None if model is None else str(model["id"]),
        map50=metrics.get("map50"),
        map50_95=metrics.get("map50_95"),
        per_class_ap=metrics.get("per_class_ap", {}),
        acceptance=acceptance,
        seconds={} if trained is None else {"train": float(trained)},
    )


def models_outside_rounds(store: Store) -> list[RoundRecord]:
    """Models made after the first `boxloop round` began that no round trained: `boxloop serve`
    retraining as people annotate in Label Studio, or `boxloop train` by hand between rounds.
    Each record's ``round`` is the round it followed; its labels are those there were when it
    was made, its mAP the test split's where it was evaluated. Oldest first."""
    starts = [(int(r[0]), float(r[1])) for r in store.conn.execute("SELECT round, started_at FROM rounds ORDER BY round")]
    if not starts:
        return []
    by_rounds = {
        str(step_results(store, rnd).get("train", {}).get("result", {}).get("model_version")) for rnd, _ in starts
    }
    rows = store.conn.execute(
        "SELECT m.id, m.created_at, m.meta, e.metrics FROM model_versions m "
        "LEFT JOIN evaluations e ON e.model_version = m.id AND e.split = 'test' "
        "WHERE m.created_at >= ? AND m.path IS NOT NULL ORDER BY m.created_at, m.id",
        (starts[0][1],),
    ).fetchall()
    out = []
    for row in rows:
        if str(row["id"]) in by_rounds:
            continue
        made = float(row["created_at"])
        labels = store.latest_labels(as_of=made)
        metrics = json.loads(row["metrics"]) if row["metrics"] else {}
        trained = json.loads(row["meta"] or "{}").get("seconds")
        out.append(RoundRecord(
            round=max(rnd for rnd, started in starts if started <= made),
            labeled_images=len(labels),
            labeled_boxes=int(sum(len(d) for d in labels.values())),
            model_version=str(row["id"]),
            map50=metrics.get("map50"),
            map50_95=metrics.get("map50_95"),
            per_class_ap=metrics.get("per_class_ap", {}),
            seconds={} if trained is None else {"train": float(trained)},
        ))
    return out


def models_text(models: Mapping[str, int]) -> str:
    """Whose pre-labels a round's batches held: ``m002`` alone, or ``m001 (2), ext-1 (5)``."""
    named = {(mv or "unknown"): n for mv, n in models.items()}
    if len(named) == 1:
        return next(iter(named))
    return ", ".join(f"{mv} ({n})" for mv, n in named.items())


def write_history_csv(ws: Workspace) -> Path:
    """Write ``runs/history.csv`` (atomically) and return its path."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(HISTORY_COLUMNS)
    for r in history(ws.store):
        w.writerow([
            r.round, r.labeled_images, r.labeled_boxes, r.model_version or "",
            "" if r.map50 is None else f"{r.map50:.4f}",
            "" if r.map50_95 is None else f"{r.map50_95:.4f}",
            *(r.acceptance.get(k, "") for k in ACCEPTANCE_KEYS),
            "" if (per := saved_per_image(r.acceptance)) is None else f"{per:.2f}", threshold_text(r.acceptance),
            models_text(r.prelabel_models),
            json.dumps(dict(r.per_class_ap)), json.dumps(dict(r.seconds)),
        ])
    return write_text_atomic(ws.runs_dir / "history.csv", buf.getvalue())
