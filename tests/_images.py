"""Tiny image files for tests, written with Pillow, and copies as annotation tools make them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


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


def fitted_copy(path: Path, out: Path, *, size: tuple[int, int], edge: str, quality: int = 40) -> tuple[float, int, int]:
    """Roboflow's "Fit (black | white | reflect edges) in WxH": the photo scaled keeping its
    aspect ratio, centred, the edges padded; returns the scale and the left and top edges."""
    with Image.open(path) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    w, h = size
    s = min(w / rgb.width, h / rgb.height)
    inner = rgb.resize((round(rgb.width * s), round(rgb.height * s)))
    dx, dy = (w - inner.width) // 2, (h - inner.height) // 2
    if edge == "reflect":
        pad = ((dy, h - inner.height - dy), (dx, w - inner.width - dx), (0, 0))
        canvas = Image.fromarray(np.pad(np.asarray(inner), pad, mode="reflect"))
    else:
        canvas = Image.new("RGB", size, {"black": (0, 0, 0), "white": (255, 255, 255)}[edge])
        canvas.paste(inner, (dx, dy))
    canvas.save(out, "JPEG", quality=quality)
    return s, dx, dy
