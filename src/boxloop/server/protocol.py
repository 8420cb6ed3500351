"""The Label Studio ML backend protocol, pure: project ids, a task's image reference,
detections → one prediction entry (regions with scores, task score, model version), and
what a webhook event means for retraining.

The task score is the least-confidence uncertainty of the image (the most doubtful box,
background counted as a class; see scoring/uncertainty.py): higher means more worth a
person's time, so sorting the Data Manager by prediction score puts the images that teach
the model most first, as ``boxloop push`` does with the selection score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..formats.labelstudio import LabelConfig, box_regions
from ..types import Detections

__all__ = [
    "ANNOTATION_ACTIONS",
    "TRAIN_ACTION",
    "WebhookEvent",
    "prediction_entry",
    "project_id",
    "task_image_ref",
    "task_score",
    "webhook_event",
]

ANNOTATION_ACTIONS = (
    "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
)
TRAIN_ACTION = "START_TRAINING"
SCORE_LOW = 0.1  # boxes below this confidence are noise for the task score (the scorers' band)


def project_id(value: Any) -> int | None:
    """Label Studio names a project as ``12``, ``"12"``, ``"12.1712345678"`` (/setup and
    /predict: id.timestamp) or ``{"id": 12, ...}`` (webhooks); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        return project_id(value.get("id"))
    if isinstance(value, bool):
        raise InputError(f"not a Label Studio project id: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    head = text.split(".", 1)[0]
    if not head.isdigit():
        raise InputError(f"not a Label Studio project id: {text[:40]!r}")
    return int(head)


def task_image_ref(task: Mapping[str, Any], image_key: str) -> str:
    """The image reference of a task (``data[image_key]``); an InputError names the task."""
    data = task.get("data")
    if not isinstance(data, Mapping):
        raise InputError(f"task {task.get('id', '?')}: no data")
    ref = data.get(image_key)
    if not isinstance(ref, str) or not ref.strip():
        raise InputError(f"task {task.get('id', '?')}: no image in data.{image_key}")
    return ref.strip()


def task_score(d: Detections, num_classes: int, *, low: float = SCORE_LOW) -> float:
    """The least-confidence uncertainty of one image in [0, 1]: that of its most doubtful box
    at or above ``low``; an image with none counts as one box exactly at ``low``."""
    from ..scoring.uncertainty import box_uncertainty

    num_classes = max(int(num_classes), 1)
    conf = np.zeros(0, np.float32) if d.confidence is None else np.asarray(d.confidence, np.float32)
    probs = d.data.get("class_probs") if d.confidence is not None else None
    keep = conf >= low
    if keep.any():
        if probs is None or probs.shape != (len(d), num_classes):
            probs = np.eye(num_classes, dtype=np.float32)[np.clip(d.class_id, 0, num_classes - 1)]
        u = box_uncertainty("least_confidence", np.asarray(probs, np.float32)[keep], conf[keep])
        return round(float(u.max()), 4)
    one = np.zeros((1, num_classes), np.float32)
    one[0, 0] = 1.0
    return round(float(box_uncertainty("least_confidence", one, np.array([low], np.float32))[0]), 4)


def prediction_entry(
    d: Detections,
    *,
    classes: Sequence[str],
    config: LabelConfig,
    width: int,
    height: int,
    model_version: str,
    prelabel_conf: float,
) -> dict[str, Any]:
    """One ``results`` entry of /predict: the boxes at or above ``prelabel_conf`` of classes
    the project labels, as rectanglelabels regions of the displayed image (each with its
    ``score``), the task ``score`` and the ``model_version``."""
    wanted = set(config.labels)
    names = [classes[int(c)] if 0 <= int(c) < len(classes) else "" for c in d.class_id]
    keep = np.array([n in wanted for n in names], bool)
    if d.confidence is not None:
        keep &= np.asarray(d.confidence) >= prelabel_conf
    shown = d[keep] if len(d) else d
    regions = box_regions(
        shown.xyxy, [names[i] for i in np.flatnonzero(keep)], width=width, height=height,
        scores=shown.confidence, from_name=config.from_name, to_name=config.to_name,
    )
    return {"result": regions, "score": task_score(d, len(classes)), "model_version": model_version}


@dataclass(frozen=True)
class WebhookEvent:
    """What one webhook call means: its action, project, how many new annotations it
    counts for, and whether it asks for a training now."""

    action: str
    project: int | None
    annotations: int = 0
    train: bool = False


def _count(body: Mapping[str, Any]) -> int:
    for key in ("annotations", "annotation"):
        value = body.get(key)
        if isinstance(value, list):
            return sum(1 for a in value if not (isinstance(a, Mapping) and a.get("was_cancelled")))
        if isinstance(value, Mapping):
            return 0 if value.get("was_cancelled") else 1
    return 1


def webhook_event(body: Mapping[str, Any]) -> WebhookEvent:
    """Read a webhook body; an unknown action is an event that counts for nothing."""
    if not isinstance(body, Mapping):
        raise InputError("a webhook body is a JSON object with an 'action'")
    action = str(body.get("action") or "")
    if not action:
        raise InputError("a webhook body needs an 'action'")
    project = project_id(body.get("project"))
    if project is None and isinstance(body.get("task"), Mapping):
        project = project_id(body["task"].get("project"))
    if action == TRAIN_ACTION:
        return WebhookEvent(action, project, train=True)
    if action in ANNOTATION_ACTIONS:
        return WebhookEvent(action, project, annotations=_count(body))
    return WebhookEvent(action, project)
