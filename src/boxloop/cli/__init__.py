"""The ``boxloop`` command line: thin commands over the library, one module per noun.

Every module in this package (not starting with ``_``) registers its commands on import.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil

from ._app import app

__all__ = ["app", "main"]

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")


def main() -> None:
    """Entry point (``boxloop``): logging from BOXLOOP_LOG, offline-safe defaults."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # Ultralytics' own tables and bars drown boxloop's output; BOXLOOP_LOG=INFO brings them back
    os.environ.setdefault("YOLO_VERBOSE", "True" if os.environ.get("BOXLOOP_LOG", "").upper() in ("INFO", "DEBUG") else "False")
    logging.basicConfig(
        level=os.environ.get("BOXLOOP_LOG", "WARNING").upper(),
        format="%(levelname)s %(name)s: %(message)s",
    )
    app()
