"""What a scorer may look at: the pool (stable ids, packed predictions, optional embeddings,
frame order, flipped predictions, label statistics) and the options scorers share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..types import Detections
from .boxes import PackedBoxes

__all__ = ["AGGREGATIONS", "FrameSequence", "Pool", "ScoreOptions"]

AGGREGATIONS = ("max", "mean", "sum")


@dataclass(frozen=True)
class ScoreOptions:
    """Knobs scorers share; every value is recorded in the selection manifest.

    ``band`` is the confidence band (low, high) of boxes that count as evidence of doubt:
    boxes below ``band[0]`` are noise for the uncertainty scorers, boxes inside the band are
    what ``uncertain_count`` counts. ``min_confidence`` is the operating threshold of the
    box-matching scorers (flicker, consistency): a box below it is "not seen".
    """

    aggregation: str = "max"
    band: tuple[float, float] = (0.1, 0.6)
    min_confidence: float = 0.25
    t_track: float = 0.8
    t_assert: float = 0.6
    match_class: bool = True
    match_iou: float = 0.5

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise InputError(f"unknown aggregation {self.aggregation!r}; known: {', '.join(AGGREGATIONS)}")
        lo, hi = self.band
        if not 0.0 <= lo < hi <= 1.0:
            raise InputError(f"confidence band must satisfy 0 <= low < high <= 1, got {lo}-{hi}")
        for name in ("min_confidence", "t_track", "t_assert", "match_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must lie in [0, 1], got {v}")

    def as_dict(self) -> dict[str, object]:
        return {
            "aggregation": self.aggregation,
            "band": list(self.band),
            "min_confidence": self.min_confidence,
            "t_track": self.t_track,
            "t_assert": self.t_assert,
            "match_class": self.match_class,
            "match_iou": self.match_iou,
        }


@dataclass(frozen=True, eq=False)
class FrameSequence:
    """Frames of one or more videos in (video, frame) order, each with its predictions.

    ``pool_index`` says where a frame sits in the pool (-1: a frame outside the pool, e.g.
    already labeled, that is only there as a neighbour). A frame's neighbours are the frames
    just before and after it in the same video that have predictions; sampled videos thus
    compare consecutive samples.
    """

    boxes: PackedBoxes
    video: np.ndarray  # (m,) video ids (str or int), sorted
    frame_index: np.ndarray  # (m,) int64, increasing within a video
    pool_index: np.ndarray  # (m,) int64

    def __post_init__(self) -> None:
        m = len(self.boxes)
        for name in ("video", "frame_index", "pool_index"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {m} frames")

    @classmethod
    def build(
        cls,
        boxes: PackedBoxes,
        video_ids: Sequence[str | None],
        frame_indices: Sequence[int | None],
        pool_index: Sequence[int] | np.ndarray,
    ) -> FrameSequence:
        """Order frames by (video, frame); items without a video id or frame index are left out."""
        has = np.array([v is not None and f is not None for v, f in zip(video_ids, frame_indices, strict=True)], bool)
        rows = np.flatnonzero(has)
        video = np.array([str(video_ids[i]) for i in rows], dtype=str)
        frame = np.array([frame_indices[i] for i in rows], np.int64)
        order = np.lexsort((frame, video))
        rows = rows[order]
        return cls(
            boxes.take(rows), video[order], frame[order], np.asarray(pool_index, np.int64)[rows]
        )

    def __len__(self) -> int:
        return len(self.video)

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(previous, next) frame of each frame in the same video, -1 where there is none."""
        m = len(self)
        prev = np.arange(m) - 1
        nxt = np.arange(m) + 1
        if m:
            prev[0] = -1
            nxt[-1] = -1
            same = self.video[1:] == self.video[:-1]
            prev[1:][~same] = -1
            nxt[:-1][~same] = -1
        return prev, nxt

    def take(self, frames: np.ndarray) -> FrameSequence:
        """Some frames (kept in sequence order by the caller)."""
        return FrameSequence(
            self.boxes.take(frames), self.video[frames], self.frame_index[frames], self.pool_index[frames]
        )


@dataclass(frozen=True, eq=False)
class Pool:
    """The unlabeled items a selection chooses from, in a stable order of ids.

    Everything optional is only needed by some scorers: ``embeddings`` (n, D) for novelty and
    diversity, ``labeled_embeddings`` (m, D, rows named by ``labeled_ids``) and
    ``labeled_class_counts`` (C,) for novelty, rarity and k-center seeding,
    ``labeled_box_counts`` (boxes per labeled training image) for missed, ``sequence`` for
    flicker, ``flipped`` (predictions on the horizontally flipped images, in the flipped
    image's pixels) and ``widths`` for consistency. ``embeddings_version``: the model version
    whose embeddings these are (not always the one whose predictions are scored: imported
    predictions come without embeddings, and a trained model's stand in for them).
    """

    ids: tuple[str, ...]
    boxes: PackedBoxes
    embeddings: np.ndarray | None = None
    labeled_embeddings: np.ndarray | None = None
    labeled_class_counts: np.ndarray | None = None
    sequence: FrameSequence | None = None
    flipped: PackedBoxes | None = None
    widths: np.ndarray | None = None
    labeled_ids: tuple[str, ...] = field(default=())
    labeled_box_counts: np.ndarray | None = None
    embeddings_version: str | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.boxes) != n:
            raise ValueError(f"boxes for {len(self.boxes)} items, ids for {n}")
        if len(set(self.ids)) != n:
            raise InputError("the pool has duplicate item ids")
        for name in ("embeddings", "flipped", "widths"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"{name} for {len(v)} items, ids for {n}")

    @classmethod
    def from_detections(
        cls,
        ids: Sequence[str],
        predictions: Sequence[Detections],
        *,
        num_classes: int,
        video_ids: Sequence[str | None] | None = None,
        frame_indices: Sequence[int | None] | None = None,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
        labeled_class_counts: np.ndarray | Sequence[int] | None = None,
        labeled_box_counts: np.ndarray | Sequence[int] | None = None,
        flipped: Sequence[Detections] | None = None,
        widths: Sequence[int] | np.ndarray | None = None,
    ) -> Pool:
        """A pool from per-item Detections (the sequence is built from video ids and frames)."""
        boxes = PackedBoxes.from_detections(predictions, num_classes=num_classes, ids=ids)
        sequence = None
        if video_ids is not None or frame_indices is not None:
            if video_ids is None or frame_indices is None:
                raise InputError("frame order needs both video ids and frame indices")
            sequence = FrameSequence.build(boxes, video_ids, frame_indices, np.arange(len(ids)))
        return cls(
            ids=tuple(ids),
            boxes=boxes,
            embeddings=None if embeddings is None else np.asarray(embeddings, np.float32),
            labeled_embeddings=None if labeled_embeddings is None else np.asarray(labeled_embeddings, np.float32),
            labeled_class_counts=None if labeled_class_counts is None else np.asarray(labeled_class_counts, np.int64),
            labeled_box_counts=None if labeled_box_counts is None else np.asarray(labeled_box_counts, np.int64),
            sequence=sequence,
            flipped=None if flipped is None else PackedBoxes.from_detections(flipped, num_classes=num_classes, ids=ids),
            widths=None if widths is None else np.asarray(widths, np.float32),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return self.boxes.num_classes

    def slice(self, start: int, stop: int) -> Pool:
        """Items ``start:stop``; frames of the sequence outside them are dropped."""
        sequence = None
        if self.sequence is not None:
            keep = np.flatnonzero((self.sequence.pool_index >= start) & (self.sequence.pool_index < stop))
            s = self.sequence.take(keep)
            sequence = replace(s, pool_index=s.pool_index - start)
        return replace(
            self,
            ids=self.ids[start:stop],
            boxes=self.boxes.slice(start, stop),
            embeddings=None if self.embeddings is None else self.embeddings[start:stop],
            sequence=sequence,
            flipped=None if self.flipped is None else self.flipped.slice(start, stop),
            widths=None if self.widths is None else self.widths[start:stop],
        )

    @staticmethod
    def concat(parts: Sequence[Pool]) -> Pool:
        """Items of several pools one after the other (label statistics from the first)."""
        first = parts[0]
        starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        sequence = None
        if all(p.sequence is not None for p in parts):
            seqs = [p.sequence for p in parts]
            boxes = PackedBoxes.concat([s.boxes for s in seqs])  # type: ignore[union-attr]
            video = np.concatenate([s.video for s in seqs])  # type: ignore[union-attr]
            frame = np.concatenate([s.frame_index for s in seqs])  # type: ignore[union-attr]
            pidx = np.concatenate([
                np.where(s.pool_index >= 0, s.pool_index + o, -1) for s, o in zip(seqs, starts, strict=True)  # type: ignore[union-attr]
            ])
            order = np.lexsort((frame, video))
            sequence = FrameSequence(boxes.take(order), video[order], frame[order], pidx[order])

        def cat(name: str) -> np.ndarray | None:
            vals = [getattr(p, name) for p in parts]
            return None if any(v is None for v in vals) else np.concatenate(vals)

        flipped = None
        if all(p.flipped is not None for p in parts):
            flipped = PackedBoxes.concat([p.flipped for p in parts])  # type: ignore[misc]
        return Pool(
            ids=tuple(i for p in parts for i in p.ids),
            boxes=PackedBoxes.concat([p.boxes for p in parts]),
            embeddings=cat("embeddings"),
            labeled_embeddings=first.labeled_embeddings,
            labeled_class_counts=first.labeled_class_counts,
            labeled_ids=first.labeled_ids,
            labeled_box_counts=first.labeled_box_counts,
            embeddings_version=first.embeddings_version,
            sequence=sequence,
            flipped=flipped,
            widths=cat("widths"),
        )
