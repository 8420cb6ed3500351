"""A backend that predicts a picture window by window (:mod:`boxloop.tiles`): any backend
inside it sees T x T crops at full resolution, and the whole picture once more (for objects
larger than a window); the boxes come back in the picture's pixels, merged across windows.
The embedding is the whole picture's, as an untiled model's is, so diversity and novelty
compare pictures, not crops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tiles import DEFAULT_OVERLAP, WHOLE_PICTURE_MIN, merge_windows, tile_windows
from .base import Prediction

__all__ = ["TiledBackend"]


class TiledBackend:
    """``inner`` run over each picture's windows of side ``tile`` (``batch`` crops at a time).

    It has no ``prepare``: the pictures come to it whole, at full resolution (a JPEG is not
    reduced while decoded, as it is for a backend that letterboxes the whole picture)."""

    def __init__(self, inner: Any, tile: int, *, overlap: float = DEFAULT_OVERLAP, batch: int = 8) -> None:
        self.inner = inner
        self.tile = int(tile)
        self.overlap = float(overlap)
        self.batch = max(1, int(batch))
        self.name = inner.name
        # what the engines read of a backend: its weights and input size (not the inner's
        # timings: they count windows, and a report's are per picture)
        for attr in ("weights", "imgsz"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    @property
    def classes(self) -> list[str]:
        return list(self.inner.classes)

    def predict(self, images: Sequence[np.ndarray], *, conf: float = 0.01, iou: float = 0.6) -> list[Prediction]:
        crops: list[np.ndarray] = []
        where: list[tuple[int, tuple[int, int, int, int] | None]] = []
        windows_of: list[list[tuple[int, int, int, int]]] = []
        for n, image in enumerate(images):
            h, w = image.shape[:2]
            windows = tile_windows(w, h, self.tile, self.overlap)
            windows_of.append(windows)
            if len(windows) > 1:
                for x0, y0, x1, y1 in windows:
                    crops.append(np.ascontiguousarray(image[y0:y1, x0:x1]))
                    where.append((n, (x0, y0, x1, y1)))
            crops.append(image)  # the whole picture: large objects, and the embedding
            where.append((n, None))
        preds: list[Prediction] = []
        for start in range(0, len(crops), self.batch):
            preds.extend(self.inner.predict(crops[start:start + self.batch], conf=conf, iou=iou))
        parts: list[list[tuple[Any, Any]]] = [[] for _ in images]
        embedding: list[np.ndarray | None] = [None] * len(images)
        for (n, window), p in zip(where, preds, strict=True):
            d = p.detections
            if window is None:
                embedding[n] = p.embedding
                if len(windows_of[n]) > 1:
                    d = self._large_only(d)
            parts[n].append((d, window))
        return [Prediction(merge_windows(parts[n]), embedding[n]) for n in range(len(images))]

    def _large_only(self, d: Any) -> Any:
        """The whole picture's boxes that are objects the windows cannot hold: a long side of
        at least :data:`~boxloop.tiles.WHOLE_PICTURE_MIN` of a tile. A model trained on tiles
        sees a whole large picture shrunk far below the scale it learned; its small boxes
        there are mostly noise (they halved test mAP50-95 in bench/tiles.py)."""
        if not len(d):
            return d
        side = np.maximum(d.xyxy[:, 2] - d.xyxy[:, 0], d.xyxy[:, 3] - d.xyxy[:, 1])
        return d[side >= WHOLE_PICTURE_MIN * self.tile]
