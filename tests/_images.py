"""Tiny image files for tests, written with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (64, 48), *, seed: int = 0, orientation: int | None = None) -> Path:
    """A small noisy JPEG/PNG (by suffix); ``orientation`` writes an EXIF orientation tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(path, exif=exif.tobytes())
    else:
        im.save(path)
    return path


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file, to prove a folder was not written to."""
    return {
        str(f.relative_to(root)): (f.stat().st_size, f.stat().st_mtime_ns)
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }
