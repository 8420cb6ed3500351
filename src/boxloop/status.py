"""What a workspace holds, as plain values: the CLI and the report render it."""

from __future__ import annotations

from typing import Any

from .ingest import current_round
from .workspace import Workspace

__all__ = ["workspace_status"]


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
    }
