"""boxloop: active learning for object detection.

Train a detector on the boxes people drew, pre-label the rest, pick the images whose
correction teaches the model most, send them to an annotation tool already drawn, take the
corrections back, retrain, and keep score of what each round bought.
"""

from __future__ import annotations

from .errors import (
    BackendError,
    BoxloopError,
    ConfigError,
    InputError,
    Problem,
    Problems,
    StoreError,
    SyncError,
)
from .store import Store
from .types import Detections, Item, RoundRecord, Selection
from .workspace import Workspace, find_workspace

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BoxloopError",
    "ConfigError",
    "Detections",
    "InputError",
    "Item",
    "Problem",
    "Problems",
    "RoundRecord",
    "Selection",
    "Store",
    "StoreError",
    "SyncError",
    "Workspace",
    "__version__",
    "find_workspace",
]
