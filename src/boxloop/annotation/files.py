"""The file round trip: a pre-labeled export (a zip for Roboflow, CVAT, labelImg, ...) is
recorded as ``files`` tasks; labels brought back with ``boxloop add labels`` close them and
count what the person did with the pre-labels, as a Label Studio pull does.

A batch (a selection's export, a round's ``--push files``) is ``open``: out for labeling, so
``select`` leaves its images out until they come back. Pre-labels handed out otherwise (the
whole pool, or the images under a folder) are ``offered``: counted the same way when labels
come back, but their images stay in the pool, as nobody was asked to label them all."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath

import numpy as np

from ..errors import InputError
from ..store import OFFERED, Store
from ..types import Detections
from .acceptance import acceptance, seconds_saved
from .labelstudio import uploaded_names

__all__ = [
    "NOT_BACK", "OFFERED", "OUT", "TOOL", "SentNames", "batches_out", "record_prelabels", "release", "roboflow_original",
    "sent_item", "sent_names", "settle_prelabels",
]

TOOL = "files"
OUT = "open"  # a batch out for labeling: held out of selections until it comes back
NOT_BACK = (OUT, OFFERED)


def record_prelabels(
    store: Store, export_name: str, prelabels: Mapping[str, Detections], file_names: Mapping[str, str],
    *, model_version: str | None, prelabel_conf: float | None = None, batch: bool = True,
) -> None:
    """Remember which boxes went out to the annotator with each item of an export, and the
    threshold they were cut at: a ``batch`` out for labeling (:data:`OUT`), else
    :data:`OFFERED`."""
    with store.transaction():
        for item_id, d in prelabels.items():
            store.put_task(
                TOOL, export_name, item_id, file_names[item_id], status=OUT if batch else OFFERED,
                meta={"model_version": model_version, "xyxy": d.xyxy.tolist(), "class_id": d.class_id.tolist(),
                      "prelabel_conf": prelabel_conf},
            )


# Roboflow renames each image it exports: p1.jpg -> p1_jpg.rf.<hash>.jpg (and may re-encode it)
_ROBOFLOW_NAME = re.compile(r"^(?P<stem>.+)_(?P<ext>jpe?g|png|bmp|webp|tiff?)\.rf\.[0-9a-fA-F]{8,}\.[A-Za-z]+$")


def sent_names(store: Store, *, status: str | Sequence[str] | None = NOT_BACK) -> dict[str, str | None]:
    """The file names pre-labeled exports sent out, with tasks of ``status`` (:data:`NOT_BACK`:
    not back yet; ``done``: back; None: all), to the item each names (None where two exports
    gave one name to different items)."""
    return _by_key((task["task_id"], task["item_id"]) for task in store.tasks(TOOL, status=status))


def sent_item(names: Mapping[str, str | None], file_name: str) -> str | None:
    """The item a file coming back is, by the name it was sent out under: as sent, or as an
    annotation tool renamed it (Roboflow: ``p1_jpg.rf.<hash>.jpg`` for ``p1.jpg``)."""
    if file_name in names:
        return names[file_name]
    original = roboflow_original(file_name)
    return names.get(original) if original else None


def roboflow_original(file_name: str) -> str | None:
    """The name Roboflow renamed a file from (``p1.jpg`` for ``p1_jpg.rf.<hash>.jpg``), or None."""
    m = _ROBOFLOW_NAME.match(file_name)
    return f"{m['stem']}.{m['ext']}" if m else None


class SentNames:
    """What a file coming back names, by the names items went out under: a pre-labeled
    export's file names, those still open (with the names Label Studio gave the files `push`
    uploaded), or with ``closed=True`` those already back (a re-run of an import finds what
    the first run did)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._names: dict[bool, dict[str, str | None]] = {}
        self._stems: dict[bool, dict[str, str | None]] = {}

    def _table(self, closed: bool) -> dict[str, str | None]:
        if closed not in self._names:
            names = sent_names(self.store, status="done" if closed else NOT_BACK)
            self._names[closed] = names if closed else _by_key([*names.items(), *uploaded_names(self.store)])
        return self._names[closed]

    def item(self, file_name: str, *, closed: bool = False) -> str | None:
        """The item an image file named ``file_name`` is (as sent, or renamed by the tool)."""
        return sent_item(self._table(closed), file_name)

    def item_for_label(self, label_name: str, *, closed: bool = False) -> str | None:
        """The item a label file named for its image is: ``p1.txt`` for ``p1.jpg``, or for
        Roboflow's ``p1_jpg.rf.<hash>.jpg``."""
        names = self._table(closed)
        if closed not in self._stems:
            self._stems[closed] = _by_key((PurePosixPath(name).stem, item_id) for name, item_id in names.items())
        return sent_item(names, label_name) or self._stems[closed].get(PurePosixPath(label_name).stem)


def _by_key(pairs: Iterable[tuple[str, str | None]]) -> dict[str, str | None]:
    """key → the item it names; None where a key names two different items."""
    out: dict[str, str | None] = {}
    for key, item_id in pairs:
        out[key] = item_id if out.get(key, item_id) == item_id else None
    return out


def settle_prelabels(store: Store, item_id: str, labels: Detections, *, source: str, round: int | None) -> dict[str, int] | None:
    """Close the item's open file tasks (if any) and record pre-label acceptance against the
    labels that came back; returns the counts, or None when the item was not sent out. An item
    exported pre-labeled more than once is counted once, against the newest pre-labels sent."""
    sent = store.tasks(TOOL, status=NOT_BACK, item_id=item_id)
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
            prelabel_conf=meta.get("prelabel_conf"),
        )
        for task in sent:
            store.update_task(TOOL, task["project"], item_id, status="done")
    return counts


def batches_out(store: Store) -> dict[str, int]:
    """Exported batches out for labeling (the zip or folder name they went out as) and how
    many of their images are not back yet, oldest first."""
    out: dict[str, int] = {}
    for task in store.tasks(TOOL, status=OUT):
        out[task["project"]] = out.get(task["project"], 0) + 1
    return out


def release(store: Store, batch: str | None = None) -> tuple[str | None, int]:
    """Put the images of exported batches out for labeling back in the pool (those of the
    batch named ``batch``, or of every one): their tasks become :data:`OFFERED`, so labels
    brought back for them later still count what was done with the pre-labels. Returns the
    batch's name as recorded (a name given without its ``.zip`` finds it) and the number of
    images released."""
    out = batches_out(store)
    if batch is not None and batch not in out and f"{batch}.zip" in out:
        batch = f"{batch}.zip"  # named as the folder it was written from
    if batch is not None and batch not in out:
        known = ", ".join(f"{name} ({n})" for name, n in out.items()) or "none"
        offered = {t["project"] for t in store.tasks(TOOL, status=OFFERED)}
        if batch in offered or f"{batch}.zip" in offered:
            raise InputError(f"{batch!r} is not out for labeling: its images are in the pool already "
                             f"(released, or never a batch); out now: {known}")
        raise InputError(f"no exported batch named {batch!r} is out for labeling; out now: {known}")
    tasks = [t for t in store.tasks(TOOL, status=OUT) if batch is None or t["project"] == batch]
    with store.transaction():
        for t in tasks:
            store.update_task(TOOL, t["project"], t["item_id"], status=OFFERED)
    return batch, len(tasks)
