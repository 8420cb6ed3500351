"""The Ultralytics backend, on a yolov8n really trained on tiny generated data (once per session)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from _tiny_data import CLASSES, draw_image, read_yolo_split, trained_tiny_model, ultralytics_offline
from boxloop.backends.base import Backend
from boxloop.errors import BackendError, InputError
from boxloop.evaluate import box_iou, coco_metrics
from boxloop.types import Detections

IMGSZ = 128


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return trained_tiny_model(tmp_path_factory, imgsz=IMGSZ)


@pytest.fixture(scope="module")
def backend(trained: tuple[Path, Path]):
    from boxloop.backends.ultralytics import load_backend

    return load_backend(trained[0], classes=CLASSES, imgsz=IMGSZ)


def _rgb(path: Path) -> np.ndarray:
    from boxloop.modeling import decode_file

    return decode_file(str(path))


def test_backend_implements_the_protocol_and_keeps_project_classes(backend) -> None:
    assert isinstance(backend, Backend)
    assert backend.classes == CLASSES
    assert backend.imgsz == (IMGSZ, IMGSZ)


def test_class_probabilities_sum_to_one_and_their_argmax_is_the_class(backend, trained) -> None:
    images = [_rgb(p) for p, _, _ in read_yolo_split(trained[1], "val")]
    preds = backend.predict(images, conf=0.01)
    boxes = 0
    for p in preds:
        d = p.detections
        probs = d.data["class_probs"]
        assert probs.shape == (len(d), len(CLASSES)) and probs.dtype == np.float32
        assert (probs >= 0).all() and (probs <= 1).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(probs.argmax(axis=1), d.class_id)
        assert (d.confidence >= 0.01).all() and (d.confidence <= 1).all()
        boxes += len(d)
    assert boxes > len(images)  # a low threshold keeps many uncertain boxes


def test_embedding_is_pooled_backbone_features_that_depend_on_the_image(backend) -> None:
    rng = np.random.default_rng(5)
    a, _ = draw_image(rng)
    b, _ = draw_image(rng)
    pa, pa2, pb = backend.predict([a, a, b])
    # yolov8n: the ends of its stride 4, 8, 16 and 32 stages, 32 + 64 + 128 + 256 channels
    assert pa.embedding.shape == (480,) and pa.embedding.dtype == np.float32
    assert np.linalg.norm(pa.embedding) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(pa.embedding).all()
    np.testing.assert_allclose(pa.embedding, pa2.embedding, rtol=1e-5, atol=1e-6)
    assert not np.allclose(pa.embedding, pb.embedding, atol=1e-3)


def test_trained_model_finds_the_shapes(backend, trained) -> None:
    split = read_yolo_split(trained[1], "test")
    preds = backend.predict([_rgb(p) for p, _, _ in split], conf=0.001, iou=0.7)
    gt = {p.name: Detections(xyxy, cls) for p, xyxy, cls in split}
    pred = {p.name: pr.detections for (p, _, _), pr in zip(split, preds, strict=False)}
    metrics = coco_metrics(gt, pred, classes=CLASSES)
    assert metrics["map50"] > 0.5, metrics


def test_boxes_match_ultralytics_own_predict(backend, trained) -> None:
    """Same letterbox (square), same threshold: our head decoding + NMS agrees with Ultralytics'."""
    from ultralytics import YOLO

    paths = [p for p, _, _ in read_yolo_split(trained[1], "test")][:8]
    ours = backend.predict([_rgb(p) for p in paths], conf=0.25, iou=0.6)
    theirs = YOLO(str(trained[0])).predict(
        [str(p) for p in paths], imgsz=IMGSZ, conf=0.25, iou=0.6, rect=False, verbose=False, device="cpu"
    )
    matched = 0
    for o, t in zip(ours, theirs, strict=False):
        d = o.detections
        txyxy = t.boxes.xyxy.numpy()
        assert len(d) == len(txyxy)
        if not len(d):
            continue
        ious = box_iou(d.xyxy, txyxy)
        j = ious.argmax(axis=1)
        assert (ious.max(axis=1) >= 0.99).all()
        np.testing.assert_allclose(d.confidence, t.boxes.conf.numpy()[j], atol=1e-3)
        np.testing.assert_array_equal(d.class_id, t.boxes.cls.numpy().astype(int)[j])
        matched += len(d)
    assert matched > 0


def test_class_names_are_mapped_by_name(trained, backend) -> None:
    from boxloop.backends.ultralytics import load_backend

    image = _rgb(read_yolo_split(trained[1], "val")[0][0])
    reordered = ["bar", "square", "disc"]
    other = load_backend(trained[0], classes=reordered, imgsz=IMGSZ)
    a = backend.predict([image])[0].detections
    b = other.predict([image])[0].detections
    assert [CLASSES[c] for c in a.class_id] == [reordered[c] for c in b.class_id]
    np.testing.assert_allclose(
        a.data["class_probs"][:, [CLASSES.index(n) for n in reordered]], b.data["class_probs"], atol=1e-6
    )


def test_weights_with_other_class_names_are_an_error_listing_both(trained) -> None:
    from boxloop.backends.ultralytics import load_backend

    with pytest.raises(BackendError) as e:
        load_backend(trained[0], classes=["cat", "dog", "bird"], imgsz=IMGSZ)
    assert "square" in str(e.value) and "cat" in str(e.value) and "--class-map" in str(e.value)
    be = load_backend(
        trained[0], classes=["cat", "dog", "bird"], imgsz=IMGSZ,
        class_map=["square=cat", "disc=dog", "bar=bird"],
    )
    assert be.classes == ["cat", "dog", "bird"]


def test_weights_with_more_classes_predict_only_the_projects(trained, backend, caplog) -> None:
    """A COCO model in a project of cars and people: the classes the project shares by name
    are predicted, the others are left out (no box of theirs, no share of the probabilities)
    and named in a warning; before, every one of them had to be mapped."""
    import logging

    from boxloop.backends.ultralytics import load_backend

    images = [_rgb(p) for p, _, _ in read_yolo_split(trained[1], "val")]
    with caplog.at_level(logging.WARNING, logger="boxloop.backends.ultralytics"):
        some = load_backend(trained[0], classes=["disc", "square"], imgsz=IMGSZ)
    assert "1 of its 3 classes are not the project's and are not predicted (bar)" in caplog.text
    full = backend.predict(images, conf=0.05)
    part = some.predict(images, conf=0.05)
    kept = bars = 0
    for f, p in zip(full, part, strict=True):
        a, b = f.detections, p.detections
        assert b.data["class_probs"].shape[1] == 2
        np.testing.assert_allclose(b.data["class_probs"].sum(axis=1), 1.0, atol=1e-5)
        ious = box_iou(a.xyxy, b.xyxy) if len(a) and len(b) else np.zeros((len(a), len(b)))
        for i in np.flatnonzero(a.confidence > 0.5):
            name = CLASSES[a.class_id[i]]
            same = np.flatnonzero(ious[i] > 0.95)
            if name == "bar":  # a confident bar is not drawn as a confident disc or square
                bars += 1
                assert not (b.confidence[same] > 0.5).any()
            else:  # a confident disc or square is drawn as it was
                kept += 1
                assert any(["disc", "square"][b.class_id[j]] == name and abs(b.confidence[j] - a.confidence[i]) < 1e-4 for j in same)
    assert kept and bars


def test_missing_weights_name_the_file_and_never_download(tmp_path: Path) -> None:
    from boxloop.backends.ultralytics import load_backend

    with pytest.raises(InputError, match=r"yolov8n\.pt: weights file not found"):
        load_backend("yolov8n.pt", classes=CLASSES)
    with pytest.raises(InputError, match=r"nowhere\.pt"):
        load_backend(tmp_path / "nowhere.pt", classes=CLASSES)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 10])
def test_corrupt_weights_are_a_backend_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    from boxloop.backends.ultralytics import load_backend

    bad = tmp_path / "broken.pt"
    bad.write_bytes(content)
    with pytest.raises(BackendError, match=r"broken\.pt"):
        load_backend(bad, classes=CLASSES)


@pytest.mark.parametrize(
    ("arch", "kind"),
    [
        ("yolov8n-seg.yaml", "a segmentation model"),
        ("yolo26n-obb.yaml", "an oriented-box model"),
        ("yolov8n-pose.yaml", "a pose model"),
        ("yolov8n-cls.yaml", "a classification model"),
    ],
)
def test_a_model_that_is_no_yolo_detector_is_refused_before_training(arch: str, kind: str, tmp_path: Path) -> None:
    """Before this check a segmentation model trained an epoch and then failed on a tuple, and an
    oriented-box one trained and predicted its rotated boxes as upright ones."""
    from _tiny_data import TRAIN_ARGS, make_yolo_dataset
    from boxloop.backends.ultralytics import train_yolo

    ultralytics_offline(tmp_path / "ultralytics-config")
    data = make_yolo_dataset(tmp_path / "data", n_train=4, n_val=2)
    run = tmp_path / "run"
    with pytest.raises(InputError, match=rf"{re.escape(arch)}: {kind} \(.*; boxloop trains and reads detectors"):
        train_yolo(data, model=arch, run_dir=run, epochs=1, imgsz=64, batch=2, extra=TRAIN_ARGS)
    assert not (run / "weights").exists()


def test_weights_of_a_segmentation_model_are_refused_naming_the_file(tmp_path: Path) -> None:
    from ultralytics import YOLO

    from boxloop.backends.ultralytics import load_backend

    ultralytics_offline(tmp_path / "ultralytics-config")
    YOLO("yolov8n-seg.yaml").save(tmp_path / "masks.pt")
    with pytest.raises(InputError, match=r"masks\.pt: a segmentation model \(Segment head\)"):
        load_backend(tmp_path / "masks.pt", classes=CLASSES)


def test_a_model_yaml_builds_an_untrained_model_with_the_project_classes(tmp_path_factory) -> None:
    from boxloop.backends.ultralytics import load_backend

    ultralytics_offline(Path(tmp_path_factory.getbasetemp()) / "ultralytics-config")
    be = load_backend("yolov8n.yaml", classes=CLASSES, imgsz=96)
    p = be.predict([np.zeros((50, 70, 3), np.uint8)], conf=0.0001)[0]
    assert be.imgsz == (96, 96)
    assert p.detections.data["class_probs"].shape[1] == 3
    assert p.embedding.shape == (480,)


@pytest.mark.parametrize(
    ("image", "message"),
    [(np.zeros((10, 10, 3), np.float32), "uint8"), (np.zeros((10, 10, 2), np.uint8), "HxWx3")],
)
def test_bad_arrays_are_refused_with_a_clear_message(backend, image: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        backend.predict([image])


def test_embedding_layers_are_the_ends_of_the_backbone_stages(tmp_path_factory) -> None:
    from boxloop.backends.ultralytics import embedding_layers, load_torch_model

    ultralytics_offline(Path(tmp_path_factory.getbasetemp()) / "ultralytics-config")
    model, _, _ = load_torch_model("yolov8n.yaml", nc=3)
    assert embedding_layers(model) == [2, 4, 6, 9]  # stride 4, 8, 16, 32 (9 = SPPF)


def test_a_large_jpeg_is_decoded_reduced_and_its_boxes_land_in_its_own_pixels(backend, trained, tmp_path: Path) -> None:
    """A photo many times the network input (a phone's 12 MP for a 640 input) is decoded at a
    quarter of its size (libjpeg scales while decoding), also one held sideways by EXIF: its
    boxes come back in the photo's displayed pixels, where a full decode puts them."""
    from PIL import Image

    from boxloop.modeling import decode_reduced, iter_predictions

    files, sizes = [], []
    for i, (p, _, _) in enumerate(read_yolo_split(trained[1], "test")[:10]):
        with Image.open(p) as im:
            big = im.convert("RGB").resize((im.width * 6, im.height * 6), Image.BICUBIC)  # 960x720
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 2 else 1  # every other one shown turned a quarter
        big.save(tmp_path / f"big{i}.jpg", quality=95, exif=exif.tobytes())
        files.append(str(tmp_path / f"big{i}.jpg"))
        sizes.append((720, 960) if i % 2 else (960, 720))
    image, scale = decode_reduced(files[1], size=sizes[1], fit=backend.imgsz)
    assert image.shape == (240, 180, 3) and scale == (4.0, 4.0)  # a quarter, upright
    full = {i: p.detections for i, p, _ in iter_predictions(backend, [(f, None) for f in files], conf=0.25, iou=0.6)}
    reduced = {i: p.detections for i, p, _ in iter_predictions(backend, list(zip(files, sizes)), conf=0.25, iou=0.6)}
    confident = 0
    for i, d in full.items():
        w, h = sizes[i]
        r = reduced[i]
        assert (r.xyxy[:, [0, 2]] <= w).all() and (r.xyxy[:, [1, 3]] <= h).all()
        for box, cls in zip(d.xyxy[d.confidence >= 0.4], d.class_id[d.confidence >= 0.4], strict=True):
            confident += 1
            same = r.class_id == cls
            assert same.any() and box_iou(box[None], r.xyxy[same]).max() > 0.8, (i, box, r.xyxy)
    assert confident >= 4
