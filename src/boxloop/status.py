"""What a workspace holds, as plain values: the CLI and the report render it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from .ingest import current_round
from .workspace import Workspace

__all__ = ["bytes_under", "disk_usage", "next_step", "training_runs", "workspace_status"]

# the workspace's folders boxloop writes, in the order status lists them
DISK_FOLDERS = ("runs", "shrunk", "tiles", "exports", "frames", "imports", "media")


def bytes_under(root: Path) -> int:
    """Bytes of the files under ``root``, links not followed (a run's dataset view links the
    images it trains on: they are counted where they are)."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if e.is_symlink():
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            else:
                with contextlib.suppress(OSError):  # removed meanwhile
                    total += e.stat(follow_symlinks=False).st_size
    return total


def disk_usage(ws: Workspace) -> dict[str, int]:
    """Bytes each of the workspace's folders (and its database) take; absent ones left out."""
    out = {name: bytes_under(ws.root / name) for name in DISK_FOLDERS if (ws.root / name).is_dir()}
    db = [ws.root / n for n in ("boxloop.db", "boxloop.db-wal", "boxloop.db-shm")]
    out["boxloop.db"] = sum(p.stat().st_size for p in db if p.is_file())
    return out


def workspace_status(ws: Workspace) -> dict[str, Any]:
    """Counts by item state, by split (labeled items), boxes per class, model versions, and
    pre-label acceptance per round (what people did with the boxes boxloop drew)."""
    store = ws.store
    classes = store.classes()
    counts = store.box_counts()
    labeled = store.items(state="labeled")
    by_split = {s: sum(1 for it in labeled if it.split == s) for s in ("train", "val", "test")}
    by_split["unassigned"] = sum(1 for it in labeled if it.split is None)
    return {
        "items": store.count_items(),
        "round": current_round(ws),
        "by_state": store.count_by_state(),
        "by_split": by_split,
        "boxes_per_class": {name: counts.get(i, 0) for i, name in enumerate(classes)},
        "model_versions": [v["id"] for v in store.model_versions()],
        "acceptance": store.acceptance_by_round(),
        # labeled images out for review (`audit --push labelstudio`): their labels stand meanwhile
        "out_for_review": sum(1 for t in store.tasks("labelstudio", status="open") if t["meta"].get("review")),
    }


# what each item state means, where a count of it is shown (status, the report): "pool" alone
# reads as every unlabeled image, though the pre-labeled ones are in the pool too
STATE_HELP = {
    "pool": "not labeled, no prediction yet",
    "prelabeled": "not labeled, predicted (still in the pool)",
    "in_review": "out for labeling (select leaves them out)",
    "labeled": "drawn or checked by a person",
}


def training_runs(ws: Workspace) -> dict[str, str]:
    """Run folders no model version names (newest first): "training now" where a process
    holds the run's lock, "cut off" where it saved an epoch to go on from, else "nothing
    saved" (killed before its first epoch ended: nothing to resume)."""
    from .runs import training_now, unfinished_runs

    registered = {v["id"] for v in ws.store.model_versions()}

    def state(run: Path) -> str:
        if training_now(run):
            return "training now"
        return "cut off" if (run / "weights" / "last.pt").is_file() else "nothing saved"

    return {name: state(ws.runs_dir / name) for name in unfinished_runs(ws.runs_dir, registered=registered)}


def next_step(ws: Workspace, st: dict[str, Any]) -> str:
    """What to run next, from a workspace's status (``workspace_status``)."""
    from .ledger import unfinished_round

    states = st["by_state"]
    budget = ws.config.select.budget
    if not st["items"]:
        return "boxloop add labels PATH --format yolo (the images you have labeled), boxloop add images PATH (the rest)"
    if not states["labeled"]:
        return "boxloop add labels PATH: a few labeled images to train the first model on"
    if states["in_review"]:  # first: a round can pick nothing new while its batch is out
        return (f"{states['in_review']} image(s) are out for labeling: boxloop pull (Label Studio), or "
                "boxloop add labels ZIP (the corrected batch, zip or folder); then boxloop round "
                "(a batch nobody will label: boxloop release)")
    unfinished = unfinished_round(ws.store)
    if unfinished is not None:
        return f"boxloop round (round {unfinished} is unfinished: it resumes where it stopped)"
    cut = [name for name, state in training_runs(ws).items() if state == "cut off"]
    if cut:
        return (f"boxloop train with the options run {cut[0]} was started with (runs/{cut[0]}/run_inputs.json) goes on "
                f"from its last saved epoch; or boxloop round --budget {budget} (which trains anew)")
    if st.get("out_for_review"):
        return (f"{st['out_for_review']} labeled image(s) are out for review in Label Studio: boxloop pull brings "
                "the corrections back (then boxloop round trains on them)")
    if not st["model_versions"]:
        return f"boxloop round --budget {budget}: train, evaluate, pre-label the pool and pick what to label"
    if states["pool"] or states["prelabeled"]:
        return f"boxloop round --budget {budget}: train on the labels so far and pick the next batch"
    return "every image is labeled: boxloop add images PATH for more, boxloop report for what the labels bought"
