"""Label Studio JSON, pure: parse an export into pixel boxes, build tasks with pre-labels or
annotations, and generate or read a RectangleLabels labeling config.

Label Studio stores a rectangle as percentages of the image as displayed (``x``, ``y``,
``width``, ``height`` in 0..100, top-left corner) plus ``original_width`` /
``original_height`` and a ``rotation`` in degrees, clockwise about the top-left corner.
boxloop keeps axis-aligned pixel ``xyxy``; a rotated rectangle becomes its bounding box,
with a warning.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from ..errors import InputError, Problems
from . import ImageLabels, clip_box

__all__ = [
    "LabelConfig",
    "box_regions",
    "build_task",
    "export_tasks",
    "label_config",
    "newest_annotation",
    "parse_label_config",
    "parse_labelstudio_export",
    "parse_regions",
    "why_text",
]

FROM_NAME = "label"
TO_NAME = "image"
IMAGE_KEY = "image"
WHY_KEY = "why"
ITEM_KEY = "boxloop_item"  # the task data key `boxloop push` sets: the item's id in its workspace
IMPUTED_NOTE = "imputed: the model lost this object here but found it in the neighbouring frames"


@dataclass(frozen=True)
class LabelConfig:
    """What boxloop needs from a project's labeling config: the RectangleLabels control
    (``from_name``), the image it labels (``to_name``), the task data key of that image, and
    the label names in order."""

    from_name: str
    to_name: str
    image_key: str
    labels: tuple[str, ...]


def label_config(classes: Sequence[str], *, with_why: bool = True) -> str:
    """A RectangleLabels config for ``classes``; with ``with_why`` the task's ``why`` text
    (why boxloop picked the image) is shown beside it, in a Header: not an object tag, so the
    image stays the config's one data key and Label Studio accepts direct file uploads."""
    if not classes:
        raise InputError("a labeling config needs at least one class")
    labels = "\n".join(f"    <Label value={quoteattr(str(c))}/>" for c in classes)
    why = (
        '\n    <View style="flex: 0 0 260px; padding-left: 1em">\n'
        '      <Header value="Why this image"/>\n'
        f'      <Header value="${WHY_KEY}" size="5" style="font-weight: normal; white-space: pre-wrap"/>\n'
        "    </View>"
        if with_why
        else ""
    )
    return (
        "<View>\n"
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </RectangleLabels>\n'
        '  <View style="display: flex; align-items: flex-start">\n'
        f'    <View style="flex: 1 1 auto"><Image name="{TO_NAME}" value="${IMAGE_KEY}" zoom="true"/></View>'
        f"{why}\n"
        "  </View>\n"
        "</View>\n"
    )


def parse_label_config(xml: str) -> LabelConfig:
    """The RectangleLabels control of a Label Studio labeling config (the first one)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise InputError(f"the project's labeling config is not valid XML: {e}") from e
    images = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter("Image")}
    for el in root.iter("RectangleLabels"):
        to_name = el.get("toName") or ""
        if to_name not in images:
            raise InputError(f"RectangleLabels {el.get('name')!r} points at {to_name!r}, which is not an Image tag")
        labels = tuple(lab.get("value") or "" for lab in el.iter("Label"))
        return LabelConfig(el.get("name") or "", to_name, images[to_name], labels)
    raise InputError("the project's labeling config has no RectangleLabels tag: boxloop labels boxes")


def _percent_box(xyxy: np.ndarray, width: int, height: int) -> dict[str, float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
    y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
    return {
        "x": 100.0 * x1 / width,
        "y": 100.0 * y1 / height,
        "width": 100.0 * (x2 - x1) / width,
        "height": 100.0 * (y2 - y1) / height,
        "rotation": 0,
    }


def box_regions(
    xyxy: np.ndarray,
    class_names: Sequence[str],
    *,
    width: int,
    height: int,
    scores: np.ndarray | None = None,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
    id_prefix: str = "b",
    notes: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    """Pixel boxes of an image displayed at ``width`` x ``height`` → Label Studio
    rectanglelabels regions (percent of the displayed image; ``score`` per region if given)."""
    if width <= 0 or height <= 0:
        raise InputError(f"image size {width}x{height} is not usable")
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    out = []
    for i, (box, name) in enumerate(zip(xyxy, class_names, strict=True)):
        region: dict[str, Any] = {
            "id": f"{id_prefix}{i}",
            "type": "rectanglelabels",
            "from_name": from_name,
            "to_name": to_name,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {**_percent_box(box, width, height), "rectanglelabels": [str(name)]},
        }
        if scores is not None:
            region["score"] = round(float(scores[i]), 4)
        if notes is not None and notes[i]:
            region["meta"] = {"text": [notes[i]]}
        out.append(region)
    return out


# what a selection's why holds for boxloop itself, never shown as it is
_WHY_INTERNAL = frozenset({"rank", "score", "components", "selector", "suppressed_duplicates", "suppressed_count"})


def why_text(
    why: Mapping[str, Any] | None,
    *,
    score: float | None = None,
    rank: int | None = None,
    names: Sequence[str] = (),
    alpha: Any = None,
    file_names: Mapping[str, str] | None = None,
) -> str:
    """Why boxloop picked an image, in words for the person labeling it: its place in the
    batch (``rank`` counts from 0; shown from 1) and its score, then what each scorer saw and
    how the selector took it, as ``select --explain`` says it, classes by name (``names``).
    ``alpha`` and ``file_names`` as :func:`boxloop.selection.why_lines` takes them."""
    from ..selection import why_lines  # the scorers' words live with the selection

    why = dict(why or {})
    if score is None and isinstance(why.get("score"), (int, float)):
        score = float(why["score"])
    head = ", ".join(([f"#{rank + 1}"] if rank is not None else []) + ([f"score {score:.3f}"] if score is not None else []))
    comps = why.get("components")
    if isinstance(comps, Mapping) and comps and all(
        isinstance(c, Mapping) and {"weight", "score", "percentile"} <= c.keys() for c in comps.values()
    ):
        lines = why_lines({**why, "score": why.get("score", score or 0.0)}, names, alpha=alpha, file_names=file_names,
                          class_ids=False)
        if lines and lines[0].startswith("score "):  # the score once, with its terms
            return "\n".join([f"#{rank + 1}, {lines[0]}" if rank is not None else lines[0], *lines[1:]])
        return "\n".join(([head] if head else []) + lines)
    # a why of plain numbers (a selection made by hand, or by an older boxloop): each by its name
    parts = comps if isinstance(comps, Mapping) else {}
    plain = {**{n: c.get("score") for n, c in parts.items() if isinstance(c, Mapping)}, **why}
    shown = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in plain.items()
             if k not in _WHY_INTERNAL and isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return "; ".join(([head] if head else []) + shown)


def build_task(
    rec: ImageLabels,
    *,
    image: str | None = None,
    as_annotation: bool = False,
    model_version: str | None = None,
    score: float | None = None,
    why: str | None = None,
    data: Mapping[str, Any] | None = None,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
    image_key: str = IMAGE_KEY,
    notes: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """One Label Studio task for an image: ``data.image`` (``image`` or the record's file
    name), its boxes as ``predictions`` (with ``model_version``, a ``score`` per region and a
    task ``score``) or, with ``as_annotation``, as a finished ``annotations`` entry.

    An image with no boxes gets an empty result, never a made-up box."""
    if rec.width is None or rec.height is None:
        raise InputError(f"{rec.file_name}: the image size is needed to place boxes in Label Studio")
    task_data: dict[str, Any] = {image_key: image if image is not None else rec.file_name}
    if why is not None:
        task_data[WHY_KEY] = why
    task_data.update(data or {})
    result = box_regions(
        rec.xyxy,
        rec.class_names,
        width=rec.width,
        height=rec.height,
        scores=None if as_annotation else rec.scores,
        from_name=from_name,
        to_name=to_name,
        notes=notes,
    )
    task: dict[str, Any] = {"data": task_data}
    if as_annotation:
        task["annotations"] = [{"result": result, "was_cancelled": False}]
    else:
        pred: dict[str, Any] = {"result": result}
        if model_version is not None:
            pred["model_version"] = model_version
        if score is not None:
            pred["score"] = float(score)
        task["predictions"] = [pred]
    return task


def export_tasks(
    records: Sequence[ImageLabels], *, human: Sequence[bool], model_version: str | None = None
) -> list[dict[str, Any]]:
    """Tasks for a Label Studio import file: human labels as annotations, the rest as
    predictions of ``model_version`` (a box noted in ``rec.extra["notes"]``, as an imputed
    one is, carries its note)."""
    if len(human) != len(records):
        raise ValueError(f"{len(human)} human flags for {len(records)} records")
    return [
        build_task(rec, as_annotation=h, model_version=None if h else model_version, notes=rec.extra.get("notes"))
        for rec, h in zip(records, human, strict=True)
    ]


def _bbox_of_rotated(x: float, y: float, w: float, h: float, degrees: float) -> tuple[float, float, float, float]:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    xs = (x, x + w * c, x + w * c - h * s, x - h * s)
    ys = (y, y + w * s, y + w * s + h * c, y + h * c)
    return min(xs), min(ys), max(xs), max(ys)


def parse_regions(
    result: Sequence[Mapping[str, Any]],
    *,
    width: int | None = None,
    height: int | None = None,
    from_name: str | None = None,
    known: Sequence[str] | None = None,
    where: str,
    problems: Problems,
) -> tuple[np.ndarray, tuple[str, ...], tuple[int, int] | None]:
    """Rectangle regions of one annotation → (pixel xyxy, class names, (width, height) the
    regions were drawn on).

    Pixels use ``width``/``height`` when given (the image as boxloop knows it), else the
    regions' ``original_width``/``original_height``. A rotated rectangle becomes its
    axis-aligned bounding box (clipped to the image) with a warning; a box with no label, or
    with a label not in ``known``, is reported and left out, as are non-box regions."""
    labels_by_id: dict[str, list[str]] = {}
    for r in result:
        if r.get("type") == "labels" and r.get("id"):
            labels_by_id[str(r["id"])] = list((r.get("value") or {}).get("labels") or [])
    boxes, names = [], []
    drawn_on: tuple[int, int] | None = None
    for r in result:
        kind = r.get("type")
        if kind in ("labels", "choices", "textarea", "rating", "taxonomy", "relation"):
            continue
        rid = r.get("id", "?")
        if kind not in ("rectanglelabels", "rectangle"):
            problems.add(where, f"region {rid}: a {kind} region is not a box; left out")
            continue
        if from_name is not None and r.get("from_name") not in (from_name, None) and kind == "rectanglelabels":
            problems.add(where, f"region {rid}: from control {r.get('from_name')!r}, not {from_name!r}; left out")
            continue
        v = r.get("value") or {}
        try:
            x, y, w, h = (float(v[k]) for k in ("x", "y", "width", "height"))
            rotation = float(v.get("rotation") or 0.0)
        except (KeyError, TypeError, ValueError):
            problems.add(where, f"region {rid}: no usable x, y, width, height in {dict(v)}")
            continue
        ow, oh = r.get("original_width"), r.get("original_height")
        if ow and oh:
            drawn_on = (int(ow), int(oh))
        W, H = (width, height) if width and height else (ow, oh)
        if not W or not H:
            problems.add(where, f"region {rid}: no image size (original_width/original_height) to turn percent into pixels")
            continue
        if width and height and ow and oh and (int(ow), int(oh)) != (int(width), int(height)):
            problems.add(
                where,
                f"region {rid}: drawn on an image of {ow}x{oh}, boxloop knows it as {width}x{height} "
                "(as displayed); percent coordinates were applied to the latter",
            )
        px, py, pw, ph = x / 100 * W, y / 100 * H, w / 100 * W, h / 100 * H
        if abs(rotation % 360) > 1e-6:
            x1, y1, x2, y2 = _bbox_of_rotated(px, py, pw, ph, rotation)
            x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(W), x2), min(float(H), y2)
            problems.add(
                where,
                f"region {rid}: rotated by {rotation:g} degrees; converted to its axis-aligned "
                "bounding box (warning)",
            )
        else:
            x1, y1, x2, y2 = px, py, px + pw, py + ph
        region_labels = list(v.get("rectanglelabels") or labels_by_id.get(str(rid), []))
        if not region_labels:
            problems.add(where, f"region {rid}: a box with no label; left out")
            continue
        if len(region_labels) > 1:
            problems.add(where, f"region {rid}: several labels {region_labels}; the first one, {region_labels[0]!r}, is kept")
        name = str(region_labels[0])
        if known is not None and name not in known:
            problems.add(where, f"region {rid}: unknown label {name!r}; left out (known: {', '.join(known)})")
            continue
        if x2 <= x1 or y2 <= y1:
            problems.add(where, f"region {rid}: an empty box ({w:g}% x {h:g}%); left out")
            continue
        boxes.append((x1, y1, x2, y2))
        names.append(name)
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    return xyxy, tuple(names), drawn_on


def _when(a: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(a.get("updated_at") or ""), str(a.get("created_at") or ""), int(a.get("id") or 0))


def newest_annotation(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The newest (by update time, then creation, then id) annotation of a task that was not
    cancelled (skipped); None when there is none."""
    anns = [a for a in (task.get("annotations") or task.get("completions") or []) if not a.get("was_cancelled")]
    return max(anns, key=_when) if anns else None


def parse_labelstudio_export(
    obj: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    source: str,
    classes: Sequence[str] | None = None,
) -> tuple[list[ImageLabels], Problems]:
    """A Label Studio JSON export → one record per annotated task (its newest non-cancelled
    annotation, in pixels), and the problems met. Tasks with no annotation are not labels
    and give no record; ``file_name`` is the task's image reference (``data.image``, or the
    first data value when there is no ``image`` key), and ``extra["item_id"]`` the item a task
    `boxloop push` made names (``data.boxloop_item``)."""
    problems = Problems()
    if isinstance(obj, Mapping):
        obj = [obj]
    if not isinstance(obj, Sequence) or isinstance(obj, (str, bytes)):
        raise InputError(f"{source}: a Label Studio export is a JSON list of tasks, got {type(obj).__name__}")
    records: list[ImageLabels] = []
    for index, task in enumerate(obj):
        if not isinstance(task, Mapping):
            problems.add(source, f"task #{index}: not a JSON object; skipped")
            continue
        data = task.get("data") or {}
        ref = data.get(IMAGE_KEY) if isinstance(data, Mapping) else None
        if ref is None and isinstance(data, Mapping):
            ref = next((v for v in data.values() if isinstance(v, str)), None)
        tid = task.get("id", f"#{index}")
        if not ref:
            problems.add(source, f"task {tid}: no image reference in data; skipped")
            continue
        ann = newest_annotation(task)
        if ann is None:
            continue
        where = f"{source}: task {tid} ({ref})"
        xyxy, names, drawn_on = parse_regions(
            ann.get("result") or [], known=classes, where=where, problems=problems
        )
        clipped: list[str] = []
        if drawn_on:
            xyxy, names, past = _inside(xyxy, names, drawn_on, where, problems)
            clipped = [f"{source}: task {tid}"] * past
        records.append(
            ImageLabels(
                file_name=str(ref),
                width=drawn_on[0] if drawn_on else None,
                height=drawn_on[1] if drawn_on else None,
                xyxy=xyxy,
                class_names=names,
                extra={"task_id": task.get("id"), "annotation_id": ann.get("id"),
                       **({"item_id": data[ITEM_KEY]} if isinstance(data.get(ITEM_KEY), str) else {}),
                       **({"clipped": clipped} if clipped else {})},
            )
        )
    return records, problems


def _inside(
    xyxy: np.ndarray, names: tuple[str, ...], size: tuple[int, int], where: str, problems: Problems
) -> tuple[np.ndarray, tuple[str, ...], int]:
    """An annotation's boxes clipped to the image they were drawn on (as Ultralytics clips
    them), and how many reached past it; a box wholly outside it is a Problem and left out."""
    boxes, kept, past = [], [], 0
    for box, name in zip(xyxy.tolist(), names, strict=True):
        inside, beyond = clip_box(box, *size)
        if inside is None:
            problems.add(where, f"a {name!r} box {[round(v, 1) for v in box]} lies outside the {size[0]}x{size[1]} image; left out")
            continue
        boxes.append(inside)
        kept.append(name)
        past += beyond
    return np.asarray(boxes, np.float32).reshape(-1, 4), tuple(kept), past
