"""Uncertainty scorers: least confidence, margin, entropy and the count of doubtful boxes.

Detection-specific: each box's probability vector has C+1 entries, the C classes scaled by
the box confidence and "background" = 1 - confidence (background treated as one more class,
as in Brust et al., "Active Learning for Deep Object Detection", 2019). So a box the model
barely believes in is as doubtful as one torn between two classes, and a prediction without
``class_probs`` falls back to its confidence alone. Boxes below the low edge of the
confidence band are noise; an image with no box at or above it counts as holding one box
exactly at the band's low edge - weak evidence, so an empty-looking image never ranks as
"certain" by accident, yet stays below images with real doubt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .boxes import PackedBoxes, segment_max, segment_sum
from .pool import Pool, ScoreOptions

__all__ = [
    "box_uncertainty",
    "entropy",
    "explain_uncertainty",
    "least_confidence",
    "margin",
    "uncertain_count",
]

_CHUNK_BOXES = 1 << 19  # boxes per block when building (N, C+1) probability matrices


def _with_background(class_probs: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    q = np.empty((len(confidence), class_probs.shape[1] + 1), np.float32)
    np.multiply(class_probs, confidence[:, None], out=q[:, :-1])
    q[:, -1] = 1.0 - confidence
    return q


def _per_box(kind: str, q: np.ndarray) -> np.ndarray:
    if kind == "least_confidence":
        return 1.0 - q.max(axis=1)
    if kind == "margin":
        top2 = np.partition(q, q.shape[1] - 2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if kind == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
        return h / np.log(q.shape[1])
    raise ValueError(kind)


def box_uncertainty(kind: str, class_probs: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Per-box uncertainty in [0, 1] of kind least_confidence, margin or entropy."""
    out = np.empty(len(confidence), np.float64)
    for a in range(0, len(confidence), _CHUNK_BOXES):
        b = a + _CHUNK_BOXES
        out[a:b] = _per_box(kind, _with_background(class_probs[a:b], confidence[a:b]))
    return out


def _empty_value(kind: str, low: float, num_classes: int) -> float:
    probs = np.zeros((1, num_classes), np.float32)
    probs[0, 0] = 1.0
    return float(box_uncertainty(kind, probs, np.array([low], np.float32))[0])


def _aggregate(kind: str, boxes: PackedBoxes, options: ScoreOptions) -> np.ndarray:
    low = options.band[0]
    evidence = boxes.confidence >= low
    per_box = box_uncertainty(kind, boxes.class_probs, boxes.confidence)
    empty = _empty_value(kind, low, boxes.num_classes)
    counts = segment_sum(evidence.astype(np.float64), boxes.offsets)
    if options.aggregation == "max":
        best = segment_max(np.where(evidence, per_box, -np.inf), boxes.offsets, empty=empty)
        return np.where(counts > 0, best, empty)
    total = segment_sum(np.where(evidence, per_box, 0.0), boxes.offsets)
    if options.aggregation == "sum":
        return np.where(counts > 0, total, empty)
    return np.where(counts > 0, total / np.maximum(counts, 1), empty)


def least_confidence(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """1 - the largest entry of each box's (classes + background) probabilities, aggregated."""
    return _aggregate("least_confidence", pool.boxes, options)


def margin(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """1 - (best - second best) of each box's (classes + background) probabilities, aggregated."""
    return _aggregate("margin", pool.boxes, options)


def entropy(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """Entropy of each box's (classes + background) probabilities over log(C+1), aggregated."""
    return _aggregate("entropy", pool.boxes, options)


def uncertain_count(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """How many boxes have a confidence inside the band [low, high)."""
    lo, hi = options.band
    c = pool.boxes.confidence
    inside = ((c >= lo) & (c < hi)).astype(np.float64)
    return segment_sum(inside, pool.boxes.offsets)


def explain_uncertainty(kind: str, pool: Pool, index: int, options: ScoreOptions) -> dict[str, Any]:
    """The box behind an item's uncertainty score (class, confidence, its own uncertainty)."""
    d = pool.boxes.detections(index)
    lo, hi = options.band
    conf = d.confidence if d.confidence is not None else np.ones(len(d), np.float32)
    if kind == "uncertain_count":
        inside = (conf >= lo) & (conf < hi)
        return {
            "band": [lo, hi],
            "boxes": int(inside.sum()),
            "classes": sorted({int(c) for c in d.class_id[inside]}),
        }
    keep = conf >= lo
    if not keep.any():
        return {"boxes": 0, "band": [lo, hi], "note": f"no box at or above confidence {lo}"}
    per_box = box_uncertainty(kind, np.asarray(d.data["class_probs"])[keep], conf[keep])
    j = int(np.argmax(per_box))
    return {
        "boxes": int(keep.sum()),
        "aggregation": options.aggregation,
        "top_box": {
            "class_id": int(d.class_id[keep][j]),
            "confidence": round(float(conf[keep][j]), 4),
            "uncertainty": round(float(per_box[j]), 4),
            "xyxy": [round(float(v), 1) for v in d.xyxy[keep][j]],
        },
    }
