"""Pascal VOC XML, one file per image: ``<annotation>`` with ``<filename>``, ``<size>`` and
``<object><name/><bndbox><xmin/>...</bndbox></object>``.

Coordinates follow the VOC devkit: ``xmin..xmax`` are 1-based pixel indices, both included,
so a box over the whole image is ``1..W``. In boxloop's pixel-edge xyxy that is
``x1 = xmin - 1, x2 = xmax`` (and the same for y), the reading Detectron2 uses too. Integer and
fractional values are both read; ``to_voc`` writes up to 3 decimals, so an export read back
gives the same boxes within 0.001 px. Files from tools that write 0-based edges (``xmin = 0``)
come out at most 1 px off and are clipped to the image, not refused; a box further out is
clipped too (as Ultralytics does, listed in ``extra["clipped"]``), one wholly outside is a Problem.

``difficult`` objects are kept as boxes (they are real objects); per-box ``difficult`` and
``truncated`` flags go to ``ImageLabels.extra`` as lists aligned with the boxes.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
import xml.parsers.expat as expat
from collections.abc import Callable

import numpy as np

from ..errors import InputError, Problems
from . import ImageLabels, clip_box

__all__ = ["parse_voc", "to_voc"]

LineOf = Callable[[ET.Element], "int | None"]


def _parse_xml(text: str, *, source: str) -> tuple[ET.Element, LineOf]:
    """Parse XML into an ElementTree and a lookup of each element's source line.

    Built on expat directly because ElementTree's own parser does not expose positions;
    an unparseable document is an InputError naming the source and the line.
    """
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except expat.ExpatError as e:
        raise InputError(f"{source}:{e.lineno}: not valid XML: {expat.ErrorString(e.code)}") from e
    root = builder.close()
    return root, lambda el: lines.get(id(el))


def _text(el: ET.Element, path: str) -> str | None:
    child = el.find(path)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def _flag(el: ET.Element, tag: str) -> bool:
    return _text(el, tag) in ("1", "true", "True")


def _coord(value: str | None) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _size(
    root: ET.Element, source: str, line_of: LineOf, problems: Problems
) -> tuple[int | None, int | None]:
    """Image width and height from ``<size>``; None when absent or written as 0 (unknown)."""
    size = root.find("size")
    if size is None:
        return None, None
    raw = (_text(size, "width"), _text(size, "height"))
    try:
        width, height = (int(float(v)) for v in raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        problems.add(
            source,
            f"<size> is not two integers (width={raw[0]!r}, height={raw[1]!r}); boxes are not checked against the image",
            line_of(size),
        )
        return None, None
    if width <= 0 or height <= 0:
        return None, None
    return width, height


def parse_voc(text: str, *, source: str) -> tuple[ImageLabels, Problems]:
    """One VOC XML file → its record; each bad ``<object>`` is a Problem at its line and skipped.

    An unparseable file, a root that is not ``<annotation>`` or a missing ``<filename>``
    (and ``<path>``) is an InputError naming the source.

    >>> rec, _ = parse_voc("<annotation><filename>a.jpg</filename><object><name>cat</name>"
    ...     "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>5</ymax></bndbox>"
    ...     "</object></annotation>", source="a.xml")
    >>> rec.xyxy.tolist(), rec.class_names
    ([[0.0, 0.0, 10.0, 5.0]], ('cat',))
    """
    root, line_of = _parse_xml(text, source=source)
    if root.tag != "annotation":
        raise InputError(
            f"{source}: not a Pascal VOC annotation (the root element is <{root.tag}>, expected <annotation>)"
        )
    file_name = _text(root, "filename")
    if file_name is None:
        path = _text(root, "path")
        if path is None:
            raise InputError(f"{source}: Pascal VOC annotation has no <filename> (nor <path>)")
        file_name = path.replace("\\", "/").rsplit("/", 1)[-1]
    problems = Problems()
    width, height = _size(root, source, line_of, problems)
    boxes: list[list[float]] = []
    names: list[str] = []
    difficult: list[bool] = []
    truncated: list[bool] = []
    clipped: list[str] = []
    unreadable = 0  # objects that could not be read: the record's boxes are not all the image's objects
    for n, obj in enumerate(root.findall("object"), start=1):
        line = line_of(obj)
        name = _text(obj, "name")
        if name is None:
            problems.add(source, f"<object> #{n} has no <name>", line)
            unreadable += 1
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            problems.add(source, f"<object> #{n} ({name}) has no <bndbox>", line)
            unreadable += 1
            continue
        raw = [_text(bndbox, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        values = [v for v in map(_coord, raw) if v is not None]
        if len(values) != 4:
            shown = ", ".join(
                f"{t}={v!r}" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), raw, strict=True)
            )
            problems.add(
                source, f"<object> #{n} ({name}): <bndbox> needs four numbers, got {shown}", line
            )
            unreadable += 1
            continue
        xmin, ymin, xmax, ymax = values
        x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax
        if x2 <= x1 or y2 <= y1:
            problems.add(
                source,
                f"<object> #{n} ({name}): box has zero or negative size (xmin={xmin:g}, xmax={xmax:g}, ymin={ymin:g}, ymax={ymax:g})",
                line,
            )
            unreadable += 1
            continue
        if width is not None and height is not None:
            inside, past = clip_box((x1, y1, x2, y2), width, height)
            if inside is None:
                problems.add(
                    source,
                    f"<object> #{n} ({name}): box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g} lies outside the {width}x{height} image; left out",
                    line,
                )
                continue
            if past:
                clipped.append(f"{source}:{line}")
            x1, y1, x2, y2 = inside
        else:
            x1, y1 = max(x1, 0.0), max(y1, 0.0)
        boxes.append([x1, y1, x2, y2])
        names.append(name)
        difficult.append(_flag(obj, "difficult"))
        truncated.append(_flag(obj, "truncated"))
    record = ImageLabels(
        file_name=file_name,
        width=width,
        height=height,
        xyxy=np.asarray(boxes, np.float64).reshape(-1, 4),
        class_names=tuple(names),
        line=line_of(root),
        extra={"difficult": difficult, "truncated": truncated, **({"clipped": clipped} if clipped else {}),
               **({"unreadable": unreadable} if unreadable else {})},
    )
    return record, problems


def _decimal(value: float) -> str:
    """Up to 3 decimals, trailing zeros dropped: whole pixels stay integers as VOC tools expect."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def to_voc(record: ImageLabels, *, folder: str = "images") -> str:
    """One record → Pascal VOC XML text (see the module docstring for the coordinates).

    ``extra["difficult"]`` / ``extra["truncated"]`` lists are written when present; scores have
    no place in VOC and are not written. Raises ValueError for a record without a size.
    """
    if record.width is None or record.height is None:
        raise ValueError(f"{record.file_name}: Pascal VOC needs the image width and height")
    n = len(record.xyxy)
    difficult = record.extra.get("difficult")
    truncated = record.extra.get("truncated")
    difficult = [False] * n if difficult is None or len(difficult) != n else difficult
    truncated = [False] * n if truncated is None or len(truncated) != n else truncated
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = record.file_name
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "boxloop"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(int(record.width))
    ET.SubElement(size, "height").text = str(int(record.height))
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for k, ((x1, y1, x2, y2), name) in enumerate(
        zip(record.xyxy.tolist(), record.class_names, strict=True)
    ):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "1" if truncated[k] else "0"
        ET.SubElement(obj, "difficult").text = "1" if difficult[k] else "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(
            ("xmin", "ymin", "xmax", "ymax"), (x1 + 1, y1 + 1, x2, y2), strict=True
        ):
            ET.SubElement(bndbox, tag).text = _decimal(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
