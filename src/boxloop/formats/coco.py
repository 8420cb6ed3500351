"""COCO object detection JSON (``images``, ``annotations``, ``categories``; bbox ``[x, y, w, h]``
in pixels) and the COCO results list (``image_id, category_id, bbox, score``).

Crowd regions (``iscrowd: 1``) are not objects a detector should learn to box one by one:
they are kept out of the boxes and carried in ``ImageLabels.extra["crowd_xyxy"]`` and
``extra["crowd_class_names"]``, so an evaluation can treat them as ignore regions, as COCO's own
evaluation does. They are valid input, so they are logged (count per file), not Problems.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError, Problems
from . import ImageLabels, clip_box

__all__ = ["parse_coco", "parse_coco_results", "to_coco"]

log = logging.getLogger(__name__)

def _where(section: str, index: int, record: Mapping[str, Any]) -> str:
    ident = record.get("id")
    return f"{section}[{index}]" + (f" (id {ident!r})" if ident is not None else "")


def _number(value: Any) -> float | None:
    """A finite real number, or None (booleans and numeric strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _whole(value: Any) -> int | None:
    """A whole number (``640`` or ``640.0``), or None."""
    v = _number(value)
    return int(v) if v is not None and v == int(v) else None


def _hashable_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _xywh(bbox: Any) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """``[x, y, w, h]`` as four finite numbers with a positive size, or the reason it is not."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None, f"bbox must be a list of 4 numbers [x, y, w, h], got {bbox!r}"
    values = [v for v in map(_number, bbox) if v is not None]
    if len(values) != 4:
        return None, f"bbox has a value that is not a finite number: {bbox!r}"
    x, y, w, h = values
    if w <= 0 or h <= 0:
        return None, f"bbox has zero or negative size (w={w:g}, h={h:g})"
    return (x, y, w, h), None


def _fit(
    xyxy: tuple[float, float, float, float], width: int | None, height: int | None
) -> tuple[list[float] | None, bool, str | None]:
    """A box clipped to the image (as Ultralytics clips it), whether it reached past it by
    more than rounding, or the reason it is left out: nothing of it inside the image."""
    if width is None or height is None:
        return list(xyxy), False, None
    inside, past = clip_box(xyxy, width, height)
    if inside is None:
        x1, y1, x2, y2 = xyxy
        return None, past, f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] (xyxy) lies outside the {width}x{height} image; left out"
    return inside, past, None


def _require_list(obj: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise InputError(
            f"{source}: not COCO detection labels: {key!r} is {found}, expected a list"
        )
    return value


def parse_coco(
    obj: Mapping[str, Any], *, source: str
) -> tuple[list[ImageLabels], list[str], Problems]:
    """COCO JSON → one record per image (an image with no annotations is labeled empty), the
    category names ordered by category id, and the Problems of skipped records. A record
    whose image has annotations that could not be read carries their number in
    ``extra["unreadable"]``: its boxes are not all its objects.

    A file with no ``annotations`` list is refused (InputError): that is an image list, and
    reading it as "every image labeled empty" would lose the pool. When any annotation has a
    ``score`` the file is read as predictions and every record carries ``scores``.

    >>> recs, names, _ = parse_coco({"images": [{"id": 1, "file_name": "a.jpg", "width": 9,
    ...     "height": 9}], "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}],
    ...     "categories": [{"id": 3, "name": "cat"}]}, source="a.json")
    >>> recs[0].xyxy.tolist(), recs[0].class_names, names
    ([[1.0, 2.0, 4.0, 6.0]], ('cat',), ['cat'])
    """
    if not isinstance(obj, Mapping):
        raise InputError(
            f"{source}: not COCO labels: the top level is a {type(obj).__name__}, expected an object"
        )
    images = _require_list(obj, "images", source)
    annotations = _require_list(obj, "annotations", source)
    categories = _require_list(obj, "categories", source)
    problems = Problems()

    names_by_id: dict[int, str] = {}
    for i, cat in enumerate(categories):
        if not isinstance(cat, Mapping):
            problems.add(source, f"categories[{i}]: expected an object, got {cat!r}")
            continue
        cid, name = cat.get("id"), cat.get("name")
        if not isinstance(cid, int) or isinstance(cid, bool):
            problems.add(
                source,
                f"{_where('categories', i, cat)}: category id must be an integer, got {cid!r}",
            )
            continue
        if not isinstance(name, str) or not name.strip():
            problems.add(source, f"{_where('categories', i, cat)}: category has no name")
            continue
        if cid in names_by_id:
            problems.add(
                source,
                f"{_where('categories', i, cat)}: duplicate category id (first: {names_by_id[cid]!r})",
            )
            continue
        names_by_id[cid] = name.strip()
    class_names = list(dict.fromkeys(names_by_id[c] for c in sorted(names_by_id)))

    image_order: list[Any] = []
    image_info: dict[Any, tuple[str, int | None, int | None]] = {}
    for i, img in enumerate(images):
        if not isinstance(img, Mapping):
            problems.add(source, f"images[{i}]: expected an object, got {img!r}")
            continue
        iid, file_name = img.get("id"), img.get("file_name")
        where = _where("images", i, img)
        if not _hashable_id(iid):
            problems.add(source, f"{where}: image id must be an integer or a string, got {iid!r}")
            continue
        if iid in image_info:
            problems.add(source, f"{where}: duplicate image id (first: {image_info[iid][0]!r})")
            continue
        if not isinstance(file_name, str) or not file_name:
            problems.add(source, f"{where}: image has no file_name")
            continue
        size = [img.get("width"), img.get("height")]
        if all(v is None for v in size):
            width = height = None
        else:
            width, height = (_whole(v) for v in size)
            if width is None or height is None or width <= 0 or height <= 0:
                problems.add(
                    source,
                    f"{where}: width/height must be positive integers, got {size[0]!r}x{size[1]!r}",
                )
                continue
        image_order.append(iid)
        image_info[iid] = (file_name, width, height)

    scored = any(isinstance(a, Mapping) and "score" in a for a in annotations)
    boxes: dict[Any, list[list[float]]] = {iid: [] for iid in image_order}
    names: dict[Any, list[str]] = {iid: [] for iid in image_order}
    scores: dict[Any, list[float]] = {iid: [] for iid in image_order}
    crowd: dict[Any, list[tuple[list[float], str]]] = {}
    clipped: dict[Any, list[str]] = {}
    unreadable: dict[Any, int] = {}  # image id → its annotations that could not be read: its labels would lack them
    for i, ann in enumerate(annotations):
        if not isinstance(ann, Mapping):
            problems.add(source, f"annotations[{i}]: expected an object, got {ann!r}")
            continue
        where = _where("annotations", i, ann)
        iid, cid = ann.get("image_id"), ann.get("category_id")
        if not _hashable_id(iid) or iid not in image_info:
            problems.add(source, f"{where}: refers to unknown image_id {iid!r}")
            continue
        if not _hashable_id(cid) or cid not in names_by_id:
            problems.add(source, f"{where}: refers to unknown category_id {cid!r}")
            unreadable[iid] = unreadable.get(iid, 0) + 1
            continue
        xywh, reason = _xywh(ann.get("bbox"))
        if xywh is None:
            problems.add(source, f"{where}: {reason}")
            unreadable[iid] = unreadable.get(iid, 0) + 1
            continue
        x, y, w, h = xywh
        _, width, height = image_info[iid]
        xyxy, past, reason = _fit((x, y, x + w, y + h), width, height)
        if xyxy is None:
            problems.add(source, f"{where}: {reason}")
            continue
        if past:
            clipped.setdefault(iid, []).append(f"{source}: {where}")
        if ann.get("iscrowd") in (1, True):
            crowd.setdefault(iid, []).append((xyxy, names_by_id[cid]))
            continue
        if scored:
            score = _number(ann.get("score"))
            if score is None:
                problems.add(
                    source,
                    f"{where}: score must be a finite number in a file of predictions, got {ann.get('score')!r}",
                )
                unreadable[iid] = unreadable.get(iid, 0) + 1
                continue
            scores[iid].append(score)
        boxes[iid].append(xyxy)
        names[iid].append(names_by_id[cid])

    if crowd:
        log.info(
            "%s: %d crowd region(s) kept apart as ignore regions",
            source,
            sum(map(len, crowd.values())),
        )
    records = []
    for iid in image_order:
        file_name, width, height = image_info[iid]
        extra: dict[str, Any] = {"image_id": iid}
        if iid in crowd:
            extra["crowd_xyxy"] = np.asarray([b for b, _ in crowd[iid]], np.float32).reshape(-1, 4)
            extra["crowd_class_names"] = tuple(n for _, n in crowd[iid])
        if iid in clipped:
            extra["clipped"] = clipped[iid]
        if iid in unreadable:
            extra["unreadable"] = unreadable[iid]
        records.append(
            ImageLabels(
                file_name=file_name,
                width=width,
                height=height,
                xyxy=np.asarray(boxes[iid], np.float64).reshape(-1, 4),
                class_names=tuple(names[iid]),
                scores=np.asarray(scores[iid], np.float32) if scored else None,
                extra=extra,
            )
        )
    return records, class_names, problems


def _short(value: float) -> float:
    """The shortest decimal that reads back as the same float32, so files stay readable."""
    return float(np.format_float_positional(np.float32(value), trim="-", unique=True))


def to_coco(
    records: Sequence[ImageLabels], classes: Sequence[str], *, info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Records → COCO JSON: category id = class index + 1, image ids 1.., bbox ``[x, y, w, h]``,
    ``area`` = w*h, ``iscrowd`` 0, and ``score`` on annotations of records that carry scores.

    Raises ValueError for a record without a size or with a class not in ``classes``.
    """
    category_of = {name: i + 1 for i, name in enumerate(classes)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, rec in enumerate(records, start=1):
        if rec.width is None or rec.height is None:
            raise ValueError(f"{rec.file_name}: COCO needs the image width and height")
        images.append(
            {
                "id": image_id,
                "file_name": rec.file_name,
                "width": int(rec.width),
                "height": int(rec.height),
            }
        )
        for k, (box, name) in enumerate(zip(rec.xyxy.tolist(), rec.class_names, strict=True)):
            if name not in category_of:
                raise ValueError(
                    f"{rec.file_name}: class {name!r} is not in the class list {list(classes)}"
                )
            x1, y1, x2, y2 = box
            w, h = round(x2 - x1, 6), round(y2 - y1, 6)
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_of[name],
                "bbox": [_short(x1), _short(y1), w, h],
                "area": round(w * h, 6),
                "iscrowd": 0,
                "segmentation": [],
            }
            if rec.scores is not None:
                ann["score"] = round(float(rec.scores[k]), 6)
            annotations.append(ann)
    return {
        "info": dict(info) if info is not None else {"description": "exported by boxloop"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(classes)
        ],
    }


def parse_coco_results(
    obj: Sequence[Mapping[str, Any]], *, source: str
) -> tuple[dict[Any, list[tuple[list[float], int, float]]], Problems]:
    """COCO results list → {image_id: [(xyxy, category_id, score), ...]} in file order.

    Image and category ids are the file's own: map them through the ground truth's
    ``images`` and ``categories``. Boxes are not checked against an image size (none is given).
    """
    if not isinstance(obj, list):
        raise InputError(
            f"{source}: not COCO results: the top level is a {type(obj).__name__}, "
            "expected a list of {image_id, category_id, bbox, score}"
        )
    problems = Problems()
    results: dict[Any, list[tuple[list[float], int, float]]] = {}
    for i, det in enumerate(obj):
        if not isinstance(det, Mapping):
            problems.add(source, f"[{i}]: expected an object, got {det!r}")
            continue
        iid, cid = det.get("image_id"), _whole(det.get("category_id"))
        if not _hashable_id(iid):
            problems.add(source, f"[{i}]: image_id must be an integer or a string, got {iid!r}")
            continue
        if cid is None:
            problems.add(
                source, f"[{i}]: category_id must be an integer, got {det.get('category_id')!r}"
            )
            continue
        xywh, reason = _xywh(det.get("bbox"))
        if xywh is None:
            problems.add(source, f"[{i}]: {reason}")
            continue
        score = _number(det.get("score"))
        if score is None:
            problems.add(source, f"[{i}]: score must be a finite number, got {det.get('score')!r}")
            continue
        x, y, w, h = xywh
        results.setdefault(iid, []).append(([x, y, x + w, y + h], cid, score))
    return results, problems
