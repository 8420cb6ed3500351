"""CVAT for images 1.1 XML: ``<annotations>`` with ``<meta>`` (the task's or project's labels)
and one ``<image id name width height>`` per image holding ``<box label xtl ytl xbr ybr>``.

Coordinates are pixel edges, as boxloop's xyxy. A box with a ``rotation`` becomes its
axis-aligned bounding box and a Problem says so; polygons, polylines, points, ellipses, masks,
cuboids and skeletons are not boxes and are skipped with one Problem per image counting them.
``occluded`` flags go to ``ImageLabels.extra["occluded"]``, aligned with the boxes.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError, Problems
from . import ImageLabels
from .voc import _parse_xml

__all__ = ["parse_cvat_images", "to_cvat_images"]

# A box edge this far outside the image is rounding and is clipped; further out, the box is
# reported and skipped.
SLACK_PX = 1.0
NOT_BOXES = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton")
# Label colours for the exported task, so CVAT shows distinct classes (cycled).
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
)  # fmt: skip


def _meta_labels(root: ET.Element) -> list[str] | None:
    """Label names declared in ``<meta>`` (task, project or job), or None when there is no meta."""
    meta = root.find("meta")
    if meta is None:
        return None
    for owner in ("task", "project", "job"):
        labels = meta.find(f"{owner}/labels")
        if labels is not None:
            names = (_child_text(label, "name") for label in labels.findall("label"))
            return list(dict.fromkeys(n for n in names if n))
    return None


def _child_text(el: ET.Element, tag: str) -> str | None:
    child = el.find(tag)
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _number(value: str | None) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _size(value: str | None) -> int | None:
    v = _number(value)
    return int(v) if v is not None and v == int(v) and v > 0 else None


def _unrotated(x1: float, y1: float, x2: float, y2: float, degrees: float) -> list[float]:
    """The axis-aligned bounding box of a box turned ``degrees`` about its centre."""
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    c, s = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    ew, eh = hw * c + hh * s, hw * s + hh * c
    return [cx - ew, cy - eh, cx + ew, cy + eh]


def parse_cvat_images(text: str, *, source: str) -> tuple[list[ImageLabels], list[str], Problems]:
    """CVAT for images 1.1 XML → one record per ``<image>``, the label names, and Problems.

    Label names come from ``<meta><task|project|job><labels>``, or from the boxes in order of
    first use when there is no meta. A box whose label is not declared in the meta, whose
    coordinates are not numbers, of zero size or outside the image is a Problem at its line and
    skipped. An unparseable file, a root other than ``<annotations>``, or a CVAT *for video*
    file (``<track>``s and no ``<image>``) is an InputError naming the source.

    >>> recs, names, _ = parse_cvat_images('<annotations><image id="0" name="a.jpg" width="9" '
    ...     'height="9"><box label="cat" xtl="1" ytl="2" xbr="4" ybr="6"/></image></annotations>',
    ...     source="a.xml")
    >>> recs[0].xyxy.tolist(), names
    ([[1.0, 2.0, 4.0, 6.0]], ['cat'])
    """
    root, line_of = _parse_xml(text, source=source)
    if root.tag != "annotations":
        raise InputError(
            f"{source}: not CVAT XML (the root element is <{root.tag}>, expected <annotations>)"
        )
    images = root.findall("image")
    if not images and root.find("track") is not None:
        raise InputError(
            f"{source}: this is CVAT for video (<track> elements, no <image>); "
            "export the task as 'CVAT for images 1.1'"
        )
    declared = _meta_labels(root)
    seen: dict[str, None] = {}
    problems = Problems()
    records = []
    for img in images:
        line = line_of(img)
        name = (img.get("name") or "").strip()
        if not name:
            problems.add(source, f"<image id={img.get('id')!r}> has no name", line)
            continue
        width, height = _size(img.get("width")), _size(img.get("height"))
        if width is None or height is None:
            problems.add(
                source,
                f"<image name={name!r}>: width/height must be positive integers, got {img.get('width')!r}x{img.get('height')!r}",
                line,
            )
            continue
        boxes: list[list[float]] = []
        names: list[str] = []
        occluded: list[bool] = []
        for box in img.findall("box"):
            bline = line_of(box)
            label = (box.get("label") or "").strip()
            if not label:
                problems.add(source, f"<box> in {name} has no label", bline)
                continue
            if declared is not None and label not in declared:
                problems.add(
                    source,
                    f"<box> in {name}: label {label!r} is not among the labels in <meta> {declared}",
                    bline,
                )
                continue
            raw = [box.get(k) for k in ("xtl", "ytl", "xbr", "ybr")]
            values = [v for v in map(_number, raw) if v is not None]
            if len(values) != 4:
                problems.add(
                    source, f"<box> in {name}: xtl, ytl, xbr, ybr must be numbers, got {raw}", bline
                )
                continue
            x1, y1, x2, y2 = values
            if x2 <= x1 or y2 <= y1:
                problems.add(
                    source,
                    f"<box> in {name}: zero or negative size (xtl={x1:g}, ytl={y1:g}, xbr={x2:g}, ybr={y2:g})",
                    bline,
                )
                continue
            rotation = _number(box.get("rotation", "0"))
            if rotation is None:
                problems.add(
                    source,
                    f"<box> in {name}: rotation {box.get('rotation')!r} is not a number",
                    bline,
                )
                continue
            rotated = rotation % 180 != 0
            if rotated:  # its corners may leave the image; the clip below is expected
                x1, y1, x2, y2 = _unrotated(x1, y1, x2, y2, rotation)
            elif (
                x1 < -SLACK_PX or y1 < -SLACK_PX or x2 > width + SLACK_PX or y2 > height + SLACK_PX
            ):
                problems.add(
                    source,
                    f"<box> in {name}: box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] lies outside the {width}x{height} image",
                    bline,
                )
                continue
            x1, y1, x2, y2 = (
                max(x1, 0.0),
                max(y1, 0.0),
                min(x2, float(width)),
                min(y2, float(height)),
            )
            if x2 <= x1 or y2 <= y1:
                problems.add(
                    source,
                    f"<box> in {name}: the rotated box lies outside the {width}x{height} image",
                    bline,
                )
                continue
            if rotated:
                problems.add(
                    source,
                    f"<box> in {name}: rotated by {rotation:g}°, converted to its axis-aligned bounding box (clipped to the image)",
                    bline,
                )
            boxes.append([x1, y1, x2, y2])
            names.append(label)
            occluded.append(box.get("occluded", "0").strip() in ("1", "true"))
            seen.setdefault(label)
        others = sum(len(img.findall(tag)) for tag in NOT_BOXES)
        if others:
            problems.add(
                source,
                f"<image name={name!r}>: {others} shape(s) that are not boxes (polygons, points, ...) skipped",
                line,
            )
        extra: dict[str, Any] = {"image_id": img.get("id"), "occluded": occluded}
        if img.get("subset"):
            extra["subset"] = img.get("subset")
        records.append(
            ImageLabels(
                file_name=name,
                width=width,
                height=height,
                xyxy=np.asarray(boxes, np.float64).reshape(-1, 4),
                class_names=tuple(names),
                line=line,
                extra=extra,
            )
        )
    return records, (declared if declared is not None else list(seen)), problems


def _coord(value: float) -> str:
    """The shortest decimal that reads back as the same float32 (exact round trip)."""
    return np.format_float_positional(np.float32(value), trim="-", unique=True)


def to_cvat_images(records: Sequence[ImageLabels], classes: Sequence[str]) -> str:
    """Records → CVAT for images 1.1 XML that CVAT imports into a task with these labels.

    Image ids are 0.. in record order. ``extra["occluded"]`` is written when present; scores
    have no place in the format and are not written. Raises ValueError for a record without a
    size or with a class not in ``classes``.
    """
    known = set(classes)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = "boxloop"
    ET.SubElement(task, "size").text = str(len(records))
    ET.SubElement(task, "mode").text = "annotation"
    ET.SubElement(task, "overlap").text = "0"
    labels = ET.SubElement(task, "labels")
    for i, name in enumerate(classes):
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "color").text = PALETTE[i % len(PALETTE)]
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    for image_id, rec in enumerate(records):
        if rec.width is None or rec.height is None:
            raise ValueError(f"{rec.file_name}: CVAT needs the image width and height")
        img = ET.SubElement(
            root,
            "image",
            {
                "id": str(image_id),
                "name": rec.file_name,
                "width": str(int(rec.width)),
                "height": str(int(rec.height)),
            },
        )
        occluded = rec.extra.get("occluded")
        if occluded is None or len(occluded) != len(rec.xyxy):
            occluded = [False] * len(rec.xyxy)
        for k, (box, name) in enumerate(zip(rec.xyxy.tolist(), rec.class_names, strict=True)):
            if name not in known:
                raise ValueError(
                    f"{rec.file_name}: class {name!r} is not in the class list {list(classes)}"
                )
            ET.SubElement(
                img,
                "box",
                {
                    "label": name,
                    "source": "manual",
                    "occluded": "1" if occluded[k] else "0",
                    "xtl": _coord(box[0]),
                    "ytl": _coord(box[1]),
                    "xbr": _coord(box[2]),
                    "ybr": _coord(box[3]),
                    "z_order": "0",
                },
            )
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
