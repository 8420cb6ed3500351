"""Knowing a copy of an image when an annotation tool sends it back: re-encoded, resized (even
stretched), its contrast adjusted, or fitted into a fixed size with edges (Roboflow's "Fit
(black edges) in 640x640", a YOLO letterbox), and where the copy shows the original, so the
boxes drawn on it land in the original's pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .types import Item

__all__ = ["Placement", "looks_alike", "placement"]

_SIDE = 16  # both pictures are compared as 16 x 16 grey levels
_MAX_DIFFERENCE = 0.03
_MAX_SHAPE_DIFFERENCE = 0.15
_DECODED = 256  # pixels a side, at least, a JPEG is decoded at for the comparison


@dataclass(frozen=True)
class Placement:
    """Where a copy shows its original: the original's pixels scaled by ``sx``, ``sy`` and
    moved by ``dx``, ``dy`` (the left and top edges a fitted copy was padded with) are the
    copy's pixels."""

    sx: float
    sy: float
    dx: float = 0.0
    dy: float = 0.0

    @property
    def padded(self) -> bool:
        return bool(self.dx or self.dy)

    def to_original(self, xyxy: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes in the copy's pixels → the original's (``width`` x ``height``), cut at its
        edges; and which boxes keep an area (one drawn on a fitted copy's edge does not)."""
        shift = np.array([self.dx, self.dy, self.dx, self.dy])
        scale = np.array([self.sx, self.sy, self.sx, self.sy])
        out = np.clip((np.asarray(xyxy, np.float64).reshape(-1, 4) - shift) / scale, 0, [width, height, width, height])
        return out, (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])


def _grey(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb)).convert("L").resize((_SIDE, _SIDE), Image.BILINEAR)
    return np.asarray(im, np.float32) / 255.0


def _difference(a: np.ndarray, b: np.ndarray) -> float | None:
    """How far apart two thumbnails are, as a fraction of the limit they must keep within
    (<= 1: alike), or None when they are not alike. The raw grey levels within
    ``_MAX_DIFFERENCE``; or, both with contrast to speak of (grey deviation >= 0.05), each
    standardized (mean 0, deviation 1) within ``_MAX_SHAPE_DIFFERENCE``."""
    raw = float(np.abs(a - b).mean()) / _MAX_DIFFERENCE
    if raw <= 1:
        return raw
    if min(float(a.std()), float(b.std())) < 0.05:  # flat pictures: standardizing would blow up noise
        return None
    shape = float(np.abs((a - a.mean()) / a.std() - (b - b.mean()) / b.std()).mean()) / _MAX_SHAPE_DIFFERENCE
    return shape if shape <= 1 else None


def placement(copy: Path | str, item: Item, *, copy_size: tuple[int, int] | None = None) -> Placement | None:
    """Where the image file ``copy`` (``copy_size``: its (w, h) as displayed, when known)
    shows what ``item`` shows, or None when it does not: the whole copy (re-encoded or
    resized, even stretched, its contrast or brightness adjusted: Roboflow's "auto-adjust
    contrast"), or, for a copy of another shape, its centre fitted with the original's aspect
    ratio, the edges padded (black, white or reflected). Where both readings hold (a thin
    edge), the closer one. A file that cannot be read, or the item's, is no match.

    Both are compared shrunk to 16 x 16 grey levels (:func:`_difference`). Measured on
    coco128's 128 photos and 200 generated digit frames (a third blank), each stretched to
    640x640 at JPEG quality 30: every plain copy matches; with contrast stretched (2% cut)
    127 of 128 photos and 135 of 200 frames, brightened by a fifth all photos and 145 frames
    (the raw difference alone: 54 and 3 photos, 10 and 7 frames). Of the different pairs, none
    of coco128's 8128 matches (closest 0.059 raw, 0.299 standardized); of the frames' 19900,
    18 do, all by the raw difference: blank displays that look the same. Fitted in 640x640
    with black, white or reflected edges at quality 30, each of the 128 photos matches and none
    of the 16256 different pairs."""
    from .sources.images import load_image, read_image_info

    try:  # both end as 16 x 16: a JPEG is decoded at a fraction of its size
        if copy_size is None:
            info = read_image_info(copy)
            copy_size = (info.width, info.height)
        seen = load_image(copy, at_least=_DECODED)
        shown = load_image(item.uri, sha256=item.sha256, at_least=_DECODED)
    except (InputError, OSError):
        return None
    original = _grey(shown)
    cw, ch = copy_size
    w, h = item.width, item.height
    found: list[tuple[float, Placement]] = []
    if (d := _difference(_grey(seen), original)) is not None:
        found.append((d, Placement(cw / w, ch / h)))
    s = min(cw / w, ch / h)
    dx, dy = (cw - w * s) / 2, (ch - h * s) / 2
    if max(dx, dy) >= 1:  # another shape: the original fitted in, centred, its edges padded
        kx, ky = seen.shape[1] / cw, seen.shape[0] / ch  # the decoded copy's pixels per copy pixel
        x0, y0 = round(dx * kx), round(dy * ky)
        inner = seen[y0:y0 + max(1, round(h * s * ky)), x0:x0 + max(1, round(w * s * kx))]
        if (d := _difference(_grey(inner), original)) is not None:
            found.append((d, Placement(s, s, dx, dy)))
    return min(found, key=lambda f: f[0])[1] if found else None


def looks_alike(copy: Path | str, item: Item) -> bool:
    """Whether the image file ``copy`` shows what ``item`` shows (:func:`placement`)."""
    return placement(copy, item) is not None
