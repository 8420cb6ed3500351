"""`add labels --split`: a dataset keeps the train/val/test split it came with (Roboflow's
train/ valid/ test/, Ultralytics' images/train/ ...), and the workspace's frozen test split
is never added to behind the user's back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _console import flat
from _images import write_image
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.ingest import add_labels
from boxloop.split import assign_splits
from boxloop.workspace import Workspace

GOOD = "0 0.5 0.5 0.2 0.2\n"


def roboflow_export(root: Path, counts: dict[str, int], *, seed: int = 0) -> Path:
    """Roboflow's YOLO layout: <split>/images, <split>/labels, data.yaml, two READMEs."""
    k = seed
    for split, n in counts.items():
        for i in range(n):
            write_image(root / split / "images" / f"{split}{i}_jpg.rf.{k:032x}.jpg", seed=k)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            (root / split / "labels" / f"{split}{i}_jpg.rf.{k:032x}.txt").write_text(GOOD)
            k += 1
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                                    "nc: 2\nnames: ['cat', 'dog']\n")
    (root / "README.roboflow.txt").write_text("\nThis dataset was exported via roboflow.com\n")
    (root / "README.dataset.txt").write_text("# digits > 2026-12-07\n")
    return root


def splits(ws: Workspace) -> dict[str, int]:
    return {s: len(ws.store.items(split=s)) for s in ("train", "val", "test")}


def test_a_roboflow_export_keeps_its_train_valid_test(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    src = roboflow_export(tmp_path / "rf", {"train": 5, "valid": 2, "test": 3})
    plain = add_labels(ws, src, format="yolo")  # without --split: told how to keep it
    assert splits(ws) == {"train": 0, "val": 0, "test": 0}
    assert ("these labels sit in split folders (5 in train, 2 in val, 3 in test): `--split folders` keeps that split"
            in plain.notes[-1])
    result = CliRunner().invoke(app, ["-w", str(ws.root), "add", "labels", str(src), "--split", "folders", "--strict"])
    assert result.exit_code == 0, result.output  # the READMEs are no problem
    said = flat(result.output)
    assert flat("10 unchanged") in said and flat("splits (--split folders): 5 train, 2 val, 3 test") in said
    # the dataset's own test split is frozen now: 3 boxes are too few to measure on, said as `split` says it
    assert flat("warning: the test split holds only 3 image(s) with 3 box(es)") in said
    assert splits(ws) == {"train": 5, "val": 2, "test": 3}
    report = assign_splits(ws.store, val=0.2, test=0.1, seed=0)  # what `round` and `split` do next: nothing moves
    assert report.test_frozen and splits(ws) == {"train": 5, "val": 2, "test": 3}


def test_an_import_that_would_grow_a_frozen_test_split_is_refused_whole(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    add_labels(ws, roboflow_export(tmp_path / "first", {"train": 3, "test": 2}), format="yolo", split="folders")
    before = (len(ws.store.items()), len(ws.store.latest_labels()), splits(ws))
    second = roboflow_export(tmp_path / "second", {"train": 2, "test": 1}, seed=50)
    with pytest.raises(InputError, match=r"add 1 image\(s\) to the workspace's test split, which is frozen \(2 images"):
        add_labels(ws, second, format="yolo", split="folders")
    assert (len(ws.store.items()), len(ws.store.latest_labels()), splits(ws)) == before  # nothing was imported
    report = add_labels(ws, second, format="yolo", split="train")  # said where they go: all train
    assert splits(ws) == {"train": 6, "val": 0, "test": 2} and "splits (--split train): 3 train" in report.notes[-1]
    again = add_labels(ws, tmp_path / "first", format="yolo", split="train")  # test stays test
    assert splits(ws) == {"train": 6, "val": 0, "test": 2}
    assert "2 already in the frozen test split stay there" in again.notes[-1]


def test_ultralytics_folders_and_images_without_a_split_folder(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    src = tmp_path / "ul"
    for k, (split, stem) in enumerate([("train", "a"), ("train", "b"), ("val2017", "c"), ("test", "d"), (None, "e")]):
        sub = [split] if split else []
        write_image(src.joinpath("images", *sub, f"{stem}.jpg"), seed=k)
        src.joinpath("labels", *sub).mkdir(parents=True, exist_ok=True)
        src.joinpath("labels", *sub, f"{stem}.txt").write_text(GOOD)
    (src / "classes.txt").write_text("cat\ndog\n")
    (src / "train.txt").write_text("images/train/a.jpg\nimages/train/b.jpg\n")  # CVAT's image list
    report = add_labels(ws, src, format="yolo", split="folders")
    assert not report.problems and splits(ws) == {"train": 2, "val": 1, "test": 1}
    assert any("1 labeled image(s) had no train/val/test folder in their path" in n for n in report.notes), report.notes


def test_a_coco_file_put_in_the_test_split(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    for i in range(3):
        write_image(tmp_path / "coco" / f"p{i}.jpg", size=(64, 48), seed=i)
    coco = {"images": [{"id": i, "file_name": f"p{i}.jpg", "width": 64, "height": 48} for i in range(3)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10]} for i in range(3)],
            "categories": [{"id": 1, "name": "dog"}]}
    (tmp_path / "coco" / "test.json").write_text(json.dumps(coco))
    report = add_labels(ws, tmp_path / "coco" / "test.json", format="coco", split="test")
    assert not report.problems and splits(ws) == {"train": 0, "val": 0, "test": 3}
    with pytest.raises(InputError, match="unknown --split 'tests'; known: train, val, test, folders"):
        add_labels(ws, tmp_path / "coco" / "test.json", format="coco", split="tests")


def test_a_roboflow_coco_zip_with_one_file_per_split(tmp_path: Path) -> None:
    """Roboflow's COCO export: train/, valid/, test/, each with its images and its own
    _annotations.coco.json; the zip as it is, every file read, each split kept."""
    import zipfile

    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    archive = tmp_path / "digits.v2i.coco.zip"
    with zipfile.ZipFile(archive, "w") as z:
        k = 0
        for split, n in (("train", 3), ("valid", 1), ("test", 2)):
            images = []
            for i in range(n):
                name = f"{split}{i}_jpg.rf.{k:032x}.jpg"
                z.write(write_image(tmp_path / "src" / name, size=(64, 48), seed=k), f"{split}/{name}")
                images.append({"id": i, "file_name": name, "width": 64, "height": 48})
                k += 1
            coco = {"images": images, "categories": [{"id": 0, "name": "digits"}, {"id": 1, "name": "cat"}],
                    "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10]}
                                    for i in range(n)]}
            z.writestr(f"{split}/_annotations.coco.json", json.dumps(coco))
        z.writestr("README.roboflow.txt", "exported via roboflow.com")
    report = add_labels(ws, archive, format="coco", split="folders")
    assert not report.problems, [str(p) for p in report.problems]
    assert (report.added, report.labeled) == (6, 6) and splits(ws) == {"train": 3, "val": 1, "test": 2}
    assert any(n.startswith("read 3 coco files: test/_annotations.coco.json, train/") for n in report.notes)
    unzipped = tmp_path / "unzipped"  # the same export unpacked by hand: the folder is read alike
    with zipfile.ZipFile(archive) as z:
        z.extractall(unzipped)
    other = Workspace.init(tmp_path / "ws2", classes=["cat", "dog"])
    report = add_labels(other, unzipped, format="coco", split="folders")
    assert not report.problems and splits(other) == {"train": 3, "val": 1, "test": 2}


def test_cvat_subsets_and_coco_file_names_say_the_split(tmp_path: Path) -> None:
    """Without split folders, `--split folders` reads the subset CVAT writes on each image
    (subset="Train" / "Test") and COCO's file names (instances_val2017.json)."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    for i in range(5):
        write_image(tmp_path / "imgs" / f"p{i}.jpg", size=(64, 48), seed=i)
    images = "".join(
        f'<image id="{i}" name="p{i}.jpg" subset="{subset}" width="64" height="48">'
        f'<box label="dog" occluded="0" xtl="4" ytl="4" xbr="20" ybr="20"></box></image>'
        for i, subset in enumerate(["Train", "Train", "Test"])
    )
    (tmp_path / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version><meta><task><labels>'
        "<label><name>dog</name></label></labels></task></meta>" + images + "</annotations>"
    )
    report = add_labels(ws, tmp_path / "annotations.xml", format="cvat", images=tmp_path / "imgs", split="folders")
    assert not report.problems and splits(ws) == {"train": 2, "val": 0, "test": 1}
    coco = {"images": [{"id": i, "file_name": f"p{i}.jpg", "width": 64, "height": 48} for i in (3, 4)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10]} for i in (3, 4)],
            "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "instances_val2017.json").write_text(json.dumps(coco))
    report = add_labels(ws, tmp_path / "instances_val2017.json", format="coco", images=tmp_path / "imgs", split="folders")
    assert not report.problems and splits(ws) == {"train": 2, "val": 2, "test": 1}


@pytest.mark.parametrize("format", ["coco", "cvat", "voc"])
def test_splits_travel_through_an_export_and_back(tmp_path: Path, format: str) -> None:
    """A labeled COCO export writes one file per split beside the whole (annotations_test.json),
    a CVAT one each image's subset (Train / Validation / Test), a VOC one ImageSets/Main/test.txt
    ...: another workspace that imports it with --split folders has the same splits."""
    from boxloop.export import export

    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    add_labels(ws, roboflow_export(tmp_path / "rf", {"train": 4, "valid": 2, "test": 2}), format="yolo", split="folders")
    out = export(ws, format=format, what="labeled", out=tmp_path / "out")
    if format == "coco":
        files = sorted(p.name for p in out.iterdir() if p.suffix == ".json")
        assert files == ["annotations.json", "annotations_test.json", "annotations_train.json", "annotations_val.json"]
        assert len(json.loads((out / "annotations_test.json").read_text())["images"]) == 2
    other = Workspace.init(tmp_path / "other", classes=["cat", "dog"])
    report = add_labels(other, out, format=format, split="folders")  # the folder as it is: every file read
    assert not report.problems, [str(p) for p in report.problems]
    assert (report.labeled, report.unchanged_labels) == (8, 0)  # the whole file and its split's: one read
    assert splits(other) == splits(ws) == {"train": 4, "val": 2, "test": 2}
    said = next(n for n in report.notes if n.startswith("splits (--split folders)"))
    assert said == "splits (--split folders): 4 train, 2 val, 2 test"


def test_a_dataset_without_a_test_folder_leaves_its_train_images_for_the_test_split(tmp_path: Path) -> None:
    """coco128 keeps everything in images/train2017/: were all of it train, no test split could
    ever be drawn; its train images stay free, its val images stay val."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    report = add_labels(ws, roboflow_export(tmp_path / "rf", {"train": 8, "valid": 2}), format="yolo", split="folders")
    assert splits(ws) == {"train": 0, "val": 2, "test": 0}
    assert "no test folder, so the 8 train image(s) are left for `boxloop split`" in report.notes[-1]
    made = assign_splits(ws.store, val=0.2, test=0.25, seed=0)  # what the next round does
    assert made.totals["test"] >= 2 and made.totals["val"] >= 2 and sum(made.totals.values()) == 10
