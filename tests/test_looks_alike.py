"""Re-encoded copies of real photos are known as their originals, also with their contrast
or brightness adjusted, or fitted into a square with padded edges (and where they show the
original); different photos that look much alike are not (the check behind Roboflow's renamed,
resized copies coming back)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from _images import fitted_copy
from boxloop.copies import looks_alike, placement
from boxloop.sources.images import file_sha256
from boxloop.types import Item


def item_of(path: Path) -> Item:
    with Image.open(path) as im:
        width, height = im.size
    return Item(id=path.stem, uri=str(path), width=width, height=height, sha256=file_sha256(path))


def copy_of(path: Path, out: Path, *, size: tuple[int, int], quality: int, adjust=None) -> Path:  # type: ignore[no-untyped-def]
    with Image.open(path) as im:
        buf = io.BytesIO()
        rgb = im.convert("RGB")
        (adjust(rgb) if adjust else rgb).resize(size).save(buf, "JPEG", quality=quality)
    out.write_bytes(buf.getvalue())
    return out


def test_stretched_low_quality_copies_of_real_photos_look_alike(coco128: Path, tmp_path: Path) -> None:
    photos = sorted((coco128 / "images").rglob("*.jpg"))[:24]
    for i, photo in enumerate(photos):
        size, quality = [((640, 640), 30), ((160, 160), 10), ((1024, 512), 60)][i % 3]
        copy = copy_of(photo, tmp_path / f"{photo.stem}_jpg.rf.{i:032x}.jpg", size=size, quality=quality)
        assert looks_alike(copy, item_of(photo)), (photo.name, size, quality)


def test_copies_with_contrast_or_brightness_adjusted_look_alike(coco128: Path, tmp_path: Path) -> None:
    photos = sorted((coco128 / "images").rglob("*.jpg"))[24:48]
    for i, photo in enumerate(photos):
        adjust = [lambda im: ImageOps.autocontrast(im, cutoff=2), lambda im: im.point(lambda v: min(255, int(v * 1.2)))][i % 2]
        copy = copy_of(photo, tmp_path / f"{photo.stem}_jpg.rf.{i:032x}.jpg", size=(640, 640), quality=60, adjust=adjust)
        assert looks_alike(copy, item_of(photo)), photo.name


def test_copies_fitted_in_with_padded_edges_look_alike_and_give_back_their_boxes(coco128: Path, tmp_path: Path) -> None:
    """Measured on all of coco128 fitted in 640x640 at JPEG quality 30, each edge: 128 of 128
    found; none of the 16256 different pairs."""
    photos = sorted((coco128 / "images").rglob("*.jpg"))[48:72]
    padded = 0
    for i, photo in enumerate(photos):
        edge = ("black", "white", "reflect")[i % 3]
        size = [(640, 640), (416, 416), (1280, 720)][i % 3]
        copy = tmp_path / f"{photo.stem}_jpg.rf.{i:032x}.jpg"
        s, dx, dy = fitted_copy(photo, copy, size=size, edge=edge)
        item = item_of(photo)
        where = placement(copy, item)
        assert where is not None, (photo.name, edge, size)
        assert where.padded == bool(dx or dy), (photo.name, edge, size)
        padded += where.padded
        # a box drawn on the copy lands where it was on the photo
        box = np.array([[0.2 * item.width, 0.3 * item.height, 0.7 * item.width, 0.9 * item.height]])
        on_copy = box * s + [dx, dy, dx, dy]
        back, keep = where.to_original(on_copy, item.width, item.height)
        assert keep.all() and np.abs(back - box).max() < 1.5, (photo.name, back, box)
    assert padded >= 20  # most photos are not of the copies' shape
    # a box drawn on the padding holds nothing of the photo: cut, it has no area
    _, keep = where.to_original(np.array([[0.0, 0.0, dx or 5.0, dy or 5.0]]), item.width, item.height)
    assert not keep.any()


def test_the_most_alike_different_photos_of_coco128_do_not(coco128: Path) -> None:
    images = coco128 / "images"
    # the closest pairs of coco128's 8128 (mean grey difference 0.059, 0.075, 0.077 at 16x16)
    for a, b in [("000000000404", "000000000531"), ("000000000322", "000000000589"), ("000000000072", "000000000544")]:
        assert not looks_alike(images / f"{a}.jpg", item_of(images / f"{b}.jpg")), (a, b)
        assert not looks_alike(images / f"{b}.jpg", item_of(images / f"{a}.jpg")), (b, a)


def test_a_fitted_copy_of_one_photo_is_not_another(coco128: Path, tmp_path: Path) -> None:
    images = coco128 / "images"
    for a, b in [("000000000404", "000000000531"), ("000000000322", "000000000589"), ("000000000072", "000000000544")]:
        for edge in ("black", "reflect"):
            fitted_copy(images / f"{a}.jpg", tmp_path / "copy.jpg", size=(640, 640), edge=edge, quality=30)
            assert placement(tmp_path / "copy.jpg", item_of(images / f"{b}.jpg")) is None, (a, b, edge)


def test_an_unreadable_file_is_no_match(coco128: Path, tmp_path: Path) -> None:
    photo = sorted((coco128 / "images").rglob("*.jpg"))[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert not looks_alike(broken, item_of(photo))
