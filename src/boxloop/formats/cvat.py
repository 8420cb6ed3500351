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
from . import ImageLabels, clip_box
from .voc import _parse_xml

__all__ = ["is_cvat_video", "parse_cvat_images", "parse_cvat_video", "to_cvat_images"]

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


def _checked_box(
    box: ET.Element, name: str, width: int, height: int, declared: Sequence[str] | None, source: str,
    bline: int | None, problems: Problems, unreadable: list[int] | None = None,
) -> tuple[list[float], str, bool] | None:
    """A ``<box>`` of an image (or a video frame) ``name`` as pixel xyxy clipped to the image,
    its label, and whether it reached past the image (clipped, as Ultralytics clips it); or
    None with the Problem said: no label, a label not declared, coordinates that are not
    numbers, of zero size or wholly outside the image. A rotated box becomes its bounding box
    (a Problem says so). A box that cannot be read (not one left out for lying outside the
    image) adds one to ``unreadable[0]``."""
    unread = unreadable if unreadable is not None else [0]
    label = (box.get("label") or "").strip()
    if not label:
        problems.add(source, f"<box> in {name} has no label", bline)
        unread[0] += 1
        return None
    if declared is not None and label not in declared:
        problems.add(source, f"<box> in {name}: label {label!r} is not among the labels in <meta> {declared}", bline)
        unread[0] += 1
        return None
    raw = [box.get(k) for k in ("xtl", "ytl", "xbr", "ybr")]
    values = [v for v in map(_number, raw) if v is not None]
    if len(values) != 4:
        problems.add(source, f"<box> in {name}: xtl, ytl, xbr, ybr must be numbers, got {raw}", bline)
        unread[0] += 1
        return None
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        problems.add(
            source, f"<box> in {name}: zero or negative size (xtl={x1:g}, ytl={y1:g}, xbr={x2:g}, ybr={y2:g})", bline
        )
        unread[0] += 1
        return None
    rotation = _number(box.get("rotation", "0"))
    if rotation is None:
        problems.add(source, f"<box> in {name}: rotation {box.get('rotation')!r} is not a number", bline)
        unread[0] += 1
        return None
    rotated = rotation % 180 != 0
    corners = _unrotated(x1, y1, x2, y2, rotation) if rotated else [x1, y1, x2, y2]
    inside, past = clip_box(corners, width, height)  # a rotated box's corners may leave the image: expected
    if inside is None:
        what = "the rotated box" if rotated else f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
        problems.add(source, f"<box> in {name}: {what} lies outside the {width}x{height} image; left out", bline)
        return None
    if rotated:
        problems.add(
            source,
            f"<box> in {name}: rotated by {rotation:g}°, converted to its axis-aligned bounding box (clipped to the image)",
            bline,
        )
    return inside, label, not rotated and past


def parse_cvat_images(text: str, *, source: str) -> tuple[list[ImageLabels], list[str], Problems]:
    """CVAT for images 1.1 XML → one record per ``<image>``, the label names, and Problems.

    Label names come from ``<meta><task|project|job><labels>``, or from the boxes in order of
    first use when there is no meta. A box whose label is not declared in the meta, whose
    coordinates are not numbers, of zero size or wholly outside the image is a Problem at its line
    and skipped; one that reaches past the image is clipped to it (``extra["clipped"]`` says where). An unparseable file, a root other than ``<annotations>``, or a CVAT *for video*
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
            f"{source}: this is CVAT for video (<track> elements, no <image>): parse_cvat_video reads it"
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
        clipped: list[str] = []
        unreadable = [0]
        for box in img.findall("box"):
            checked = _checked_box(box, name, width, height, declared, source, line_of(box), problems, unreadable)
            if checked is None:
                continue
            xyxy, label, past = checked
            if past:
                clipped.append(f"{source}:{line_of(box)}")
            boxes.append(xyxy)
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
        if clipped:
            extra["clipped"] = clipped
        if unreadable[0]:
            extra["unreadable"] = unreadable[0]
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


def is_cvat_video(text: str) -> bool:
    """Whether CVAT XML is the *for video* kind: ``<track>`` elements and no ``<image>``."""
    head = text[:1_000_000]
    return "<track" in head and "<image " not in head and "<image>" not in head


def parse_cvat_video(
    text: str, *, source: str, video: str | None = None
) -> tuple[list[ImageLabels], list[str], Problems]:
    """CVAT for video 1.1 XML → one record per frame holding a box, the label names, Problems.

    Each ``<track>`` lists its box per frame (CVAT exports every frame of a track, its
    interpolated ones too; frames between two listed ones are interpolated linearly here, as
    CVAT does, where a file lists keyframes only); ``outside="1"`` ends it. Frame numbers are
    the video's own (CVAT exports absolute frame ids, whatever the task's start and step), so
    a record's ``file_name`` is ``<video>#frame=<n>``: the video file name is ``video`` if
    given, else ``<meta><source>``. Boxes are checked as in :func:`parse_cvat_images`, against
    ``<original_size>``.

    >>> recs, names, _ = parse_cvat_video('<annotations><meta><source>a.mp4</source><task><original_size>'
    ...     '<width>9</width><height>9</height></original_size></task></meta><track id="0" label="cat">'
    ...     '<box frame="3" outside="0" xtl="1" ytl="1" xbr="3" ybr="3"/><box frame="5" outside="0" xtl="3" ytl="1" '
    ...     'xbr="5" ybr="3"/><box frame="6" outside="1" xtl="3" ytl="1" xbr="5" ybr="3"/></track></annotations>',
    ...     source="a.xml")
    >>> [(r.file_name, r.xyxy.tolist()) for r in recs]
    [('a.mp4#frame=3', [[1.0, 1.0, 3.0, 3.0]]), ('a.mp4#frame=4', [[2.0, 1.0, 4.0, 3.0]]), ('a.mp4#frame=5', [[3.0, 1.0, 5.0, 3.0]])]
    """
    root, line_of = _parse_xml(text, source=source)
    if root.tag != "annotations":
        raise InputError(f"{source}: not CVAT XML (the root element is <{root.tag}>, expected <annotations>)")
    video = video or (_child_text(root, "meta/source") or _child_text(root, "meta/task/source") or "").strip()
    if not video:
        raise InputError(f"{source}: CVAT for video names no video (<meta><source>); name it (--images VIDEO)")
    width = _size(_child_text(root, "meta/task/original_size/width") or _child_text(root, "meta/job/original_size/width"))
    height = _size(_child_text(root, "meta/task/original_size/height") or _child_text(root, "meta/job/original_size/height"))
    if width is None or height is None:
        raise InputError(f"{source}: CVAT for video without <original_size> (the frame width and height)")
    declared = _meta_labels(root)
    seen: dict[str, None] = {}
    problems = Problems()
    frames: dict[int, tuple[list[list[float]], list[str], list[bool], int | None]] = {}
    clipped: dict[int, list[str]] = {}  # frame -> where its keyframe boxes that reached past the frame are
    for track in root.findall("track"):
        shapes = []  # (frame, xyxy or None when outside, label, occluded, line)
        for box in track.findall("box"):
            frame = _number(box.get("frame"))
            if frame is None or frame < 0 or frame != int(frame):
                problems.add(source, f"<box> of track {track.get('id')!r}: frame {box.get('frame')!r} is not a frame number",
                             line_of(box))
                continue
            name = f"{video}#frame={int(frame)}"
            if box.get("outside", "0").strip() in ("1", "true"):
                shapes.append((int(frame), None, "", False, line_of(box)))
                continue
            labeled = ET.Element("box", {**box.attrib, "label": box.get("label") or track.get("label") or ""})
            checked = _checked_box(labeled, name, width, height, declared, source, line_of(box), problems)
            if checked is not None and checked[2]:
                clipped.setdefault(int(frame), []).append(f"{source}:{line_of(box)}")
            if checked is not None:
                shapes.append((int(frame), checked[0], checked[1], box.get("occluded", "0").strip() in ("1", "true"),
                               line_of(box)))
        shapes.sort(key=lambda s: s[0])
        for (f0, b0, label, occ, line), nxt in zip(shapes, [*shapes[1:], None], strict=True):
            if b0 is None:
                continue
            steps = [(f0, b0)]
            if nxt is not None and nxt[1] is not None and nxt[2] == label and nxt[0] > f0 + 1:
                for f in range(f0 + 1, nxt[0]):  # between keyframes: CVAT's linear interpolation
                    t = (f - f0) / (nxt[0] - f0)
                    steps.append((f, [a + t * (b - a) for a, b in zip(b0, nxt[1], strict=True)]))
            for f, xyxy in steps:
                boxes, names, occluded, _ = frames.setdefault(f, ([], [], [], line))
                boxes.append(xyxy)
                names.append(label)
                occluded.append(occ)
            seen.setdefault(label)
        others = sum(len(track.findall(tag)) for tag in NOT_BOXES)
        if others:
            problems.add(source, f"<track id={track.get('id')!r}>: {others} shape(s) that are not boxes skipped",
                         line_of(track))
    records = [
        ImageLabels(
            file_name=f"{video}#frame={f}", width=width, height=height,
            xyxy=np.asarray(boxes, np.float64).reshape(-1, 4), class_names=tuple(names), line=line,
            extra={"frame": f, "video": video, "occluded": occluded, **({"clipped": clipped[f]} if f in clipped else {})},
        )
        for f, (boxes, names, occluded, line) in sorted(frames.items())
    ]
    return records, (declared if declared is not None else list(seen)), problems


def _coord(value: float) -> str:
    """The shortest decimal that reads back as the same float32 (exact round trip)."""
    return np.format_float_positional(np.float32(value), trim="-", unique=True)


def to_cvat_images(records: Sequence[ImageLabels], classes: Sequence[str]) -> str:
    """Records → CVAT for images 1.1 XML that CVAT imports into a task with these labels.

    Image ids are 0.. in record order. ``extra["occluded"]`` and ``extra["subset"]`` (CVAT's
    Train / Validation / Test) are written when present; scores
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
                **({"subset": str(rec.extra["subset"])} if rec.extra.get("subset") else {}),
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
