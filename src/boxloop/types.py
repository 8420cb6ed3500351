"""Core value types: Detections (frozen boxes), Item, Selection, RoundRecord."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["SPLITS", "Detections", "Item", "RoundRecord", "Selection"]

SPLITS = ("train", "val", "test")


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only contiguous copy, so no caller can change a Detections behind its back."""
    if not a.flags.writeable and a.flags.c_contiguous:
        return a
    a = np.array(a, copy=True, order="C")
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one image in pixels: ``xyxy`` (n,4) float32, ``class_id`` (n,) int64,
    ``confidence`` (n,) float32 or None for human labels, and ``data``: per-box extras
    such as ``class_probs`` (n, C) or ``imputed`` (n,) bool.

    Empty is a first-class value (``Detections.empty()``), never None. Arrays are read-only;
    indexing with a mask, slice or index array returns a new Detections.

    >>> d = Detections(np.array([[0, 0, 10, 10]]), np.array([2]), np.array([0.9]))
    >>> len(d[d.confidence > 0.5])
    1
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    confidence: np.ndarray | None = None
    data: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if len(class_id) != n:
            raise ValueError(f"class_id has {len(class_id)} entries for {n} boxes")
        conf = None
        if self.confidence is not None:
            conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
            if len(conf) != n:
                raise ValueError(f"confidence has {len(conf)} entries for {n} boxes")
            conf = _frozen(conf)
        data = {}
        for k, v in dict(self.data).items():
            arr = np.asarray(v)
            if arr.shape[:1] != (n,):
                raise ValueError(f"data[{k!r}] has shape {arr.shape}, expected ({n}, ...)")
            data[k] = _frozen(arr)
        object.__setattr__(self, "xyxy", _frozen(xyxy))
        object.__setattr__(self, "class_id", _frozen(class_id))
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "data", MappingProxyType(data))

    @classmethod
    def empty(cls, *, with_confidence: bool = False) -> Detections:
        """No boxes; with_confidence makes an empty prediction rather than an empty label."""
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32) if with_confidence else None,
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.class_id[index],
            None if self.confidence is None else self.confidence[index],
            {k: v[index] for k, v in self.data.items()},
        )

    def __repr__(self) -> str:
        extra = f", data={sorted(self.data)}" if self.data else ""
        conf = "" if self.confidence is None else ", with confidence"
        return f"Detections(n={len(self)}{conf}{extra})"

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def with_data(self, **extras: np.ndarray) -> Detections:
        """A copy with more per-box extras."""
        return Detections(self.xyxy, self.class_id, self.confidence, {**self.data, **extras})

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        """Join several Detections; per-box extras are kept when every part has them."""
        parts = [p for p in parts if len(p)] or parts[:1]
        if not parts:
            return Detections.empty()
        keys = set.intersection(*(set(p.data) for p in parts))
        has_conf = all(p.confidence is not None for p in parts)
        return Detections(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.confidence for p in parts]) if has_conf else None,  # type: ignore[misc]
            {k: np.concatenate([p.data[k] for p in parts]) for k in keys},
        )

    def equals(self, other: Detections, atol: float = 1e-4) -> bool:
        """Same boxes in the same order (within ``atol`` pixels), same classes."""
        return (
            len(self) == len(other)
            and np.array_equal(self.class_id, other.class_id)
            and np.allclose(self.xyxy, other.xyxy, atol=atol)
        )


@dataclass(frozen=True)
class Item:
    """One image known to the store. ``width``/``height`` are as displayed (after EXIF
    orientation); ``uri`` is where it is read from (never modified)."""

    id: str
    uri: str
    width: int
    height: int
    sha256: str
    split: str | None = None
    video_id: str | None = None
    frame_index: int | None = None
    labeled_round: int | None = None

    @property
    def name(self) -> str:
        """The file name part of the uri."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Selection:
    """A batch chosen for labeling and the why of every pick (component scores per item)."""

    id: str
    model_version: str | None
    strategy: str
    seed: int | None
    item_ids: tuple[str, ...]
    scores: Mapping[str, float] = field(default_factory=dict)
    why: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundRecord:
    """One row of the round ledger."""

    round: int
    labeled_images: int
    labeled_boxes: int
    model_version: str | None = None
    map50: float | None = None
    map50_95: float | None = None
    per_class_ap: Mapping[str, float] = field(default_factory=dict)
    acceptance: Mapping[str, int] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)
    prelabel_models: Mapping[str, int] = field(default_factory=dict)  # whose pre-labels came back: version → images
