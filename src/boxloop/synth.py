"""A synthetic seven-segment LCD digit dataset with exact boxes, for tests, benchmarks and the demo.

Nothing is downloaded: every image is drawn from a seed. Each image shows a display
(like a rowing machine's monitor) reading 1-6 digits, sometimes with a colon, a decimal
point or a letter glyph that is not a class; some images show no digit at all. A box is
the tight pixel box of one digit's lit segments as drawn, after slant and rotation, so
labels are exact. Most images are easy for a small YOLO; a minority (low contrast, heavy
blur, dim light, glare, noise) are hard, so that active learning has something to find.

>>> from pathlib import Path
>>> generate_images(Path("lcd"), n=100, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .formats.yolo import format_yolo_labels
from .types import Detections

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["CLASSES", "DIGITS_TRAIN", "generate_images", "generate_sequence", "train_quick_model", "write_video"]

logger = logging.getLogger(__name__)

CLASSES = [str(d) for d in range(10)]

# Training settings that teach yolov8n the generated digits from scratch on a CPU in a few
# dozen epochs (the demo and bench/simulate.py use them). The digits are not mirror-symmetric:
# no horizontal flips. On a few dozen images a model needs many small steps at a higher
# learning rate than Ultralytics picks for fine-tuning; measured on the demo's 36 training
# images after 40 epochs at 224: mAP50 0.00 at batch 16 with Ultralytics' defaults, 0.20 with
# these.
DIGITS_TRAIN: dict = {
    "model": "yolov8n.yaml", "imgsz": 224, "batch": 4,
    "extra": {"fliplr": 0.0, "optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 0},
}

#     a
#   f   b
#     g
#   e   c
#     d
_DIGIT_SEGMENTS = {
    0: ("abcdef",),
    1: ("bc",),
    2: ("abdeg",),
    3: ("abcdg",),
    4: ("bcfg",),
    5: ("acdfg",),
    6: ("acdefg", "cdefg"),  # with and without the top bar, as displays differ
    7: ("abc", "abcf"),
    8: ("abcdefg",),
    9: ("abcdfg", "abcfg"),
}
# Glyphs that are not classes: hard negatives that share strokes with digits.
_GLYPHS = {"-": "g", "E": "adefg", "r": "eg", "P": "abefg", "H": "bcefg", "L": "def", "F": "aefg"}

# Codes in the drawing mask: 1.._MAX_DIGITS are lit digits (one code per digit, so each
# digit's box is read back from its own pixels), then lit non-digits, then unlit ghosts.
_MAX_DIGITS = 6
_OTHER_LIT = 250
_GHOST = 255
_NOISE_PAD = 64
_NOISE_SIGMA = 24.0  # of the stored noise bank; each image scales it


@dataclass(frozen=True)
class _Cell:
    """One character position of the display."""

    kind: str  # "digit", "blank" (all segments unlit), "glyph" (lit, not a class), "colon"
    segments: str = ""
    digit: int | None = None
    dot: bool = False  # decimal point right after the cell


@dataclass(frozen=True)
class _Scene:
    """Everything needed to draw one image; drawing it is a pure function of this value."""

    size: tuple[int, int]
    bg_kind: str
    bg_seed: int
    bg_colors: tuple[tuple[int, int, int], tuple[int, int, int]]
    clutter: tuple[tuple, ...]
    panel: tuple | None  # (rgb, bezel rgb, bezel px, margin in digit heights)
    cells: tuple[_Cell, ...]
    height: float  # digit height in px
    cell_width: float  # in digit heights
    gap: float  # between cells, in digit heights
    thickness: float  # segment thickness, in digit heights
    seg_gap: float  # between segments, in digit heights
    hexagonal: bool
    slant: float  # horizontal shift of the top relative to the bottom, in digit heights
    angle: float  # degrees, counterclockwise on screen
    center: tuple[float, float]
    seg_color: tuple[int, int, int]
    ghost_alpha: float
    gain: float
    shading: tuple[tuple[float, ...], ...] | None  # small grid, upsampled over the image
    glare: tuple[float, float, float] | None  # (x, y, strength) in image fractions
    blur: float
    noise: float  # sigma in grey levels
    noise_offset: tuple[int, int]
    shift: tuple[int, int] = (0, 0)  # camera jitter: the whole picture moves by this
    margin: int = 0  # extra background drawn around the picture, for jitter


# ---------------------------------------------------------------------------- sampling


def _rgb(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    c = rng.integers(lo, hi + 1, size=3)
    return (int(c[0]), int(c[1]), int(c[2]))


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _digit_cell(rng: np.random.Generator, d: int, dot: bool = False) -> _Cell:
    variants = _DIGIT_SEGMENTS[d]
    seg = variants[int(rng.integers(len(variants)))]
    return _Cell("digit", seg, d, dot)


def _sample_cells(rng: np.random.Generator) -> list[_Cell]:
    """A reading such as ``742``, ``1:45``, ``2:05.3`` or ``  18`` (unlit leading cells)."""
    style = rng.choice(["int", "int", "time", "decimal"])
    if style == "time":
        minutes = int(rng.integers(0, 60))
        mdigits = [int(c) for c in str(minutes)]
        cells = [_digit_cell(rng, d) for d in mdigits]
        cells.append(_Cell("colon"))
        sec = int(rng.integers(0, 60))
        cells += [_digit_cell(rng, sec // 10), _digit_cell(rng, sec % 10)]
        if rng.random() < 0.4 and len(mdigits) + 3 <= _MAX_DIGITS:
            cells[-1] = replace(cells[-1], dot=True)
            cells.append(_digit_cell(rng, int(rng.integers(10))))
        return cells
    n = int(rng.choice([1, 2, 3, 3, 4, 4, 5, 6]))
    digits = [int(d) for d in rng.integers(0, 10, size=n)]
    cells = [_digit_cell(rng, d) for d in digits]
    if style == "decimal" and n >= 2:
        k = int(rng.integers(0, n - 1))
        cells[k] = replace(cells[k], dot=True)
    if rng.random() < 0.25 and n < _MAX_DIGITS:  # fixed-width field, unlit leading cells
        cells = [_Cell("blank")] * int(rng.integers(1, _MAX_DIGITS - n + 1)) + cells
    if rng.random() < 0.08:  # a letter or a minus sign beside the number
        g = str(rng.choice(list(_GLYPHS)))
        cell = _Cell("glyph", _GLYPHS[g])
        cells = [cell, *cells] if rng.random() < 0.5 else [*cells, cell]
    return cells


def _sample_empty_cells(rng: np.random.Generator) -> list[_Cell]:
    """A display that reads no digit: switched off, unlit, or showing dashes or letters."""
    n = int(rng.integers(2, 6))
    if rng.random() < 0.6:
        return [_Cell("blank")] * n
    word = str(rng.choice(["----", "Err", "PL", "HELP", "-- --", "rE"]))
    return [_Cell("blank") if c == " " else _Cell("glyph", _GLYPHS[c]) for c in word]


def _cell_widths(cells: Sequence[_Cell], cell_width: float, gap: float) -> list[float]:
    return [(0.28 if c.kind == "colon" else cell_width) + gap for c in cells]


def _sample_scene(
    seed: int,
    index: int,
    size: tuple[int, int],
    *,
    empty: bool | None = None,
    empty_fraction: float = 0.05,
    margin: int = 0,
) -> _Scene:
    """Draw the parameters of image ``index``; they depend only on (seed, index, size)."""
    rng = np.random.default_rng([seed, index, 0x15CD])
    w, h = size
    if empty is None:
        empty = bool(rng.random() < empty_fraction)

    bg_kind = str(rng.choice(["flat", "gradient", "blotches", "stripes", "tiles", "grain"]))
    bg_colors = (_rgb(rng, 0, 255), _rgb(rng, 0, 255))
    clutter = tuple(
        (
            str(rng.choice(["line", "rect", "ellipse"])),
            tuple(float(v) for v in rng.random(4)),
            _rgb(rng, 0, 255),
            int(rng.integers(1, 6)),
        )
        for _ in range(int(rng.integers(0, 7)))
    )

    if empty:
        show_display = rng.random() < 0.6
        cells = _sample_empty_cells(rng) if show_display else []
    else:
        show_display = True
        cells = _sample_cells(rng)

    cell_width = float(rng.uniform(0.45, 0.62))
    gap = float(rng.uniform(0.14, 0.3))
    thickness = float(rng.uniform(0.10, 0.17))
    seg_gap = float(rng.uniform(0.008, 0.03))
    slant = float(rng.uniform(0.04, 0.16)) if rng.random() < 0.6 else 0.0
    angle = float(rng.uniform(-4.0, 4.0))
    has_panel = bool(rng.random() < 0.85)
    panel_margin = float(rng.uniform(0.15, 0.45)) if has_panel else 0.08

    # Size: at least 15% of the image height, at most what the width allows.
    while True:
        units = sum(_cell_widths(cells, cell_width, gap)) + slant + 2 * panel_margin
        width_cap = 0.92 * w / max(units, 1e-6) / (1 + 0.08)  # rotation slack
        height_cap = 0.62 * h / (1 + 2 * panel_margin)
        h_max = min(width_cap, height_cap)
        h_min = 0.16 * h
        if h_max >= h_min or len(cells) <= 1:
            break
        cells = cells[1:]  # too many characters for this image: drop the leftmost
        while cells and cells[0].kind == "colon":
            cells = cells[1:]
    h_max = max(h_max, h_min)
    digit_h = float(math.exp(rng.uniform(math.log(h_min), math.log(h_max))))

    half_w = (sum(_cell_widths(cells, cell_width, gap)) + slant) / 2 * digit_h
    half_h = 0.5 * digit_h
    pm = panel_margin * digit_h
    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    ext_x = (half_w + pm) * cos + (half_h + pm) * sin + 2 + margin // 2
    ext_y = (half_w + pm) * sin + (half_h + pm) * cos + 2 + margin // 2
    cx = float(rng.uniform(min(ext_x, w / 2), max(w - ext_x, w / 2)))
    cy = float(rng.uniform(min(ext_y, h / 2), max(h - ext_y, h / 2)))

    palette = str(rng.choice(["lcd", "lcd", "led", "backlit"]))
    if palette == "lcd":  # dark segments on a grey-green panel
        panel_rgb = _mix(_rgb(rng, 120, 215), (150, 175, 140), float(rng.uniform(0, 0.7)))
        full = _rgb(rng, 5, 60)
    elif palette == "led":  # bright segments on a dark panel
        panel_rgb = _rgb(rng, 0, 45)
        full = [(255, 40, 30), (60, 255, 80), (255, 170, 20), (220, 235, 255)][int(rng.integers(4))]
    else:  # light segments on a coloured backlight
        panel_rgb = _mix(_rgb(rng, 0, 120), (20, 60, 170), float(rng.uniform(0.3, 1)))
        full = _rgb(rng, 200, 255)
    bezel = _mix(panel_rgb, (0, 0, 0), float(rng.uniform(0.3, 0.9)))
    panel = (
        (panel_rgb, bezel, int(rng.integers(0, 5)), panel_margin)
        if has_panel and show_display
        else None
    )
    reference = panel_rgb if panel else _mix(*bg_colors, 0.5)
    hard_contrast = rng.random() < 0.12
    contrast = float(rng.uniform(0.16, 0.32) if hard_contrast else rng.uniform(0.55, 1.0))
    seg_color = _mix(reference, full, contrast)
    if seg_color == tuple(reference):
        seg_color = _mix(reference, full, 1.0)
    ghost_alpha = float(rng.uniform(0.04, 0.16)) if rng.random() < 0.55 else 0.0

    dim = rng.random() < 0.1
    gain = float(rng.uniform(0.3, 0.55) if dim else rng.uniform(0.8, 1.2))
    shading = (
        tuple(tuple(float(v) for v in row) for row in rng.uniform(0.45, 1.0, size=(3, 3)))
        if rng.random() < 0.35
        else None
    )
    glare = (
        (float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.3, 0.8)))
        if rng.random() < 0.08
        else None
    )
    r = rng.random()
    blur = float(rng.uniform(1.4, 2.6) if r < 0.1 else rng.uniform(0.5, 1.1) if r < 0.4 else 0.0)
    noise = float(rng.uniform(10, 22) if rng.random() < 0.1 else rng.uniform(0, 6))
    noise_offset = (int(rng.integers(_NOISE_PAD)), int(rng.integers(_NOISE_PAD)))
    return _Scene(
        size=(w, h),
        bg_kind=bg_kind,
        bg_seed=int(rng.integers(2**31)),
        bg_colors=bg_colors,
        clutter=clutter,
        panel=panel,
        cells=tuple(cells),
        height=digit_h,
        cell_width=cell_width,
        gap=gap,
        thickness=thickness,
        seg_gap=seg_gap,
        hexagonal=bool(rng.random() < 0.7),
        slant=slant,
        angle=angle,
        center=(cx, cy),
        seg_color=seg_color,
        ghost_alpha=ghost_alpha,
        gain=gain,
        shading=shading,
        glare=glare,
        blur=blur,
        noise=noise,
        noise_offset=noise_offset,
        margin=margin,
    )


# ---------------------------------------------------------------------------- drawing


def _segment_polygons(cell_width: float, t: float, sg: float, hexagonal: bool) -> dict:
    """Seven segments as polygons in digit units: x in [0, cell_width], y in [0, 1] down."""
    w = cell_width
    ht = t / 2

    def horiz(yc: float) -> list[tuple[float, float]]:
        x0, x1 = ht + sg, w - ht - sg
        if hexagonal:
            return [
                (x0, yc),
                (x0 + ht, yc - ht),
                (x1 - ht, yc - ht),
                (x1, yc),
                (x1 - ht, yc + ht),
                (x0 + ht, yc + ht),
            ]
        return [(x0 + ht, yc - ht), (x1 - ht, yc - ht), (x1 - ht, yc + ht), (x0 + ht, yc + ht)]

    def vert(xc: float, y0: float, y1: float) -> list[tuple[float, float]]:
        y0, y1 = y0 + sg, y1 - sg
        if hexagonal:
            return [
                (xc, y0),
                (xc + ht, y0 + ht),
                (xc + ht, y1 - ht),
                (xc, y1),
                (xc - ht, y1 - ht),
                (xc - ht, y0 + ht),
            ]
        return [(xc - ht, y0), (xc + ht, y0), (xc + ht, y1), (xc - ht, y1)]

    return {
        "a": horiz(ht),
        "g": horiz(0.5),
        "d": horiz(1 - ht),
        "f": vert(ht, ht, 0.5),
        "b": vert(w - ht, ht, 0.5),
        "e": vert(ht, 0.5, 1 - ht),
        "c": vert(w - ht, 0.5, 1 - ht),
    }


def _square(xc: float, yc: float, r: float) -> list[tuple[float, float]]:
    return [(xc - r, yc - r), (xc + r, yc - r), (xc + r, yc + r), (xc - r, yc + r)]


class _Placer:
    """Maps digit-unit points of the display to image pixels: slant, scale, rotate, move."""

    def __init__(self, s: _Scene) -> None:
        self.h = s.height
        self.slant = s.slant
        total = sum(_cell_widths(s.cells, s.cell_width, s.gap)) - s.gap + s.slant
        self.origin = (total / 2, 0.5)
        a = math.radians(s.angle)
        self.cos, self.sin = math.cos(a), math.sin(a)
        self.center = (s.center[0] + s.shift[0], s.center[1] + s.shift[1])

    def __call__(self, x0: float, pts: Sequence[tuple[float, float]]) -> list[float]:
        p = np.asarray(pts, dtype=np.float64)
        u = x0 + p[:, 0] + self.slant * (1 - p[:, 1]) - self.origin[0]
        v = p[:, 1] - self.origin[1]
        # counterclockwise on screen, where y grows downwards
        x = self.center[0] + self.h * (u * self.cos + v * self.sin)
        y = self.center[1] + self.h * (-u * self.sin + v * self.cos)
        return np.column_stack([x, y]).ravel().tolist()


@lru_cache(maxsize=4)
def _noise_bank(width: int, height: int) -> Image:
    """Gaussian noise around 128, drawn once per size from a fixed seed; images crop it."""
    from PIL import Image

    rng = np.random.default_rng(0xB0C5)
    a = rng.normal(128.0, _NOISE_SIGMA, size=(height + _NOISE_PAD, width + _NOISE_PAD, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _background(s: _Scene) -> Image:
    """The picture behind the display, ``margin`` px larger on each side than the image."""
    from PIL import Image, ImageDraw, ImageOps

    m = s.margin
    w, h = s.size[0] + 2 * m, s.size[1] + 2 * m
    rng = np.random.default_rng(s.bg_seed)
    c0, c1 = s.bg_colors
    kind = s.bg_kind
    if kind == "flat":
        img = Image.new("RGB", (w, h), c0)
    else:
        if kind == "gradient":
            grey = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)[:: rng.choice([1, -1])])
            grey = grey.resize((w, h), Image.Resampling.BILINEAR)
        elif kind == "blotches":
            cell = int(rng.integers(8, 40))
            small = rng.integers(0, 256, size=(h // cell + 2, w // cell + 2), dtype=np.uint8)
            grey = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        elif kind == "stripes":
            period = float(rng.uniform(4, 40))
            theta = float(rng.uniform(0, math.pi))
            xs = np.arange(w, dtype=np.float32) * math.cos(theta)
            ys = np.arange(h, dtype=np.float32)[:, None] * math.sin(theta)
            phase = (xs + ys) * np.float32(2 * math.pi / period)
            grey = Image.fromarray((127.5 + 127.5 * np.sin(phase)).astype(np.uint8))
        elif kind == "tiles":
            tile = int(rng.integers(6, 48))
            checker = (np.arange(w) // tile)[None, :] + (np.arange(h) // tile)[:, None]
            grey = Image.fromarray(((checker % 2) * 255).astype(np.uint8))
        else:  # grain: the noise bank, strong and coarse
            bank = _noise_bank(*s.size).convert("L")
            grey = bank.resize((w, h), Image.Resampling.NEAREST, box=(0, 0, w / 2, h / 2))
        img = ImageOps.colorize(grey, black=c0, white=c1)
    if s.clutter:
        draw = ImageDraw.Draw(img)
        for shape, (a, b, c, d), rgb, width in s.clutter:
            box = [a * w, b * h, c * w, d * h]
            box = [
                min(box[0], box[2]),
                min(box[1], box[3]),
                max(box[0], box[2]),
                max(box[1], box[3]),
            ]
            if shape == "line":
                draw.line([a * w, b * h, c * w, d * h], fill=rgb, width=width)
            elif shape == "rect":
                draw.rectangle(box, outline=rgb, width=width)
            else:
                draw.ellipse(box, fill=rgb)
    if m or s.shift != (0, 0):
        # the camera moved by ``shift``: the picture moves with it
        x0, y0 = m - s.shift[0], m - s.shift[1]
        img = img.crop((x0, y0, x0 + s.size[0], y0 + s.size[1]))
    return img


def _render(s: _Scene) -> tuple[Image, np.ndarray, np.ndarray, Image]:
    """Draw a scene: (RGB image, boxes xyxy float32 in px, class ids, drawing mask)."""
    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    w, h = s.size
    img = _background(s)
    place = _Placer(s)
    widths = _cell_widths(s.cells, s.cell_width, s.gap)
    starts = np.concatenate([[0.0], np.cumsum(widths)[:-1]]) if widths else np.zeros(0)

    if s.panel is not None:
        rgb, bezel, bezel_px, pm = s.panel
        total = sum(widths) - s.gap + s.slant
        rect = [(-pm, -pm), (total + pm, -pm), (total + pm, 1 + pm), (-pm, 1 + pm)]
        # the panel is not slanted: undo the slant the placer adds
        rect = [(x - s.slant * (1 - y), y) for x, y in rect]
        draw = ImageDraw.Draw(img)
        draw.polygon(
            place(0.0, rect), fill=rgb, outline=bezel if bezel_px else None, width=bezel_px
        )

    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    segs = _segment_polygons(s.cell_width, s.thickness, s.seg_gap, s.hexagonal)
    dot_r = s.thickness * 0.55
    digits: list[tuple[int, int, list[float]]] = []  # (code, class, polygon points)
    for x0, cell in zip(starts, s.cells, strict=True):
        if cell.kind == "colon":
            for yc in (0.32, 0.68):
                draw.polygon(place(x0, _square(0.14, yc, dot_r)), fill=_OTHER_LIT)
            continue
        if s.ghost_alpha > 0:
            for name in "abcdefg":
                draw.polygon(place(x0, segs[name]), fill=_GHOST)
        code = _OTHER_LIT
        if cell.kind == "digit":
            code = len(digits) + 1
        points: list[float] = []
        for name in cell.segments:
            poly = place(x0, segs[name])
            draw.polygon(poly, fill=code)
            points += poly
        if cell.kind == "digit":
            digits.append((code, int(cell.digit), points))  # type: ignore[arg-type]
        if cell.dot:
            xc = s.cell_width + s.gap / 2
            draw.polygon(place(x0, _square(xc, 1 - dot_r, dot_r)), fill=_OTHER_LIT)

    # One box per digit: the pixel extent of that digit's own code in the mask.
    m = np.asarray(mask)
    boxes, classes = [], []
    for code, cls, points in digits:
        p = np.asarray(points).reshape(-1, 2)
        x0 = max(math.floor(p[:, 0].min()) - 2, 0)
        y0 = max(math.floor(p[:, 1].min()) - 2, 0)
        x1 = min(math.ceil(p[:, 0].max()) + 3, w)
        y1 = min(math.ceil(p[:, 1].max()) + 3, h)
        if x1 <= x0 or y1 <= y0:
            continue
        hit = m[y0:y1, x0:x1] == code
        cols, rows = np.flatnonzero(hit.any(axis=0)), np.flatnonzero(hit.any(axis=1))
        if len(cols) == 0:
            continue  # fully outside the image
        boxes.append([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1])
        classes.append(cls)

    lut = [0] * 256
    lut[1 : _OTHER_LIT + 1] = [255] * _OTHER_LIT
    lut[_GHOST] = round(255 * s.ghost_alpha)
    alpha = mask.point(lut)
    img = Image.composite(Image.new("RGB", (w, h), s.seg_color), img, alpha)

    if abs(s.gain - 1.0) > 1e-6:
        img = img.point([min(255, int(v * s.gain + 0.5)) for v in range(256)] * 3)
    if s.shading is not None:
        grid = np.asarray(s.shading, np.float64) * 255
        light = Image.fromarray(grid.astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
        img = ImageChops.multiply(img, light.convert("RGB"))
    if s.glare is not None:
        gx, gy, strength = s.glare
        blob = np.zeros((4, 5), np.uint8)
        blob[min(int(gy * 4), 3), min(int(gx * 5), 4)] = int(255 * strength)
        glow = Image.fromarray(blob).resize((w, h), Image.Resampling.BICUBIC)
        img = ImageChops.screen(img, glow.convert("RGB"))
    if s.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(s.blur))
    if s.noise > 0:
        ox, oy = s.noise_offset
        noise = _noise_bank(w, h).crop((ox, oy, ox + w, oy + h))
        k = s.noise / _NOISE_SIGMA
        noise = noise.point([max(0, min(255, round(128 + (v - 128) * k))) for v in range(256)] * 3)
        img = ImageChops.add(img, noise, 1.0, -128)
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    return img, xyxy, np.asarray(classes, np.int64), mask


# ---------------------------------------------------------------------------- files


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _jpeg(img: Image, quality: int) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _write_data_yaml(out: Path) -> None:
    from .formats.yolo import yolo_data_yaml

    text = yolo_data_yaml(out.absolute(), CLASSES, {"train": "images", "val": "images"})
    _atomic_write(out / "data.yaml", text.encode())


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError) as e:
        raise InputError(f"size must be (width, height), got {size!r}") from e
    if w < 32 or h < 32:
        raise InputError(f"size must be at least 32x32 pixels, got {w}x{h}")
    return w, h


def _write_pair(
    out: Path,
    stem: str,
    img: Image,
    xyxy: np.ndarray,
    classes: np.ndarray,
    size: tuple[int, int],
    quality: int,
) -> None:
    # The label goes first, so an image that exists always has its label beside it.
    _atomic_write(out / "labels" / f"{stem}.txt", format_yolo_labels(Detections(xyxy, classes), width=size[0], height=size[1]).encode())
    _atomic_write(out / "images" / f"{stem}.jpg", _jpeg(img, quality))


def generate_images(
    out: Path,
    *,
    n: int,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    empty_fraction: float = 0.05,
    jpeg_quality: int = 90,
    start: int = 0,
) -> Path:
    """Write images ``start``..``start+n-1`` of the LCD dataset in the YOLO layout; returns ``out``.

    Image i depends only on (seed, i, size), so a run can be repeated or extended with
    ``start``; every file is written atomically.
    """
    size = _check_size(size)
    if n < 0 or start < 0:
        raise InputError(f"n and start must be >= 0, got n={n}, start={start}")
    if not 0.0 <= empty_fraction <= 1.0:
        raise InputError(f"empty_fraction must be in [0, 1], got {empty_fraction}")
    if not 1 <= jpeg_quality <= 100:
        raise InputError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        scene = _sample_scene(seed, i, size, empty_fraction=empty_fraction)
        img, xyxy, classes, _ = _render(scene)
        _write_pair(out, f"lcd_{i:05d}", img, xyxy, classes, size, jpeg_quality)
    _write_data_yaml(out)
    logger.info("wrote %d LCD images (seed %d) to %s", n, seed, out)
    return out


def _counter_cells(value: int, width: int, time: bool, font: dict[int, str]) -> tuple:
    """The cells of a counter reading ``value``: right-aligned digits, unlit leading cells."""
    if time:
        m, sec = divmod(value, 60)
        text = f"{m % 100:>2}:{sec:02d}"
    else:
        text = str(value % 10**width).rjust(width)
    return tuple(
        _Cell("colon")
        if c == ":"
        else _Cell("blank")
        if c == " "
        else _Cell("digit", font[int(c)], int(c))
        for c in text
    )


def generate_sequence(
    out: Path, *, n_frames: int = 30, seed: int = 0, size: tuple[int, int] = (320, 240)
) -> Path:
    """Write a short frame sequence of one counting display (frame_1.jpg, frame_2.jpg, ...)
    with its labels and data.yaml; the camera jitters a few pixels and in brightness."""
    size = _check_size(size)
    if n_frames < 1:
        raise InputError(f"n_frames must be >= 1, got {n_frames}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0x5E9])
    time = bool(rng.random() < 0.4)
    width = int(rng.integers(2, 5))
    value = int(rng.integers(0, 50))
    every = int(rng.integers(2, 6))
    # one display, one font: each digit keeps its segment variant in every frame
    font = {d: v[int(rng.integers(len(v)))] for d, v in _DIGIT_SEGMENTS.items()}
    margin = 8
    base = _sample_scene(seed, 0, size, empty=False, margin=margin)
    cells = _counter_cells(value, width, time, font)
    base = replace(base, cells=cells, blur=min(base.blur, 1.0))
    base = _sample_layout_fit(base)
    base_gain = float(np.clip(base.gain, 0.7, 1.2))
    dx = dy = 0
    for f in range(n_frames):
        if f and f % every == 0:
            value += 1
        dx = int(np.clip(dx + rng.integers(-2, 3), -margin // 2, margin // 2))
        dy = int(np.clip(dy + rng.integers(-2, 3), -margin // 2, margin // 2))
        scene = replace(
            base,
            cells=_counter_cells(value, width, time, font),
            shift=(dx, dy),
            gain=base_gain * float(rng.uniform(0.94, 1.06)),
            noise_offset=(int(rng.integers(_NOISE_PAD)), int(rng.integers(_NOISE_PAD))),
        )
        img, xyxy, classes, _ = _render(scene)
        _write_pair(out, f"frame_{f + 1}", img, xyxy, classes, size, 90)
    _write_data_yaml(out)
    logger.info("wrote a %d-frame LCD sequence (seed %d) to %s", n_frames, seed, out)
    return out


def _sample_layout_fit(s: _Scene) -> _Scene:
    """Shrink the digits if new cells made the display wider than the image allows."""
    w, _h = s.size
    units = (
        sum(_cell_widths(s.cells, s.cell_width, s.gap))
        + s.slant
        + 2 * (s.panel[3] if s.panel else 0.08)
    )
    height = min(s.height, 0.85 * (w - 2 * s.margin) / units)
    half_w = units * height / 2 + 4
    cx = (
        float(np.clip(s.center[0], half_w + s.margin, w - half_w - s.margin))
        if 2 * half_w < w
        else w / 2
    )
    return replace(s, height=height, center=(cx, s.center[1]))


def write_video(frames: Sequence[Path], out: Path, *, fps: float = 10.0) -> Path:
    """Encode image files into an H.264 mp4 (mpeg4 where libx264 is missing); returns ``out``."""
    import av
    from PIL import Image

    if not frames:
        raise InputError("write_video needs at least one frame")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix or '.mp4'}")
    first = Image.open(frames[0])
    size = (first.width - first.width % 2, first.height - first.height % 2)  # yuv420p: even
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "veryfast"}
            else:
                stream.bit_rate = 4_000_000
            for i, path in enumerate(frames):
                with Image.open(path) as im:
                    rgb = im.convert("RGB")
                if rgb.size != (first.width, first.height):
                    raise InputError(
                        f"{path}: frame size {rgb.width}x{rgb.height} differs from the first "
                        f"frame's {first.width}x{first.height}"
                    )
                frame = av.VideoFrame.from_image(rgb.crop((0, 0, *size)))
                frame.pts = i
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, out)
    finally:
        first.close()
        if tmp.exists():
            tmp.unlink()
    return out


def train_quick_model(data_root: Path, run_dir: Path, *, imgsz: int = 320, epochs: int = 5) -> Path:
    """best.pt of a yolov8n trained from scratch for a few epochs on a generated dataset
    (``generate_images``): for benchmarks, a model whose head scores and boxes look like a
    trained model's, made in a few minutes on a CPU with nothing downloaded."""
    from .backends.ultralytics import train_yolo

    result = train_yolo(
        Path(data_root) / "data.yaml", model="yolov8n.yaml", run_dir=Path(run_dir), epochs=epochs, imgsz=imgsz,
        batch=16,
        # one optimizer step per batch (nbs): with Ultralytics' nominal 64, 5 epochs on 200
        # images are 16 steps and the model keeps no box above conf 0.01
        extra={"val": False, "mosaic": 0.0, "warmup_epochs": 0, "optimizer": "AdamW", "lr0": 0.005, "nbs": 16},
    )
    return result.weights
