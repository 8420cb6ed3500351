"""YOLO txt labels (``class cx cy w h`` normalised, one box per line) and class-name files
(data.yaml, classes.txt, classmap.yaml)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, Problems
from ..types import Detections

__all__ = [
    "CLASS_FILES",
    "format_yolo_labels",
    "parse_class_names",
    "parse_yolo_labels",
    "yolo_data_yaml",
]

# Looked for, in this order, next to YOLO labels.
CLASS_FILES = ("data.yaml", "data.yml", "classmap.yaml", "classmap.yml", "classes.txt", "obj.names")
_EPS = 1e-6  # slack for coordinates written as 1.0000001 by float rounding


def parse_yolo_labels(
    text: str,
    *,
    width: int,
    height: int,
    n_classes: int | None = None,
    source: str = "<labels>",
    with_confidence: bool = False,
) -> tuple[Detections, Problems]:
    """Parse YOLO label text into pixel boxes; bad lines become Problems, good lines are kept.

    Lines are ``class cx cy w h`` (``... conf`` with ``with_confidence``), or a polygon
    ``class x1 y1 x2 y2 x3 y3 ...`` which becomes its bounding box. Class ids are the file's
    own; map them to project ids by name afterwards.

    >>> d, p = parse_yolo_labels("0 0.5 0.5 0.2 0.4", width=100, height=50)
    >>> d.xyxy.tolist(), len(p)
    ([[40.0, 15.0, 60.0, 35.0]], 0)
    """
    problems = Problems()
    boxes: list[list[float]] = []
    classes: list[int] = []
    confs: list[float] = []
    box_fields = 6 if with_confidence else 5
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        n = len(fields)
        is_polygon = not with_confidence and n >= 7 and (n - 1) % 2 == 0
        if n != box_fields and not is_polygon:
            want = "6 (class cx cy w h conf)" if with_confidence else "5 (class cx cy w h)"
            problems.add(source, f"expected {want} fields, got {n}", lineno)
            continue
        try:
            cls_f = float(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            problems.add(source, f"not a number in {line!r}", lineno)
            continue
        if not all(math.isfinite(v) for v in (cls_f, *values)):
            problems.add(source, f"non-finite number in {line!r}", lineno)
            continue
        if cls_f != int(cls_f) or cls_f < 0:
            problems.add(source, f"class id {fields[0]!r} is not a non-negative integer", lineno)
            continue
        cls = int(cls_f)
        if n_classes is not None and cls >= n_classes:
            problems.add(source, f"class id {cls} is beyond the {n_classes} class names", lineno)
            continue
        conf = None
        if with_confidence:
            conf = values.pop()
            if not 0.0 <= conf <= 1.0:
                problems.add(source, f"confidence {conf} outside [0, 1]", lineno)
                continue
        coords = values
        if any(v < -_EPS or v > 1 + _EPS for v in coords):
            problems.add(source, f"coordinates outside [0, 1] in {line!r}", lineno)
            continue
        if is_polygon:
            xs, ys = coords[0::2], coords[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        else:
            cx, cy, w, h = coords
            if w <= 0 or h <= 0:
                problems.add(source, f"box with zero or negative size in {line!r}", lineno)
                continue
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            if x1 < -_EPS or y1 < -_EPS or x2 > 1 + _EPS or y2 > 1 + _EPS:
                problems.add(source, f"box extends outside the image in {line!r}", lineno)
                continue
        x1, x2 = (min(max(v, 0.0), 1.0) * width for v in (x1, x2))
        y1, y2 = (min(max(v, 0.0), 1.0) * height for v in (y1, y2))
        boxes.append([x1, y1, x2, y2])
        classes.append(cls)
        if conf is not None:
            confs.append(conf)
    d = Detections(
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(classes, np.int64),
        np.asarray(confs, np.float32) if with_confidence else None,
    )
    return d, problems


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
