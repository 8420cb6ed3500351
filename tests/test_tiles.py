"""Tiles: the windows that cover a picture, the labels a window shows, the merge of one
object seen by two windows, a backend predicting window by window (boxes back in the
picture's pixels), and `boxloop train --tile` with real Ultralytics: a view of tiles, a
version that predicts by tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from _tiny_data import CLASSES, TRAIN_ARGS, fill_workspace, make_yolo_dataset, ultralytics_offline
from boxloop.backends.base import Prediction
from boxloop.backends.tiled import TiledBackend
from boxloop.cli import app
from boxloop.errors import ConfigError
from boxloop.tiles import labels_in_window, merge_windows, tile_windows
from boxloop.types import Detections
from boxloop.workspace import Workspace

runner = CliRunner()


def test_windows_cover_the_picture_overlapping_and_flush_with_its_edges() -> None:
    wins = tile_windows(1000, 500, 320, overlap=0.2)
    xs = sorted({w[0] for w in wins})
    ys = sorted({w[1] for w in wins})
    assert xs == [0, 227, 453, 680] and ys == [0, 180]  # 4 x 2 windows (steps of 256 at most), edge to edge
    assert all((x1 - x0, y1 - y0) == (320, 320) for x0, y0, x1, y1 in wins)
    covered = np.zeros((500, 1000), bool)
    for x0, y0, x1, y1 in wins:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert tile_windows(200, 150, 320) == [(0, 0, 200, 150)]  # smaller than a tile: itself
    assert tile_windows(400, 150, 320) == [(0, 0, 320, 150), (80, 0, 400, 150)]
    with pytest.raises(ValueError, match="at least 32"):
        tile_windows(100, 100, 16)


def test_a_window_shows_a_cut_label_when_enough_of_it_is_inside() -> None:
    labels = Detections(np.array([[10, 10, 50, 50], [90, 10, 130, 50], [118, 60, 160, 70]], np.float32), np.array([0, 1, 2]))
    shown = labels_in_window(labels, (0, 0, 120, 100))
    # whole; half inside (kept, clipped); 2 of 42 pixels wide inside (left out)
    np.testing.assert_array_equal(shown.xyxy, [[10, 10, 50, 50], [90, 10, 120, 50]])
    assert shown.class_id.tolist() == [0, 1]
    moved = labels_in_window(labels, (80, 0, 200, 100))
    np.testing.assert_array_equal(moved.xyxy, [[10, 10, 50, 50], [38, 60, 80, 70]])
    assert moved.class_id.tolist() == [1, 2]


def test_one_object_seen_by_two_windows_is_one_box_and_two_objects_stay_two() -> None:
    probs = np.eye(2, dtype=np.float32)
    left = Detections(np.array([[200, 40, 256, 80], [10, 10, 30, 30]], np.float32), np.array([0, 0]),
                      np.array([0.6, 0.9], np.float32), {"class_probs": probs[[0, 0]]})
    # the right window (x from 200) sees the same object whole, and one of class 1 beside it
    right = Detections(np.array([[0, 40, 80, 80], [5, 40, 50, 80]], np.float32), np.array([0, 1]),
                       np.array([0.8, 0.7], np.float32), {"class_probs": probs[[0, 1]]})
    merged = merge_windows([(left, (0, 0, 256, 256)), (right, (200, 0, 456, 256))])
    order = np.argsort(-merged.confidence)
    np.testing.assert_allclose(merged.xyxy[order], [[10, 10, 30, 30], [200, 40, 280, 80], [205, 40, 250, 80]])
    assert merged.class_id[order].tolist() == [0, 0, 1]
    np.testing.assert_allclose(merged.confidence[order], [0.9, 0.8, 0.7])
    assert merged.data["class_probs"].shape == (3, 2)
    # within one window nothing is merged (the model's own NMS has run)
    same = Detections(np.array([[0, 0, 40, 40], [5, 5, 35, 35]], np.float32), np.array([0, 0]), np.array([0.9, 0.8], np.float32))
    assert len(merge_windows([(same, (0, 0, 64, 64))])) == 2
    nothing = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                         {"class_probs": np.zeros((0, 2), np.float32)})
    none = merge_windows([(nothing, (0, 0, 64, 64)), (nothing, None)])
    assert len(none) == 0 and none.confidence is not None and none.data["class_probs"].shape == (0, 2)


class BrightBlobs:
    """A stand-in detector for the geometry: every 8-connected blob of white pixels in its
    input is a box of class 0, in the input's pixels; the embedding is the input's size."""

    name = "blobs"

    def __init__(self) -> None:
        self.classes = ["blob"]
        self.seen: list[tuple[int, int]] = []

    def predict(self, images, *, conf=0.01, iou=0.6):
        import cv2

        out = []
        for im in images:
            self.seen.append(im.shape[:2])
            n, _, stats, _ = cv2.connectedComponentsWithStats((im[:, :, 0] > 200).astype(np.uint8))
            boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:n]]
            d = Detections(np.array(boxes, np.float32).reshape(-1, 4), np.zeros(len(boxes), np.int64),
                           np.full(len(boxes), 0.9, np.float32))
            out.append(Prediction(d, np.array(im.shape[:2], np.float32)))
        return out


def test_a_tiled_backend_gives_boxes_in_the_pictures_pixels_once_per_object() -> None:
    image = np.zeros((300, 700, 3), np.uint8)
    image[20:40, 30:50] = 255  # inside the first window only
    image[100:130, 240:290] = 255  # across the first two windows' overlap edge
    image[250:280, 650:690] = 255  # in the last column
    image[140:290, 380:640] = 255  # wider than a window: three windows see parts, the whole pass all of it
    inner = BrightBlobs()
    tiled = TiledBackend(inner, 256, batch=3)
    (pred,) = tiled.predict([image])
    order = np.argsort(pred.detections.xyxy[:, 0])
    np.testing.assert_allclose(pred.detections.xyxy[order], [[30, 20, 50, 40], [240, 100, 290, 130],
                                                              [380, 140, 640, 290], [650, 250, 690, 280]])
    assert pred.embedding.tolist() == [300, 700]  # the whole picture's
    windows = tile_windows(700, 300, 256)
    assert len(inner.seen) == len(windows) + 1 and inner.seen[-1] == (300, 700)
    assert {s for s in inner.seen[:-1]} == {(256, 256)}
    small = np.zeros((100, 120, 3), np.uint8)
    assert len(tiled.predict([small])[0].detections) == 0 and inner.seen[-1] == (100, 120)  # one pass, no tiles


def test_train_with_tiles_writes_a_view_of_tiles_and_the_version_predicts_by_tiles(tmp_path: Path) -> None:
    from boxloop import modeling
    from boxloop.tiles import TILES_DIR

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=4, n_val=2, n_test=0, seed=3, size=(320, 240))
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data", splits=("train", "val"))
    labels = ws.store.latest_labels()
    result = runner.invoke(app, ["train", "--tile", "160", "--epochs", "1", "--batch", "4", "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    (version,) = ws.store.model_versions()
    assert version["meta"]["tile"] == 160 and version["meta"]["imgsz"] == 160
    assert flat("train /") in flat(result.output) and flat("tiles") in flat(result.output)
    view = ws.runs_dir / version["id"] / "dataset"
    tiles = sorted((view / "images" / "train").iterdir())
    windows = tile_windows(320, 240, 160)  # 3 x 2 windows a picture; at most all 6 kept
    assert 4 <= len(tiles) <= 4 * len(windows)
    assert version["meta"]["train_images"] == len(tiles)
    for t in tiles:
        from PIL import Image

        with Image.open(t) as im:
            assert im.size == (160, 160)
        assert t.resolve().parent == (ws.root / TILES_DIR).resolve()  # linked to the kept tiles
        rows = (view / "labels" / "train" / f"{t.stem}.txt")
        if rows.exists() and rows.read_text().strip():
            vals = np.loadtxt(rows, ndmin=2)
            assert (vals[:, 1:] >= 0).all() and (vals[:, 1:] <= 1).all()
    total_boxes = sum(len(labels[i]) for i in labels)
    assert total_boxes > 0

    backend = modeling.load_model_backend(ws, modeling.resolve_model(ws, version["id"]))
    assert isinstance(backend, TiledBackend) and backend.tile == 160 and tuple(backend.imgsz) == (160, 160)
    report = modeling.predict(ws, scope="labeled")
    assert report.items == 6 and not report.problems
    assert report.input_side is None  # object sizes: the picture's own pixels, as the tiles show them
    preds = ws.store.predictions(version["id"])
    assert len(preds) == 6
    for d in preds.values():  # in the picture's pixels, not a window's
        assert (d.xyxy >= -1).all() and (d.xyxy[:, [0, 2]] <= 321).all() and (d.xyxy[:, [1, 3]] <= 241).all()
    emb_ids, embs = ws.store.embeddings(version["id"])
    assert len(emb_ids) == 6 and embs.shape[0] == 6  # one per picture, not per tile

    # handed over (its .pt, or the ONNX export-model writes), the model still predicts by tiles: the ONNX file and
    # the run folder beside the .pt say so (a copy once predicted whole pictures without a word)
    import shutil

    onnx_file = modeling.export_model(ws, model=version["id"])
    elsewhere = tmp_path / "colleague"
    elsewhere.mkdir()
    shutil.copy(onnx_file, elsewhere / "tiles.onnx")
    handed = modeling.resolve_model(ws, elsewhere / "tiles.onnx")
    assert handed.meta["tile"] == 160 and handed.meta["imgsz"] == 160
    assert isinstance(modeling.load_model_backend(ws, handed), TiledBackend)
    pt = modeling.resolve_model(ws, ws.runs_dir / version["id"] / "weights" / "last.pt")
    assert pt.meta["tile"] == 160 and pt.version.startswith(f"{version['id']}_last-")

    again = modeling.train(ws, epochs=1, batch=4, extra=TRAIN_ARGS, tile=160)  # the tiles are kept, not cut again
    assert again.train_images == len(tiles)
    listed = runner.invoke(app, ["prune", "--shrunk", "-w", str(ws.root)])
    assert flat("tiles of pictures trained on by tiles") in flat(listed.output)


def test_train_tile_in_boxloop_toml_makes_held_out_models_of_tiles_too(tmp_path: Path) -> None:
    from PIL import Image

    from boxloop.audit import HELD_OUT_DIR, audit_out_of_fold

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=6, n_val=2, n_test=0, seed=5, size=(320, 240))
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data", splits=("train", "val"))
    toml = ws.root / "boxloop.toml"
    assert "\ntile = 0 " in toml.read_text()  # every new workspace lists the setting
    toml.write_text(toml.read_text().replace("\ntile = 0 ", "\ntile = 160 "))
    ws = Workspace.open(ws.root)
    assert ws.config.train.tile == 160
    report = audit_out_of_fold(ws, folds=2, epochs=1, batch=4, extra=TRAIN_ARGS)
    assert report.audited == 8
    views = sorted((ws.runs_dir / HELD_OUT_DIR).glob("fold-*/dataset/images/train"))
    assert len(views) == 2
    for view in views:
        sizes = set()
        for t in view.iterdir():
            with Image.open(t) as im:
                sizes.add(im.size)
        assert sizes == {(160, 160)}
    toml.write_text(toml.read_text().replace("\ntile = 160 ", "\ntile = 8 "))
    with pytest.raises(ConfigError, match="tile must be 0"):
        Workspace.open(ws.root).config  # noqa: B018


def test_a_tile_no_smaller_than_any_picture_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--tile 1024 on pictures of 320x240: they train whole, enlarged (2.5x slower), said before training."""
    from boxloop import modeling
    from boxloop.backends import ultralytics

    make_yolo_dataset(tmp_path / "data", n_train=2, n_val=1, n_test=0, seed=3, size=(320, 240))
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data", splits=("train", "val"))

    def stop(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ultralytics, "train_yolo", stop)
    with caplog.at_level("WARNING", logger="boxloop.modeling"), pytest.raises(KeyboardInterrupt):
        modeling.train(ws, model="yolov8n.yaml", epochs=1, tile=1024, allow_missing_classes=True)
    assert "tile 1024 is no smaller than any picture (the largest is 320x240): they train whole, enlarged to 1024" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="boxloop.modeling"), pytest.raises(KeyboardInterrupt):
        modeling.train(ws, model="yolov8n.yaml", epochs=1, tile=160, allow_missing_classes=True)
    assert "no smaller than any picture" not in caplog.text
