"""The detector backend protocol: what the loop needs from any detector."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..types import Detections

__all__ = ["Backend", "Prediction", "TrainResult"]


@dataclass(frozen=True)
class Prediction:
    """A model's output for one image: boxes with ``confidence`` and
    ``data["class_probs"]`` (n, C), and an image embedding (D,) float32 or None."""

    detections: Detections
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class TrainResult:
    """Where a training run left its weights and what it measured."""

    run_dir: Path
    weights: Path
    metrics: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A loaded detector. ``predict`` takes RGB uint8 HxWx3 arrays (as displayed)."""

    name: str

    @property
    def classes(self) -> list[str]: ...

    def predict(
        self, images: Sequence[np.ndarray], *, conf: float = 0.01, iou: float = 0.6
    ) -> list[Prediction]: ...
