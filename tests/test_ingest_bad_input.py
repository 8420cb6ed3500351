"""Every bad input of issue 2: reported as `path:line: reason`, the good files still imported,
--strict fails with exit code 1, and nothing is written into the source folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from _images import tree_snapshot, write_image
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.ingest import add_images, add_labels
from boxloop.workspace import Workspace

runner = CliRunner()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws", classes=["cat", "dog"])


def yolo_folder(root: Path, labels: dict[str, str], *, images: list[str] | None = None) -> Path:
    """images/<stem>.jpg and labels/<stem>.txt with classes.txt naming cat, dog."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("cat\ndog\n")
    for i, stem in enumerate(images if images is not None else list(labels)):
        write_image(root / "images" / f"{stem}.jpg", seed=i)
    for stem, text in labels.items():
        (root / "labels" / f"{stem}.txt").write_text(text)
    return root


def messages(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(p) for p in report.problems]


GOOD = "0 0.5 0.5 0.2 0.2\n"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("0 0.5 0.5 0.2\n", 1, "expected 5 (class cx cy w h) fields, got 4"),
        ("1 0.1 0.1 0.1 0.1\n0 0.5 abc 0.2 0.2\n", 2, "not a number"),
        ("0 3.5 0.5 0.2 0.2\n", 1, "coordinates far outside [0, 1] (not divided by the image's size?)"),
        ("7 0.5 0.5 0.2 0.2\n", 1, "class id 7 is beyond the 2 class names"),
        ("0 0.5 0.5 0 0.2\n", 1, "zero or negative size"),
    ],
    ids=["fields", "non-number", "coords", "class-id", "zero-size"],  # a box reaching past the image: test_ingest_edges
)
def test_bad_label_line_is_reported_with_path_and_line_and_the_rest_imported(
    ws: Workspace, tmp_path: Path, text: str, line: int, reason: str
) -> None:
    src = yolo_folder(tmp_path / "src", {"bad": text, "good": GOOD})
    report = add_labels(ws, src, format="yolo")
    bad_txt = src / "labels" / "bad.txt"
    assert any(m.startswith(f"{bad_txt}:{line}: ") and reason in m for m in messages(report)), messages(report)
    assert f"{bad_txt}: label file skipped (its image stays unlabeled) until fixed" in messages(report)
    assert len(ws.store.latest_labels()) == 1  # the good file; partial labels are never stored
    assert report.added == 2  # both images, the one with the bad labels in the pool
    assert ws.store.count_by_state()["pool"] == 1


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("zero.jpg", b"", "empty file (0 bytes)"),
        ("text.jpg", b"this is not an image\n", "not an image"),
        ("trunc.jpg", None, "truncated"),
    ],
)
def test_unreadable_image_is_reported_and_the_good_ones_imported(
    ws: Workspace, tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    src = tmp_path / "src"
    write_image(src / "good.jpg")
    bad = src / name
    if content is None:
        full = write_image(tmp_path / "full.jpg", size=(200, 150)).read_bytes()
        bad.write_bytes(full[: len(full) // 2])
    else:
        bad.write_bytes(content)
    report = add_images(ws, [src])
    assert report.added == 1
    assert any(m.startswith(f"{bad}: ") and reason in m for m in messages(report)), messages(report)


def test_label_file_with_no_image_is_reported_and_a_stray_readme_noted(ws: Workspace, tmp_path: Path) -> None:
    """An orphan label file is a problem; a README (Roboflow puts two in every export) holds no
    labels: said in a note, never a problem that would fail --strict."""
    src = yolo_folder(tmp_path / "src", {"a": GOOD, "orphan": GOOD}, images=["a"])
    (src / "labels" / "README.txt").write_text("These labels were made by hand.\n")
    (src / "README.roboflow.txt").write_text("\nThis dataset was exported via roboflow.com\n")
    report = add_labels(ws, src, format="yolo")
    msgs = messages(report)
    assert len(msgs) == 1 and msgs[0].startswith(str(src / "labels" / "orphan.txt")) and "no image" in msgs[0]
    assert "2 text file(s) that hold no labels passed over (README.txt, README.roboflow.txt)" in report.notes[-1]
    assert len(ws.store.latest_labels()) == 1


def test_same_stem_in_two_folders_pairs_by_layout_and_reports_ambiguity(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "classes.txt").parent.mkdir(parents=True)
    (src / "classes.txt").write_text("cat\ndog\n")
    # Ultralytics layout with splits: same stem in train and val pairs by folder
    for split, seed, text in (("train", 1, "0 0.5 0.5 0.2 0.2\n"), ("val", 2, "1 0.3 0.3 0.2 0.2\n")):
        write_image(src / "images" / split / "x.jpg", seed=seed)
        (src / "labels" / split).mkdir(parents=True)
        (src / "labels" / split / "x.txt").write_text(text)
    # a loose label whose stem matches two images elsewhere cannot be paired
    write_image(src / "a" / "y.jpg", seed=3)
    write_image(src / "b" / "y.jpg", seed=4)
    (src / "loose").mkdir()
    (src / "loose" / "y.txt").write_text(GOOD)
    report = add_labels(ws, src, format="yolo")
    labels = ws.store.latest_labels()
    assert sorted(int(d.class_id[0]) for d in labels.values()) == [0, 1]
    assert any(m.startswith(str(src / "loose" / "y.txt")) and "ambiguous" in m for m in messages(report))
    assert report.added == 4


def test_awkward_path_names_are_imported(ws: Workspace, tmp_path: Path) -> None:
    names = ["with space", "colon:name", "paren (1)", "café_ünïcode", "日本"]
    src = yolo_folder(tmp_path / "src dir (x)", {n: GOOD for n in names})
    report = add_labels(ws, src, format="yolo")
    assert not report.problems, messages(report)
    assert len(ws.store.latest_labels()) == len(names)
    out = tmp_path / "export"
    from boxloop.export import write_yolo_dataset

    data = write_yolo_dataset(ws, out, link=False)
    written = [p.name for p in (out / "images").rglob("*.jpg")]
    assert len(written) == len(names) and all(n.isascii() and " " not in n and ":" not in n for n in written)
    assert data.is_file()


def test_exif_rotated_photo_has_displayed_size_and_labels_follow_it(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "labels").mkdir(parents=True)
    (src / "classes.txt").write_text("cat\ndog\n")
    write_image(src / "images" / "rot.jpg", size=(80, 40), orientation=6)  # stored 80x40, shown 40x80
    (src / "labels" / "rot.txt").write_text("0 0.5 0.25 0.5 0.25\n")
    add_labels(ws, src, format="yolo")
    (item,) = ws.store.items()
    assert (item.width, item.height) == (40, 80)
    (labels,) = ws.store.latest_labels().values()
    assert labels.xyxy.tolist() == [[10.0, 10.0, 30.0, 30.0]]


def test_empty_label_file_is_a_labeled_image_with_no_objects(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"empty": "", "good": GOOD}, images=["empty", "good", "unlabeled"])
    report = add_labels(ws, src, format="yolo")
    labels = ws.store.latest_labels()
    assert len(labels) == 2
    assert sum(len(d) == 0 for d in labels.values()) == 1
    assert ws.store.count_by_state()["pool"] == 1
    # the image with no label file is not silently taken as background: the user is told
    assert report.notes == [
        "1 image(s) had no label file: added to the pool, unlabeled "
        "(an empty .txt beside an image marks it labeled with nothing to draw)"
    ]
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(src), "--format", "yolo"])
    assert result.exit_code == 0, result.output
    assert "1 image(s) had no label file" in " ".join(result.output.split())


def test_unknown_class_name_names_both_lists_unless_add_classes(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"a": "2 0.5 0.5 0.2 0.2\n"})
    (src / "classes.txt").write_text("cat\ndog\nbird\n")
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(src)])
    assert result.exit_code == 1
    assert "['bird']" in result.output and "['cat', 'dog']" in result.output
    assert ws.store.latest_labels() == {}
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(src), "--add-classes"])
    assert result.exit_code == 0, result.output
    assert ws.store.classes() == ["cat", "dog", "bird"]
    (d,) = ws.store.latest_labels().values()
    assert d.class_id.tolist() == [2]


def test_names_map_by_name_not_by_id(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"a": "0 0.5 0.5 0.2 0.2\n"})
    (src / "classes.txt").write_text("dog\ncat\n")  # file id 0 is dog = project id 1
    add_labels(ws, src, format="yolo")
    (d,) = ws.store.latest_labels().values()
    assert d.class_id.tolist() == [1]


def test_strict_fails_with_exit_1_and_summary_lists_problems(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"bad": "0 x 0.5 0.2 0.2\n", "good": GOOD})
    before = tree_snapshot(src)
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(src), "--strict"])
    assert result.exit_code == 1
    assert f"{src / 'labels' / 'bad.txt'}:1: not a number" in result.output.replace("\n", "")
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(src)])
    assert result.exit_code == 0
    assert tree_snapshot(src) == before  # nothing written into the user's folder


def test_reimport_adds_nothing_and_duplicates_are_one_item(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"a": GOOD, "b": GOOD})
    first = add_labels(ws, src, format="yolo")
    again = add_labels(ws, src, format="yolo")
    assert (first.added, first.labeled) == (2, 2)
    assert (again.added, again.known, again.labeled, again.unchanged_labels) == (0, 2, 0, 2)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "same.jpg").write_bytes((src / "images" / "a.jpg").read_bytes())
    dup = add_images(ws, [copy])
    assert (dup.added, dup.known) == (0, 1)
    assert ws.store.count_items() == 2
    item = ws.store.items()[0]
    assert len(ws.store.sources(item.id)) == 2  # both paths remembered


def test_sequence_folder_uses_natural_frame_order(ws: Workspace, tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    for i in (10, 2, 1):
        write_image(seq / f"{i}.jpg", seed=i)
    add_images(ws, [seq], sequence=True)
    frames = ws.store.items()
    assert [Path(f.uri).name for f in frames] == ["1.jpg", "2.jpg", "10.jpg"]
    assert [f.frame_index for f in frames] == [1, 2, 10]
    assert len({f.video_id for f in frames}) == 1


def test_labels_for_frames_of_a_sequence_label_those_frames(ws: Workspace, tmp_path: Path) -> None:
    """A frame folder added with --sequence, then its YOLO labels imported, then added again
    as plain images: the frames stay the sequence's items (no duplicates without a video),
    and they are the ones labeled."""
    seq = yolo_folder(tmp_path / "seq", {"frame_1": GOOD, "frame_2": GOOD, "frame_3": ""})
    add_images(ws, [seq / "images"], sequence=True)
    frames = {f.id: f for f in ws.store.items()}
    report = add_labels(ws, seq, format="yolo")
    assert (report.added, report.known, report.labeled) == (0, 3, 3)
    again = add_images(ws, [seq / "images"])
    assert (again.added, again.known) == (0, 3)
    items = ws.store.items()
    assert {it.id for it in items} == set(frames)
    assert len({it.video_id for it in items}) == 1 and None not in {it.video_id for it in items}
    assert set(ws.store.latest_labels()) == set(frames)
    # a changed file at a frame's path is new content: a new item, the frame keeps its own
    write_image(seq / "images" / "frame_1.jpg", seed=99)
    changed = add_images(ws, [seq / "images" / "frame_1.jpg"])
    assert changed.added == 1 and ws.store.count_items() == 4


def test_missing_path_is_reported(ws: Workspace, tmp_path: Path) -> None:
    report = add_images(ws, [tmp_path / "nope"])
    assert messages(report) == [f"{tmp_path / 'nope'}: no such file, folder or matching glob"]


def test_a_text_file_named_jpg_is_reported_even_after_ultralytics_patched_pillow(ws: Workspace, tmp_path: Path) -> None:
    import ultralytics.utils.patches  # noqa: F401  (patches PIL.Image.open to try an optional HEIF plugin)

    src = tmp_path / "src"
    write_image(src / "good.jpg")
    (src / "notes.jpg").write_text("not an image")
    report = add_images(ws, [src])
    assert report.added == 1
    assert messages(report) == [f"{src / 'notes.jpg'}: not an image (cannot identify the format)"]


def test_labels_in_a_zip_as_an_annotation_tool_gives_them(ws: Workspace, tmp_path: Path) -> None:
    """A COCO zip (CVAT's layout) is read where it was unpacked, once; members that would land
    outside the folder are skipped; a zip that is not one, or holds no label file, is named."""
    import json
    import zipfile

    image = write_image(tmp_path / "a.jpg", size=(64, 48))
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 10]}]}
    archive = tmp_path / "task_7-coco.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("annotations/instances_default.json", json.dumps(coco))
        z.write(image, "images/a.jpg")
        z.writestr("../escaped.txt", "outside")
        z.writestr("__MACOSX/annotations/._instances_default.json", "resource fork")
    report = add_labels(ws, archive, format="coco")
    assert (report.added, report.labeled) == (1, 1) and not report.problems
    (unpacked,) = (ws.root / "imports").iterdir()
    assert unpacked.name.startswith("task_7-coco-") and any(f"into {unpacked}" in n for n in report.notes)
    assert not (ws.root / "escaped.txt").exists() and not (ws.root / "imports" / "escaped.txt").exists()
    assert not (unpacked / "__MACOSX").exists()
    (item,) = ws.store.items()
    assert item.uri == str(unpacked / "images" / "a.jpg")
    assert ws.store.classes()[int(ws.store.latest_labels()[item.id].class_id[0])] == "dog"
    again = add_labels(ws, archive, format="coco")
    assert (again.added, again.known, again.unchanged_labels) == (0, 1, 1)

    none = tmp_path / "none.zip"
    with zipfile.ZipFile(none, "w") as z:
        z.writestr("notes.txt", "labels to follow")
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(none), "--format", "coco"])
    assert result.exit_code == 1 and "none.zip: no coco label file (.json) in it" in " ".join(result.output.split())
    fake = tmp_path / "broken.zip"
    fake.write_text("not a zip")
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(fake), "--format", "yolo"])
    assert result.exit_code == 1 and "broken.zip: not a readable zip archive" in " ".join(result.output.split())
    left = sorted(p.name for p in (ws.root / "imports").iterdir())  # the broken one left no half folder
    assert len(left) == 2 and left[1] == unpacked.name and left[0].startswith("none-")

    pics = tmp_path / "pics.zip"  # the pool as a zip: a broken zip beside it loses nothing
    with zipfile.ZipFile(pics, "w") as z:
        for i in range(2):
            z.write(write_image(tmp_path / f"p{i}.jpg", seed=40 + i), f"batch/p{i}.jpg")
    images = add_images(ws, [fake, pics])
    assert images.added == 2 and messages(images) == [f"{fake}: not a readable zip archive: File is not a zip file"]
    assert any("unpacked pics.zip into" in n for n in images.notes)


def _mac_copy_and_other_pictures(folder: Path) -> None:
    """What a folder copied from a Mac or a phone holds beside its JPEGs: resource forks
    (``._x.jpg``, ``__MACOSX/``), a Finder file, a thumbnail cache, a camera's raw file and a GIF."""
    fork = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    (folder / "__MACOSX").mkdir(parents=True)
    (folder / "._a.jpg").write_bytes(fork)
    (folder / "__MACOSX" / "._a.jpg").write_bytes(fork)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    write_image(folder / ".thumbs" / "a.jpg", seed=9)
    (folder / "IMG_0001.DNG").write_bytes(b"II*\x00\x08\x00\x00\x00")
    from PIL import Image

    Image.new("RGB", (32, 24), (200, 10, 10)).save(folder / "logo.gif")


def test_hidden_files_are_skipped_and_pictures_not_read_are_named(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    write_image(src / "a.jpg", seed=1)
    write_image(src / "b.jpg", seed=2)
    _mac_copy_and_other_pictures(src)
    report = add_images(ws, [src])
    assert (report.added, report.known) == (2, 0)  # the hidden thumbnail is not a pool image
    problems = {Path(p.path).name: p.reason for p in report.problems}
    assert set(problems) == {"IMG_0001.DNG", "logo.gif"}  # no "not an image" for ._a.jpg
    assert problems["IMG_0001.DNG"].startswith("not read: boxloop does not read DNG pictures")
    assert "export it as JPEG" in problems["IMG_0001.DNG"]
    assert "convert it (or the frames you want labeled) to PNG" in problems["logo.gif"]
    # named one by one, or by a glob, they are named as well
    again = add_images(ws, [src / "logo.gif", str(src / "*.DNG")])
    assert sorted(Path(p.path).name for p in again.problems) == ["IMG_0001.DNG", "logo.gif"]
    # a frame sequence skips them alike
    seq = add_images(ws, [src], sequence=True)
    assert sorted(Path(p.path).name for p in seq.problems) == ["IMG_0001.DNG", "logo.gif"]
    assert seq.added + seq.known == 2  # a.jpg and b.jpg, not the hidden thumbnail


def test_labels_of_a_picture_not_read_are_left_out_with_it(ws: Workspace, tmp_path: Path) -> None:
    src = yolo_folder(tmp_path / "src", {"a": GOOD})
    from PIL import Image

    Image.new("RGB", (64, 48)).save(src / "images" / "b.gif")
    (src / "labels" / "b.txt").write_text(GOOD)
    fork = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    (src / "images" / "._a.jpg").write_bytes(fork)
    (src / "__MACOSX" / "labels").mkdir(parents=True)
    (src / "__MACOSX" / "labels" / "._a.txt").write_bytes(fork)
    report = add_labels(ws, src, format="yolo")
    assert (report.added, report.labeled) == (1, 1)
    (problem,) = report.problems  # one, on the picture; no orphan label, no resource fork
    assert problem.path == str(src / "images" / "b.gif")
    assert problem.reason.endswith(f"its labels ({src / 'labels' / 'b.txt'}) are left out with it")


def test_a_16_bit_grey_image_is_read_as_training_reads_it(ws: Workspace, tmp_path: Path) -> None:
    """An industrial or thermal camera's 16-bit grey PNG/TIFF: boxloop's decode (predict,
    thumbnails, embeddings, the ML backend) sees what OpenCV gives Ultralytics' training,
    not Pillow's conversion, which clips it to white."""
    import base64
    import io

    import cv2
    import numpy as np
    from PIL import Image

    from boxloop.report.gallery import thumbnail_data_uri
    from boxloop.server.images import decode_image
    from boxloop.sources.images import load_image

    ramp = np.linspace(0, 65535, 80 * 60).astype(np.uint16).reshape(60, 80)
    for name in ("cam.png", "cam.tif"):
        Image.fromarray(ramp).save(tmp_path / name)
        assert Image.open(tmp_path / name).mode == "I;16"
        seen = load_image(tmp_path / name)
        assert seen.shape == (60, 80, 3) and seen.dtype == np.uint8
        assert np.array_equal(seen, cv2.imread(str(tmp_path / name))[:, :, ::-1])
        assert seen.min() == 0 and seen.max() == 255 and 120 < seen.mean() < 135  # a ramp, not white
        assert np.array_equal(decode_image((tmp_path / name).read_bytes(), where=name).image, seen)
    thumb = thumbnail_data_uri(str(tmp_path / "cam.png")).split(",", 1)[1]
    assert np.asarray(Image.open(io.BytesIO(base64.b64decode(thumb)))).mean() < 200
    assert add_images(ws, [tmp_path / "cam.png"]).added == 1


def test_class_and_label_files_saved_by_windows_editors_read_as_written(ws: Workspace, tmp_path: Path) -> None:
    """A BOM and CRLF line ends (Notepad and friends) are not part of a name or a number; a
    class file that is not UTF-8 is a clear error naming it."""
    src = yolo_folder(tmp_path / "src", {"a": "\ufeff0 0.5 0.5 0.2 0.2\r\n1\t0.3 0.3 0.1 0.1 \r\n"})
    (src / "classes.txt").write_bytes("\ufeffcat\r\ndog\r\n".encode())
    report = add_labels(ws, src, format="yolo")
    assert not report.problems, messages(report)
    (d,) = ws.store.latest_labels().values()
    assert d.class_id.tolist() == [0, 1]
    (src / "classes.txt").write_bytes("chat\nchien\xe9\n".encode("latin-1"))
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(src)])
    assert result.exit_code == 1
    assert f"{src / 'classes.txt'}: cannot read class names: not UTF-8 text" in result.output.replace("\n", "")


def test_an_image_past_pillows_pixel_limit_is_a_problem_not_a_crash(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    """A drone orthomosaic or a gigapixel scan (past Pillow's decompression-bomb limit) is a
    problem that says what to do, and the batch goes on; one merely past the warning level is
    read without a warning. The limit is lowered here so the test images stay small."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # error past 2000 pixels, warning past 1000
    src = tmp_path / "survey"
    write_image(src / "ortho.png", (64, 48), seed=1)  # 3072 pixels
    write_image(src / "big.png", (40, 30), seed=2)  # 1200 pixels
    write_image(src / "tile.png", (20, 20), seed=3)
    report = add_images(ws, [src])
    assert report.added == 2
    (problem,) = report.problems
    assert problem.path == str(src / "ortho.png")
    assert problem.reason == "too large to decode safely (0.00307 megapixels): cut it into tiles (an orthomosaic, a scan) and add those"
    from boxloop.sources.images import load_image

    assert load_image(src / "big.png").shape == (30, 40, 3)
    with pytest.raises(InputError, match="ortho.png: too large to decode safely"):
        load_image(src / "ortho.png")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_piped_output_keeps_each_problem_on_one_line(ws: Workspace, tmp_path: Path) -> None:
    """`boxloop add labels ... 2>&1 | grep ...`: a problem is one `path:line: reason` line (the
    console once wrapped at 80 columns whenever it was not a terminal, splitting the path)."""
    import os
    import subprocess
    import sys

    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "src"
    src = yolo_folder(deep, {"bad": "0 0.5 0.5 0.2\n", "good": GOOD})
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-c", "from boxloop.cli import main; main()", "-w", str(ws.root), "add", "labels", str(src)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    bad = src / "labels" / "bad.txt"
    assert any(line.strip() == f"{bad}:1: expected 5 (class cx cy w h) fields, got 4" for line in lines), lines


def test_a_broken_link_in_a_folder_is_a_problem_naming_it(ws: Workspace, tmp_path: Path) -> None:
    """A link whose target is gone, in a folder of images: named (once skipped without a word,
    so --strict passed)."""
    folder = tmp_path / "imgs"
    write_image(folder / "ok.jpg", size=(64, 48), seed=1)
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere" / "x.jpg")
    report = add_images(ws, [folder])
    assert report.added == 1
    assert [str(p) for p in report.problems] == [f"{folder / 'gone.jpg'}: a link to {tmp_path / 'nowhere' / 'x.jpg'}, which is not there"]
