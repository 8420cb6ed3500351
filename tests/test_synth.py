"""The synthetic LCD dataset: labels are where the digits were drawn, runs are repeatable."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from boxloop import synth
from boxloop.errors import InputError
from boxloop.sources.images import natural_key

SIZE = (320, 240)


def read_boxes(label: Path, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, list[int]]:
    """YOLO label file → pixel xyxy and class ids (parsed here, independently of the writer)."""
    w, h = size
    boxes, classes = [], []
    for line in label.read_text().splitlines():
        c, cx, cy, bw, bh = line.split()
        cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
        boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        classes.append(int(c))
    return np.asarray(boxes, np.float64).reshape(-1, 4), classes


def pixels(scene: synth._Scene) -> np.ndarray:
    return np.asarray(synth._render(scene)[0], np.int16)


def changed_box(a: np.ndarray, b: np.ndarray) -> list[int] | None:
    """Pixel box [x0, y0, x1, y1) of where two renders differ, or None where they agree."""
    diff = np.abs(a - b).max(axis=2) > 0
    cols, rows = np.flatnonzero(diff.any(axis=0)), np.flatnonzero(diff.any(axis=1))
    if not len(cols):
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def test_label_boxes_are_where_each_digit_changes_the_picture(tmp_path: Path) -> None:
    # Render each image again with only digit k lit and with no digit lit: everything else
    # (background, noise, lighting, blur) is identical, so the pixels that differ are
    # exactly digit k's lit segments. Its label box must hug them.
    seed, n = 7, 14
    out = synth.generate_images(tmp_path / "lcd", n=n, seed=seed, empty_fraction=0.0)
    checked = blurred = 0
    for i in range(n):
        scene = synth._sample_scene(seed, i, SIZE, empty_fraction=0.0)
        boxes, classes = read_boxes(out / "labels" / f"lcd_{i:05d}.txt")
        digit_cells = [j for j, c in enumerate(scene.cells) if c.kind == "digit"]
        assert classes == [scene.cells[j].digit for j in digit_cells]
        off = tuple(
            replace(c, kind="blank", segments="") if c.kind == "digit" else c for c in scene.cells
        )
        none_lit = pixels(replace(scene, cells=off))
        for k, j in enumerate(digit_cells):
            one = list(off)
            one[j] = scene.cells[j]
            drawn = changed_box(pixels(replace(scene, cells=tuple(one))), none_lit)
            assert drawn is not None, f"image {i}: digit {k} left no trace"
            if scene.blur == 0:
                np.testing.assert_allclose(
                    boxes[k], drawn, atol=1.0, err_msg=f"image {i} digit {k}"
                )
            else:  # blur spreads the change outwards by at most about 3 sigma
                spread = math.ceil(3 * scene.blur) + 1
                outward = np.concatenate(
                    [boxes[k][:2] - drawn[:2], np.asarray(drawn[2:]) - boxes[k][2:]]
                )
                assert np.all(outward >= -1) and np.all(outward <= spread), (i, k, outward)
                blurred += 1
            checked += 1
    assert checked >= 20 and blurred >= 1


def test_same_seed_gives_identical_files_and_other_seed_does_not(tmp_path: Path) -> None:
    a = synth.generate_images(tmp_path / "a", n=6, seed=11)
    b = synth.generate_images(tmp_path / "b", n=6, seed=11)
    c = synth.generate_images(tmp_path / "c", n=6, seed=12)
    for i in range(6):
        for sub, ext in (("labels", "txt"), ("images", "jpg")):
            name = f"{sub}/lcd_{i:05d}.{ext}"
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    differs = [
        (a / f"images/lcd_{i:05d}.jpg").read_bytes() != (c / f"images/lcd_{i:05d}.jpg").read_bytes()
        for i in range(6)
    ]
    assert all(differs)


def test_start_extends_a_dataset_with_the_same_images(tmp_path: Path) -> None:
    whole = synth.generate_images(tmp_path / "whole", n=5, seed=2)
    part = synth.generate_images(tmp_path / "part", n=2, seed=2, start=3)
    assert sorted(p.name for p in (part / "images").iterdir()) == ["lcd_00003.jpg", "lcd_00004.jpg"]
    for i in (3, 4):
        name = f"images/lcd_{i:05d}.jpg"
        assert (whole / name).read_bytes() == (part / name).read_bytes()
    # a re-run over existing files (an interrupted run) gives the same files, no leftovers
    synth.generate_images(tmp_path / "part", n=3, seed=2, start=2)
    assert not [p for p in (part / "images").iterdir() if p.name.startswith(".")]
    assert (whole / "images/lcd_00003.jpg").read_bytes() == (
        part / "images/lcd_00003.jpg"
    ).read_bytes()


def test_boxes_lie_inside_the_image_and_digits_are_not_tiny(tmp_path: Path) -> None:
    out = synth.generate_images(tmp_path / "lcd", n=40, seed=5, size=(256, 192))
    n_boxes = 0
    for label in (out / "labels").iterdir():
        boxes, classes = read_boxes(label, (256, 192))
        assert all(0 <= c <= 9 for c in classes)
        assert np.all(boxes[:, :2] >= -1e-3) and np.all(boxes[:, 2] <= 256 + 1e-3)
        assert np.all(boxes[:, 3] <= 192 + 1e-3)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert np.all(boxes[:, 3] - boxes[:, 1] >= 0.13 * 192), label.name
        for line in label.read_text().splitlines():
            assert all(len(f.split(".")[1]) == 6 for f in line.split()[1:]), line
        n_boxes += len(boxes)
    assert n_boxes >= 40


def test_empty_images_have_empty_label_files(tmp_path: Path) -> None:
    empty = synth.generate_images(tmp_path / "empty", n=8, seed=1, empty_fraction=1.0)
    full = synth.generate_images(tmp_path / "full", n=8, seed=1, empty_fraction=0.0)
    for i in range(8):
        assert (empty / f"images/lcd_{i:05d}.jpg").stat().st_size > 0
        assert (empty / f"labels/lcd_{i:05d}.txt").read_text() == ""
        assert (full / f"labels/lcd_{i:05d}.txt").read_text().strip()


def test_default_run_mixes_empty_images_and_all_ten_classes(tmp_path: Path) -> None:
    out = synth.generate_images(tmp_path / "lcd", n=60, seed=0, empty_fraction=0.1)
    texts = [p.read_text() for p in sorted((out / "labels").iterdir())]
    assert 1 <= sum(t == "" for t in texts) < 20
    seen = {int(line.split()[0]) for t in texts for line in t.splitlines()}
    assert seen == set(range(10))


def test_data_yaml_names_the_ten_digit_classes(tmp_path: Path) -> None:
    out = synth.generate_images(tmp_path / "lcd", n=1)
    doc = yaml.safe_load((out / "data.yaml").read_text())
    assert doc["path"] == str((tmp_path / "lcd").absolute())
    assert (doc["train"], doc["val"]) == ("images", "images")
    assert doc["names"] == {i: str(i) for i in range(10)} and list("0123456789") == synth.CLASSES


def test_sequence_frames_count_up_in_natural_order(tmp_path: Path) -> None:
    out = synth.generate_sequence(tmp_path / "seq", n_frames=12, seed=3)
    names = [p.name for p in (out / "images").iterdir()]
    assert sorted(names, key=natural_key) == [f"frame_{i}.jpg" for i in range(1, 13)]
    assert sorted(names)[:3] == ["frame_1.jpg", "frame_10.jpg", "frame_11.jpg"]  # why it matters
    readings, lefts = [], []
    for i in range(1, 13):
        boxes, classes = read_boxes(out / f"labels/frame_{i}.txt")
        assert classes, f"frame {i} shows no digit"
        readings.append(int("".join(map(str, classes))))
        lefts.append(boxes[:, 0].min())
    steps = np.diff(readings)
    assert np.all(steps >= 0) and 1 <= np.count_nonzero(steps) <= 6, readings
    assert np.ptp(lefts) > 0  # the camera jitters
    assert yaml.safe_load((out / "data.yaml").read_text())["names"][3] == "3"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 1, "size": (16, 16)}, "at least 32x32"),
        ({"n": -1}, "n and start"),
        ({"n": 1, "empty_fraction": 1.5}, "empty_fraction"),
        ({"n": 1, "jpeg_quality": 0}, "jpeg_quality"),
    ],
)
def test_bad_options_are_input_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        synth.generate_images(tmp_path / "x", **kwargs)
