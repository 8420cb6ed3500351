"""Label review in a real Label Studio server: an audit's suspect images go to a review
project with their human labels drawn and the suspects noted, a person fixes one, submits
one as it was and skips one, and pull brings back exactly that; nothing is sent twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from boxloop.annotation.labelstudio import ITEM_KEY, REVIEW_KEY, TOOL, pull
from boxloop.annotation.review import (
    META_REVIEW_PROJECT,
    REVIEW_VERSION,
    projects_to_pull,
    push_review,
    review_boxes,
    review_project_title,
)
from boxloop.audit import AuditReport, Suspect
from boxloop.errors import InputError, Problems
from boxloop.formats.labelstudio import parse_regions
from boxloop.sources.images import read_image_info
from boxloop.status import next_step, workspace_status
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace

pytestmark = pytest.mark.slow


def labeled_workspace(root: Path, coco128: Path, ls_media: Path, n: int) -> tuple[Workspace, list[Item]]:
    """``n`` coco128 images (served by the test server) with their YOLO labels as human labels."""
    names = yaml.safe_load((coco128 / "data.yaml").read_text())["names"]
    ws = Workspace.init(root, classes=[names[i] for i in sorted(names)])
    items = []
    for path in sorted((ls_media / "coco128").iterdir())[:n]:
        info = read_image_info(path)
        item = Item(id=info.sha256[:16], uri=str(path), width=info.width, height=info.height, sha256=info.sha256)
        ws.store.add_item(item)
        rows = np.loadtxt(coco128 / "labels" / f"{path.stem}.txt", ndmin=2).reshape(-1, 5)
        cx, cy, w, h = (rows[:, k] * s for k, s in zip(range(1, 5), (item.width, item.height) * 2, strict=True))
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)
        ws.store.add_label(item.id, Detections(np.round(xyxy, 1), rows[:, 0].astype(np.int64)), source="person")
        items.append(item)
    return ws, items


def suspects_for(ws: Workspace, items: list[Item]) -> AuditReport:
    """One image per kind of suspect, by hand (the audit itself is tested with a real model)."""
    labels = ws.store.latest_labels()
    report = AuditReport(model_version="m007", audited=len(items))
    kinds = ["class", "loose", "unsupported", "class"]
    for rank, (it, kind) in enumerate(zip(items, kinds, strict=True)):
        d = labels[it.id]
        box = tuple(float(v) for v in d.xyxy[0])
        other = (int(d.class_id[0]) + 1) % 80
        s = Suspect(kind, box, int(d.class_id[0]), other if kind == "class" else int(d.class_id[0]), 0.9,
                    0.6 if kind == "loose" else None, 0.9 - 0.1 * rank)
        found = [s]
        if rank == 0:  # and an object no label covers
            found.append(Suspect("missed", (1.0, 2.0, 41.0, 52.0), None, 16, 0.8, None, 0.8))
        report.images.append((it.id, 0.9 - 0.1 * rank, found))
    return report


def tasks_of(client, project_id: int) -> dict[str, dict]:
    return {t.dict()["data"][ITEM_KEY]: t.dict() for t in client.tasks.list(project=project_id, fields="all", page_size=100)}


def pixels(result: list[dict], item: Item) -> np.ndarray:
    xyxy, _, _ = parse_regions(result, width=item.width, height=item.height, where="t", problems=Problems())
    return xyxy


def test_review_boxes_note_the_suspect_labels_and_add_the_missed_box() -> None:
    classes = ["a", "b"]
    labels = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0, 1]))
    boxes, notes = review_boxes(labels, [
        Suspect("class", (20.0, 20.0, 30.0, 30.0), 1, 0, 0.9, 0.8, 0.9),
        Suspect("missed", (50.0, 50.0, 60.0, 60.0), None, 0, 0.7, None, 0.7),
        Suspect("loose", (5.0, 5.0, 9.0, 9.0), 0, 0, 0.9, 0.3, 0.6),  # no longer among the labels: no note
    ], classes)
    np.testing.assert_array_equal(boxes.xyxy, [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]])
    assert boxes.class_id.tolist() == [0, 1, 0]
    assert notes[0] is None
    assert notes[1] == "check: class: labeled b, the model reads a at 0.90"
    assert notes[2].startswith("check: the model's box, no label here (it finds a a at 0.70)")


def test_the_review_project_is_named_after_the_labeling_one(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "lcd", classes=["digit"])
    assert review_project_title(ws) == "lcd review"
    assert projects_to_pull(ws) == [None]
    ws.store.set_meta(META_REVIEW_PROJECT, "lcd review")
    assert projects_to_pull(ws) == ["lcd review"]  # only reviews were pushed: no labeling project to read
    ws.store.set_meta("labelstudio.project", "lcd")
    assert projects_to_pull(ws) == [None, "lcd review"]
    assert review_project_title(ws, "qa") == "qa"
    with pytest.raises(InputError, match="no suspect image"):
        push_review(ws, AuditReport(model_version="m1"))


def test_review_round_trip(tmp_path, coco128, ls_media, ls_server, client, token_env) -> None:
    ws, items = labeled_workspace(tmp_path / "ws", coco128, ls_media, 4)
    ws.store.set_meta("round", "2")
    classes = ws.classes
    report = suspects_for(ws, items)
    title = f"review-{tmp_path.name}"
    pushed = push_review(ws, report, top=4, url=ls_server.url, project=title)
    assert (pushed.created, pushed.reused, pushed.suspects) == (4, 0, 5) and not pushed.problems
    pid = pushed.project_id
    assert client.projects.get(id=pid).model_version == REVIEW_VERSION
    tasks = tasks_of(client, pid)
    assert sorted(tasks) == sorted(it.id for it in items)
    labels = ws.store.latest_labels()
    first = items[0]
    t = tasks[first.id]
    (pred,) = t["predictions"]
    assert pred["model_version"] == REVIEW_VERSION and pred["score"] == pytest.approx(0.9)
    # every label drawn, then the model's box for the missed object, each suspect noted on its box
    d = labels[first.id]
    np.testing.assert_allclose(pixels(pred["result"], first), np.vstack([d.xyxy, [[1, 2, 41, 52]]]), atol=0.05)
    notes = [(r.get("meta") or {}).get("text", [None])[0] for r in pred["result"]]
    assert notes[0].startswith(f"check: class: labeled {classes[d.class_id[0]]}, the model reads")
    assert notes[-1].startswith("check: the model's box, no label here (it finds a dog at 0.80)")
    assert all(n is None for n in notes[1:-1]) and all("score" not in r for r in pred["result"])
    assert t["data"][REVIEW_KEY] == 1 and t["data"]["boxloop_rank"] == 1
    assert t["data"]["why"].splitlines()[0] == "labels v1, audited by m007:"
    assert "2. missed dog?" in t["data"]["why"]
    by_score = sorted(tasks.values(), key=lambda t: -t["predictions"][0]["score"])
    assert [t["data"][ITEM_KEY] for t in by_score] == [it.id for it in items]

    again = push_review(ws, report, top=4, url=ls_server.url, project=title)
    assert (again.created, again.reused, again.refreshed) == (0, 4, 0)
    assert len(tasks_of(client, pid)) == 4

    # a person fixes the first (the class, and drops the model's box), submits the second as
    # it was, skips the third; the fourth stays open
    fixed = [dict(r, value=dict(r["value"])) for r in pred["result"][:-1]]
    fixed[0]["value"]["rectanglelabels"] = ["person"]
    ann = client.annotations.create(id=t["id"], result=fixed).id
    second = tasks[items[1].id]
    client.annotations.create(id=second["id"], result=second["predictions"][0]["result"])
    client.annotations.create(id=tasks[items[2].id]["id"], result=[], was_cancelled=True)
    pulled = pull(ws, url=ls_server.url, project=title)
    assert (pulled.corrected, pulled.confirmed, pulled.skipped, pulled.open) == (1, 1, 1, 1)
    assert (pulled.labeled, pulled.back_to_pool) == (0, 0) and not pulled.problems
    assert "1 corrected on review, 1 confirmed as they were" in pulled.summary()
    v1, v2 = ws.store.label_versions(first.id)
    assert v1["labels"].equals(d)
    assert v2["labels"].equals(Detections(d.xyxy, np.r_[classes.index("person"), d.class_id[1:]]), atol=0.05)
    assert v2["source"] == f"labelstudio:{pid}:{ann}" and v2["round"] == 2
    assert len(ws.store.label_versions(items[1].id)) == 1 and len(ws.store.label_versions(items[2].id)) == 1
    assert ws.store.acceptance_rows(tool=TOOL) == []  # a review is no verdict on the model's pre-labels
    assert ws.store.count_by_state()["labeled"] == 4
    assert pull(ws, url=ls_server.url, project=title).unchanged == 2
    st = workspace_status(ws)
    assert st["out_for_review"] == 1  # the fourth
    assert next_step(ws, st).startswith("1 labeled image(s) are out for review in Label Studio: boxloop pull")

    # the labels of the open one change: its task is redrawn; the reviewed ones are not sent again
    fourth = items[3]
    old4 = labels[fourth.id]
    newer = Detections(np.vstack([old4.xyxy, [[3, 4, 33, 44]]]).astype(np.float32), np.append(old4.class_id, 0))
    assert ws.store.add_label(fourth.id, newer, source="person") == 2
    third = push_review(ws, report, top=4, url=ls_server.url, project=title)
    assert (third.created, third.reviewed, third.refreshed, third.reused) == (0, 3, 1, 0), third.summary()
    t4 = tasks_of(client, pid)[fourth.id]
    (pred4,) = t4["predictions"]
    np.testing.assert_allclose(pixels(pred4["result"], fourth), newer.xyxy, atol=0.05)
    assert t4["data"][REVIEW_KEY] == 2 and t4["data"]["why"].startswith("labels v2,")
    assert t4["data"]["image"] == tasks[fourth.id]["data"]["image"]
    # images reviewed at their labels give their places to the next suspects
    one = push_review(ws, report, top=1, url=ls_server.url, project=title)
    assert (one.reviewed, one.reused, one.created) == (3, 1, 0)
