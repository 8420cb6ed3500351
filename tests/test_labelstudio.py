"""The Label Studio round trip against a real Label Studio server (no mocks): push pre-labeled
tasks, act as a person through the API, pull, and check labels, acceptance and idempotence.

One server per test session (the cold start is the slow part), one project per test.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from _console import flat
from _images import write_image
from _ls_server import free_port
from boxloop.annotation.labelstudio import ITEM_KEY, TOOL, connect, pull, push
from boxloop.errors import InputError, Problems, SyncError
from boxloop.formats.labelstudio import parse_regions
from boxloop.ingest import add_images, add_labels
from boxloop.sources.images import read_image_info
from boxloop.types import Detections, Item, Selection
from boxloop.workspace import Workspace

pytestmark = pytest.mark.slow


def coco_classes(coco128: Path) -> list[str]:
    names = yaml.safe_load((coco128 / "data.yaml").read_text())["names"]
    return [names[i] for i in sorted(names)]


def make_workspace(
    root: Path, coco128: Path, ls_media: Path, n: int, *, model_version: str = "mv1", seed: int = 0
) -> tuple[Workspace, list[Item], dict[str, Detections]]:
    """A workspace with ``n`` coco128 images, jittered predictions from their YOLO labels
    (plus one low-confidence false box each), and a selection of all of them."""
    classes = coco_classes(coco128)
    ws = Workspace.init(root, classes=classes)
    rng = np.random.default_rng(seed)
    items, preds = [], {}
    for path in sorted((ls_media / "coco128").iterdir())[:n]:
        info = read_image_info(path)
        item = Item(id=info.sha256[:16], uri=str(path), width=info.width, height=info.height, sha256=info.sha256)
        ws.store.add_item(item)
        items.append(item)
        rows = np.loadtxt(coco128 / "labels" / f"{path.stem}.txt", ndmin=2).reshape(-1, 5)
        cls = rows[:, 0].astype(np.int64)
        cx, cy, w, h = (rows[:, k] for k in range(1, 5))
        xyxy = np.stack([(cx - w / 2) * info.width, (cy - h / 2) * info.height,
                         (cx + w / 2) * info.width, (cy + h / 2) * info.height], 1)
        xyxy = np.clip(xyxy + rng.normal(0, 2, xyxy.shape), 0, [info.width, info.height] * 2)
        conf = rng.uniform(0.3, 0.95, len(cls))
        # a false box the threshold must keep away from the annotator
        xyxy = np.vstack([xyxy, [[1, 1, 30, 30]]])
        cls = np.append(cls, 0)
        conf = np.append(conf, 0.1)
        probs = np.full((len(cls), len(classes)), 0.001, np.float32)
        probs[np.arange(len(cls)), cls] = conf
        preds[item.id] = Detections(xyxy, cls, conf, {"class_probs": probs})
    ws.store.put_predictions(model_version, preds)
    save_selection(ws, items, model_version, "sel-" + model_version)
    return ws, items, preds


def save_selection(ws: Workspace, items: list[Item], model_version: str, sel_id: str) -> Selection:
    sel = Selection(
        id=sel_id, model_version=model_version, strategy="least_confidence:1", seed=0,
        item_ids=tuple(it.id for it in items),
        scores={it.id: round(1.0 - 0.03 * i, 4) for i, it in enumerate(items)},
        why={it.id: {"least_confidence": round(0.9 - 0.03 * i, 4)} for i, it in enumerate(items)},
    )
    ws.store.save_selection(sel)
    return sel


def project_tasks(client, project_id: int) -> list[dict]:
    return [t.dict() for t in client.tasks.list(project=project_id, fields="all", page_size=100)]


def to_pixels(result: list[dict], item: Item) -> np.ndarray:
    xyxy, _, _ = parse_regions(result, width=item.width, height=item.height, where="t", problems=Problems())
    return xyxy


# -- push ------------------------------------------------------------------------------------
def test_push_creates_prelabeled_tasks_in_active_learning_order(tmp_path, coco128, ls_media, ls_server, client, token_env):
    ws, items, preds = make_workspace(tmp_path / "ws", coco128, ls_media, 10)
    report = push(ws, url=ls_server.url, project=f"push-{tmp_path.name}")
    assert report.created == 10 and report.reused == 0
    assert report.below_threshold == 10  # the one 0.1-confidence box per image
    pid = report.project_id
    project = client.projects.get(id=pid)
    assert project.model_version == "mv1"
    sel = ws.store.selection("latest")
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, pid)}
    assert sorted(tasks) == sorted(it.id for it in items)
    for it in items:
        t = tasks[it.id]
        assert t["data"]["why"].startswith(f"#{sel.item_ids.index(it.id) + 1}, score ")
        assert "least_confidence" in t["data"]["why"]
        (pred,) = t["predictions"]
        assert pred["model_version"] == "mv1"
        assert pred["score"] == pytest.approx(sel.scores[it.id])
        d = preds[it.id]
        keep = d.confidence >= 0.25
        assert len(pred["result"]) == int(keep.sum())
        np.testing.assert_allclose([r["score"] for r in pred["result"]], d.confidence[keep], atol=1e-3)
        np.testing.assert_allclose(to_pixels(pred["result"], it), np.clip(d.xyxy[keep], 0, None), atol=0.01)
        assert {r["original_width"] for r in pred["result"]} <= {it.width}
        # the image is served to the annotator
        r = httpx.get(ls_server.url + t["data"]["image"], headers={"Authorization": f"Token {ls_server.token}"})
        assert r.status_code == 200 and r.content == Path(it.uri).read_bytes()
    # the Data Manager sorts by prediction score: that order is the selection order
    by_score = sorted(tasks.values(), key=lambda t: -t["predictions"][0]["score"])
    assert [t["data"][ITEM_KEY] for t in by_score] == list(sel.item_ids)
    rows = ws.store.tasks(TOOL, str(pid))
    assert len(rows) == 10 and {r["status"] for r in rows} == {"open"}
    assert ws.store.count_by_state()["in_review"] == 10
    assert all(r["meta"]["predictions"]["mv1"]["id"] for r in rows)


def test_upload_storage_sends_the_files_once_and_pull_still_maps_them(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    """storage = "upload": images outside any folder the server serves go into Label
    Studio's own storage, once; tasks point at them, pushing again uploads nothing."""
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 3)
    title = f"upload-{tmp_path.name}"
    report = push(ws, url=ls_server.url, project=title, storage="upload")
    assert report.created == 3 and not report.problems
    pid = report.project_id
    uploads = httpx.get(f"{ls_server.url}/api/projects/{pid}/file-uploads?all=true",
                        headers={"Authorization": f"Token {ls_server.token}"}).json()
    assert len(uploads) == 3
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, pid)}
    for it in items:
        ref = tasks[it.id]["data"]["image"]
        assert ref.startswith("/data/upload/") and "local-files" not in ref
        r = httpx.get(ls_server.url + ref, headers={"Authorization": f"Token {ls_server.token}"})
        assert r.status_code == 200 and r.content == Path(it.uri).read_bytes()
    again = push(ws, url=ls_server.url, project=title, storage="upload")
    assert again.created == 0 and again.reused == 3
    uploads = httpx.get(f"{ls_server.url}/api/projects/{pid}/file-uploads?all=true",
                        headers={"Authorization": f"Token {ls_server.token}"}).json()
    assert len(uploads) == 3  # nothing uploaded twice
    # a person's box on an uploaded image comes back in the item's pixels
    it = items[0]
    tid = int(tasks[it.id]["id"])
    client.annotations.create(id=tid, result=[{
        "from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": it.width,
        "original_height": it.height, "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0,
                                                "rotation": 0, "rectanglelabels": [ws.classes[0]]},
    }])
    pull(ws, url=ls_server.url, project=str(pid))
    got = ws.store.latest_labels([it.id])[it.id]
    np.testing.assert_allclose(
        got.xyxy[0], [0.1 * it.width, 0.2 * it.height, 0.4 * it.width, 0.6 * it.height], atol=0.01
    )
    # Label Studio's YOLO export names labels as it named the uploads (1a2b3c4d-<name>.txt), with
    # no images: `add labels` of that zip finds the items by those names
    it = items[1]
    client.annotations.create(id=int(tasks[it.id]["id"]), result=[{
        "from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": it.width,
        "original_height": it.height, "value": {"x": 50.0, "y": 10.0, "width": 20.0, "height": 30.0,
                                                "rotation": 0, "rectanglelabels": [ws.classes[1]]},
    }])
    exported = tmp_path / "ls-yolo.zip"
    exported.write_bytes(b"".join(client.projects.exports.download_sync(id=pid, export_type="YOLO",
                                                                        download_resources=False)))
    with zipfile.ZipFile(exported) as z:
        labels = [n for n in z.namelist() if n.startswith("labels/") and n.endswith(".txt")]
        assert len(labels) == 2 and not any(n.startswith("images/") and not n.endswith("/") for n in z.namelist())
        assert all(Path(n).stem != Path(i.uri).stem for n in labels for i in items)  # renamed by the upload
    report = add_labels(ws, exported, format="yolo")
    assert not report.problems, [str(x) for x in report.problems]
    assert report.known == 2 and any("2 label file(s) came without their images" in n for n in report.notes)
    got = ws.store.latest_labels([it.id])[it.id]
    assert got.class_id.tolist() == [1]
    np.testing.assert_allclose(
        got.xyxy[0], [0.5 * it.width, 0.1 * it.height, 0.7 * it.width, 0.4 * it.height], atol=0.5
    )


def test_pictures_label_studio_refuses_go_up_as_png_and_under_local_files_are_named(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    """Label Studio refuses .tif and .heic uploads and browsers (but Safari) show neither:
    `upload` sends a PNG of the picture (a phone's HEIC upright), a JPEG saved as .jfif goes up
    as .jpg, and their boxes come back in the item's pixels; `local-files` pushes the tasks and
    says which will not show."""
    import pillow_heif
    from PIL import Image

    from boxloop.sources.images import load_image

    ws = Workspace.init(tmp_path / "ws", classes=coco_classes(coco128))
    made = ls_media / "made" / tmp_path.name
    made.mkdir()
    photo = sorted((ls_media / "coco128").iterdir())[0]
    Image.open(photo).save(made / "scan.tif")
    exif = Image.Exif()
    exif[0x0112] = 6  # taken with the phone turned: shown turned a quarter clockwise
    pillow_heif.from_pillow(Image.open(photo)).save(made / "IMG_0001.heic", quality=90, exif=exif.tobytes())
    (made / "web.jfif").write_bytes(photo.read_bytes())
    files = [made / "scan.tif", made / "IMG_0001.heic", made / "web.jfif"]
    added = add_images(ws, files)
    assert added.added == 3 and not added.problems, [str(p) for p in added.problems]
    items = {Path(it.uri).name: it for it in ws.store.items()}
    with Image.open(photo) as im:
        assert (items["IMG_0001.heic"].width, items["IMG_0001.heic"].height) == (im.height, im.width)
    save_selection(ws, list(items.values()), "", "sel-odd")
    up = push(ws, url=ls_server.url, project=f"odd-up-{tmp_path.name}", storage="upload")
    assert up.created == 3 and not up.problems, [str(p) for p in up.problems]
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, up.project_id)}
    sent = {name: tasks[it.id]["data"]["image"] for name, it in items.items()}
    assert sent["scan.tif"].endswith("-scan.png") and sent["IMG_0001.heic"].endswith("-IMG_0001.png")
    assert sent["web.jfif"].endswith("-web.jpg")
    for name, ref in sent.items():
        assert ref.startswith("/data/upload/")
        r = httpx.get(ls_server.url + ref, headers={"Authorization": f"Token {ls_server.token}"})
        assert r.status_code == 200
        if name == "web.jfif":
            assert r.content == photo.read_bytes()
        else:
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")),
                                  load_image(items[name].uri))
    for it in items.values():
        client.annotations.create(id=int(tasks[it.id]["id"]), result=[{
            "from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": it.width,
            "original_height": it.height, "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0,
                                                    "rotation": 0, "rectanglelabels": [ws.classes[0]]},
        }])
    pull(ws, url=ls_server.url, project=str(up.project_id))
    for it in items.values():
        np.testing.assert_allclose(ws.store.latest_labels([it.id])[it.id].xyxy[0],
                                   [0.1 * it.width, 0.2 * it.height, 0.4 * it.width, 0.6 * it.height], atol=0.01)
    # under local-files the tasks are made, and the push says which the annotator will not see
    ws2 = Workspace.init(tmp_path / "ws2", classes=coco_classes(coco128))
    add_images(ws2, files)
    save_selection(ws2, ws2.store.items(), "", "sel-odd")
    local = push(ws2, url=ls_server.url, project=f"odd-local-{tmp_path.name}")
    assert local.created == 3
    assert sorted(p.path for p in local.problems) == sorted(str(f) for f in files[:2])
    for note in local.problems:
        assert "browsers other than Safari do not show" in note.reason and 'storage = "upload"' in note.reason


def test_push_again_adds_no_duplicates_and_a_newer_model_adds_predictions(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, items, preds = make_workspace(tmp_path / "ws", coco128, ls_media, 6)
    title = f"again-{tmp_path.name}"
    first = push(ws, url=ls_server.url, project=title)
    second = push(ws, url=ls_server.url, project=title)
    assert (second.created, second.reused, second.predictions_added) == (0, 6, 0)
    assert len(project_tasks(client, first.project_id)) == 6

    # a push killed after Label Studio imported the tasks but before the store recorded them
    for it in items[:3]:
        ws.store.delete_task(TOOL, str(first.project_id), it.id)
    again = push(ws, url=ls_server.url, project=title)
    assert again.created == 0
    assert len(ws.store.tasks(TOOL, str(first.project_id))) == 6

    mv2 = {k: Detections(d.xyxy + 1, d.class_id, np.minimum(d.confidence + 0.02, 1)) for k, d in preds.items()}
    ws.store.put_predictions("mv2", mv2)
    save_selection(ws, items, "mv2", "sel-mv2")
    third = push(ws, url=ls_server.url, project=title)
    assert (third.created, third.predictions_added) == (0, 6)
    tasks = project_tasks(client, first.project_id)
    assert len(tasks) == 6
    assert all(sorted(p["model_version"] for p in t["predictions"]) == ["mv1", "mv2"] for t in tasks)
    assert client.projects.get(id=first.project_id).model_version == "mv2"
    assert push(ws, url=ls_server.url, project=title).predictions_added == 0


def test_exif_rotated_photo_boxes_are_relative_to_the_displayed_image(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    path = write_image(ls_media / "made" / f"{tmp_path.name}.jpg", (64, 48), orientation=6)
    info = read_image_info(path)
    assert (info.width, info.height) == (48, 64)  # stored 64x48, displayed turned a quarter
    ws = Workspace.init(tmp_path / "ws", classes=coco_classes(coco128))
    item = Item(id=info.sha256[:16], uri=str(path), width=info.width, height=info.height, sha256=info.sha256)
    ws.store.add_item(item)
    ws.store.put_predictions("mv1", {item.id: Detections(np.array([[12, 16, 36, 48]]), np.array([2]), np.array([0.8]))})
    save_selection(ws, [item], "mv1", "s")
    report = push(ws, url=ls_server.url, project=f"exif-{tmp_path.name}")
    (task,) = project_tasks(client, report.project_id)
    (region,) = task["predictions"][0]["result"]
    assert (region["original_width"], region["original_height"]) == (48, 64)
    v = region["value"]
    assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx((25.0, 25.0, 50.0, 50.0))
    r = httpx.get(ls_server.url + task["data"]["image"], headers={"Authorization": f"Token {ls_server.token}"})
    assert r.status_code == 200


def test_image_with_no_detections_is_pushed_with_no_boxes(tmp_path, coco128, ls_media, ls_server, client, token_env):
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    ws.store.put_predictions("mv1", {items[0].id: Detections.empty(with_confidence=True)})
    report = push(ws, url=ls_server.url, project=f"empty-{tmp_path.name}")
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, report.project_id)}
    assert tasks[items[0].id]["predictions"][0]["result"] == []
    assert len(tasks[items[1].id]["predictions"][0]["result"]) > 0


def test_with_imputed_adds_flagged_boxes(tmp_path, coco128, ls_media, ls_server, client, token_env):
    ws, items, preds = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    ws.store.put_imputed("mv1", {items[0].id: Detections(np.array([[10, 10, 60, 60]]), np.array([2]))})
    report = push(ws, url=ls_server.url, project=f"imputed-{tmp_path.name}", with_imputed=True)
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, report.project_id)}
    result = tasks[items[0].id]["predictions"][0]["result"]
    d = preds[items[0].id]
    assert len(result) == int((d.confidence >= 0.25).sum()) + 1
    flagged = [r for r in result if "imputed" in " ".join((r.get("meta") or {}).get("text") or [])]
    assert len(flagged) == 1
    np.testing.assert_allclose(to_pixels(flagged, items[0]), [[10, 10, 60, 60]], atol=0.01)
    assert not any("meta" in r for r in tasks[items[1].id]["predictions"][0]["result"])
    again = push(ws, url=ls_server.url, project=f"no-imputed-{tmp_path.name}", with_imputed=False)
    plain = {t["data"][ITEM_KEY]: t for t in project_tasks(client, again.project_id)}
    assert len(plain[items[0].id]["predictions"][0]["result"]) == int((d.confidence >= 0.25).sum())  # --without-imputed


def test_a_rounds_push_sends_the_imputed_boxes_of_its_selection(
    tmp_path, coco128, ls_media, ls_server, client, token_env, monkeypatch
):
    """`round --push labelstudio` pushes through the annotator: a flickering frame's imputed box
    goes out with the pre-labels, flagged, as `push --with-imputed` sends it."""
    from boxloop.loop import annotator_for

    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    ws.store.put_imputed("mv1", {items[0].id: Detections(np.array([[10, 10, 60, 60]]), np.array([2]))})
    monkeypatch.setenv("BOXLOOP_LABELSTUDIO_URL", ls_server.url)
    monkeypatch.setenv("BOXLOOP_LABELSTUDIO_PROJECT", f"round-imputed-{tmp_path.name}")
    ws.close()
    ws = Workspace.open(ws.root)  # the settings from the environment
    pushed = annotator_for("labelstudio").push(ws, ws.store.selection())  # type: ignore[union-attr]
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, int(pushed["project_id"]))}
    result = tasks[items[0].id]["predictions"][0]["result"]
    flagged = [r for r in result if "imputed" in " ".join((r.get("meta") or {}).get("text") or [])]
    np.testing.assert_allclose(to_pixels(flagged, items[0]), [[10, 10, 60, 60]], atol=0.01)


# -- a person's corrections come back -----------------------------------------------------------
def annotate(client, task: dict, result: list[dict], **kw) -> int:
    return client.annotations.create(id=task["id"], result=result, **kw).id


def test_corrections_come_back_exactly_with_acceptance(tmp_path, coco128, ls_media, ls_server, client, token_env):
    ws, items, preds = make_workspace(tmp_path / "ws", coco128, ls_media, 10)
    ws.store.set_meta("round", "3")
    report = push(ws, url=ls_server.url, project=f"pull-{tmp_path.name}")
    pid = report.project_id
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, pid)}
    by_id = {it.id: it for it in items}
    # the task with the most pre-labels gets the edits, the next one is accepted as is
    ranked = sorted(tasks.values(), key=lambda t: -len(t["predictions"][0]["result"]))
    edit, keep, skip = ranked[0], ranked[1], ranked[2]
    assert len(edit["predictions"][0]["result"]) >= 3

    keep_result = keep["predictions"][0]["result"]
    keep_ann = annotate(client, keep, keep_result, parent_prediction=keep["predictions"][0]["id"])

    result = [dict(r, value=dict(r["value"])) for r in edit["predictions"][0]["result"]]
    moved = result[0]["value"]
    moved["x"] += 0.15 * moved["width"]  # IoU 0.74: adjusted
    del result[-1]  # a wrong pre-label deleted
    edit_item = by_id[edit["data"][ITEM_KEY]]
    W, H = edit_item.width, edit_item.height
    added_px = np.array([5.0, 6.0, 45.0, 66.0])
    result.append({
        "id": "new1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
        "original_width": W, "original_height": H, "image_rotation": 0,
        "value": {"x": 100 * 5 / W, "y": 100 * 6 / H, "width": 100 * 40 / W, "height": 100 * 60 / H,
                  "rotation": 0, "rectanglelabels": ["dog"]},
    })
    edit_ann = annotate(client, edit, result, parent_prediction=edit["predictions"][0]["id"])
    annotate(client, skip, [], was_cancelled=True)

    pulled = pull(ws, url=ls_server.url, project=str(pid))
    assert (pulled.labeled, pulled.open, pulled.back_to_pool) == (2, 7, 1)
    assert not pulled.problems

    # accepted as is: the labels are the pre-labels pushed
    keep_item = by_id[keep["data"][ITEM_KEY]]
    (v,) = ws.store.label_versions(keep_item.id)
    d = preds[keep_item.id]
    shown = d[d.confidence >= 0.25]
    assert v["labels"].equals(Detections(np.clip(shown.xyxy, 0, None), shown.class_id), atol=0.01)
    assert v["source"] == f"labelstudio:{pid}:{keep_ann}" and v["round"] == 3

    # edited: one moved, the last deleted, one added
    (v,) = ws.store.label_versions(edit_item.id)
    d = preds[edit_item.id]
    shown = d[d.confidence >= 0.25]
    expected = np.clip(shown.xyxy.copy(), 0, None)
    dx = 0.15 * (expected[0, 2] - expected[0, 0])
    expected[0, [0, 2]] += dx
    expected = np.vstack([expected[:-1], added_px])
    expected_cls = np.append(shown.class_id[:-1], coco_classes(coco128).index("dog"))
    assert v["labels"].equals(Detections(expected, expected_cls), atol=0.01)
    assert v["source"] == f"labelstudio:{pid}:{edit_ann}"

    rows = {r["item_id"]: r for r in ws.store.acceptance_rows(tool=TOOL)}
    n_keep, n_edit = len(keep_result), len(edit["predictions"][0]["result"])
    assert {k: rows[keep_item.id][k] for k in ("accepted", "adjusted", "deleted", "added")} == {
        "accepted": n_keep, "adjusted": 0, "deleted": 0, "added": 0}
    assert {k: rows[edit_item.id][k] for k in ("accepted", "adjusted", "deleted", "added")} == {
        "accepted": n_edit - 2, "adjusted": 1, "deleted": 1, "added": 1}
    totals = ws.store.acceptance_by_round()[3]
    assert totals["items"] == 2 and totals["accepted"] == n_keep + n_edit - 2 and totals["added"] == 1
    assert rows[keep_item.id]["prelabel_conf"] == rows[edit_item.id]["prelabel_conf"] == report.prelabel_conf == 0.25
    assert (totals["prelabel_conf_min"], totals["prelabel_conf_max"]) == (0.25, 0.25)
    assert pulled.acceptance["accepted"] == totals["accepted"]

    # skipped went back to the pool; labeled items left review
    states = ws.store.count_by_state()
    assert states["labeled"] == 2 and states["in_review"] == 7
    assert ws.store.items(state="labeled")[0].labeled_round == 3

    # pulling again changes nothing
    again = pull(ws, url=ls_server.url, project=str(pid))
    assert (again.labeled, again.updated, again.unchanged) == (0, 0, 2)
    assert len(ws.store.label_versions(edit_item.id)) == 1

    # an updated annotation becomes a new version; the old one stays
    fixed = [dict(r, value=dict(r["value"])) for r in result]
    fixed[0]["value"]["x"] -= 0.15 * fixed[0]["value"]["width"]  # moved back where it was
    client.annotations.update(id=edit_ann, result=fixed)
    upd = pull(ws, url=ls_server.url, project=str(pid))
    assert upd.updated == 1
    versions = ws.store.label_versions(edit_item.id)
    assert [x["version"] for x in versions] == [1, 2]
    row = {r["item_id"]: r for r in ws.store.acceptance_rows(tool=TOOL)}[edit_item.id]
    assert (row["accepted"], row["adjusted"], row["deleted"], row["added"]) == (n_edit - 1, 0, 1, 1)

    # a deleted annotation reopens the task; the labels already pulled are kept
    client.annotations.delete(id=keep_ann)
    gone = pull(ws, url=ls_server.url, project=str(pid))
    assert gone.reopened == 1 and "deleted" in str(gone.problems.items[0])
    assert len(ws.store.label_versions(keep_item.id)) == 1
    assert {r["item_id"]: r["status"] for r in ws.store.tasks(TOOL, str(pid))}[keep_item.id] == "open"


def test_skipped_tasks_stay_skipped_when_configured(tmp_path, coco128, ls_media, ls_server, client, token_env):
    ws, _, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    report = push(ws, url=ls_server.url, project=f"skip-{tmp_path.name}")
    task = project_tasks(client, report.project_id)[0]
    annotate(client, task, [], was_cancelled=True)
    pulled = pull(ws, url=ls_server.url, project=str(report.project_id), skipped="skipped")
    assert pulled.skipped == 1 and pulled.back_to_pool == 0
    assert ws.store.skipped_item_ids() == {task["data"][ITEM_KEY]}


def test_rotated_boxes_and_unknown_labels_are_reported_not_dropped(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    report = push(ws, url=ls_server.url, project=f"odd-{tmp_path.name}")
    pid = report.project_id
    t_rot, t_unknown = project_tasks(client, pid)
    it = {i.id: i for i in items}[t_rot["data"][ITEM_KEY]]
    W, H = it.width, it.height
    rotated = {"id": "rot", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
               "original_width": W, "original_height": H,
               "value": {"x": 100 * 100 / W, "y": 100 * 50 / H, "width": 100 * 40 / W, "height": 100 * 20 / H,
                         "rotation": 90, "rectanglelabels": ["cat"]}}
    annotate(client, t_rot, [rotated])
    dragon = dict(rotated, id="dr", value=dict(rotated["value"], rotation=0, rectanglelabels=["dragon"]))
    annotate(client, t_unknown, [dragon])

    pulled = pull(ws, url=ls_server.url, project=str(pid))
    text = "\n".join(str(p) for p in pulled.problems)
    assert "rotated by 90 degrees" in text and "bounding box" in text
    assert "dragon" in text and "not pulled" in text
    (v,) = ws.store.label_versions(it.id)
    np.testing.assert_allclose(v["labels"].xyxy, [[80, 50, 100, 90]], atol=0.01)
    assert pulled.labeled == 1 and pulled.open == 1
    # with --add-classes the unknown label becomes a class and the box comes in
    fixed = pull(ws, url=ls_server.url, project=str(pid), add_classes=True)
    assert fixed.labeled == 1 and "dragon" in ws.store.classes()


# -- kill-safe pull through the CLI ------------------------------------------------------------
def run_cli(args: list[str], ws: Workspace, token: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "LABEL_STUDIO_API_KEY": token, "BOXLOOP_WORKSPACE": str(ws.root),
           "BOXLOOP_NO_PROGRESS": "1", "BOXLOOP_LOG": "DEBUG"}
    return subprocess.Popen(
        [sys.executable, "-c", "from boxloop.cli import main; main()", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw,
    )


def test_pull_killed_midway_then_run_again_loses_and_duplicates_nothing(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    n = 30
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, n)
    p = run_cli(["labelstudio", "connect", "--url", ls_server.url], ws, ls_server.token)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    p = run_cli(["push", "--project", f"kill-{tmp_path.name}"], ws, ls_server.token)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0 and "30 new task(s)" in out, out
    pid = ws.store.tasks(TOOL)[0]["project"]
    for t in project_tasks(client, int(pid)):
        result = [dict(r, value=dict(r["value"], x=r["value"]["x"] * 0.9)) for r in t["predictions"][0]["result"]]
        annotate(client, t, result)

    db = sqlite3.connect(ws.root / "boxloop.db", timeout=30)
    killed_at = None
    proc = run_cli(["pull"], ws, ls_server.token, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        if done >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            killed_at = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
            break
        time.sleep(0.005)
    assert killed_at is not None and 0 < killed_at < n, f"the pull was not caught midway ({killed_at})"
    # every task the killed run finished is fully recorded: label, acceptance and task state together
    assert db.execute("SELECT COUNT(*) FROM acceptance").fetchone()[0] == killed_at
    assert db.execute("SELECT COUNT(*) FROM tasks WHERE status='done'").fetchone()[0] == killed_at

    p = run_cli(["pull"], ws, ls_server.token)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert f"{n - killed_at} newly labeled" in out and f"{killed_at} unchanged" in out
    assert flat("next: boxloop audit (the model that pre-labeled them") in flat(out)
    assert flat("then boxloop round (trains on them") in flat(out)
    assert ls_server.token not in out  # debug logging included
    per_item = dict(db.execute("SELECT item_id, COUNT(*) FROM labels GROUP BY item_id").fetchall())
    assert per_item == {it.id: 1 for it in items}
    assert db.execute("SELECT COUNT(*) FROM acceptance").fetchone()[0] == n
    assert db.execute("SELECT COUNT(*) FROM tasks WHERE status='done'").fetchone()[0] == n
    db.close()


# -- bad input ---------------------------------------------------------------------------------
def test_unreachable_server_names_the_url(tmp_path, coco128):
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SyncError, match=f"cannot reach Label Studio at {url}"):
        connect(ws, url=url, token="x" * 40)
    assert ws.store.get_meta("labelstudio.url") is None


def test_bad_token_is_explained_and_never_shown(tmp_path, ls_server):
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    bad = "f" * 40
    with pytest.raises(SyncError, match="401") as e:
        connect(ws, url=ls_server.url, token=bad)
    assert "token" in str(e.value) and "LABEL_STUDIO_API_KEY" in str(e.value) and bad not in str(e.value)


def test_missing_token_and_bad_url_are_clear(tmp_path, monkeypatch):
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(SyncError, match="LABEL_STUDIO_API_KEY"):
        connect(ws, url="http://127.0.0.1:1")
    with pytest.raises(InputError, match="not a Label Studio URL"):
        connect(ws, url="127.0.0.1:8080", token="t")


def test_connect_saves_the_url_never_the_token(tmp_path, ls_server, caplog):
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    with caplog.at_level(logging.DEBUG):
        info = connect(ws, url=ls_server.url + "/", token=ls_server.token)
    assert info["version"] == "1.23.2" and info["user"] == "ci@example.com"
    assert ws.store.get_meta("labelstudio.url") == ls_server.url
    ws.close()
    for f in ws.root.rglob("*"):
        if f.is_file():
            assert ls_server.token.encode() not in f.read_bytes(), f
    assert ls_server.token not in caplog.text


def test_project_with_names_boxloop_does_not_know_is_refused_with_the_names(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, _, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 1)
    title = f"foreign-{tmp_path.name}"
    client.projects.create(title=title, label_config=(
        '<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
        '<Label value="person"/><Label value="dragon"/><Label value="unicorn"/></RectangleLabels></View>'))
    with pytest.raises(SyncError, match="2 name\\(s\\) boxloop does not know: dragon, unicorn"):
        push(ws, url=ls_server.url, project=title)


def test_cli_reports_unreachable_server_with_exit_1(tmp_path, coco128):
    from typer.testing import CliRunner

    from boxloop.cli import app

    Workspace.init(tmp_path / "ws", classes=["a"])
    url = f"http://127.0.0.1:{free_port()}"
    res = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "labelstudio", "connect", "--url", url, "--token", "t"])
    assert res.exit_code == 1 and url in res.output
