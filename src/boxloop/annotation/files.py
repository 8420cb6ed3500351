"""The file round trip: a pre-labeled export (a zip for Roboflow, CVAT, labelImg, ...) is
recorded as open ``files`` tasks; labels brought back with ``boxloop add labels`` close them
and count what the person did with the pre-labels, as a Label Studio pull does."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from ..store import Store
from ..types import Detections
from .acceptance import acceptance, seconds_saved

__all__ = ["TOOL", "record_prelabels", "settle_prelabels"]

TOOL = "files"


def record_prelabels(
    store: Store, export_name: str, prelabels: Mapping[str, Detections], file_names: Mapping[str, str],
    *, model_version: str | None,
) -> None:
    """Remember which boxes went out to the annotator with each item of an export."""
    with store.transaction():
        for item_id, d in prelabels.items():
            store.put_task(
                TOOL, export_name, item_id, file_names[item_id],
                meta={"model_version": model_version, "xyxy": d.xyxy.tolist(), "class_id": d.class_id.tolist()},
            )


# Roboflow renames each image it exports: p1.jpg -> p1_jpg.rf.<hash>.jpg (and may re-encode it)
_ROBOFLOW_NAME = re.compile(r"^(?P<stem>.+)_(?P<ext>jpe?g|png|bmp|webp|tiff?)\.rf\.[0-9a-fA-F]{8,}\.[A-Za-z]+$")


def sent_names(store: Store) -> dict[str, str | None]:
    """The file names pre-labeled exports sent out, still open, to the item each names (None
    where two open exports gave one name to different items)."""
    out: dict[str, str | None] = {}
    for task in store.tasks(TOOL, status="open"):
        name, item_id = task["task_id"], task["item_id"]
        out[name] = item_id if out.get(name, item_id) == item_id else None
    return out


def sent_item(names: Mapping[str, str | None], file_name: str) -> str | None:
    """The item a file coming back is, by the name it was sent out under: as sent, or as an
    annotation tool renamed it (Roboflow: ``p1_jpg.rf.<hash>.jpg`` for ``p1.jpg``)."""
    if file_name in names:
        return names[file_name]
    m = _ROBOFLOW_NAME.match(file_name)
    return names.get(f"{m['stem']}.{m['ext']}") if m else None


def settle_prelabels(store: Store, item_id: str, labels: Detections, *, source: str, round: int | None) -> dict[str, int] | None:
    """Close the item's open file tasks (if any) and record pre-label acceptance against the
    labels that came back; returns the counts, or None when the item was not sent out. An item
    exported pre-labeled more than once is counted once, against the newest pre-labels sent."""
    sent = store.tasks(TOOL, status="open", item_id=item_id)
    if not sent:
        return None
    newest = sent[-1]
    meta = newest["meta"]
    pre = Detections(np.asarray(meta["xyxy"], np.float32).reshape(-1, 4), meta["class_id"])
    counts = acceptance(pre, labels)
    with store.transaction():
        store.put_acceptance(
            TOOL, newest["project"], item_id, counts, annotation=source,
            seconds_saved=seconds_saved(counts), model_version=meta.get("model_version"), round=round,
        )
        for task in sent:
            store.update_task(TOOL, task["project"], item_id, status="done")
    return counts
