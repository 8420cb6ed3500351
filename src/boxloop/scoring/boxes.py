"""The pool's boxes packed into flat arrays (one row per box, offsets per item), and the
vectorised pieces every scorer shares: per-item reductions, box pairs within groups, IoU,
greedy one-to-one matching. Packing lets a million images be scored without a Python loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..types import Detections

__all__ = [
    "PackedBoxes",
    "greedy_match",
    "group_pairs",
    "pair_iou",
    "ranges",
    "segment_max",
    "segment_sum",
]


@dataclass(frozen=True, eq=False)
class PackedBoxes:
    """Boxes of n items in flat arrays: item j owns rows ``offsets[j]:offsets[j+1]``.

    ``class_probs`` (N, C) holds each box's class-probability vector; a box whose
    prediction came without one (another detector's import) gets the one-hot vector of its
    class, so every scorer falls back to the box confidence alone.
    """

    offsets: np.ndarray  # (n+1,) int64
    xyxy: np.ndarray  # (N, 4) float32
    class_id: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float32
    class_probs: np.ndarray  # (N, C) float32
    num_classes: int

    def __post_init__(self) -> None:
        n_boxes = int(self.offsets[-1]) if len(self.offsets) else 0
        for name in ("xyxy", "class_id", "confidence", "class_probs"):
            if len(getattr(self, name)) != n_boxes:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows for {n_boxes} boxes")

    @classmethod
    def from_detections(
        cls, detections: Sequence[Detections], *, num_classes: int, ids: Sequence[str] | None = None
    ) -> PackedBoxes:
        """Pack per-item predictions; ``ids`` only name the item in an error message."""
        counts = np.fromiter((len(d) for d in detections), np.int64, len(detections))
        offsets = np.zeros(len(detections) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        nonempty = [d for d in detections if len(d)]
        if not nonempty:
            return cls.empty(len(detections), num_classes=num_classes)
        xyxy = np.concatenate([d.xyxy for d in nonempty])
        class_id = np.concatenate([d.class_id for d in nonempty])
        confidence = np.concatenate(
            [d.confidence if d.confidence is not None else np.ones(len(d), np.float32) for d in nonempty]
        )
        if class_id.min() < 0 or class_id.max() >= num_classes:
            bad = next(j for j, d in enumerate(detections) if len(d) and
                       (d.class_id.min() < 0 or d.class_id.max() >= num_classes))
            name = ids[bad] if ids is not None else f"#{bad}"
            raise InputError(
                f"item {name}: class id {int(detections[bad].class_id.max())} outside the "
                f"project's {num_classes} classes"
            )
        probs = np.zeros((len(class_id), num_classes), np.float32)
        start = 0
        for j, d in enumerate(detections):
            if not len(d):
                continue
            p = d.data.get("class_probs")
            if p is None:
                probs[np.arange(start, start + len(d)), d.class_id] = 1.0
            else:
                p = np.asarray(p, np.float32)
                if p.ndim != 2 or p.shape[1] != num_classes:
                    name = ids[j] if ids is not None else f"#{j}"
                    raise InputError(
                        f"item {name}: class_probs has shape {p.shape}, expected "
                        f"({len(d)}, {num_classes}) for the project's {num_classes} classes"
                    )
                probs[start : start + len(d)] = p
            start += len(d)
        return cls(offsets, xyxy, class_id, confidence, probs, num_classes)

    @classmethod
    def empty(cls, n: int, *, num_classes: int) -> PackedBoxes:
        """n items without a single box."""
        return cls(
            np.zeros(n + 1, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros((0, num_classes), np.float32),
            num_classes,
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """Boxes per item."""
        return np.diff(self.offsets)

    @property
    def item_of_box(self) -> np.ndarray:
        """For each box, the index of its item."""
        return np.repeat(np.arange(len(self)), self.counts)

    def slice(self, start: int, stop: int) -> PackedBoxes:
        """Items ``start:stop`` (views, no copy of the box arrays)."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return PackedBoxes(
            self.offsets[start : stop + 1] - a,
            self.xyxy[a:b], self.class_id[a:b], self.confidence[a:b], self.class_probs[a:b],
            self.num_classes,
        )

    def take(self, items: np.ndarray) -> PackedBoxes:
        """The given items, in the given order."""
        items = np.asarray(items, np.int64)
        counts = self.counts[items]
        offsets = np.zeros(len(items) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = np.repeat(self.offsets[items] - offsets[:-1], counts) + np.arange(offsets[-1])
        return PackedBoxes(
            offsets, self.xyxy[rows], self.class_id[rows], self.confidence[rows],
            self.class_probs[rows], self.num_classes,
        )

    def keep(self, box_mask: np.ndarray) -> PackedBoxes:
        """Only the boxes where ``box_mask`` is true; every item stays (maybe empty)."""
        kept = np.bincount(self.item_of_box[box_mask], minlength=len(self))
        offsets = np.zeros(len(self) + 1, np.int64)
        np.cumsum(kept, out=offsets[1:])
        return PackedBoxes(
            offsets, self.xyxy[box_mask], self.class_id[box_mask], self.confidence[box_mask],
            self.class_probs[box_mask], self.num_classes,
        )

    @staticmethod
    def concat(parts: Sequence[PackedBoxes]) -> PackedBoxes:
        """Items of several packs, one after the other."""
        if not parts:
            raise ValueError("nothing to concatenate")
        shifts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, shifts, strict=True)])
        return PackedBoxes(
            offsets,
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_probs for p in parts]),
            parts[0].num_classes,
        )

    def detections(self, item: int) -> Detections:
        """One item's boxes as a Detections (class_probs kept)."""
        a, b = int(self.offsets[item]), int(self.offsets[item + 1])
        return Detections(
            self.xyxy[a:b], self.class_id[a:b], self.confidence[a:b], {"class_probs": self.class_probs[a:b]}
        )


def segment_max(values: np.ndarray, offsets: np.ndarray, *, empty: float) -> np.ndarray:
    """Per item, the largest of its boxes' values (``empty`` for an item without boxes)."""
    n = len(offsets) - 1
    out = np.full(n, empty, np.float64)
    counts = np.diff(offsets)
    has = counts > 0
    if has.any():
        out[has] = np.maximum.reduceat(values, offsets[:-1][has])
    return out


def segment_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per item, the sum of its boxes' values (0 for an item without boxes)."""
    n = len(offsets) - 1
    item = np.repeat(np.arange(n), np.diff(offsets))
    return np.bincount(item, weights=values.astype(np.float64), minlength=n)


def group_pairs(
    a_start: np.ndarray, a_count: np.ndarray, b_start: np.ndarray, b_count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (row of group g's a-range, row of its b-range) pair, for all groups g at once;
    returns (a rows, b rows, group of each pair)."""
    a_count = np.asarray(a_count, np.int64)
    b_count = np.asarray(b_count, np.int64)
    per_group = a_count * b_count
    total = int(per_group.sum())
    group = np.repeat(np.arange(len(per_group)), per_group)
    first = np.zeros(len(per_group), np.int64)
    np.cumsum(per_group[:-1], out=first[1:])
    local = np.arange(total, dtype=np.int64) - first[group]
    nb = b_count[group]
    a = np.asarray(a_start, np.int64)[group] + local // np.maximum(nb, 1)
    b = np.asarray(b_start, np.int64)[group] + local % np.maximum(nb, 1)
    return a, b, group


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    counts = np.asarray(counts, np.int64)
    first = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    return np.repeat(np.asarray(starts, np.int64) - first, counts) + np.arange(int(counts.sum()), dtype=np.int64)


def pair_iou(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """IoU of box pairs given as two (M, 4) xyxy arrays, row by row."""
    ix = np.clip(np.minimum(xa[:, 2], xb[:, 2]) - np.maximum(xa[:, 0], xb[:, 0]), 0, None)
    iy = np.clip(np.minimum(xa[:, 3], xb[:, 3]) - np.maximum(xa[:, 1], xb[:, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(xa[:, 2] - xa[:, 0], 0, None) * np.clip(xa[:, 3] - xa[:, 1], 0, None)
    area_b = np.clip(xb[:, 2] - xb[:, 0], 0, None) * np.clip(xb[:, 3] - xb[:, 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_match(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Greedy one-to-one matching of candidate pairs (a, b) by descending weight, ties by
    (a, b): the same result as walking the sorted list and taking every pair whose two ends
    are still free, computed as rounds of mutually-best pairs. Returns the accepted mask."""
    m = len(weight)
    accepted = np.zeros(m, bool)
    if m == 0:
        return accepted
    order = np.lexsort((b, a, -np.asarray(weight, np.float64)))
    a_sorted, b_sorted = np.asarray(a)[order], np.asarray(b)[order]
    alive = np.ones(m, bool)
    while alive.any():
        live = np.flatnonzero(alive)  # positions in sorted order, so first = best
        la, lb = a_sorted[live], b_sorted[live]
        _, first_a = np.unique(la, return_index=True)
        _, first_b = np.unique(lb, return_index=True)
        best_a = np.zeros(len(live), bool)
        best_a[first_a] = True
        best_b = np.zeros(len(live), bool)
        best_b[first_b] = True
        take = live[best_a & best_b]
        accepted[order[take]] = True
        used_a, used_b = a_sorted[take], b_sorted[take]
        alive[live[np.isin(la, used_a) | np.isin(lb, used_b)]] = False
    return accepted
