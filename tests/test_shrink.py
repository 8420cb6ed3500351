"""Training copies of large photos: the trainer gets a picture at least twice the training size
as a copy at 1/2, 1/4 or 1/8 of it (upright, the kind its name says), made once and reused by
later rounds; the labels do not change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from _images import write_image
from boxloop.export import write_yolo_dataset
from boxloop.ingest import add_images
from boxloop.shrink import shrunk_copies
from boxloop.sources.images import load_image
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace


def smooth(path: Path, size: tuple[int, int], *, orientation: int | None = None) -> Path:
    """A picture with large soft shapes (resizing it changes little but its size)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, ((x // 97 + y // 61) % 2) * 200], axis=2).astype(np.uint8)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, quality=95, exif=exif.tobytes())
    return path


def one_picture(tmp_path: Path, name: str, size: tuple[int, int]) -> tuple[Workspace, Item, Path]:
    """A workspace holding one smooth picture ``name`` of ``size`` (its file, under photos/)."""
    src = tmp_path / "photos"
    src.mkdir()
    smooth(src / name, size)
    ws = Workspace.init(tmp_path / "ws", classes=["cat"])
    add_images(ws, [src])
    (it,) = ws.store.items()
    return ws, it, src / name


def blocks(rgb: np.ndarray, n: int) -> np.ndarray:
    h, w = (rgb.shape[0] // n) * n, (rgb.shape[1] // n) * n
    return rgb[:h, :w].astype(float).reshape(h // n, n, w // n, n, 3).mean(axis=(1, 3))


def test_large_pictures_reach_the_trainer_as_copies_reused_by_later_rounds(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    smooth(src / "phone.jpg", (1280, 960), orientation=6)  # held sideways: shown 960x1280
    smooth(src / "scan.png", (1000, 700))
    write_image(src / "small.jpg", size=(200, 150), seed=3)
    ws = Workspace.init(tmp_path / "ws", classes=["cat"])
    add_images(ws, [src])
    items = {Path(it.uri).name: it for it in ws.store.items()}
    for it in items.values():
        ws.store.add_label(it.id, Detections([[10, 20, 110, 120]], [0]), source="test")
    ws.store.set_split({it.id: "train" for it in items.values()})

    data = write_yolo_dataset(ws, tmp_path / "view1", splits=("train",), shrink_to=160)
    placed = {p.name: p for p in (data.parent / "images" / "train").iterdir()}
    assert sorted(placed) == ["phone.jpg", "scan.png", "small.jpg"]
    assert placed["small.jpg"].resolve() == Path(items["small.jpg"].uri).resolve()  # under twice 160: as it is
    expected = {"phone.jpg": ((120, 160), "JPEG"), "scan.png": ((250, 175), "PNG")}  # 1/8 upright; 1/4
    for name, (size, kind) in expected.items():
        copy = placed[name].resolve()
        assert copy.parent == ws.root / "shrunk"
        with Image.open(copy) as im:
            assert (im.size, im.format) == (size, kind), name
            got = np.asarray(im.convert("RGB"))
        shown = load_image(items[name].uri)
        scale = shown.shape[0] // got.shape[0]
        assert np.abs(blocks(got, 10) - blocks(shown, 10 * scale)).mean() < 3.0, name
    # the labels are the same relative boxes as without copies
    plain = write_yolo_dataset(ws, tmp_path / "plain", splits=("train",))
    for name in placed:
        stem = Path(name).stem
        assert (data.parent / "labels" / "train" / f"{stem}.txt").read_text() == \
               (plain.parent / "labels" / "train" / f"{stem}.txt").read_text()
    # a later round reuses the copies
    stamps = {p.name: p.stat().st_mtime_ns for p in (ws.root / "shrunk").iterdir()}
    assert len(stamps) == 2
    write_yolo_dataset(ws, tmp_path / "view2", splits=("train",), shrink_to=160)
    assert {p.name: p.stat().st_mtime_ns for p in (ws.root / "shrunk").iterdir()} == stamps


def test_a_picture_that_cannot_be_copied_goes_to_the_trainer_as_it_is(tmp_path: Path) -> None:
    ws, it, path = one_picture(tmp_path, "big.jpg", (800, 600))
    path.write_bytes(b"gone bad")  # changed on disk since it was added
    assert shrunk_copies(ws, [it], {it.id: "big.jpg"}, 160) == {}
    assert not list((ws.root / "shrunk").iterdir())  # no half-written copy


def test_a_jpeg_decoded_for_a_thumbnail_comes_out_reduced_upright_and_no_smaller_than_asked(tmp_path: Path) -> None:
    photo = smooth(tmp_path / "phone.jpg", (1280, 960), orientation=6)
    full = load_image(photo)
    assert full.shape == (1280, 960, 3)
    small = load_image(photo, at_least=200)
    assert small.shape == (320, 240, 3)  # a quarter: 1/8 would be under 200 on its short side
    assert np.abs(blocks(small, 8) - blocks(full, 32)).mean() < 3.0
    png = tmp_path / "scan.png"
    Image.fromarray(full).save(png)
    assert load_image(png, at_least=200).shape == (1280, 960, 3)  # only JPEG decodes reduced


def test_a_large_png_is_predicted_from_the_copy_training_made_of_it(tmp_path: Path, monkeypatch) -> None:
    """A PNG cannot be decoded at a fraction of its size: the copy training keeps of it (a PNG
    too) is what `predict` reads, and the first predict of one no round trained on makes it."""
    import boxloop.sources.images as images
    from boxloop.modeling import decode_reduced

    src = tmp_path / "photos"
    src.mkdir()
    smooth(src / "scan.png", (1000, 700))
    smooth(src / "other.png", (1000, 700), orientation=None)
    Image.open(src / "other.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "other.png")
    ws = Workspace.init(tmp_path / "ws", classes=["cat"])
    add_images(ws, [src])
    items = {Path(it.uri).name: it for it in ws.store.items()}
    scan, other = items["scan.png"], items["other.png"]
    ws.store.add_label(scan.id, Detections([[10, 20, 110, 120]], [0]), source="test")
    ws.store.set_split({scan.id: "train"})
    write_yolo_dataset(ws, tmp_path / "view", splits=("train",), shrink_to=160)
    (kept,) = (ws.root / "shrunk").iterdir()
    assert kept.name == f"{scan.sha256[:24]}-250x175.png"

    def no_decode(*args, **kwargs):
        raise AssertionError("the PNG was decoded again")

    monkeypatch.setattr(images, "load_image", no_decode)
    got, scale = decode_reduced(scan.uri, size=(1000, 700), sha256=scan.sha256, fit=(160, 160), copies=ws.root / "shrunk")
    assert scale == (4.0, 4.0)
    with Image.open(kept) as im:
        assert np.array_equal(got, np.asarray(im.convert("RGB")))
    monkeypatch.undo()
    first, _ = decode_reduced(other.uri, size=(1000, 700), sha256=other.sha256, fit=(160, 160), copies=ws.root / "shrunk")
    assert first.shape == (175, 250, 3)
    assert (ws.root / "shrunk" / f"{other.sha256[:24]}-250x175.png").is_file()


def test_a_picture_gone_since_it_was_added_is_not_predicted_from_its_copy(tmp_path: Path) -> None:
    import pytest

    from boxloop.errors import InputError
    from boxloop.modeling import decode_reduced

    ws, it, path = one_picture(tmp_path, "scan.png", (1000, 700))
    copies = ws.root / "shrunk"
    decode_reduced(it.uri, size=(1000, 700), sha256=it.sha256, fit=(160, 160), copies=copies)
    assert len(list(copies.iterdir())) == 1
    path.unlink()
    with pytest.raises(InputError, match="scan.png: image file not found"):
        decode_reduced(it.uri, size=(1000, 700), sha256=it.sha256, fit=(160, 160), copies=copies)


def test_a_wide_photo_for_an_rtdetr_keeps_its_short_side_at_the_training_size(tmp_path: Path) -> None:
    """An RT-DETR sees the picture stretched to a square: its short side is stretched up to the
    input, so a copy (or a JPEG reduced while decoded for predicting) may be reduced only as far
    as that side stays at the input's size. A letterboxing YOLO needs only the long side."""
    from boxloop.modeling import decode_reduced, reduction

    assert reduction((4000, 2250), (640, 640)) == 4  # 1000x563: letterboxed, 640x360 of it used
    assert reduction((4000, 2250), (640, 640), stretch=True) == 2  # 2000x1125: stretched, 1125 >= 640
    assert reduction((4032, 3024), (640, 640), stretch=True) == 4  # a 4:3 phone photo: 1008x756 either way
    ws, it, path = one_picture(tmp_path, "wide.jpg", (1600, 500))
    ws.store.add_label(it.id, Detections([[10, 20, 110, 120]], [0]), source="test")
    ws.store.set_split({it.id: "train"})
    for stretch, size in ((False, (200, 63)), (True, (400, 125))):  # 1/8 letterboxed; 1/4 stretched (125 >= 100)
        data = write_yolo_dataset(ws, tmp_path / f"view-{stretch}", splits=("train",), shrink_to=100, stretch=stretch)
        (placed,) = (data.parent / "images" / "train").iterdir()
        with Image.open(placed.resolve()) as im:
            assert im.size == size, stretch
        image, scale = decode_reduced(str(path), size=(1600, 500), fit=(100, 100), stretch=stretch)
        assert (image.shape[1], image.shape[0]) == size and scale == (1600 / size[0], 500 / size[1])
