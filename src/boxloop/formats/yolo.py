"""YOLO txt labels (``class cx cy w h`` normalised, one box per line) and class-name files
(data.yaml, classes.txt, classmap.yaml)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, Problems
from ..types import Detections

__all__ = [
    "CLASS_FILES",
    "YoloLabels",
    "format_yolo_labels",
    "parse_class_names",
    "read_yolo_labels",
    "yolo_data_yaml",
]

# Looked for, in this order, next to YOLO labels.
CLASS_FILES = ("data.yaml", "data.yml", "classmap.yaml", "classmap.yml", "classes.txt", "obj.names")
_EPS = 1e-6  # slack for coordinates written as 1.0000001 by float rounding


@dataclass(frozen=True)
class YoloLabels:
    """A YOLO label file read: its boxes in pixels; ``problems``, the lines that make the file
    unusable as a whole (a line that cannot be read may be an object left out); ``dropped``,
    the boxes left out because nothing of them is inside the image (no object lost); and
    ``clipped``, the lines whose box reached past the image and was clipped to it, as
    Ultralytics clips it."""

    labels: Detections
    problems: Problems
    dropped: Problems
    clipped: list[int]

    @property
    def every_problem(self) -> Problems:
        """The problems and the dropped boxes, in line order."""
        out = Problems()
        out.extend(sorted([*self.problems, *self.dropped], key=lambda p: p.line or 0))
        return out


def read_yolo_labels(
    text: str,
    *,
    width: int,
    height: int,
    n_classes: int | None = None,
    source: str = "<labels>",
    with_confidence: bool = False,
) -> YoloLabels:
    """Parse YOLO label text into pixel boxes; bad lines become Problems, good lines are kept.

    Lines are ``class cx cy w h`` (``... conf`` with ``with_confidence``), or a polygon
    ``class x1 y1 x2 y2 x3 y3 ...`` which becomes its bounding box. Class ids are the file's
    own; map them to project ids by name afterwards. The lines that make the file unusable
    (``problems``) are told apart from boxes left out for lying outside the image
    (``dropped``); a box reaching past the image is clipped to it (``clipped`` names its line).

    >>> d = read_yolo_labels("0 0.5 0.5 0.2 0.4", width=100, height=50)
    >>> d.labels.xyxy.tolist(), len(d.every_problem)
    ([[40.0, 15.0, 60.0, 35.0]], 0)

    >>> r = read_yolo_labels("0 0.95 0.5 0.2 0.2", width=100, height=50, source="a.txt")
    >>> r.labels.xyxy.tolist(), r.clipped, len(r.problems)
    ([[85.0, 20.0, 100.0, 30.0]], [1], 0)
    """
    problems, dropped = Problems(), Problems()
    boxes: list[list[float]] = []
    classes: list[int] = []
    confs: list[float] = []
    clipped: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parsed = _parse_line(line, lineno, n_classes, source, with_confidence, problems)
        if parsed is None:
            continue
        cls, conf, (x1, y1, x2, y2) = parsed
        inside = [min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2)]
        if inside[2] <= inside[0] or inside[3] <= inside[1]:
            dropped.add(source, f"box has no area inside the image in {line!r}; left out, the file's other boxes kept", lineno)
            continue
        if x1 < -_EPS or y1 < -_EPS or x2 > 1 + _EPS or y2 > 1 + _EPS:
            clipped.append(lineno)
        boxes.append([inside[0] * width, inside[1] * height, inside[2] * width, inside[3] * height])
        classes.append(cls)
        if conf is not None:
            confs.append(conf)
    d = Detections(
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(classes, np.int64),
        np.asarray(confs, np.float32) if with_confidence else None,
    )
    return YoloLabels(d, problems, dropped, clipped)


def _parse_line(
    line: str, lineno: int, n_classes: int | None, source: str, with_confidence: bool, problems: Problems
) -> tuple[int, float | None, tuple[float, float, float, float]] | None:
    """One label line → (class id, confidence, its box as normalised xyxy, not yet clipped),
    or None with its Problem said. Coordinates are normalised: one a little outside [0, 1] (a centre just past
    the edge) gives a box the caller clips or, with no area inside the image, leaves out; one far outside
    (beyond [-1, 2]: pixels, most likely) makes the file unusable."""
    fields = line.split()
    n = len(fields)
    is_polygon = not with_confidence and n >= 7 and (n - 1) % 2 == 0
    if n != (6 if with_confidence else 5) and not is_polygon:
        want = "6 (class cx cy w h conf)" if with_confidence else "5 (class cx cy w h)"
        problems.add(source, f"expected {want} fields, got {n}", lineno)
        return None
    try:
        cls_f = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        problems.add(source, f"not a number in {line!r}", lineno)
        return None
    if not all(math.isfinite(v) for v in (cls_f, *values)):
        problems.add(source, f"non-finite number in {line!r}", lineno)
        return None
    if cls_f != int(cls_f) or cls_f < 0:
        problems.add(source, f"class id {fields[0]!r} is not a non-negative integer", lineno)
        return None
    cls = int(cls_f)
    if n_classes is not None and cls >= n_classes:
        problems.add(source, f"class id {cls} is beyond the {n_classes} class names", lineno)
        return None
    conf = values.pop() if with_confidence else None
    if conf is not None and not 0.0 <= conf <= 1.0:
        problems.add(source, f"confidence {conf} outside [0, 1]", lineno)
        return None
    if any(v < -1.0 or v > 2.0 for v in values):  # pixels, most likely: every box of the file would be wrong
        problems.add(source, f"coordinates far outside [0, 1] (not divided by the image's size?) in {line!r}", lineno)
        return None
    if is_polygon:
        xs, ys = values[0::2], values[1::2]
        return cls, conf, (min(xs), min(ys), max(xs), max(ys))
    cx, cy, w, h = values
    if w <= 0 or h <= 0:
        problems.add(source, f"box with zero or negative size in {line!r}", lineno)
        return None
    return cls, conf, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def format_yolo_labels(
    labels: Detections, *, width: int, height: int, with_confidence: bool = False
) -> str:
    """Pixel boxes → YOLO label text (6 decimals; an empty string for no boxes)."""
    if not len(labels):
        return ""
    xyxy = labels.xyxy.astype(np.float64)
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 / width
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2 / height
    w = (xyxy[:, 2] - xyxy[:, 0]) / width
    h = (xyxy[:, 3] - xyxy[:, 1]) / height
    lines = []
    for i in range(len(labels)):
        line = f"{int(labels.class_id[i])} {cx[i]:.6f} {cy[i]:.6f} {w[i]:.6f} {h[i]:.6f}"
        if with_confidence and labels.confidence is not None:
            line += f" {float(labels.confidence[i]):.5f}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def parse_class_names(path: str | Path) -> list[str]:
    """Class names from data.yaml (``names`` list or {id: name}), classmap.yaml
    ({id: name}, a list, or ``names``), classes.txt or Darknet's obj.names (one per line)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not part of the first name
    except OSError as e:
        raise InputError(f"{path}: cannot read class names: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: cannot read class names: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    if path.suffix.lower() in (".txt", ".names"):
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from e
    names = doc.get("names", doc) if isinstance(doc, dict) else doc
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: class ids must be integers, got {list(names)[:5]}") from e
        if ids != list(range(len(ids))):
            raise InputError(f"{path}: class ids must run 0..{len(ids) - 1}, got {ids}")
        by_id = {int(k): v for k, v in names.items()}
        return [str(by_id[i]) for i in ids]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise InputError(f"{path}: no class names found (expected `names:` as a list or a mapping)")


def yolo_data_yaml(root: Path | None, names: Sequence[str], splits: dict[str, str]) -> str:
    """An Ultralytics data.yaml for a dataset at ``root`` (made absolute) with ``splits``
    {split: path relative to it}. Without ``root`` (a zip, unpacked anywhere) it names no
    ``path``: Ultralytics then reads the splits beside the data.yaml."""
    import os

    import yaml

    doc: dict[str, object] = {**({} if root is None else {"path": os.path.abspath(root)}), **splits, "nc": len(names)}
    doc["names"] = {i: n for i, n in enumerate(names)}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
