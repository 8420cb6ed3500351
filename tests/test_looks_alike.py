"""Re-encoded copies of real photos are known as their originals, also with their contrast
or brightness adjusted; different photos that look much alike are not (the check behind
Roboflow's renamed, resized copies coming back)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps

from boxloop.ingest import looks_alike
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


def test_the_most_alike_different_photos_of_coco128_do_not(coco128: Path) -> None:
    images = coco128 / "images"
    # the closest pairs of coco128's 8128 (mean grey difference 0.059, 0.075, 0.077 at 16x16)
    for a, b in [("000000000404", "000000000531"), ("000000000322", "000000000589"), ("000000000072", "000000000544")]:
        assert not looks_alike(images / f"{a}.jpg", item_of(images / f"{b}.jpg")), (a, b)
        assert not looks_alike(images / f"{b}.jpg", item_of(images / f"{a}.jpg")), (b, a)


def test_an_unreadable_file_is_no_match(coco128: Path, tmp_path: Path) -> None:
    photo = sorted((coco128 / "images").rglob("*.jpg"))[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert not looks_alike(broken, item_of(photo))
