"""Label review in Label Studio: the images an audit finds most suspect go to a review
project beside the labeling one, their human labels drawn as the pre-annotation and each
suspect noted on its box (with the model's box for an object no label covers), the
suspects listed beside the image. A reviewer fixes what is wrong and submits; `pull` brings
each changed set back as a new label version (the old one stays), a set submitted as it was
as confirmed, and a skipped task leaves the labels as they are.

A label version once reviewed is not sent again: an audit with the same model would flag
what the reviewer chose to keep. Labels changed since (a newer version) are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audit import AuditReport, Suspect
from ..errors import InputError, Problems
from ..formats import ImageLabels
from ..formats.labelstudio import WHY_KEY, box_regions, build_task
from ..types import Detections
from ..workspace import Workspace
from .labelstudio import (
    ITEM_KEY,
    META_PROJECT,
    REVIEW_KEY,
    TITLE_MAX,
    TOOL,
    call_api,
    image_urls,
    import_tasks,
    labeling_projects,
    note_missing_classes,
    open_project,
    project_title,
    task_images,
    tasks_by_item,
)

__all__ = ["META_REVIEW_PROJECT", "REVIEW_VERSION", "ReviewReport", "projects_to_pull", "push_review", "review_boxes",
           "review_project_title"]

log = logging.getLogger(__name__)
META_REVIEW_PROJECT = "labelstudio.review_project"
REVIEW_VERSION = "boxloop-review"  # the model version of every review pre-annotation, so each is shown


@dataclass
class ReviewReport:
    """What a review push did."""

    url: str
    project_id: int
    project_title: str
    created: int = 0
    refreshed: int = 0  # open review tasks given newer labels or another audit's suspects
    reused: int = 0  # open review tasks already showing these labels and suspects
    reviewed: int = 0  # label versions a person reviewed already: not sent again
    suspects: int = 0
    problems: Problems = field(default_factory=Problems)

    def summary(self) -> str:
        parts = [f"{self.created} new review task(s)"]
        if self.refreshed:
            parts.append(f"{self.refreshed} open one(s) redrawn with newer labels or suspects")
        if self.reused:
            parts.append(f"{self.reused} open one(s) already up to date")
        if self.reviewed:
            parts.append(f"{self.reviewed} reviewed before at these labels, passed over")
        parts.append(f"{self.suspects} suspect(s) noted")
        return (
            f"Label Studio review project {self.project_title!r} (id {self.project_id}) at {self.url}: "
            + ", ".join(parts)
        )


def review_project_title(ws: Workspace, project: str | None = None) -> str:
    """The review project: ``project``, else the one reviews went to, else the labeling
    project's title followed by " review"."""
    if project or ws.store.get_meta(META_REVIEW_PROJECT):
        return project or str(ws.store.get_meta(META_REVIEW_PROJECT))
    suffix = " review"
    return project_title(ws, None)[: TITLE_MAX - len(suffix)].rstrip() + suffix  # a title Label Studio takes


def projects_to_pull(ws: Workspace) -> list[str | None]:
    """What a plain `boxloop pull` reads: the labeling projects (None: the default one and
    every other project boxloop has labeling tasks open in, see ``labelstudio.pull``) unless
    only reviews were ever pushed, then the review project when there is one."""
    review = ws.store.get_meta(META_REVIEW_PROJECT)
    if not review:
        return [None]
    labeling = ws.store.get_meta(META_PROJECT) or labeling_projects(ws.store, out_only=False)
    return ([None] if labeling else []) + [review]


def _note(s: Suspect, classes: Sequence[str]) -> str:
    if s.kind == "missed":
        name = classes[s.model_class] if s.model_class is not None else "object"
        return (f"check: the model's box, no label here (it finds a {name} at {s.confidence:.2f}): "
                f"keep it if there is a {name}, delete it if not")
    return "check: " + s.describe(classes)


def review_boxes(
    labels: Detections, suspects: Sequence[Suspect], classes: Sequence[str]
) -> tuple[Detections, list[str | None]]:
    """The boxes a reviewer starts from: every label, a note on each one a suspect concerns,
    then the model's box of each ``missed`` suspect, noted (the reviewer keeps or deletes it)."""
    notes: list[str | None] = [None] * len(labels)
    extra_xyxy, extra_cls = [], []
    for s in suspects:
        if s.kind == "missed":
            extra_xyxy.append(s.xyxy)
            extra_cls.append(s.model_class)
            notes.append(_note(s, classes))
            continue
        if not len(labels):
            continue
        i = int(np.argmin(np.abs(labels.xyxy - np.asarray(s.xyxy, np.float32)).sum(1)))
        if np.allclose(labels.xyxy[i], s.xyxy, atol=1e-2) and notes[i] is None:
            notes[i] = _note(s, classes)
    boxes = Detections(
        np.concatenate([labels.xyxy, np.asarray(extra_xyxy, np.float32).reshape(-1, 4)]).astype(np.float32),
        np.concatenate([labels.class_id, np.asarray(extra_cls, np.int64)]).astype(np.int64),
    )
    return boxes, notes


def _why(version: int | None, model_version: str, suspects: Sequence[Suspect], classes: Sequence[str]) -> str:
    lines = [f"labels v{version}, audited by {model_version}:"]
    lines += [f"{k}. {s.describe(classes)}" for k, s in enumerate(suspects, 1)]
    return "\n".join(lines)


def push_review(
    ws: Workspace,
    report: AuditReport,
    *,
    top: int = 20,
    project: str | None = None,
    url: str | None = None,
    token: str | None = None,
    storage: str | None = None,
    document_root: str | None = None,
) -> ReviewReport:
    """Send the ``top`` most suspect images of an audit that were not reviewed at their
    current labels yet to the review project, most suspect first (the audit score is the
    prediction score to sort by). Pushing again adds no task twice: an open review task is
    redrawn when its labels or suspects changed; a label version reviewed before is passed
    over (counted), and the next suspect image takes its place."""
    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    if not report.images:
        raise InputError("the audit found no suspect image: nothing to review")
    store = ws.store
    cfg = ws.config.labelstudio
    classes = store.classes()
    lp = open_project(
        ws, title=review_project_title(ws, project), url=url, token=token, classes=classes, create=True,
        description="Created by boxloop: labeled images a model disagrees with, most suspect first. Each "
        "suspect is noted on its box and listed beside the image; fix what is wrong and submit.",
    )
    store.set_meta(META_REVIEW_PROJECT, lp.title)
    out = ReviewReport(url=lp.url, project_id=lp.id, project_title=lp.title)
    note_missing_classes(out.problems, title=lp.title, project_id=lp.id, lc=lp.lc, classes=classes)
    remote = tasks_by_item(lp)
    ours = {t["item_id"]: t for t in store.tasks(TOOL, str(lp.id))}
    picked: list[tuple[int, str, float, list[Suspect]]] = []  # (audit rank, item, score, suspects)
    for rank, (item_id, score, suspects) in enumerate(report.images, 1):
        rt, row = remote.get(item_id), ours.get(item_id)
        if rt is not None and row is not None and str(row["task_id"]) == str(rt["id"]) and row["status"] != "open":
            reviewed_at = row["meta"].get("label_version")
            if reviewed_at == store.label_version(item_id):
                out.reviewed += 1
            else:
                out.problems.add(
                    f"review task {rt['id']} ({store.get_item(item_id).uri})", f"reviewed at labels v{reviewed_at}, "
                    "changed since; delete the task in Label Studio and push again to review it anew",
                )
            continue
        picked.append((rank, item_id, score, suspects))
        if len(picked) == top:
            break
    items = store.items([i for _, i, _, _ in picked]) if picked else []
    by_id = {it.id: it for it in items}
    labels = store.latest_labels(list(by_id))
    storage = storage or cfg.storage
    urls, dirs = image_urls(items, storage=storage, document_root=document_root or cfg.document_root or None)
    urls = task_images(ws, lp, items, urls, dirs, remote=remote, storage=storage, problems=out.problems)

    new_tasks: list[dict[str, Any]] = []
    metas: dict[str, dict[str, Any]] = {}
    for rank, item_id, score, suspects in picked:
        it = by_id[item_id]
        version = store.label_version(item_id)
        boxes, notes = review_boxes(labels.get(item_id, Detections.empty()), suspects, classes)
        keep = np.array([int(c) in lp.allowed for c in boxes.class_id], bool)
        if not keep.all():
            out.problems.add(it.uri, f"{int((~keep).sum())} box(es) of classes the review project does not label "
                                     "left out; add them to its labeling config")
            boxes, notes = boxes[keep], [n for n, k in zip(notes, keep, strict=True) if k]
        why = _why(version, report.model_version, suspects, classes)
        meta = {"review": True, "label_version": version, "audit_model": report.model_version, "rank": rank,
                "score": round(float(score), 4), "suspects": [s.describe(classes) for s in suspects],
                "image": urls.get(item_id)}
        data = {ITEM_KEY: item_id, REVIEW_KEY: version, "boxloop_rank": rank, WHY_KEY: why}
        rt, row = remote.get(item_id), ours.get(item_id)
        if rt is not None and row is not None and str(row["task_id"]) == str(rt["id"]):  # open: see above
            old = row["meta"]
            if all(old.get(k) == meta[k] for k in ("label_version", "audit_model", "suspects")):
                out.reused += 1
                continue
            regions = box_regions(  # a person's boxes: no per-box score
                boxes.xyxy, [classes[c] for c in boxes.class_id], width=it.width, height=it.height,
                from_name=lp.lc.from_name, to_name=lp.lc.to_name, notes=notes,
            )
            for p in rt.get("predictions") or []:  # one review pre-annotation per task: the newest
                call_api(lp.url, f"replace the review of task {rt['id']}", lp.client.predictions.delete, id=int(p["id"]))
            call_api(lp.url, f"redraw review task {rt['id']}", lp.client.predictions.create, task=int(rt["id"]),
                     result=regions, score=float(score), model_version=REVIEW_VERSION)
            call_api(lp.url, f"update review task {rt['id']}", lp.client.tasks.update, id=str(rt["id"]),
                     data={**(rt.get("data") or {}), **data})
            store.update_task(TOOL, str(lp.id), item_id, meta={**old, **meta})
            out.refreshed += 1
            out.suspects += len(suspects)
            continue
        if rt is not None:  # imported by a push killed before it recorded the task
            metas[item_id] = meta
            out.reused += 1
            continue
        if item_id not in urls:  # its upload failed: a problem already says why
            continue
        rec = ImageLabels(file_name=urls[item_id], width=it.width, height=it.height, xyxy=boxes.xyxy,
                          class_names=tuple(classes[c] for c in boxes.class_id))
        task = build_task(rec, model_version=REVIEW_VERSION, score=float(score), image_key=lp.lc.image_key,
                          from_name=lp.lc.from_name, to_name=lp.lc.to_name, notes=notes, data=data)
        new_tasks.append(task)
        metas[item_id] = meta
        out.suspects += len(suspects)
    out.created += import_tasks(lp, new_tasks)
    call_api(lp.url, "set the review project's model version", lp.client.projects.update, id=lp.id,
             model_version=REVIEW_VERSION)

    remote = tasks_by_item(lp)
    with store.transaction():
        for item_id, meta in metas.items():
            rt = remote.get(item_id)
            if rt is None:
                out.problems.add(str(urls.get(item_id)), "imported but not found in the review project afterwards")
                continue
            store.put_task(TOOL, str(lp.id), item_id, str(rt["id"]), status="open", meta=meta)
    log.info("%s", out.summary())
    return out
