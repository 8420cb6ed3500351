"""The ONNX Runtime backend: export with the embedding output, parity with the PyTorch path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _tiny_data import CLASSES, read_yolo_split, trained_tiny_model
from boxloop.errors import BackendError, InputError
from boxloop.evaluate import box_iou

IMGSZ = 128


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return trained_tiny_model(tmp_path_factory, imgsz=IMGSZ)


@pytest.fixture(scope="module")
def exported(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from boxloop.backends.onnx import export_onnx

    return export_onnx(trained[0], imgsz=IMGSZ, out=tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def images(trained: tuple[Path, Path]) -> list[np.ndarray]:
    from boxloop.modeling import decode_file

    paths = [p for split in ("val", "test") for p, _, _ in read_yolo_split(trained[1], split)]
    return [decode_file(str(p)) for p in paths]


def test_export_writes_boxes_embedding_and_class_names(exported: Path) -> None:
    import onnx

    m = onnx.load(str(exported))
    assert [o.name for o in m.graph.output] == ["output0", "embedding"]
    meta = {p.key: p.value for p in m.metadata_props}
    assert '"square"' in meta["names"] and meta["imgsz"] == "[128, 128]"


def test_onnx_gives_the_same_boxes_as_pytorch(trained, exported: Path, images: list[np.ndarray]) -> None:
    """IoU >= 0.99 per matched box, confidence within 1e-3, same count, at the same threshold."""
    from boxloop.backends.onnx import OnnxBackend
    from boxloop.backends.ultralytics import load_backend

    torch_be = load_backend(trained[0], classes=CLASSES, imgsz=IMGSZ)
    onnx_be = load_backend(exported, classes=CLASSES)
    assert isinstance(onnx_be, OnnxBackend) and onnx_be.imgsz == (IMGSZ, IMGSZ)
    a = torch_be.predict(images, conf=0.01)
    b = onnx_be.predict(images, conf=0.01)
    total = 0
    for pa, pb in zip(a, b, strict=False):
        da, db = pa.detections, pb.detections
        assert len(da) == len(db)
        if len(da):
            ious = box_iou(da.xyxy, db.xyxy)
            j = ious.argmax(axis=1)
            assert (ious.max(axis=1) >= 0.99).all()
            np.testing.assert_allclose(da.confidence, db.confidence[j], atol=1e-3)
            np.testing.assert_array_equal(da.class_id, db.class_id[j])
            np.testing.assert_allclose(da.data["class_probs"], db.data["class_probs"][j], atol=1e-3)
        np.testing.assert_allclose(pa.embedding, pb.embedding, rtol=1e-3, atol=1e-3)
        total += len(da)
    assert total > len(images)


def test_batches_give_the_same_result_as_single_images(exported: Path, images: list[np.ndarray]) -> None:
    from boxloop.backends.onnx import OnnxBackend

    be = OnnxBackend(exported, classes=CLASSES, batch=4)
    batched = be.predict(images[:6], conf=0.05)
    single = [be.predict([im], conf=0.05)[0] for im in images[:6]]
    for x, y in zip(batched, single, strict=False):
        assert x.detections.equals(y.detections, atol=1e-3)
    assert set(be.times.seconds) == {"preprocess", "inference", "postprocess"}


def test_runtime_onnx_exports_a_pt_once_and_reuses_it(trained) -> None:
    from boxloop.backends.onnx import onnx_path_for
    from boxloop.backends.ultralytics import load_backend

    be = load_backend(trained[0], classes=CLASSES, runtime="onnx", imgsz=IMGSZ)
    cached = onnx_path_for(trained[0], IMGSZ)
    assert be.name == "onnx" and cached.is_file()
    before = cached.stat().st_mtime_ns
    load_backend(trained[0], classes=CLASSES, runtime="onnx", imgsz=IMGSZ)
    assert cached.stat().st_mtime_ns == before


def test_class_names_in_the_onnx_metadata_are_checked(exported: Path) -> None:
    from boxloop.backends.onnx import OnnxBackend

    with pytest.raises(BackendError, match="square"):
        OnnxBackend(exported, classes=["x", "y", "z"])
    be = OnnxBackend(exported, classes=["x", "y", "z"], class_map={"square": "x", "disc": "y", "bar": "z"})
    assert be.classes == ["x", "y", "z"]


def test_corrupt_or_missing_onnx_files_name_the_file(tmp_path: Path) -> None:
    from boxloop.backends.onnx import OnnxBackend

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(BackendError, match=r"broken\.onnx"):
        OnnxBackend(bad, classes=CLASSES)
    with pytest.raises(InputError, match=r"missing\.onnx"):
        OnnxBackend(tmp_path / "missing.onnx", classes=CLASSES)


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_onnx_runs_on_the_cores_the_process_may_use(exported: Path) -> None:
    """Under ``taskset -c 0`` (one core of several) ONNX Runtime gets one intra-op thread,
    not one per core of the machine, which would oversubscribe the core it has."""
    import os

    from boxloop.backends.onnx import OnnxBackend

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        one = OnnxBackend(exported, classes=CLASSES)
    finally:
        os.sched_setaffinity(0, before)
    assert one.session.get_session_options().intra_op_num_threads == 1
    every = OnnxBackend(exported, classes=CLASSES)
    assert every.session.get_session_options().intra_op_num_threads == len(before)
