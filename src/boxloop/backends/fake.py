"""A deterministic fake detector for tests of the loop: no model, no torch.

The same pixels always give the same boxes, class probabilities and confidences (drawn from
a generator seeded by a hash of the image); the embedding is the mean colour of a grid of
cells, so images that look alike get nearby embeddings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ..types import Detections
from .base import Prediction

__all__ = ["FakeBackend"]


class FakeBackend:
    """Implements the Backend protocol without a model.

    >>> be = FakeBackend(["cat", "dog"], max_boxes=3)
    >>> p = be.predict([np.zeros((20, 30, 3), np.uint8)])[0]
    >>> p.detections.data["class_probs"].shape[1], p.embedding.shape
    (2, (48,))
    """

    name = "fake"

    def __init__(self, classes: Sequence[str], *, max_boxes: int = 5, seed: int = 0, grid: int = 4) -> None:
        if not classes:
            raise ValueError("FakeBackend needs at least one class")
        self._classes = list(classes)
        self.max_boxes = int(max_boxes)
        self.seed = int(seed)
        self.grid = int(grid)
        self.calls = 0

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    def _rng(self, image: np.ndarray) -> np.random.Generator:
        h = hashlib.sha256()
        h.update(np.asarray(image.shape, np.int64).tobytes())
        h.update(np.ascontiguousarray(image[::4, ::4]).tobytes())
        h.update(self.seed.to_bytes(8, "little", signed=True))
        return np.random.default_rng(int.from_bytes(h.digest()[:8], "little"))

    def embed(self, image: np.ndarray) -> np.ndarray:
        """Mean colour per cell of a grid × grid layout, in [0, 1]: (grid * grid * 3,) float32."""
        img = np.asarray(image, np.float32) / 255.0
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        h, w = img.shape[:2]
        ys = np.linspace(0, h, self.grid + 1).astype(int)
        xs = np.linspace(0, w, self.grid + 1).astype(int)
        cells = [
            img[ys[i] : max(ys[i + 1], ys[i] + 1), xs[j] : max(xs[j + 1], xs[j] + 1), :3].reshape(-1, 3).mean(0)
            for i in range(self.grid)
            for j in range(self.grid)
        ]
        return np.concatenate(cells).astype(np.float32)

    def predict_one(self, image: np.ndarray, *, conf: float = 0.01) -> Prediction:
        """Boxes for one RGB image, reproducible from its pixels alone."""
        rng = self._rng(image)
        h, w = image.shape[:2]
        n = int(rng.integers(0, self.max_boxes + 1))
        xy = rng.uniform([0, 0], [max(w - 2, 1), max(h - 2, 1)], size=(n, 2))
        wh = rng.uniform(0.05, 0.5, size=(n, 2)) * [w, h]
        xyxy = np.concatenate([xy, np.minimum(xy + wh, [w, h])], axis=1)
        probs = rng.dirichlet(np.full(len(self._classes), 0.5), size=n).astype(np.float32)
        confidence = (rng.uniform(0.0, 1.0, size=n) * probs.max(axis=1, initial=0.0)).astype(np.float32)
        keep = confidence >= conf
        d = Detections(xyxy[keep], probs[keep].argmax(axis=1), confidence[keep], {"class_probs": probs[keep]})
        order = np.argsort(-d.confidence, kind="stable")  # type: ignore[operator]
        return Prediction(d[order], self.embed(image))

    def predict(self, images: Sequence[np.ndarray], *, conf: float = 0.01, iou: float = 0.6) -> list[Prediction]:
        """Deterministic predictions for RGB images (``iou`` is accepted and ignored)."""
        self.calls += 1
        return [self.predict_one(im, conf=conf) for im in images]
