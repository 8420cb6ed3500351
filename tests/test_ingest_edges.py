"""Rough edges a user test found in bringing data in: boxes reaching past their image, paths
that name nothing, YOLO labels with no class file, a tiny frozen test split, `init` on a
workspace, `status` on many classes, and a labels-only zip."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from _images import write_image
from boxloop.cli import app
from boxloop.ingest import add_images, add_labels
from boxloop.split import assign_splits
from boxloop.types import Detections
from boxloop.workspace import Workspace

runner = CliRunner()
GOOD = "1 0.5 0.5 0.2 0.2\n"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws", classes=["cat", "dog"])


def yolo_folder(root: Path, labels: dict[str, str], *, class_file: bool = True) -> Path:
    """images/<stem>.jpg (100x50) and labels/<stem>.txt, with classes.txt naming cat, dog."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    if class_file:
        (root / "classes.txt").write_text("cat\ndog\n")
    for i, (stem, text) in enumerate(labels.items()):
        write_image(root / "images" / f"{stem}.jpg", size=(100, 50), seed=i)
        (root / "labels" / f"{stem}.txt").write_text(text)
    return root


def cli(ws: Workspace, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["-w", str(ws.root), *args])


# -- 1. a box reaching past its image is clipped, as Ultralytics clips it -------------------


def test_a_yolo_box_reaching_past_the_image_is_clipped_and_the_file_kept(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"edge": "0 0.95 0.5 0.2 0.2\n" + GOOD, "other": GOOD})
    report = add_labels(ws, src, format="yolo")
    assert not report.problems, [str(p) for p in report.problems]
    assert report.labeled == 2 and ws.store.count_by_state()["pool"] == 0
    txt = src / "labels" / "edge.txt"
    (item,) = [it for it in ws.store.items() if it.uri.endswith("edge.jpg")]
    labels = ws.store.latest_labels()[item.id]
    np.testing.assert_allclose(labels.xyxy, [[85, 20, 100, 30], [40, 20, 60, 30]], atol=1e-3)  # x 0.85..1.05 -> ..1.0
    assert labels.class_id.tolist() == [0, 1]
    assert (f"1 box(es) reached past the edge of their image and were clipped to it, as Ultralytics clips them "
            f"({txt}:1)") in report.notes
    result = cli(ws, "add", "labels", str(src), "--strict")  # a note, not a problem: --strict passes
    assert result.exit_code == 0, result.output
    assert flat(f"clipped to it, as Ultralytics clips them ({txt}:1)") in flat(result.output)


def test_a_yolo_box_with_no_area_inside_the_image_is_dropped_and_the_rest_kept(ws: Workspace, tmp_path: Path) -> None:
    """A polygon lying on the image's right edge has no area: left out with a problem at its
    line; the file's other boxes are still its image's labels (no object was lost)."""
    src = yolo_folder(tmp_path / "src", {"flat": GOOD + "0 1.0 0.2 1.0 0.4 1.0 0.6\n0 0.95 0.5 0.2 0.2\n"})
    report = add_labels(ws, src, format="yolo")
    txt = src / "labels" / "flat.txt"
    (problem,) = report.problems
    assert str(problem).startswith(f"{txt}:2: box has no area inside the image in '0 1.0 0.2 1.0 0.4 1.0 0.6'")
    assert "left out, the file's other boxes kept" in problem.reason
    (labels,) = ws.store.latest_labels().values()
    assert labels.class_id.tolist() == [1, 0] and len(labels) == 2
    assert any(f"({txt}:3)" in n for n in report.notes)


def test_coordinates_far_outside_0_1_skip_the_file(ws: Workspace, tmp_path: Path) -> None:
    """Coordinates far outside [0, 1] are pixels, not normalised: every box of the file is
    wrong, so the whole file waits to be fixed."""
    src = yolo_folder(tmp_path / "src", {"px": "0 320 240 50 60\n" + GOOD})
    report = add_labels(ws, src, format="yolo")
    assert [str(p) for p in report.problems] == [
        f"{src / 'labels' / 'px.txt'}:1: coordinates far outside [0, 1] (not divided by the image's size?) in "
        "'0 320 240 50 60'",
        f"{src / 'labels' / 'px.txt'}: label file skipped (its image stays unlabeled) until fixed",
    ]
    assert ws.store.latest_labels() == {}


def test_a_centre_just_past_the_edge_is_clipped_or_left_out_and_the_rest_kept(ws: Workspace, tmp_path: Path) -> None:
    """A centre a little outside [0, 1]: a box reaching into the image is clipped to it; one
    with nothing inside is left out; the file's other boxes are its image's labels either way
    (once, one such line skipped the whole file and its good boxes)."""
    src = yolo_folder(tmp_path / "src", {
        "reach": "0 1.02 0.5 0.1 0.1\n1 0.3 0.3 0.1 0.1\n",  # x 0.97..1.07: clipped to 0.97..1
        "gone": "0 1.5 0.5 0.1 0.1\n1 0.3 0.3 0.1 0.1\n",  # x 1.45..1.55: nothing inside
    })
    report = add_labels(ws, src, format="yolo")
    gone = src / "labels" / "gone.txt"
    assert [str(p) for p in report.problems] == [
        f"{gone}:1: box has no area inside the image in '0 1.5 0.5 0.1 0.1'; left out, the file's other boxes kept"
    ]
    assert any(f"({src / 'labels' / 'reach.txt'}:1)" in n for n in report.notes)
    labels = {Path(it.uri).stem: ws.store.latest_labels([it.id])[it.id] for it in ws.store.items()}
    assert labels["gone"].class_id.tolist() == [1]
    assert labels["reach"].class_id.tolist() == [0, 1]
    w = ws.store.items()[0].width
    np.testing.assert_allclose(labels["reach"].xyxy[0, [0, 2]], [0.97 * w, w], atol=1e-3)


def test_coco_voc_cvat_boxes_reaching_past_the_image_are_clipped_and_noted(ws: Workspace, tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "a.jpg", size=(100, 50), seed=1)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [80, 10, 40, 20]},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [130, 10, 10, 10]}]}
    path = tmp_path / "imgs" / "coco.json"
    path.write_text(json.dumps(coco))
    report = add_labels(ws, path, format="coco")
    (problem,) = report.problems
    assert "annotations[1] (id 2): box [130, 10, 140, 20] (xyxy) lies outside the 100x50 image; left out" in str(problem)
    assert f"({path}: annotations[0] (id 1))" in report.notes[-1] and report.notes[-1].startswith("1 box(es)")
    (labels,) = ws.store.latest_labels().values()
    np.testing.assert_allclose(labels.xyxy, [[80, 10, 100, 30]])

    xml = (tmp_path / "imgs" / "annotations.xml")
    xml.write_text('<annotations>\n<image id="0" name="a.jpg" width="100" height="50">\n'
                   '<box label="dog" xtl="-15" ytl="5" xbr="20" ybr="15"/>\n</image>\n</annotations>\n')
    report = add_labels(ws, xml, format="cvat")
    assert not report.problems and f"({xml}:3)" in report.notes[-1]
    (labels,) = ws.store.latest_labels().values()
    np.testing.assert_allclose(labels.xyxy, [[0, 5, 20, 15]])

    voc = tmp_path / "voc"  # no <size>: clipped against the image itself
    voc.mkdir()
    (voc / "a.xml").write_text("<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>51</xmin>"
                               "<ymin>1</ymin><xmax>160</xmax><ymax>20</ymax></bndbox></object></annotation>")
    report = add_labels(ws, voc, format="voc", images=tmp_path / "imgs")
    assert not report.problems and report.notes[-1].startswith("1 box(es) reached past the edge of their image")
    (labels,) = ws.store.latest_labels().values()
    np.testing.assert_allclose(labels.xyxy, [[50, 0, 100, 20]])


def test_label_studio_boxes_reaching_past_the_image_are_clipped_and_noted(ws: Workspace, tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", size=(100, 50), seed=1)

    def region(x: float, y: float, w: float, h: float, rid: str) -> dict:
        return {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                "original_width": 100, "original_height": 50,
                "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": ["dog"]}}

    export = [{"id": 7, "data": {"image": "a.jpg"}, "annotations": [{"id": 1, "result": [
        region(90, 10, 20, 20, "past"), region(120, 10, 10, 10, "gone"), region(10, 10, 10, 10, "in")]}]}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    report = add_labels(ws, path, format="labelstudio")
    (problem,) = report.problems
    assert "task 7 (a.jpg)" in problem.path and "lies outside the 100x50 image; left out" in problem.reason
    assert f"({path}: task 7)" in report.notes[-1]
    (labels,) = ws.store.latest_labels().values()
    np.testing.assert_allclose(labels.xyxy, [[90, 5, 100, 15], [10, 5, 20, 10]], atol=1e-3)


# -- 2. a path that names nothing fails the command; an empty folder is said -----------------


def test_add_images_with_a_missing_path_exits_non_zero_and_adds_the_others(ws: Workspace, tmp_path: Path) -> None:
    write_image(tmp_path / "pics" / "a.jpg", seed=1)
    missing = tmp_path / "does-not-exist"
    result = cli(ws, "add", "images", str(missing), str(tmp_path / "pics"))
    assert result.exit_code == 1, result.output
    said = flat(result.output)
    assert flat(f"error: {missing}: no such file, folder or matching glob; the other paths given were read") in said
    assert ws.store.count_items() == 1  # the path that exists was still added
    result = cli(ws, "add", "images", str(missing))
    assert result.exit_code == 1 and flat(f"error: {missing}: no such file, folder or matching glob") in flat(result.output)


def test_add_images_of_a_folder_with_no_images_says_so(ws: Workspace, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("nothing to see\n")
    report = add_images(ws, [empty])
    (problem,) = report.problems
    assert problem.path == str(empty) and problem.reason.startswith("no images found in this folder (looked for ")
    assert ".jpg" in problem.reason and ".png" in problem.reason
    assert report.not_found == []  # it exists: a problem, not a failed command
    result = cli(ws, "add", "images", str(empty))
    assert result.exit_code == 0 and flat(f"{empty}: no images found in this folder") in flat(result.output)
    assert cli(ws, "add", "images", str(empty), "--strict").exit_code == 1
    frames = add_images(ws, [empty], sequence=True)
    assert [p.reason.split(" (")[0] for p in frames.problems] == ["no images found in this folder"]


def test_add_video_with_a_missing_path_exits_non_zero(ws: Workspace, tmp_path: Path) -> None:
    result = cli(ws, "add", "video", str(tmp_path / "nope.mp4"))
    assert result.exit_code == 1 and flat(f"error: {tmp_path / 'nope.mp4'}: no such file") in flat(result.output)


# -- 3. YOLO labels with no class file: the workspace's classes ----------------------------


def test_yolo_labels_without_a_class_file_read_ids_as_the_workspace_classes(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"a": "0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n", "b": "2 0.5 0.5 0.2 0.2\n"},
                      class_file=False)
    result = cli(ws, "add", "labels", str(src), "--format", "yolo")
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert flat(f"{src}: no class names file (data.yaml, classes.txt, obj.names, ...), so class ids are read as the "
                "workspace's 2 classes (0 = cat, 1 = dog); pass --classes-from FILE if they are others") in said
    assert flat(f"{src / 'labels' / 'b.txt'}:1: class id 2 is beyond the 2 class names") in said
    (labels,) = ws.store.latest_labels().values()
    assert labels.class_id.tolist() == [0, 1]
    # --classes-from still wins: file id 0 is dog there
    (tmp_path / "names.txt").write_text("dog\ncat\nbird\n")
    report = add_labels(ws, src, format="yolo", classes_from=tmp_path / "names.txt", add_classes=True)
    assert not any("no class names file" in n for n in report.notes)
    assert sorted(d.class_id.tolist() for d in ws.store.latest_labels().values()) == [[1, 0], [2]]


# -- 4. a tiny frozen test split is warned about --------------------------------------------


def labeled_workspace(tmp_path: Path, n: int, classes: list[str], boxes: int) -> Workspace:
    """``n`` labeled images of ``boxes`` boxes each, the classes dealt round."""
    ws = Workspace.init(tmp_path / "ws", classes=classes)
    for i in range(n):
        item = add_images(ws, [write_image(tmp_path / "pics" / f"{i}.jpg", seed=i)])
        assert item.added == 1
    for k, it in enumerate(ws.store.items()):
        ids = [(k * boxes + j) % len(classes) for j in range(boxes)]
        ws.store.add_label(it.id, Detections(np.tile([1.0, 1.0, 9.0, 9.0], (boxes, 1)), np.array(ids)), source="t")
    return ws


def test_split_warns_when_the_test_split_it_freezes_is_tiny(tmp_path: Path) -> None:
    ws = labeled_workspace(tmp_path, 40, [f"c{i}" for i in range(80)], boxes=3)
    result = cli(ws, "split", "--test", "0.1", "--dry-run")
    assert result.exit_code == 0 and not ws.store.items(split="test")  # a dry run writes nothing
    said = flat(result.output)
    assert flat("the test split would hold only 4 image(s) with 12 box(es), and ") in said
    assert flat("of the 80 classes labeled have no box in it: mAP measured on it will be noisy") in said
    assert flat("It is frozen once made: give a larger --test (e.g. --test 0.45)") in said
    assert "dryrun:nothingwaswritten" in said
    result = cli(ws, "split", "--test", "0.1")
    said = flat(result.output)
    assert result.exit_code == 0 and len(ws.store.items(split="test")) == 4
    assert flat("the test split holds only 4 image(s) with 12 box(es)") in said
    assert flat("It is frozen from now on, but until a model is trained it can be dealt again: give a larger --test "
                "(e.g. --test 0.45), with `boxloop split --redo`") in said
    again = cli(ws, "split", "--test", "0.5")  # the test split stays as it was: no second warning
    assert "warning" not in again.output and "alreadyexistedandwaskept(frozen)" in flat(again.output)
    # dealt again before any model: the larger test split replaces the tiny one
    before = {it.id for it in ws.store.items(split="test")}
    peek = cli(ws, "split", "--val", "0", "--test", "0.45", "--redo", "--dry-run")
    assert peek.exit_code == 0 and {it.id for it in ws.store.items(split="test")} == before
    assert "wouldassign:22train,18test" in flat(peek.output), peek.output
    redone = cli(ws, "split", "--val", "0", "--test", "0.45", "--redo")
    assert redone.exit_code == 0, redone.output
    assert len(ws.store.items(split="test")) == 18 and "alreadyexisted" not in flat(redone.output)
    assert len(ws.store.items(split="train")) == 22
    # weights brought from a file, or another detector's predictions, learned from none of these images: redo stands
    ws.store.add_model_version("best-8bb57484", backend="ultralytics", classes=ws.classes, path="/x/best.pt",
                               meta={"source": "file"})
    ws.store.add_model_version("ext-1", backend="import:yolo", classes=ws.classes)
    assert cli(ws, "split", "--val", "0", "--test", "0.45", "--redo").exit_code == 0
    # once a model was trained here, the splits are what it was trained and measured on: no redo
    ws.store.add_model_version("m001", backend="fake", classes=ws.classes)
    refused = cli(ws, "split", "--test", "0.5", "--redo")
    assert refused.exit_code == 1
    assert flat("the splits cannot be made again: model version(s) m001 trained on the current train split and "
                "measured on the current test split") in flat(refused.output)
    assert len(ws.store.items(split="test")) == 18


def test_the_first_training_deals_a_test_split_and_split_says_why_it_makes_none(tmp_path: Path) -> None:
    """`train` before any `split` put every label in train/val, so no test split could ever be
    drawn from them and `split --test` said nothing of why: the first training deals the test
    split as `round` does; with every image dealt (here by hand), split says why it makes none."""
    ws = labeled_workspace(tmp_path, 20, ["cat", "dog"], boxes=2)
    ws.store.set_split({it.id: "train" for it in ws.store.items()})
    said = flat(cli(ws, "split", "--test", "0.2").output)
    assert flat("no test split made: every labeled image is in train/val already; boxloop split --test 0.2 --redo "
                "deals every labeled image afresh") in said
    ws.store.add_model_version("m001", backend="fake", classes=ws.classes)
    said = flat(cli(ws, "split", "--test", "0.2").output)
    assert flat("no test split made: every labeled image is in train/val already, and model version(s) m001 trained "
                "on them; the next labels you add make one") in said

    fresh = labeled_workspace(tmp_path / "fresh", 20, ["cat", "dog"], boxes=2)
    result = cli(fresh, "train", "--model", "yolov8n.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4",
                 "--allow-missing-classes")
    assert result.exit_code == 0, result.output
    assert flat("no split yet: dealt train 14, val 4, test 2 (the test split is frozen") in flat(result.output)
    assert len(fresh.store.items(split="test")) == 2


def test_split_does_not_warn_about_a_test_split_big_enough(tmp_path: Path) -> None:
    ws = labeled_workspace(tmp_path, 20, ["cat", "dog"], boxes=6)
    report = assign_splits(ws.store, val=0.2, test=0.5, seed=0)
    assert report.assigned["test"] == 10 and report.warning is None
    thin = labeled_workspace(tmp_path / "thin", 20, ["cat", "dog"], boxes=1)
    report = assign_splits(thin.store, val=0.2, test=0.2, seed=0)
    assert report.warning is not None and "4 image(s) with 4 box(es): mAP" in report.warning
    assert "label more images (the 20 labeled hold 20 boxes in all)" in report.warning


# -- 5. init on a workspace -----------------------------------------------------------------


def test_init_on_a_workspace_with_its_classes_changes_nothing(tmp_path: Path) -> None:
    names = [f"class{i}" for i in range(80)]
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws), "--classes", ",".join(names)]).exit_code == 0
    result = runner.invoke(app, ["init", str(ws), "--classes", ",".join(names)])
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert flat(f"{ws} is already a boxloop workspace with these 80 classes; nothing changed.") in said
    assert flat(f"Use it: cd {ws} (or boxloop -w {ws} COMMAND).") in said
    assert "class79" not in said and Workspace.open(ws).classes == names


def test_init_on_a_workspace_with_other_classes_says_how_they_differ_briefly(tmp_path: Path) -> None:
    names = [f"class{i}" for i in range(80)]
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws), "--classes", ",".join(names)])
    result = runner.invoke(app, ["init", str(ws), "--classes", "cat,dog"])
    assert result.exit_code == 1
    said = flat(result.output)
    assert flat(f"error: {ws} is already a boxloop workspace, with 80 classes; the 2 given differ: 'class0' in the "
                "workspace, 'cat' given.") in said
    assert "classes can only be added" in result.output and "class79" not in said
    result = runner.invoke(app, ["init", str(ws), "--classes", ",".join(names[:3])])
    assert result.exit_code == 1
    assert flat("the 3 given are its first 3, and it has class3, class4, class5, ... (77 in all) besides") in flat(result.output)
    result = runner.invoke(app, ["init", str(ws), "--classes", ",".join([*names, "extra"])])
    assert result.exit_code == 0 and flat("added 1 class(es) after its 80: extra.") in flat(result.output)
    assert Workspace.open(ws).classes[-1] == "extra"


# -- 6. status on many classes --------------------------------------------------------------


def test_status_lists_the_classes_with_boxes_and_sums_up_the_rest(tmp_path: Path) -> None:
    ws = labeled_workspace(tmp_path, 3, [f"c{i}" for i in range(80)], boxes=2)  # c0 .. c5 have boxes
    result = cli(ws, "status")
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert all(f"│{i}│c{i}│1│" in said for i in range(6)) and "│6│c6│" not in said
    assert flat("74 class(es) with no box yet: c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, ...") in said
    assert len(result.output.splitlines()) < 50
    fresh = Workspace.init(tmp_path / "fresh", classes=["a", "b"])
    said = flat(cli(fresh, "status").output)
    assert "boxespercl" not in said and flat("2 class(es) with no box yet: a, b") in said


# -- 7. a labels-only zip -------------------------------------------------------------------


def test_a_labels_only_zip_is_not_said_to_hold_images(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"a": GOOD})
    add_images(ws, [src / "images"])
    archive = tmp_path / "task_1-yolo.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("obj_train_data/a.txt", "0 0.5 0.5 0.2 0.2\n")
        z.writestr("obj.names", "cat\ndog\n")
    report = add_labels(ws, archive, format="yolo")
    assert report.labeled == 1 and not report.problems
    (note,) = [n for n in report.notes if n.startswith("unpacked")]
    assert note.endswith("(it holds labels, no images: they label the images of their names in this workspace)")
    assert "its images are read from there" not in note
    with_images = tmp_path / "with-images.zip"
    with zipfile.ZipFile(with_images, "w") as z:
        z.write(src / "images" / "a.jpg", "images/a.jpg")
        z.writestr("labels/a.txt", GOOD)
        z.writestr("classes.txt", "cat\ndog\n")
    report = add_labels(ws, with_images, format="yolo")
    assert any(n.endswith("(its images are read from there)") for n in report.notes)
    pictures = add_images(ws, [archive])  # given as the pool, a zip with no picture in it is said
    (problem,) = pictures.problems
    assert problem.path == str(archive) and problem.reason.startswith("no images found in this zip (looked for ")


def test_an_image_with_an_unreadable_annotation_waits_in_the_pool_in_every_format(ws: Workspace, tmp_path: Path) -> None:
    """COCO, VOC and CVAT as YOLO: an image one of whose annotations cannot be read (unknown
    category, not four numbers, zero size, no label) keeps no labels until fixed and waits in
    the pool; once, its readable boxes were stored (all unreadable: labeled empty, trained as
    background). Boxes left out for lying outside the image leave the rest standing."""
    imgs = tmp_path / "imgs"
    for seed, name in enumerate(("ok", "half", "none", "outside")):
        write_image(imgs / f"{name}.jpg", size=(100, 50), seed=seed)
    box = {"category_id": 1, "bbox": [10, 10, 20, 20]}
    coco = {"images": [{"id": i, "file_name": f"{n}.jpg", "width": 100, "height": 50}
                       for i, n in enumerate(("ok", "half", "none", "outside"))],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 0, **box},
                            {"id": 2, "image_id": 1, **box}, {"id": 3, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},
                            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [10, 10, -3, 4]},
                            {"id": 5, "image_id": 3, **box}, {"id": 6, "image_id": 3, "category_id": 1, "bbox": [300, 10, 5, 5]},
                            {"id": 7, "image_id": 0, "category_id": 1, "bbox": [50, 10, 20, 20], "iscrowd": 1}]}
    path = imgs / "coco.json"
    path.write_text(json.dumps(coco))
    report = add_labels(ws, path, format="coco")
    by_name = {Path(it.uri).stem: it.id for it in ws.store.items()}
    assert sorted(by_name) == ["half", "none", "ok", "outside"]  # every image in: the two with bad annotations in the pool
    labels = ws.store.latest_labels()
    assert {n for n, i in by_name.items() if i in labels} == {"ok", "outside"}
    assert len(labels[by_name["outside"]]) == 1
    said = [str(p) for p in report.problems]
    assert any("half.jpg" in m and "labels skipped (its image stays unlabeled) until the 1 annotation(s)" in m for m in said)
    assert any("none.jpg" in m and "labels skipped" in m for m in said)
    assert any("1 crowd region(s) (iscrowd: 1) left out of the boxes" in n for n in report.notes)

    voc = tmp_path / "voc"
    write_image(voc / "v.jpg", size=(100, 50), seed=9)
    (voc / "v.xml").write_text(
        "<annotation><filename>v.jpg</filename><size><width>100</width><height>50</height></size>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>"
        "<object><name>cat</name><bndbox><xmin>40</xmin><ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>"
        "</annotation>"
    )
    report = add_labels(ws, voc, format="voc")
    (v,) = [it for it in ws.store.items() if Path(it.uri).name == "v.jpg"]
    assert v.id not in ws.store.latest_labels() and any("labels skipped" in str(p) for p in report.problems)

    cvat = tmp_path / "cvat"
    write_image(cvat / "c.jpg", size=(100, 50), seed=11)
    (cvat / "annotations.xml").write_text(
        '<annotations><image id="0" name="c.jpg" width="100" height="50">'
        '<box label="cat" xtl="1" ytl="1" xbr="20" ybr="20"/><box label="" xtl="30" ytl="1" xbr="40" ybr="20"/>'
        "</image></annotations>"
    )
    report = add_labels(ws, cvat / "annotations.xml", format="cvat", images=cvat)
    (c,) = [it for it in ws.store.items() if Path(it.uri).name == "c.jpg"]
    assert c.id not in ws.store.latest_labels() and any("labels skipped" in str(p) for p in report.problems)


def test_an_older_version_brought_back_from_another_file_does_not_undo_a_correction(ws: Workspace, tmp_path: Path) -> None:
    """A setup script's `add labels` run again (or an old export added back) after a
    correction came from another file: the correction stands, and a note says so; the
    corrected file changed back, or any new content, is a new version as before."""
    src = yolo_folder(tmp_path / "src", {"a": GOOD, "b": GOOD})
    add_labels(ws, src, format="yolo")
    fix = yolo_folder(tmp_path / "fix", {"a": GOOD + "0 0.2 0.2 0.1 0.1\n"})
    corrected = add_labels(ws, fix, format="yolo")
    assert corrected.labeled == 1
    a_id = next(it.id for it in ws.store.items() if Path(it.uri).name == "a.jpg")
    again = add_labels(ws, src, format="yolo")
    assert (again.labeled, again.unchanged_labels, len(again.stale)) == (0, 1, 1)
    assert len(ws.store.latest_labels([a_id])[a_id]) == 2 and ws.store.label_version(a_id) == 2
    assert "older than the newest (kept the newest)" in again.summary()
    assert any(n.startswith("1 label file(s) hold an older version") and "version 1 of 2" in n for n in again.notes)
    (fix / "labels" / "a.txt").write_text(GOOD)  # the correcting file itself changed back: taken
    assert add_labels(ws, fix, format="yolo").labeled == 1 and ws.store.label_version(a_id) == 3


def test_one_picture_under_two_names_labeled_otherwise_keeps_the_first_and_says_so(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"one": GOOD, "two": "0 0.3 0.3 0.1 0.1\n"})
    (src / "images" / "two.jpg").write_bytes((src / "images" / "one.jpg").read_bytes())
    report = add_labels(ws, src, format="yolo")
    assert [str(p) for p in report.problems] == [
        f"{src / 'labels' / 'two.txt'}: labels the same picture as {src / 'labels' / 'one.txt'} (the same bytes) "
        "otherwise; left out, the first file's labels stand"
    ]
    (labels,) = ws.store.latest_labels().values()
    assert labels.class_id.tolist() == [1]
    again = add_labels(ws, src, format="yolo")  # run again: nothing added, the same problem
    assert (again.labeled, again.unchanged_labels, len(again.problems)) == (0, 1, 1)


def test_a_bad_label_file_for_a_labeled_image_says_it_keeps_its_labels(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"a": GOOD})
    add_labels(ws, src, format="yolo")
    (src / "labels" / "a.txt").write_text(GOOD + "0 0.5 0.5 0.2\n")
    report = add_labels(ws, src, format="yolo")
    assert f"{src / 'labels' / 'a.txt'}: label file skipped (its image keeps its labels of version 1) until fixed" in [
        str(p) for p in report.problems]


def test_a_yolo_file_whose_every_box_lies_outside_its_image_is_skipped(ws: Workspace, tmp_path: Path) -> None:
    """Its one box left out, the image was stored as labeled with no box (trained as background)."""
    src = yolo_folder(tmp_path / "src", {"out": "0 -0.1 0.5 0.1 0.1\n", "ok": GOOD})
    report = add_labels(ws, src, format="yolo")
    txt = src / "labels" / "out.txt"
    assert f"{txt}: label file skipped (its image stays unlabeled) until fixed" in [str(p) for p in report.problems]
    assert len(ws.store.latest_labels()) == 1 and ws.store.count_by_state()["pool"] == 1
