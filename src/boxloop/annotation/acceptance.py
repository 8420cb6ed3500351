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

import numpy as np

from ..errors import InputError
from ..types import Detections

__all__ = [
    "ACCEPTANCE_KEYS",
    "ADJUST_S",
    "DELETE_S",
    "DRAW_S",
    "VERIFY_S",
    "acceptance",
    "box_iou",
    "in_words",
    "seconds_saved",
    "sum_acceptance",
]

ACCEPTANCE_KEYS = ("accepted", "adjusted", "deleted", "added")
DRAW_S = 7.0
VERIFY_S = 1.0
ADJUST_S = 3.0
DELETE_S = 1.5


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


def sum_acceptance(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Add up acceptance counts (and ``seconds_saved`` / ``items`` when present)."""
    total: dict[str, float] = {**dict.fromkeys(ACCEPTANCE_KEYS, 0), "items": 0, "seconds_saved": 0.0}
    for r in rows:
        for k in ACCEPTANCE_KEYS:
            total[k] += int(r.get(k, 0))
        total["items"] += int(r.get("items", 1))
        total["seconds_saved"] += float(r.get("seconds_saved", seconds_saved(r)))
    return total


def in_words(counts: Mapping[str, float]) -> str:
    """``2 accepted, 118 adjusted, 20 deleted, 46 added``: what people did with pre-labels."""
    return ", ".join(f"{int(counts.get(k, 0) or 0)} {k}" for k in ACCEPTANCE_KEYS)
