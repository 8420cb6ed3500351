"""boxloop: active learning for object detection.

Train a detector on the boxes people drew, pre-label the rest, pick the images whose
correction teaches the model most, send them to an annotation tool already drawn, take the
corrections back, retrain, and keep score of what each round bought.

The names below are imported when first used, so that starting the ``boxloop`` command
imports nothing before it can answer Ctrl-C with one line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "BackendError": "errors",
    "BoxloopError": "errors",
    "ConfigError": "errors",
    "InputError": "errors",
    "Problem": "errors",
    "Problems": "errors",
    "StoreError": "errors",
    "SyncError": "errors",
    "Store": "store",
    "Detections": "types",
    "Item": "types",
    "RoundRecord": "types",
    "Selection": "types",
    "Workspace": "workspace",
    "find_workspace": "workspace",
}

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

if TYPE_CHECKING:
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


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
