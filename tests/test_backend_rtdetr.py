"""RT-DETR through the same backend as the YOLOs: trained by Ultralytics' RT-DETR trainer, read
from its decoder's queries (every class's score, not its top-k answer), fed stretched squares as
Ultralytics feeds it, exported to ONNX with the same boxes, and run through the CLI.

The model is ``tests/tiny-rtdetr.yaml``, an RT-DETR of a million parameters (rtdetr-l has 33
million) trained for two epochs: these tests prove the plumbing, not the detector's quality (a
transformer's decoder learns nothing useful from a few dozen pictures in minutes of CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _tiny_data import (
    CLASSES,
    TRAIN_ARGS,
    add_pool,
    fill_workspace,
    make_yolo_dataset,
    read_yolo_split,
    ultralytics_offline,
)
from boxloop.cli import app
from boxloop.workspace import Workspace

TINY_RTDETR = str(Path(__file__).with_name("tiny-rtdetr.yaml"))
IMGSZ = 128
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """(best.pt, test pictures of 160x120: not square, so a letterbox and a stretch differ)."""
    from boxloop.backends.ultralytics import train_yolo

    root = tmp_path_factory.mktemp("rtdetr")
    ultralytics_offline(root / "ultralytics-config")
    data = make_yolo_dataset(root / "data", n_train=8, n_val=4, n_test=4, seed=11)
    result = train_yolo(
        data, model=TINY_RTDETR, run_dir=root / "run", epochs=2, imgsz=IMGSZ, batch=4,
        extra={**TRAIN_ARGS, "lr0": 1e-4},
    )
    return result.weights, [p for p, _, _ in read_yolo_split(data.parent, "test")]


@pytest.fixture(scope="module")
def images(trained: tuple[Path, list[Path]]) -> list[np.ndarray]:
    from boxloop.modeling import decode_file

    return [decode_file(str(p)) for p in trained[1]]


def test_an_rtdetr_yaml_trains_an_rtdetr_that_predicts_every_class_probability(trained, images) -> None:
    import torch

    from boxloop.backends.ultralytics import UltralyticsBackend, detr_model, load_backend

    ckpt = torch.load(trained[0], map_location="cpu", weights_only=False)
    assert type(ckpt["model"].model[-1]).__name__ == "RTDETRDecoder"  # Ultralytics' RT-DETR trainer made it
    # what training reads to make copies of large photos for a stretching model
    assert detr_model(TINY_RTDETR) and detr_model(trained[0]) and detr_model("rtdetr-l.yaml")
    assert not detr_model("yolov8n.yaml") and not detr_model(trained[0].with_name("missing.pt"))
    be = load_backend(trained[0], classes=CLASSES, imgsz=(96, 128))  # a rect input, as predict asks for 4:3 pools
    assert isinstance(be, UltralyticsBackend) and be.detr and be.stretch
    assert be.imgsz == (128, 128)  # an RT-DETR runs on the square it was trained on
    preds = be.predict(images, conf=0.0, iou=1.0)
    for p in preds:
        d = p.detections
        assert len(d) == 100  # one box a query (the yaml's 100), none suppressed at iou 1
        probs = d.data["class_probs"]
        assert probs.shape == (100, len(CLASSES))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(probs.argmax(axis=1), d.class_id)
        assert (d.xyxy[:, [0, 2]] >= 0).all() and (d.xyxy[:, [0, 2]] <= 160).all()
        assert (d.xyxy[:, [1, 3]] >= 0).all() and (d.xyxy[:, [1, 3]] <= 120).all()
        # the pooled backbone stages of the tiny yaml: 32 + 64 + 96 + 128 channels
        assert p.embedding.shape == (320,) and np.linalg.norm(p.embedding) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(preds[0].embedding, preds[1].embedding, atol=1e-4)


def test_rtdetr_boxes_are_ultralytics_own(trained, images) -> None:
    """Ultralytics stretches the picture to the square input and answers a query's best (query,
    class) pairs, up to 100; boxloop reads each query's whole class vector. Every box
    Ultralytics gives is one of boxloop's (the same corners within 0.05 px), with the same class
    and confidence where it is the query's best class, and boxloop's ten surest boxes are all
    among Ultralytics' answers: the same pixels in, the same pixels out."""
    from ultralytics import RTDETR

    from boxloop.backends.ultralytics import load_backend

    be = load_backend(trained[0], classes=CLASSES, imgsz=IMGSZ)
    ours = be.predict(images, conf=0.0, iou=1.0)
    theirs = RTDETR(str(trained[0])).predict([str(p) for p in trained[1]], imgsz=IMGSZ, conf=0.0, verbose=False, device="cpu")
    best_class = 0
    for o, t in zip(ours, theirs, strict=True):
        d = o.detections
        h, w = t.orig_shape
        txyxy = t.boxes.xyxy.numpy().copy()
        txyxy[:, [0, 2]] = txyxy[:, [0, 2]].clip(0, w)  # boxloop clips a box to its picture
        txyxy[:, [1, 3]] = txyxy[:, [1, 3]].clip(0, h)
        tconf, tcls = t.boxes.conf.numpy(), t.boxes.cls.numpy().astype(int)
        assert len(txyxy) == 100
        for box, conf, cls in zip(txyxy, tconf, tcls, strict=True):
            same = np.abs(d.xyxy - box).max(axis=1) < 0.05
            assert same.any()
            query_best = same & (d.class_id == cls) & (np.abs(d.confidence - conf) < 1e-5)
            assert query_best.any() or (d.confidence[same] > conf).any()  # another class of the query
            best_class += int(query_best.any())
        for i in np.argsort(-d.confidence)[:10]:
            assert (
                (np.abs(txyxy - d.xyxy[i]).max(axis=1) < 0.05) & (tcls == d.class_id[i])
                & (np.abs(tconf - d.confidence[i]) < 1e-5)
            ).any()
    assert best_class > len(images) * 50  # most answers are their query's best class


def test_an_rtdetr_exported_to_onnx_gives_the_torch_boxes(trained, images, tmp_path: Path) -> None:
    import onnx

    from boxloop.backends.onnx import OnnxBackend, export_onnx
    from boxloop.backends.ultralytics import load_backend

    path = export_onnx(trained[0], imgsz=(96, 128), out=tmp_path / "rtdetr.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["fill"] == "stretch" and meta["imgsz"] == "[128, 128]"
    onnx_be = load_backend(path, classes=CLASSES)
    assert isinstance(onnx_be, OnnxBackend) and onnx_be.stretch and onnx_be.imgsz == (IMGSZ, IMGSZ)
    a = load_backend(trained[0], classes=CLASSES, imgsz=IMGSZ).predict(images, conf=0.01)
    b = onnx_be.predict(images, conf=0.01)
    for pa, pb in zip(a, b, strict=True):
        assert len(pa.detections) == len(pb.detections) > 0
        np.testing.assert_allclose(pa.detections.xyxy, pb.detections.xyxy, atol=0.01)
        np.testing.assert_allclose(pa.detections.confidence, pb.detections.confidence, atol=1e-4)
        np.testing.assert_allclose(pa.detections.data["class_probs"], pb.detections.data["class_probs"], atol=1e-4)
        np.testing.assert_allclose(pa.embedding, pb.embedding, atol=1e-4)


def test_a_workspace_trains_predicts_evaluates_and_selects_with_an_rtdetr(tmp_path: Path) -> None:
    """The commands a user runs, with ``--model`` an RT-DETR yaml; then the version through
    ONNX Runtime."""
    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=6, n_val=2, n_test=3, seed=12)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data")
    pool = add_pool(ws, tmp_path / "pool", n=5)
    w = ["-w", str(ws.root)]
    trained = runner.invoke(app, ["train", "--model", TINY_RTDETR, "--epochs", "1", "--imgsz", "96", "--batch", "4", *w])
    assert trained.exit_code == 0, trained.output
    (version,) = ws.store.model_versions()
    predicted = runner.invoke(app, ["predict", *w])
    assert predicted.exit_code == 0, predicted.output
    preds = ws.store.predictions(version["id"])
    assert set(pool) <= set(preds)
    assert all(d.data["class_probs"].shape == (len(d), len(CLASSES)) for d in preds.values())
    evaluated = runner.invoke(app, ["evaluate", *w])
    assert evaluated.exit_code == 0, evaluated.output
    assert "mAP" in evaluated.output
    selected = runner.invoke(app, ["select", "--budget", "2", "--strategy", "least_confidence", *w])
    assert selected.exit_code == 0, selected.output
    selection = ws.store.selection()
    assert len(selection.item_ids) == 2 and set(selection.item_ids) <= set(pool)
    exported = runner.invoke(app, ["export-model", *w])
    assert exported.exit_code == 0, exported.output
    onnx_run = runner.invoke(app, ["predict", "--runtime", "onnx", "--scope", "unlabeled", *w])
    assert onnx_run.exit_code == 0, onnx_run.output
