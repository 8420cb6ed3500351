"""Pre-label acceptance: what a person did with the boxes boxloop drew for them, and the
drawing time that saved.

Each pre-label is matched to at most one final label (greedy, highest IoU first, pairs below
``iou_adjust`` never match). A matched pair with the same class and IoU >= ``iou_accept`` was
**accepted** as it was; any other match was **adjusted** (moved, resized or re-classed). An
unmatched pre-label was **deleted**; an unmatched label was **added** (a box the model missed).

Time saved, in seconds, uses these per-box assumptions (override them per call):

- ``DRAW_S`` = 7 s to draw one tight box from scratch. Papadopoulos et al. (ICCV 2017,
  "Extreme clicking") measured about 7 s per box with extreme clicking and far more
  (25-35 s) for classic corner drawing with quality control, so 7 s is conservative.
- ``VERIFY_S`` = 1 s to look at a pre-drawn box and leave it.
- ``ADJUST_S`` = 3 s to drag an edge or corner, or to change the class.
- ``DELETE_S`` = 1.5 s to select and delete a wrong pre-label: a cost, not a saving.

saved = accepted x (DRAW_S - VERIFY_S) + adjusted x (DRAW_S - ADJUST_S) - deleted x DELETE_S.
Added boxes are drawn either way and count zero. The result can be negative: pre-labels
that are mostly wrong cost time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Detections

__all__ = [
    "ACCEPTANCE_KEYS",
    "ADJUST_S",
    "DEFAULT_PRELABEL_CONF",
    "DELETE_S",
    "DRAW_S",
    "MIN_PRELABEL_BOXES",
    "PRELABEL_GRID",
    "VERIFY_S",
    "acceptance",
    "acceptance_words",
    "best_prelabel_conf",
    "box_iou",
    "in_words",
    "prelabel_choice",
    "prelabel_savings",
    "prelabel_threshold",
    "saved_per_image",
    "seconds_saved",
    "sum_acceptance",
    "threshold_text",
]

ACCEPTANCE_KEYS = ("accepted", "adjusted", "deleted", "added")
DRAW_S = 7.0
VERIFY_S = 1.0
ADJUST_S = 3.0
DELETE_S = 1.5
# pre-label thresholds a model version's own is chosen from (boxloop evaluate), 0.05 .. 1.0;
# 1.0 shows (next to) none: the choice where every lower one costs more than it saves
PRELABEL_GRID = tuple(round(0.05 * i, 2) for i in range(1, 21))
MIN_PRELABEL_BOXES = 20  # human boxes in the split below which no threshold is chosen
DEFAULT_PRELABEL_CONF = 0.25  # the threshold where none is set or chosen


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of pixel xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def acceptance(
    prelabels: Detections,
    labels: Detections,
    *,
    iou_accept: float = 0.95,
    iou_adjust: float = 0.5,
) -> dict[str, int]:
    """Counts of pre-labels accepted, adjusted, deleted, and labels added by the person.

    >>> box = Detections(np.array([[0, 0, 10, 10]]), np.array([0]))
    >>> acceptance(box, box)
    {'accepted': 1, 'adjusted': 0, 'deleted': 0, 'added': 0}
    """
    if not 0.0 < iou_adjust <= iou_accept <= 1.0:
        raise InputError(
            f"need 0 < iou_adjust <= iou_accept <= 1, got iou_adjust={iou_adjust}, iou_accept={iou_accept}"
        )
    counts = dict.fromkeys(ACCEPTANCE_KEYS, 0)
    iou = box_iou(prelabels.xyxy, labels.xyxy)
    pairs = np.argwhere(iou >= iou_adjust)
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_p: set[int] = set()
    used_l: set[int] = set()
    for k in order:
        p, q = (int(v) for v in pairs[k])
        if p in used_p or q in used_l:
            continue
        used_p.add(p)
        used_l.add(q)
        same = prelabels.class_id[p] == labels.class_id[q]
        counts["accepted" if same and iou[p, q] >= iou_accept else "adjusted"] += 1
    counts["deleted"] = len(prelabels) - len(used_p)
    counts["added"] = len(labels) - len(used_l)
    return counts


def seconds_saved(
    counts: Mapping[str, float],
    *,
    draw_s: float = DRAW_S,
    verify_s: float = VERIFY_S,
    adjust_s: float = ADJUST_S,
    delete_s: float = DELETE_S,
) -> float:
    """Drawing time the pre-labels saved (seconds; negative when they cost time)."""
    return float(
        counts.get("accepted", 0) * (draw_s - verify_s)
        + counts.get("adjusted", 0) * (draw_s - adjust_s)
        - counts.get("deleted", 0) * delete_s
    )


def prelabel_savings(
    predictions: Mapping[str, Detections],
    labels: Mapping[str, Detections],
    *,
    grid: Iterable[float] = PRELABEL_GRID,
) -> dict[float, float]:
    """Seconds of drawing the pre-labels of ``predictions`` at or above each threshold of
    ``grid`` would save per image of ``labels`` (the human boxes of the same images), by
    :func:`seconds_saved`: what a person would gain or lose correcting them there. An image
    with no prediction is shown no pre-label."""
    empty = Detections.empty()
    thresholds = sorted({round(float(t), 4) for t in grid})
    out = dict.fromkeys(thresholds, 0.0)
    for item, truth in labels.items():
        d = predictions.get(item, empty)
        conf = d.confidence if d.confidence is not None else np.ones(len(d), np.float32)
        for t in thresholds:
            out[t] += seconds_saved(acceptance(d[conf >= t], truth))
    n = max(len(labels), 1)
    return {t: v / n for t, v in out.items()}


def best_prelabel_conf(savings: Mapping[float, float]) -> float:
    """The threshold of :func:`prelabel_savings` that saves the most; of equal savings the
    highest (fewer boxes to look at)."""
    if not savings:
        raise InputError("no thresholds to choose a pre-label threshold from")
    return max(savings, key=lambda t: (round(savings[t], 9), t))


def prelabel_choice(predictions: Mapping[str, Detections], labels: Mapping[str, Detections]) -> dict[str, Any]:
    """What `evaluate` records of a model version's pre-labels on a labeled split: seconds
    saved per image at each threshold of :data:`PRELABEL_GRID`, and the threshold that saves
    the most (``conf``; None below :data:`MIN_PRELABEL_BOXES` human boxes, too few to choose
    by)."""
    savings = prelabel_savings(predictions, labels)
    boxes = sum(len(d) for d in labels.values())
    return {
        "conf": best_prelabel_conf(savings) if boxes >= MIN_PRELABEL_BOXES else None,
        "seconds_per_image": {f"{t:.2f}": round(v, 4) for t, v in savings.items()},
        "images": len(labels),
        "boxes": boxes,
    }


def prelabel_threshold(setting: str | float, evaluation: Mapping[str, Any] | None = None) -> float:
    """The pre-label threshold to use: ``setting`` ([labelstudio] prelabel_conf) when it is a
    number; with "auto", the one the model version's ``evaluation`` chose
    (:func:`prelabel_choice`), or :data:`DEFAULT_PRELABEL_CONF` where it chose none."""
    if str(setting).strip().lower() != "auto":
        return float(setting)
    chosen = ((evaluation or {}).get("prelabel") or {}).get("conf")
    return DEFAULT_PRELABEL_CONF if chosen is None else float(chosen)


def sum_acceptance(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Add up acceptance counts (and ``seconds_saved`` / ``items`` when present); where rows
    name the threshold their pre-labels were cut at (``prelabel_conf``), the lowest and the
    highest of them (``prelabel_conf_min``, ``prelabel_conf_max``)."""
    total: dict[str, float] = {**dict.fromkeys(ACCEPTANCE_KEYS, 0), "items": 0, "seconds_saved": 0.0}
    confs: list[float] = []
    for r in rows:
        for k in ACCEPTANCE_KEYS:
            total[k] += int(r.get(k, 0))
        total["items"] += int(r.get("items", 1))
        total["seconds_saved"] += float(r.get("seconds_saved", seconds_saved(r)))
        if r.get("prelabel_conf") is not None:
            confs.append(float(r["prelabel_conf"]))
    if confs:
        total.update(prelabel_conf_min=min(confs), prelabel_conf_max=max(confs))
    return total


def in_words(counts: Mapping[str, float]) -> str:
    """``2 accepted, 118 adjusted, 20 deleted, 46 added``: what people did with pre-labels."""
    return ", ".join(f"{int(counts.get(k, 0) or 0)} {k}" for k in ACCEPTANCE_KEYS)


def saved_per_image(counts: Mapping[str, float]) -> float | None:
    """Seconds of drawing the pre-labels saved per image that came back (None without images)."""
    items = int(counts.get("items", 0) or 0)
    return float(counts.get("seconds_saved", 0.0)) / items if items else None


def threshold_text(counts: Mapping[str, float]) -> str:
    """The threshold the pre-labels were cut at: ``0.15``, ``0.15-0.3`` where they came from
    pushes at several, "" where none was recorded."""
    low, high = counts.get("prelabel_conf_min"), counts.get("prelabel_conf_max")
    if low is None or high is None:
        return ""
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def acceptance_words(counts: Mapping[str, float]) -> str:
    """What people did with a batch's pre-labels, the drawing that saved an image and the
    threshold they were cut at: ``40 accepted, 3 adjusted, 2 deleted, 5 added (saved 12.3 s an
    image; pre-labels at confidence >= 0.35)``."""
    per_image, at = saved_per_image(counts), threshold_text(counts)
    spent = "" if per_image is None else (
        f"saved {per_image:.1f} s an image" if per_image >= 0 else f"cost {-per_image:.1f} s an image more than drawing"
    )
    extra = [spent,
             f"pre-labels at confidence >= {at}" if at else ""]
    extra = [e for e in extra if e]
    return in_words(counts) + (f" ({'; '.join(extra)})" if extra else "")
