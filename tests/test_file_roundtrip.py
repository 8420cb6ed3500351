"""The file round trip of issue 5: a pre-labeled YOLO zip is corrected in another tool and
brought back with `boxloop add labels`; the acceptance counts are exactly what was done."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from _console import flat
from _images import fitted_copy, write_image
from boxloop.annotation.files import NOT_BACK
from boxloop.cli import app
from boxloop.export import export
from boxloop.ingest import add_images, add_labels
from boxloop.loop import annotator_for
from boxloop.types import Detections
from boxloop.workspace import Workspace


def photos_workspace(tmp_path: Path, n: int) -> tuple[Workspace, dict[str, str]]:
    """A cat/dog workspace holding n photos p0.jpg ... (200x100) in its pool; their ids by stem."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    src = tmp_path / "photos"
    for i in range(n):
        write_image(src / f"p{i}.jpg", size=(200, 100), seed=i)
    add_images(ws, [src])
    return ws, {Path(it.uri).stem: it.id for it in ws.store.items()}


def test_corrected_prelabeled_zip_counts_accepted_adjusted_deleted_added(tmp_path: Path) -> None:
    ws, ids = photos_workspace(tmp_path, 3)
    ws.store.put_predictions("mv1", {
        ids["p0"]: Detections([[10, 10, 50, 50], [100, 20, 160, 90]], [0, 1], [0.9, 0.8]),
        ids["p1"]: Detections([[10, 10, 50, 50], [100, 20, 160, 90], [0, 0, 5, 5]], [0, 1, 0], [0.9, 0.7, 0.05]),
        ids["p2"]: Detections.empty(with_confidence=True),
    })
    export(ws, format="yolo", what="prelabeled", zip=True, out=tmp_path / "first.zip")  # sent once, then again:
    archive = export(ws, format="yolo", what="prelabeled", zip=True, out=tmp_path / "pre.zip")  # counted once
    # the whole pool pre-labeled, no batch asked for: offered, the images stay in the pool
    assert ws.store.count_by_state() == {"pool": 0, "prelabeled": 3, "in_review": 0, "labeled": 0}
    assert len(ws.store.tasks("files", status=NOT_BACK)) == 6

    corrected = tmp_path / "corrected"
    with zipfile.ZipFile(archive) as z:
        z.extractall(corrected)
        assert {"classmap.yaml", "data.yaml"} <= set(z.namelist())
    p1 = corrected / "labels" / "p1.txt"
    lines = p1.read_text().splitlines()
    assert len(lines) == 2  # the 0.05 box stayed out of the pre-labels
    # move the cat box 10 px right (IoU 0.6: adjusted), delete the dog, add a new dog
    moved = f"0 {40 / 200:.6f} {30 / 100:.6f} {40 / 200:.6f} {40 / 100:.6f}"
    p1.write_text(f"{moved}\n1 0.850000 0.200000 0.100000 0.200000\n")
    (corrected / "labels" / "p2.txt").write_text("")  # confirmed: nothing there

    report = add_labels(ws, corrected, format="yolo")
    assert report.acceptance == {"accepted": 2, "adjusted": 1, "deleted": 1, "added": 1}
    assert report.as_drawn == 2  # p0 untouched, and p2 confirmed empty as it was sent
    per_round = ws.store.acceptance_by_round()
    assert per_round[0]["items"] == 3 and per_round[0]["accepted"] == 2
    assert per_round[0]["prelabel_conf_min"] == per_round[0]["prelabel_conf_max"] == 0.25  # as the export cut them
    from boxloop import ledger

    assert ledger.history(ws.store)[0].prelabel_models == {"mv1": 3}  # whose pre-labels came back
    assert ws.store.count_by_state() == {"pool": 0, "prelabeled": 0, "in_review": 0, "labeled": 3}
    assert not ws.store.tasks("files", status=NOT_BACK)  # both exports' tasks are closed
    labels = ws.store.latest_labels()
    np.testing.assert_allclose(labels[ids["p1"]].xyxy[0], [20, 10, 60, 50], atol=1e-3)

    again = add_labels(ws, corrected, format="yolo")
    assert again.acceptance == {} and again.unchanged_labels == 3  # nothing counted twice

    result = CliRunner().invoke(app, ["-w", str(ws.root), "status"])
    assert result.exit_code == 0, result.output
    assert "pre-label acceptance per round" in result.output and "atconf" in flat(result.output)
    assert flat("0.25│") in flat(result.output)  # the threshold the export cut them at


def test_export_of_the_latest_selection_holds_only_its_images_prelabeled(tmp_path: Path) -> None:
    # the step-by-step loop without Label Studio: select, export the batch, correct, add labels
    ws, ids = photos_workspace(tmp_path, 4)
    confidence = {"p0": 0.9, "p1": 0.3, "p2": 0.35, "p3": 0.95}  # p1 and p2: the least confident
    ws.store.put_predictions("mv1", {ids[s]: Detections([[10, 10, 50, 50]], [0], [c]) for s, c in confidence.items()})
    ws.close()
    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(ws.root), "select", "--budget", "2", "--strategy", "least_confidence",
                                 "--no-diverse", "--seed", "0"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "batch"
    result = runner.invoke(app, ["-w", str(ws.root), "export", "--selection", "latest", "--zip", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "selection sel-" in text and ": 2 image(s)" in text
    assert "bring them back: boxloop add labels PATH --format yolo" in text
    assert "2 image(s) are out for labeling: `boxloop select` leaves them out until they come back" in text
    with Workspace.open(ws.root) as again:  # the batch is out: held out of selections
        assert again.store.count_by_state() == {"pool": 0, "prelabeled": 2, "in_review": 2, "labeled": 0}
    with zipfile.ZipFile(out.with_suffix(".zip")) as z:
        z.extractall(tmp_path / "corrected")
        assert sorted(n for n in z.namelist() if n.startswith("labels/")) == ["labels/p1.txt", "labels/p2.txt"]
    (tmp_path / "corrected" / "labels" / "p2.txt").write_text("")  # the cat was no cat
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(tmp_path / "corrected")])
    assert result.exit_code == 0, result.output
    assert ("pre-labels: 1 accepted, 0 adjusted, 1 deleted, 0 added (1 image(s) came back unchanged, as pre-labeled)"
            in " ".join(result.output.split()))
    with Workspace.open(ws.root) as again:
        assert again.store.count_by_state() == {"pool": 0, "prelabeled": 2, "in_review": 0, "labeled": 2}
    again_out = runner.invoke(app, ["-w", str(ws.root), "export", "--selection", "latest", "--zip"])
    assert again_out.exit_code == 1  # the batch is labeled now: nothing to pre-label, and it says why
    assert "among the 2 image(s) asked for: each is labeled already" in " ".join(again_out.output.split())
    # a new batch alone, pre-labeled by the current model (the "prediction-only run on new images")
    batch = tmp_path / "batch-2"
    write_image(batch / "n0.jpg", size=(200, 100), seed=7)
    with Workspace.open(ws.root) as again:
        add_images(again, [tmp_path / "ws" / ".." / "batch-2"])  # named from elsewhere: stored as one path
        (new,) = [it.id for it in again.store.items() if it.uri.startswith(str(batch))]
        again.store.put_predictions("mv1", {new: Detections([[5, 5, 40, 40]], [1], [0.8])})
    only = runner.invoke(app, ["-w", str(ws.root), "export", "--what", "prelabeled", "--from", str(batch),
                               "--out", str(tmp_path / "new-batch")])
    assert only.exit_code == 0, only.output
    assert sorted(p.name for p in (tmp_path / "new-batch" / "labels").iterdir()) == ["n0.txt"]
    nowhere = runner.invoke(app, ["-w", str(ws.root), "export", "--from", str(tmp_path / "elsewhere")])
    assert nowhere.exit_code == 1 and "noimageofthisworkspacewasaddedfromunderit" in flat(nowhere.output)
    one = runner.invoke(app, ["-w", str(ws.root), "export", "--from", str(batch / "n0.jpg")])  # a file: told to name its folder
    assert one.exit_code == 1 and flat("a file or a pattern; --from takes the folder (or bucket prefix)") in flat(one.output)
    # the whole pool's pre-labeled zip leaves the labeled images out, though their predictions are
    # still stored: brought back unchanged, the model's boxes would replace the human labels
    whole = runner.invoke(app, ["-w", str(ws.root), "export", "--what", "prelabeled", "--out", str(tmp_path / "pool")])
    assert whole.exit_code == 0, whole.output
    assert sorted(p.name for p in (tmp_path / "pool" / "labels").iterdir()) == ["n0.txt", "p0.txt", "p3.txt"]
    # no batch was asked for: the images went out pre-labeled but stay in the pool, so select still picks
    assert "3 image(s) went out pre-labeled and stay in the pool" in " ".join(whole.output.split())
    with Workspace.open(ws.root) as again:
        assert again.store.count_by_state() == {"pool": 0, "prelabeled": 3, "in_review": 0, "labeled": 2}
    picked = runner.invoke(app, ["-w", str(ws.root), "select", "--budget", "3", "--strategy", "least_confidence",
                                 "--no-diverse", "--seed", "0"])
    assert picked.exit_code == 0, picked.output
    with Workspace.open(ws.root) as again:
        assert len(again.store.selection().item_ids) == 3
    # one of them comes back labeled from that zip: its pre-labels are counted, its tasks closed
    back = tmp_path / "pool-back"
    (back / "images").mkdir(parents=True)
    (back / "labels").mkdir()
    for sub, name in (("images", "p0.jpg"), ("labels", "p0.txt")):
        (back / sub / name).write_bytes((tmp_path / "pool" / sub / name).read_bytes())
    (back / "data.yaml").write_text("names: [cat, dog]\n")
    came = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(back)])
    assert came.exit_code == 0, came.output
    assert "pre-labels: 1 accepted, 0 adjusted, 0 deleted, 0 added" in " ".join(came.output.split())
    with Workspace.open(ws.root) as again:
        assert again.store.count_by_state() == {"pool": 0, "prelabeled": 2, "in_review": 0, "labeled": 3}
        assert {t["item_id"] for t in again.store.tasks("files", status=NOT_BACK)} == {ids["p3"], new}


def test_video_frames_come_back_from_a_corrected_zip_as_the_same_frames(tmp_path: Path) -> None:
    """Frames are items by position, not content: an exported copy of a frame brought back
    (a zip straight from the annotation tool) is that frame again, never a new item; two
    frames with the same bytes (a still scene) are told apart by the file names the export
    gave them; a flickering frame's imputed box goes out drawn in and listed."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    for seq in ("cam-a", "cam-b"):
        for i in range(3):
            write_image(tmp_path / seq / f"f{i}.jpg", size=(200, 100), seed=10 * len(seq) + i + (seq == "cam-b") * 5)
    (tmp_path / "cam-b" / "f2.jpg").write_bytes((tmp_path / "cam-b" / "f1.jpg").read_bytes())  # nothing moved
    add_images(ws, [tmp_path / "cam-a", tmp_path / "cam-b"], sequence=True)
    frames = {f"{Path(it.uri).parent.name}/{Path(it.uri).stem}": it.id for it in ws.store.items()}
    assert len(frames) == 6 and all(it.video_id for it in ws.store.items())
    ws.store.put_predictions("mv1", {i: Detections([[10, 10, 50, 50]], [0], [0.5]) for i in frames.values()})
    ws.store.put_imputed("mv1", {frames["cam-a/f1"]: Detections([[100, 20, 160, 90]], [1], [0.6])})
    ws.close()
    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(ws.root), "select", "--budget", "6", "--strategy", "least_confidence",
                                 "--no-diverse", "--seed", "0", "--out", str(tmp_path / "to-label.csv")])
    assert result.exit_code == 0, result.output
    # each frame is named by its sequence (every sequence has an f0.jpg), in the table and the to-label list
    assert "cam-a frame 0" in result.output and "cam-b frame 2" in result.output
    import csv

    with open(tmp_path / "to-label.csv") as f:
        assert sorted(r["image"] for r in csv.DictReader(f)) == [f"{s} frame {i}" for s in ("cam-a", "cam-b") for i in range(3)]
    result = runner.invoke(app, ["-w", str(ws.root), "export", "--selection", "latest", "--zip",
                                 "--out", str(tmp_path / "batch.zip")])
    assert result.exit_code == 0, result.output
    assert "1 box(es) the model lost on video frames are drawn in" in " ".join(result.output.split())
    with zipfile.ZipFile(tmp_path / "batch.zip") as z:
        names = sorted(n.removeprefix("labels/") for n in z.namelist() if n.startswith("labels/"))
        imputed = z.read("imputed.csv").decode().splitlines()
        image = imputed[1].split(",")[0]  # cam-a's f1: its box and the imputed one
        assert len(z.read(f"labels/{Path(image).stem}.txt").decode().splitlines()) == 2
    # every sequence has an f0.jpg: each frame is named after its sequence
    assert sorted(names) == [f"{seq}_f{i}.txt" for seq in ("cam-a", "cam-b") for i in range(3)]
    assert imputed[0].startswith("image,class") and imputed[1].endswith(",dog,100.0,20.0,160.0,90.0,imputed: the "
                                                                      "model lost this object here but found it in "
                                                                      "the neighbouring frames")
    assert image == "cam-a_f1.jpg"  # the flickering frame, named after its sequence
    result = runner.invoke(app, ["-w", str(ws.root), "export", "--format", "labelstudio", "--selection", "latest",
                                 "--out", str(tmp_path / "ls")])  # an import file for Label Studio: flagged there
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    regions = [r for t in tasks for p in t["predictions"] for r in p["result"]]
    flagged = [r for r in regions if "imputed" in " ".join((r.get("meta") or {}).get("text") or [])]
    assert len(regions) == 7 and len(flagged) == 1 and flagged[0]["value"]["rectanglelabels"] == ["dog"]
    with Workspace.open(ws.root) as again:  # `round --push files` sends the same zip
        pushed = annotator_for("files").push(again, again.store.selection("latest"))
        assert pushed["pushed"] == 6 and pushed["imputed"] == 1
        with zipfile.ZipFile(pushed["path"]) as z:
            assert z.read("imputed.csv").decode().splitlines()[1:] == imputed[1:]

    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(tmp_path / "batch.zip")])  # as it came
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0 new image(s), 6 already known, 6 label version(s) added" in text
    assert "pre-labels: 7 accepted, 0 adjusted, 0 deleted, 0 added" in text and "unpacked batch.zip into" in text
    with Workspace.open(ws.root) as again:
        assert len(again.store.items()) == 6 and set(again.store.latest_labels()) == set(frames.values())
        assert again.store.count_by_state()["labeled"] == 6 and not again.store.tasks("files", status=NOT_BACK)
        assert len(again.store.latest_labels()[frames["cam-a/f1"]]) == 2
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(tmp_path / "batch.zip")])
    assert result.exit_code == 0 and "6 unchanged" in " ".join(result.output.split())  # unpacked once, nothing twice
    assert len(list((ws.root / "imports").iterdir())) == 1


def test_a_label_studio_json_export_of_frames_finds_each_frame(tmp_path: Path) -> None:
    """Label Studio's JSON export names each frame by its URL: the folders in it tell every
    video's f0.jpg apart, and a task `boxloop push` made names its item outright."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    for seq in ("cam-a", "cam-b"):
        for i in range(2):
            write_image(tmp_path / "media" / seq / f"f{i}.jpg", size=(200, 100), seed=len(seq) * 7 + i + (seq == "cam-b"))
    add_images(ws, [tmp_path / "media" / "cam-a", tmp_path / "media" / "cam-b"], sequence=True)
    frames = {f"{Path(it.uri).parent.name}/{Path(it.uri).stem}": it.id for it in ws.store.items()}

    def task(image: str, label: str, **data: str) -> dict:
        region = {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 200,
                  "original_height": 100, "value": {"x": 10, "y": 10, "width": 20, "height": 40, "rotation": 0,
                                                    "rectanglelabels": [label]}}
        return {"id": len(image), "data": {"image": image, **data}, "annotations": [{"id": 1, "result": [region]}]}

    export_json = tmp_path / "downloads" / "project-1-at-2026-12-07.json"  # no image beside it: the workspace's
    export_json.parent.mkdir()
    export_json.write_text(json.dumps([
        task("/data/local-files/?d=media/cam-a/f0.jpg", "cat"),
        task("/data/local-files/?d=media/cam-b/f0.jpg", "dog"),
        task("/data/upload/1/3f2a9c1e-f1.jpg", "dog", boxloop_item=frames["cam-b/f1"]),  # pushed by boxloop
        task("/data/upload/1/77aa0c1e-f1.jpg", "cat"),  # two frames named f1.jpg, no folder: named as a problem
    ]))
    report = add_labels(ws, export_json, format="labelstudio")
    assert report.labeled == 3 and report.added == 0
    (problem,) = [str(p) for p in report.problems]
    assert "ambiguous image '/data/upload/1/77aa0c1e-f1.jpg': 2 images named f1.jpg" in problem
    labels = ws.store.latest_labels()
    named = {k: ws.classes[int(labels[i].class_id[0])] for k, i in frames.items() if i in labels}
    assert named == {"cam-a/f0": "cat", "cam-b/f0": "dog", "cam-b/f1": "dog"}

    beside = tmp_path / "export.json"  # the images under the export's folder: the files found there
    beside.write_text(json.dumps([task("/data/local-files/?d=media/cam-a/f0.jpg", "dog"),
                                  task("/data/local-files/?d=media/cam-a/f1.jpg", "dog")]))
    report = add_labels(ws, beside, format="labelstudio")
    assert (report.labeled, report.added, report.known, len(report.problems)) == (2, 0, 2, 0)
    labels = ws.store.latest_labels()
    assert [ws.classes[int(labels[frames[k]].class_id[0])] for k in ("cam-a/f0", "cam-a/f1")] == ["dog", "dog"]


def test_a_batch_roboflow_renamed_and_resized_comes_back_as_the_images_sent_out(tmp_path: Path) -> None:
    """Roboflow re-encodes what it exports (resized, renamed p1_jpg.rf.<hash>.jpg): new bytes, so
    the image is known by the name it went out under, and its (relative) YOLO labels are read
    in the original's size. An image never sent out stays a new image."""
    from PIL import Image

    ws, ids = photos_workspace(tmp_path, 2)
    ws.store.put_predictions("mv1", {ids["p0"]: Detections([[10, 10, 50, 50]], [0], [0.9]),
                                     ids["p1"]: Detections([[100, 20, 160, 90]], [1], [0.8])})
    export(ws, format="yolo", what="prelabeled", out=tmp_path / "sent")
    back = tmp_path / "roboflow-export" / "train"
    for sub in ("images", "labels"):
        (back / sub).mkdir(parents=True)
    for stem in ("p0", "p1"):
        renamed = f"{stem}_jpg.rf.{'3f2a9c1e' * 4}"
        with Image.open(tmp_path / "sent" / "images" / f"{stem}.jpg") as im:
            im.resize((640, 640)).save(back / "images" / f"{renamed}.jpg", quality=80)  # "stretch to 640x640"
        text = (tmp_path / "sent" / "labels" / f"{stem}.txt").read_text()
        (back / "labels" / f"{renamed}.txt").write_text(text)
    write_image(back / "images" / "new_jpg.rf.0123456789abcdef.jpg", size=(640, 640), seed=99)
    (back / "labels" / "new_jpg.rf.0123456789abcdef.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "roboflow-export" / "data.yaml").write_text("names: [cat, dog]\n")

    other = tmp_path / "another-dataset"  # a different picture under a name that went out: not that image
    (other / "labels").mkdir(parents=True)
    Image.fromarray(np.repeat(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], 100, 0).repeat(3, 2)).save(
        other / "p0_jpg.rf.aaaaaaaaaaaaaaaa.jpg")
    (other / "labels" / "p0_jpg.rf.aaaaaaaaaaaaaaaa.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (other / "classes.txt").write_text("cat\ndog\n")
    stranger = add_labels(ws, other, format="yolo")
    assert (stranger.added, stranger.known) == (1, 0) and not stranger.acceptance
    assert len(ws.store.tasks("files", status=NOT_BACK)) == 2  # p0 is still out

    report = add_labels(ws, tmp_path / "roboflow-export", format="yolo")
    assert (report.added, report.known, report.labeled) == (1, 2, 3)
    assert report.acceptance == {"accepted": 2, "adjusted": 0, "deleted": 0, "added": 0}
    assert any("2 image(s) came back re-encoded or renamed" in n for n in report.notes)
    labels = ws.store.latest_labels()
    np.testing.assert_allclose(labels[ids["p1"]].xyxy, [[100, 20, 160, 90]], atol=0.01)  # the original's pixels
    assert not ws.store.tasks("files", status=NOT_BACK) and len(ws.store.items()) == 4


def test_a_roboflow_coco_export_of_a_resized_batch_scales_back_to_the_images_sent_out(tmp_path: Path) -> None:
    """COCO boxes are pixels of the copy Roboflow resized: they are scaled to the original."""
    from PIL import Image

    ws, ids = photos_workspace(tmp_path, 2)
    ws.store.put_predictions("mv1", {ids["p1"]: Detections([[100, 20, 160, 90]], [1], [0.8])})
    export(ws, format="yolo", what="prelabeled", out=tmp_path / "sent")
    back = tmp_path / "roboflow-coco" / "train"
    back.mkdir(parents=True)
    name = f"p1_jpg.rf.{'0badc0de' * 4}.jpg"
    with Image.open(tmp_path / "sent" / "images" / "p1.jpg") as im:
        im.resize((640, 640)).save(back / name, quality=85)  # 200x100 stretched: x 3.2, y 6.4
    (back / "_annotations.coco.json").write_text(json.dumps({
        "images": [{"id": 0, "file_name": name, "width": 640, "height": 640}],
        "categories": [{"id": 0, "name": "animals"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 2, "bbox": [320, 128, 192, 448]}],
    }))
    report = add_labels(ws, back / "_annotations.coco.json", format="coco")
    assert (report.added, report.known, report.labeled) == (0, 1, 1) and not report.problems
    assert report.acceptance == {"accepted": 1, "adjusted": 0, "deleted": 0, "added": 0}
    np.testing.assert_allclose(ws.store.latest_labels()[ids["p1"]].xyxy, [[100, 20, 160, 90]], atol=0.01)


def frames_workspace(tmp_path: Path) -> tuple[Workspace, dict[str, str]]:
    """Two three-frame sequences, cam-a and cam-b, both with f0.jpg .. f2.jpg (200x100), each
    frame predicted with one cat box; frame ids by "cam-a/f0"."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    for k, seq in enumerate(("cam-a", "cam-b")):
        for i in range(3):
            write_image(tmp_path / seq / f"f{i}.jpg", size=(200, 100), seed=10 * k + i)
    add_images(ws, [tmp_path / "cam-a", tmp_path / "cam-b"], sequence=True)
    frames = {f"{Path(it.uri).parent.name}/{Path(it.uri).stem}": it.id for it in ws.store.items()}
    ws.store.put_predictions("mv1", {i: Detections([[10, 10, 50, 50]], [0], [0.5]) for i in frames.values()})
    return ws, frames


def test_labels_without_their_images_find_the_frames_an_export_sent_out(tmp_path: Path) -> None:
    """CVAT's YOLO 1.1 export without images (obj.names, obj.data, train.txt, obj_train_data/):
    every label file names an image as the pre-labeled zip sent it out, so each frame of two
    videos, both with an f0.jpg, gets its own labels back; the image list is no label file,
    and a re-run adds nothing."""
    ws, frames = frames_workspace(tmp_path)
    export(ws, format="yolo", what="prelabeled", zip=True, out=tmp_path / "batch.zip")
    cvat = tmp_path / "cvat-yolo"
    (cvat / "obj_train_data").mkdir(parents=True)
    (cvat / "obj.names").write_text("cat\ndog\n")
    (cvat / "obj.data").write_text("classes = 2\nnames = data/obj.names\ntrain = data/train.txt\n")
    with zipfile.ZipFile(tmp_path / "batch.zip") as z:
        sent = sorted(n.removeprefix("images/") for n in z.namelist() if n.startswith("images/"))
        for name in sent:
            text = z.read(f"labels/{Path(name).stem}.txt").decode()
            (cvat / "obj_train_data" / f"{Path(name).stem}.txt").write_text(text)
    assert len(sent) == 6 and sorted(n for n in sent if n.endswith("_f0.jpg")) == ["cam-a_f0.jpg", "cam-b_f0.jpg"]
    moved = "cam-b_f0.jpg"
    (cvat / "obj_train_data" / f"{Path(moved).stem}.txt").write_text("1 0.5 0.5 0.2 0.4\n")  # a dog, not the cat
    (cvat / "train.txt").write_text("".join(f"data/obj_train_data/{n}\n" for n in sent))

    report = add_labels(ws, cvat, format="yolo")
    assert not report.problems, [str(x) for x in report.problems]
    assert (report.added, report.known, report.labeled) == (0, 6, 6)
    assert report.acceptance == {"accepted": 5, "adjusted": 0, "deleted": 1, "added": 1}
    assert any("6 label file(s) came without their images" in n for n in report.notes)
    labels = ws.store.latest_labels()
    assert set(labels) == set(frames.values()) and not ws.store.tasks("files", status=NOT_BACK)
    dogs = [k for k, i in frames.items() if labels[i].class_id.tolist() == [1]]
    relabeled = "cam-b/f0"  # the frame sent as cam-b_f0.jpg
    assert dogs == [relabeled] and labels[frames[relabeled]].xyxy.tolist() == [[80.0, 30.0, 120.0, 70.0]]
    again = add_labels(ws, cvat, format="yolo")  # the export is closed now: its names still find the frames
    assert not again.problems and (again.labeled, again.unchanged_labels) == (0, 6)


def test_labels_without_images_by_their_names_in_the_workspace_or_a_clear_problem(tmp_path: Path) -> None:
    """Label Studio's YOLO export (labels/ and classes.txt, no images) of images never exported
    by boxloop: a name the workspace holds once is that image; a frame name every video has
    is a problem that says how to bring them back; a label beside images that lack its own
    stays the problem it was."""
    ws, frames = frames_workspace(tmp_path)
    write_image(tmp_path / "stills" / "kitchen.jpg", size=(200, 100), seed=99)
    add_images(ws, [tmp_path / "stills"])
    ls = tmp_path / "ls-yolo"
    (ls / "labels").mkdir(parents=True)
    (ls / "classes.txt").write_text("cat\ndog\n")
    (ls / "notes.json").write_text("{}")
    (ls / "labels" / "kitchen.txt").write_text("0 0.25 0.5 0.1 0.2\n")
    (ls / "labels" / "f1.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (ls / "labels" / "nowhere.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    report = add_labels(ws, ls, format="yolo")
    lines = [str(x) for x in report.problems]
    assert report.labeled == 1 and len(lines) == 2, lines
    assert any("f1.txt" in line and "2 images in the workspace are named f1.*" in line and "as JSON" in line
               for line in lines)
    assert any("nowhere.txt" in line and "none named nowhere.* here, sent out, or in the workspace" in line
               for line in lines)
    [(kitchen, boxes)] = [(i, d) for i, d in ws.store.latest_labels().items()]
    assert Path(ws.store.get_item(kitchen).uri).name == "kitchen.jpg" and boxes.xyxy.tolist() == [[40.0, 40.0, 60.0, 60.0]]
    (ls / "labels" / "cam-a").mkdir()  # one folder per video, as the frames are kept: the folder tells
    (ls / "labels" / "f1.txt").rename(ls / "labels" / "cam-a" / "f1.txt")
    assert add_labels(ws, ls, format="yolo").labeled == 1 and frames["cam-a/f1"] in ws.store.latest_labels()

    mixed = tmp_path / "mixed"  # images here, one of them without its label, one label without its image
    write_image(mixed / "images" / "a.jpg", size=(64, 64), seed=5)
    (mixed / "labels").mkdir()
    (mixed / "labels" / "kitchen.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (mixed / "classes.txt").write_text("cat\ndog\n")
    (mixed / "train.txt").write_text("images/a.jpg\n")  # Ultralytics YOLO export's image list: not labels
    report = add_labels(ws, mixed, format="yolo")
    assert [(Path(x.path).name, x.reason) for x in report.problems] == [
        ("kitchen.txt", "label file with no image (no image named kitchen.* here)")
    ]


def test_a_coco_file_without_images_names_frames_as_the_export_sent_them(tmp_path: Path) -> None:
    """A COCO export of the batch (annotations only): `f0.jpg` and `f0_<id>.jpg` are the two
    videos' first frames as the zip named them, not "ambiguous" and "not found"."""
    ws, frames = frames_workspace(tmp_path)
    export(ws, format="yolo", what="prelabeled", zip=True, out=tmp_path / "batch.zip")
    with zipfile.ZipFile(tmp_path / "batch.zip") as z:
        sent = sorted(n.removeprefix("images/") for n in z.namelist() if n.startswith("images/"))
    coco = {
        "images": [{"id": k, "file_name": name, "width": 200, "height": 100} for k, name in enumerate(sent, 1)],
        "annotations": [{"id": k, "image_id": k, "category_id": 2, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0}
                        for k in range(1, len(sent) + 1)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    (tmp_path / "coco-export").mkdir()
    (tmp_path / "coco-export" / "coco.json").write_text(json.dumps(coco))
    report = add_labels(ws, tmp_path / "coco-export" / "coco.json", format="coco")
    assert not report.problems, [str(x) for x in report.problems]
    assert report.labeled == 6 and report.acceptance == {"accepted": 0, "adjusted": 0, "deleted": 6, "added": 6}
    labels = ws.store.latest_labels()
    assert set(labels) == set(frames.values())
    assert all(d.xyxy.tolist() == [[10.0, 20.0, 40.0, 60.0]] and d.class_id.tolist() == [1] for d in labels.values())


def test_an_exported_data_yaml_finds_its_images_wherever_it_is_read(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A zip's data.yaml names no `path` (unpacked anywhere, Ultralytics reads the images beside
    it); a folder exported with a relative --out names its absolute path, not `../batch`."""
    import yaml
    from ultralytics.data.utils import check_det_dataset

    from _tiny_data import ultralytics_offline

    ultralytics_offline(tmp_path / "ultralytics")
    ws, ids = photos_workspace(tmp_path, 3)
    ws.store.put_predictions("mv1", {i: Detections([[10, 10, 50, 50]], [0], [0.5]) for i in ids.values()})
    ws.store.add_label(ids["p0"], Detections([[10, 10, 50, 50]], [1]), source="test", round=0)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    export(ws, format="yolo", what="prelabeled", zip=True, out=Path("../batch.zip"))
    export(ws, format="yolo", what="labeled", out=Path("../labeled"))
    with zipfile.ZipFile(tmp_path / "batch.zip") as z:
        z.extractall(tmp_path / "unpacked" / "somewhere")
    unpacked = tmp_path / "unpacked" / "somewhere" / "data.yaml"
    assert "path" not in yaml.safe_load(unpacked.read_text())
    monkeypatch.chdir(tmp_path)
    data = check_det_dataset(str(unpacked))
    assert Path(data["train"]) == unpacked.parent / "images" and len(list(Path(data["train"]).iterdir())) == 2
    assert yaml.safe_load((tmp_path / "labeled" / "data.yaml").read_text())["path"] == str(tmp_path / "labeled")
    # others may read what is exported for them, as any file this user makes (not 0600 / 0700)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "batch.zip").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "labeled").stat().st_mode & 0o777 == 0o777 & ~umask
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_a_pool_uploaded_to_roboflow_by_hand_comes_back_as_the_same_images(tmp_path: Path) -> None:
    """The pool never went out through boxloop: it was uploaded to Roboflow by hand, labeled
    there, and exported re-encoded, stretched and renamed. Each copy is the workspace's image
    of the name Roboflow renamed (once it shows the same picture), not a duplicate."""
    from PIL import Image

    ws, ids = photos_workspace(tmp_path, 3)
    back = tmp_path / "rf" / "train"
    for sub in ("images", "labels"):
        (back / sub).mkdir(parents=True)
    for stem in ("p0", "p1"):
        renamed = f"{stem}_jpg.rf.{'9b1d3e7a' * 4}"
        with Image.open(tmp_path / "photos" / f"{stem}.jpg") as im:
            im.resize((640, 640)).save(back / "images" / f"{renamed}.jpg", quality=75)
        (back / "labels" / f"{renamed}.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (tmp_path / "rf" / "data.yaml").write_text("names: [cat, dog]\n")
    report = add_labels(ws, tmp_path / "rf", format="yolo", split="folders")
    assert (report.added, report.known, report.labeled) == (0, 2, 2), report.summary()
    assert any("2 image(s) came back re-encoded or renamed" in n for n in report.notes)
    labels = ws.store.latest_labels()
    np.testing.assert_allclose(labels[ids["p1"]].xyxy, [[80, 30, 120, 70]], atol=0.01)  # the original's pixels
    assert len(ws.store.items()) == 3 and ws.store.get_item(ids["p0"]).split is None  # no test/: left for `split`


def test_copies_roboflow_fitted_in_with_black_edges_give_their_boxes_back_in_the_photos_pixels(
    tmp_path: Path, coco128: Path
) -> None:
    """Roboflow's "Fit (black edges) in 640x640": each photo scaled keeping its aspect ratio,
    centred, padded with black. YOLO labels are relative to the padded copy, COCO boxes are its
    pixels: both land where they were drawn on the photo; a box drawn on the black edge is
    named and left out, the photo's other boxes kept."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    photos = [p for p in sorted((coco128 / "images").rglob("*.jpg")) if _aspect(p) > 1.2][:2]
    pool = tmp_path / "pool"
    pool.mkdir()
    for i, photo in enumerate(photos):
        (pool / f"p{i}.jpg").write_bytes(photo.read_bytes())
    add_images(ws, [pool])
    items = {Path(it.uri).stem: it for it in ws.store.items()}
    drawn = {stem: np.array([[0.1 * it.width, 0.2 * it.height, 0.5 * it.width, 0.9 * it.height]])
             for stem, it in items.items()}

    rf = tmp_path / "rf" / "train"
    for sub in ("images", "labels"):
        (rf / sub).mkdir(parents=True)
    coco_images, coco_boxes = [], []
    for k, stem in enumerate(items):
        renamed = f"{stem}_jpg.rf.{'5e6f7a8b' * 4}"
        s, dx, dy = fitted_copy(pool / f"{stem}.jpg", rf / "images" / f"{renamed}.jpg", size=(640, 640), edge="black")
        x1, y1, x2, y2 = (drawn[stem][0] * s + [dx, dy, dx, dy]).tolist()
        lines = [f"1 {(x1 + x2) / 1280:.6f} {(y1 + y2) / 1280:.6f} {(x2 - x1) / 640:.6f} {(y2 - y1) / 640:.6f}"]
        if stem == "p1":
            assert dy >= 40
            lines.append(f"0 0.5 {dy / 2 / 640:.6f} 0.1 {dy / 2 / 640:.6f}")  # on the black edge above the photo
        (rf / "labels" / f"{renamed}.txt").write_text("\n".join(lines) + "\n")
        coco_images.append({"id": k, "file_name": f"{renamed}.jpg", "width": 640, "height": 640})
        coco_boxes.append({"id": k, "image_id": k, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]})
    (tmp_path / "rf" / "data.yaml").write_text("names: [cat, dog]\n")
    report = add_labels(ws, tmp_path / "rf", format="yolo")
    assert (report.added, report.known, report.labeled) == (0, 2, 2), report.summary()
    (problem,) = report.problems
    assert problem.path.endswith("p1_jpg.rf.5e6f7a8b5e6f7a8b5e6f7a8b5e6f7a8b.txt")
    assert "1 box(es) lie on the padded edge of this copy, outside the picture: left out" in problem.reason
    assert any("2 fitted in with padded edges" in n for n in report.notes), report.notes
    labels = ws.store.latest_labels()
    for stem, it in items.items():
        assert labels[it.id].class_id.tolist() == [1]
        np.testing.assert_allclose(labels[it.id].xyxy, drawn[stem], atol=1.5)

    # the same copies as Roboflow's COCO export
    (rf / "_annotations.coco.json").write_text(json.dumps({
        "images": coco_images, "categories": [{"id": 0, "name": "animals"}, {"id": 1, "name": "cat"}],
        "annotations": coco_boxes,
    }))
    for f in (rf / "images").iterdir():
        f.rename(rf / f.name)
    report = add_labels(ws, rf / "_annotations.coco.json", format="coco")
    assert (report.added, report.known, report.labeled) == (0, 2, 2) and not report.problems, report.summary()
    labels = ws.store.latest_labels()
    for stem, it in items.items():
        assert labels[it.id].class_id.tolist() == [0]
        np.testing.assert_allclose(labels[it.id].xyxy, drawn[stem], atol=1.5)
    assert len(ws.store.items()) == 2


def _aspect(photo: Path) -> float:
    from PIL import Image

    with Image.open(photo) as im:
        return im.width / im.height


def test_a_picture_moved_away_is_left_out_of_exports_and_training_views_by_name(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A labeled picture whose file was moved or deleted since it was added: an export and a
    training view leave it out and name it (before, a training view linked to nothing and the
    trainer dropped it without a word; a copying export failed whole)."""
    import logging

    from boxloop.export import write_yolo_dataset

    ws, ids = photos_workspace(tmp_path, 3)
    for stem in ("p0", "p1", "p2"):
        ws.store.add_label(ids[stem], Detections([[10, 10, 50, 50]], [0]), source="test")
    gone = tmp_path / "photos" / "p1.jpg"
    gone.rename(tmp_path / "p1-moved.jpg")
    ws.close()
    result = CliRunner().invoke(app, ["-w", str(ws.root), "export", "--format", "yolo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert flat(f"1 image(s) left out: their file is no longer where it was added from (moved or deleted): {gone}") in said
    written = sorted(p.name for p in (tmp_path / "out" / "images").rglob("*.jpg"))
    assert written == ["p0.jpg", "p2.jpg"]
    with Workspace.open(ws.root) as again, caplog.at_level(logging.WARNING, logger="boxloop.export"):
        data = write_yolo_dataset(again, tmp_path / "view", what="labeled", link=True, splits=("train", "val"))
        linked = [p for p in (data.parent / "images").rglob("*.jpg")]
        assert len(linked) == 2 and all(p.resolve().is_file() for p in linked)
        assert any("1 labeled image(s) left out" in r.getMessage() and str(gone) in r.getMessage() for r in caplog.records)
    gone.with_name("p0.jpg").unlink()
    gone.with_name("p2.jpg").unlink()
    none_left = CliRunner().invoke(app, ["-w", str(ws.root), "export", "--format", "yolo", "--out", str(tmp_path / "o2")])
    assert none_left.exit_code == 1 and "nothingtoexportfor--whatlabeled:3image(s)leftout" in flat(none_left.output)


def test_a_batch_nobody_will_label_is_released_back_to_the_pool(tmp_path: Path) -> None:
    """A batch exported for labeling holds its images out of selections until it comes back;
    `boxloop release` puts them back in the pool, and labels brought back for them later still
    count what was done with the pre-labels."""
    ws, ids = photos_workspace(tmp_path, 5)
    ws.store.add_label(ids.pop("p4"), Detections([[10, 10, 50, 50]], [0]), source="test")
    ws.store.put_predictions("mv1", {i: Detections([[10, 10, 50, 50]], [0], [0.3 + 0.1 * k])
                                     for k, i in enumerate(ids.values())})
    ws.close()
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["-w", str(ws.root), *args])
        assert result.exit_code == code, result.output
        return " ".join(result.output.split())

    assert "no exported batch is out for labeling" in run("release")
    run("select", "--budget", "2", "--strategy", "least_confidence", "--no-diverse", "--seed", "0")
    run("export", "--selection", "latest", "--zip", "--out", str(tmp_path / "batch"))
    with Workspace.open(ws.root) as again:
        assert again.store.count_by_state()["in_review"] == 2
    assert "(a batch nobody will label: boxloop release)" in run("status")
    listed = run("release")
    assert "batch.zip" in listed and "put one back: boxloop release NAME" in listed
    assert "no exported batch named 'other.zip' is out for labeling; out now: batch.zip (2)" in run(
        "release", "other.zip", code=1)
    assert "2 image(s) back in the pool from batch.zip" in run("release", "batch")  # the name without .zip finds it
    assert "'batch.zip' is not out for labeling: its images are in the pool already" in run("release", "batch.zip", code=1)
    with Workspace.open(ws.root) as again:
        assert again.store.count_by_state() == {"pool": 0, "prelabeled": 4, "in_review": 0, "labeled": 1}
    assert "no exported batch is out for labeling" in run("release")
    # the batch comes back after all: its labels are counted as for any batch
    said = run("add", "labels", str(tmp_path / "batch.zip"))
    assert "pre-labels: 2 accepted, 0 adjusted, 0 deleted, 0 added" in said
    with Workspace.open(ws.root) as again:
        assert again.store.count_by_state()["labeled"] == 3 and not again.store.tasks("files", status=NOT_BACK)


def test_a_new_round_with_an_earlier_batch_out_waits_for_it_or_says_so(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`round --push files` while an earlier batch is out: the new round would train on the same
    labels. Without --wait it says so; with --wait it waits for that batch first, until `add
    labels` brings it back (here, from the 'other shell' a sleep stands for)."""
    import boxloop.cli.loop as cli_loop
    from boxloop.export import export_dataset

    ws, ids = photos_workspace(tmp_path, 3)
    ws.store.put_predictions("mv1", {i: Detections([[10, 10, 50, 50]], [0], [0.9]) for i in ids.values()})
    sent = export_dataset(ws, what="prelabeled", zip=True, out=tmp_path / "batch.zip", batch=True).path
    cli_loop._earlier_batch(ws, "files", wait=False, poll=0.01)
    said = " ".join(capsys.readouterr().out.split())
    assert "note: 3 image(s) of an earlier batch are not back yet (batch.zip): this round trains on the labels it has" in said
    naps: list[float] = []

    def nap(seconds: float) -> None:  # the other shell brings the batch back while the round waits
        naps.append(seconds)
        add_labels(ws, sent, format="yolo")

    monkeypatch.setattr("time.sleep", nap)
    cli_loop._earlier_batch(ws, "files", wait=True, poll=0.01)
    said = " ".join(capsys.readouterr().out.split())
    assert "waiting first for the 3 image(s) of the earlier batch (batch.zip): bring it back corrected" in said
    assert naps == [0.01] and ws.store.count_by_state()["labeled"] == 3
    cli_loop._earlier_batch(ws, "files", wait=True, poll=0.01)  # nothing out: nothing said, no wait
    assert capsys.readouterr().out == "" and naps == [0.01]


def test_a_prelabeled_export_names_whose_boxes_it_holds_and_a_newer_model_that_has_not_predicted(tmp_path: Path) -> None:
    import time

    ws, ids = photos_workspace(tmp_path, 2)
    ws.store.add_model_version("ext-1", backend="imported", classes=ws.classes)
    ws.store.put_predictions("ext-1", {i: Detections([[10, 10, 50, 50]], [0], [0.9]) for i in ids.values()})
    time.sleep(0.01)
    ws.store.add_model_version("m002", backend="ultralytics", classes=ws.classes, path=str(tmp_path / "best.pt"))
    ws.close()
    result = CliRunner().invoke(app, ["-w", str(ws.root), "export", "--what", "prelabeled", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "pre-labels: the boxes of model version ext-1 at confidence >= 0.25" in said
    assert "note: model version m002 is newer but has not predicted these images: boxloop predict" in said


def test_export_with_an_older_version_says_whether_the_newer_one_predicted_these_images(tmp_path: Path) -> None:
    """`export -m OLD` beside a newer version that predicted the same images once said it had not
    (it compared creation times alone), sending the user to predict again for nothing."""
    import time

    ws, ids = photos_workspace(tmp_path, 2)
    box = {i: Detections([[10, 10, 50, 50]], [0], [0.9]) for i in ids.values()}
    ws.store.add_model_version("mv1", backend="fake", classes=ws.classes, path=str(tmp_path / "mv1.pt"))
    ws.store.put_predictions("mv1", box)
    time.sleep(0.01)
    ws.store.add_model_version("mv2", backend="fake", classes=ws.classes, path=str(tmp_path / "mv2.pt"))
    ws.store.put_predictions("mv2", box)
    result = CliRunner().invoke(app, ["-w", str(ws.root), "export", "--what", "prelabeled", "-m", "mv1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "note: model version mv2 is newer and predicted these images too: -m mv2 exports its pre-labels" in " ".join(
        result.output.split())
