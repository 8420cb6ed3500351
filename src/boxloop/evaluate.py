"""COCO-style detection metrics (mAP@0.5, mAP@0.5:0.95, per-class AP) computed with
pycocotools, plus precision and recall at a working confidence threshold.

Plain functions over {item id: Detections}; modeling.py runs them on the frozen test split.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .types import Detections

__all__ = [
    "STEADY_BOXES", "WORKING_CONF", "box_iou", "coco_metrics", "few_boxes_note", "listed_classes", "precision_recall",
    "size_advice", "unlisted_classes_line",
]

log = logging.getLogger(__name__)
WORKING_CONF = 0.25  # the threshold a person would see pre-labels at
MAX_DETS = 300  # boxes per image counted by mAP (Ultralytics' max_det)
STEADY_BOXES = 50  # labeled boxes below which one box found or missed moves mAP by points
# COCO's object sizes by area (pycocotools' areaRng after "all"): small < 32², medium < 96²
_SIZES = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, 1e10))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def precision_recall(
    gt: Mapping[str, Detections], pred: Mapping[str, Detections], *, conf: float = WORKING_CONF, iou: float = 0.5
) -> dict[str, float | int]:
    """Precision and recall of the boxes at or above ``conf``: greedy matching, best
    confidence first, to an unmatched label of the same class with IoU ≥ ``iou``."""
    tp = fp = n_gt = 0
    for item_id, labels in gt.items():
        n_gt += len(labels)
        p = pred.get(item_id)
        if p is None or not len(p):
            continue
        if p.confidence is None:
            raise InputError(f"predictions of item {item_id} have no confidence")
        p = p[p.confidence >= conf]
        p = p[np.argsort(-p.confidence, kind="stable")]  # type: ignore[operator]
        ious = box_iou(p.xyxy, labels.xyxy)
        taken = np.zeros(len(labels), bool)
        for i in range(len(p)):
            cand = (labels.class_id == p.class_id[i]) & ~taken & (ious[i] >= iou)
            if cand.any():
                j = int(np.argmax(np.where(cand, ious[i], -1.0)))
                taken[j] = True
                tp += 1
            else:
                fp += 1
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / n_gt if n_gt else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": n_gt - tp,
    }


def _coco(images: list[dict], anns: list[dict], n_classes: int):  # type: ignore[no-untyped-def]
    from pycocotools.coco import COCO

    c = COCO()
    c.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def _annotations(
    boxes: Mapping[str, Detections], image_ids: Mapping[str, int], *, scores: bool,
    scale: Mapping[str, float] | None = None,
) -> list[dict]:
    """COCO annotations; ``area`` (what the size buckets go by) in pixels times ``scale``
    squared (the network input's pixels per image pixel) where a scale is given."""
    anns: list[dict] = []
    for item_id, d in boxes.items():
        if item_id not in image_ids:
            continue
        xywh = np.concatenate([d.xyxy[:, :2], d.xyxy[:, 2:] - d.xyxy[:, :2]], axis=1).astype(float)
        s2 = (scale or {}).get(item_id, 1.0) ** 2
        for k in range(len(d)):
            ann: dict[str, Any] = {
                "id": len(anns) + 1,  # pycocotools treats id 0 as "unmatched": start at 1
                "image_id": image_ids[item_id],
                "category_id": int(d.class_id[k]) + 1,
                "bbox": xywh[k].tolist(),
                "area": float(xywh[k, 2] * xywh[k, 3] * s2),
                "iscrowd": 0,
            }
            if scores:
                ann["score"] = float(d.confidence[k]) if d.confidence is not None else 1.0
            anns.append(ann)
    return anns


def coco_metrics(
    gt: Mapping[str, Detections],
    pred: Mapping[str, Detections],
    *,
    classes: Sequence[str],
    sizes: Mapping[str, tuple[int, int]] | None = None,
    conf: float = WORKING_CONF,
    max_dets: int = MAX_DETS,
    input_side: int | None = None,
) -> dict[str, Any]:
    """mAP@0.5, mAP@0.5:0.95 (mean over classes that have labels), per-class AP, and
    precision/recall at ``conf``, for labels ``gt`` and predictions ``pred`` keyed by item id.
    Items in ``gt`` without a prediction count as predicted empty; ``sizes`` are (w, h).

    ``by_size``: mAP50-95 and label count of small (< 32 px a side), medium (< 96) and large
    boxes, COCO's buckets, measured as the network sees them where ``input_side`` (the long
    side an image is resized to, imgsz) and ``sizes`` are given, else in image pixels.

    >>> box = Detections(np.array([[0, 0, 10, 10]]), np.array([0]), np.array([0.9]))
    >>> coco_metrics({"a": box}, {"a": box}, classes=["x"])["map50"]
    1.0
    """
    if not gt:
        raise InputError("nothing to evaluate: no labeled images in the split")
    for item_id, d in pred.items():
        if d.confidence is None:
            raise InputError(f"predictions of item {item_id} have no confidence")
    ids = {item_id: i + 1 for i, item_id in enumerate(gt)}
    images = []
    for item_id, i in ids.items():
        if sizes and item_id in sizes:
            w, h = sizes[item_id]
        else:
            boxes = gt[item_id].xyxy
            w = int(np.ceil(boxes[:, 2].max())) + 1 if len(boxes) else 1
            h = int(np.ceil(boxes[:, 3].max())) + 1 if len(boxes) else 1
        images.append({"id": i, "width": int(w), "height": int(h)})
    n_classes = len(classes)
    scale = (
        {item_id: input_side / max(w, h) for item_id, (w, h) in sizes.items() if max(w, h) > 0}
        if input_side and sizes else None
    )
    gt_anns = _annotations(gt, ids, scores=False, scale=scale)
    gt_coco = _coco(images, gt_anns, n_classes)
    dt_coco = _coco(images, _annotations(pred, ids, scores=True, scale=scale), n_classes)

    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(gt_coco, dt_coco, "bbox")
    ev.params.maxDets = [1, 10, int(max_dets)]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, classes, areas, maxDets]
    n_gt = np.bincount(
        np.concatenate([d.class_id for d in gt.values()] or [np.zeros(0, np.int64)]), minlength=n_classes
    )
    ap50: dict[str, float | None] = {}
    ap: dict[str, float | None] = {}
    for k, name in enumerate(classes):
        if n_gt[k] == 0:
            ap50[name] = ap[name] = None
            continue
        p = precision[:, :, k, 0, -1]  # all areas, most detections
        per_iou = [float(np.mean(row[row > -1])) if (row > -1).any() else 0.0 for row in p]
        ap50[name] = per_iou[0]
        ap[name] = float(np.mean(per_iou))
    present = [c for c in classes if ap[c] is not None]
    areas = np.array([a["area"] for a in gt_anns])
    by_size: dict[str, dict[str, Any]] = {}
    for a, (name, lo, hi) in enumerate(_SIZES, start=1):  # pycocotools' area ranges 1-3
        p = precision[:, :, :, a, -1]
        n = int(((areas >= lo) & (areas <= hi)).sum())  # bounds inclusive, as pycocotools
        by_size[name] = {"map50_95": float(np.mean(p[p > -1])) if n and (p > -1).any() else None, "labels": n}
    pr = precision_recall(gt, pred, conf=conf)
    n_pred = _predicted_per_class([pred[i] for i in gt if i in pred], conf, n_classes)
    return {
        "map50": float(np.mean([ap50[c] for c in present])) if present else 0.0,
        "map50_95": float(np.mean([ap[c] for c in present])) if present else 0.0,
        "per_class_ap": {c: ap[c] for c in classes},
        "per_class_ap50": {c: ap50[c] for c in classes},
        "per_class_labels": {c: int(n_gt[k]) for k, c in enumerate(classes)},
        "per_class_predictions": {c: int(n_pred[k]) for k, c in enumerate(classes)},  # at ``conf``
        "by_size": by_size,
        "size_unit": f"network input pixels (long side {input_side})" if scale else "image pixels",
        "conf": float(conf),
        "precision": float(pr["precision"]),
        "recall": float(pr["recall"]),
        "tp": int(pr["tp"]),
        "fp": int(pr["fp"]),
        "fn": int(pr["fn"]),
        "images": len(gt),
        "labels": int(n_gt.sum()),
        "predictions": int(sum(len(pred[i]) for i in gt if i in pred)),
        "implementation": "pycocotools",
    }


def _predicted_per_class(preds: Sequence[Detections], conf: float, n_classes: int) -> np.ndarray:
    """Boxes predicted at or above ``conf``, per class."""
    ids = [d.class_id[d.confidence >= conf] for d in preds if d.confidence is not None and len(d)]
    return np.bincount(np.concatenate(ids or [np.zeros(0, np.int64)]).astype(np.int64), minlength=n_classes)[:n_classes]


def listed_classes(metrics: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """An evaluation's classes split in two: those worth a row (a box in the split, or one
    predicted there at the working threshold) and the rest, which have no AP to show."""
    labels = metrics["per_class_labels"]
    predicted = metrics.get("per_class_predictions") or {}
    shown = [c for c in labels if labels[c] or predicted.get(c)]
    return shown, [c for c in labels if c not in shown]


def unlisted_classes_line(names: Sequence[str], split: str, conf: float, limit: int = 12) -> str | None:
    """The classes left out of an evaluation's table, in one line (the first ``limit`` named)."""
    if not names:
        return None
    shown = ", ".join(names[:limit]) + (f", ... and {len(names) - limit} more" if len(names) > limit else "")
    what = "class" if len(names) == 1 else "classes"
    return f"{len(names)} {what} with no box in the {split} split, none predicted at conf {conf:g}: {shown}"


def few_boxes_note(metrics: Mapping[str, Any]) -> str | None:
    """A warning where the split is too small for a steady mAP (under ``STEADY_BOXES`` boxes)."""
    if metrics["labels"] >= STEADY_BOXES:
        return None
    return (
        f"mAP is measured on {metrics['images']} images / {metrics['labels']} boxes here: under {STEADY_BOXES} "
        "boxes it is noisy (one box found or missed moves it a lot); compare model versions on it with care"
    )


def size_advice(metrics: Mapping[str, Any]) -> str | None:
    """What to try when small boxes are a good share of the labels and score far below the
    rest: a larger network input, where the boxes were measured at it."""
    sizes = metrics.get("by_size") or {}
    small = sizes.get("small") or {}
    total = sum(v["labels"] for v in sizes.values())
    others = [v["map50_95"] for k, v in sizes.items() if k != "small" and v["map50_95"] is not None]
    if not total or small.get("map50_95") is None or not others or small["labels"] < 0.2 * total:
        return None
    if max(others) <= 0 or small["map50_95"] >= 0.5 * max(others):
        return None  # a model that finds nothing yet says nothing about sizes
    where = "at the network input" if "network input" in str(metrics.get("size_unit")) else "in the images"
    return (
        f"{small['labels']} of {total} boxes are under 32 px a side {where} and score "
        f"{small['map50_95']:.3f} against {max(others):.3f}: a larger --imgsz (train and predict), or "
        "training on tiles at full resolution (train --tile 640), shows them bigger"
    )
