"""The ONNX Runtime backend: export with the embedding output, parity with the PyTorch path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _tiny_data import CLASSES, draw_image, read_yolo_split, trained_tiny_model
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


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"task": "segment", "head": "Segment"}, r"a segmentation model \(Segment head\)"),
        ({"task": "detect", "head": "OBB26"}, r"an oriented-box model \(OBB26 head\)"),
        ({"task": "pose"}, r"a pose model; boxloop trains and reads detectors"),  # before Ultralytics wrote the head
        ({"end2end": "True"}, r"exported end to end .*boxloop export-model"),
        ({"task": "detect", "head": "RTDETRDecoder"}, r"exported end to end .*boxloop export-model"),  # an RT-DETR's
    ],
)
def test_an_onnx_export_boxloop_cannot_score_is_refused_naming_the_file(
    exported: Path, tmp_path: Path, meta: dict[str, str], message: str
) -> None:
    """Ultralytics' ONNX metadata says the task, the head and whether the export is end to end
    (YOLO26's top 300 boxes, no class probabilities): those boxloop would misread are named."""
    import onnx

    from boxloop.backends.onnx import OnnxBackend

    def with_meta(extra: dict[str, str], name: str) -> Path:
        m = onnx.load(str(exported))
        kept = [(p.key, p.value) for p in m.metadata_props if p.key not in extra]
        del m.metadata_props[:]
        for k, v in [*kept, *extra.items()]:
            m.metadata_props.add(key=k, value=v)
        onnx.save(m, str(tmp_path / name))
        return tmp_path / name

    with pytest.raises(InputError, match=rf"other\.onnx: {message}"):
        OnnxBackend(with_meta(meta, "other.onnx"), classes=CLASSES)
    # what Ultralytics writes for a YOLO detector it exported as boxloop reads it
    plain = with_meta({"task": "detect", "head": "Detect", "end2end": "False"}, "detector.onnx")
    assert OnnxBackend(plain, classes=CLASSES).classes == CLASSES


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


@pytest.mark.parametrize("arch", ["yolo11n.yaml", "yolo26n.yaml"])
def test_newer_architectures_give_the_same_boxes_through_onnx(arch: str, tmp_path: Path) -> None:
    """A YOLO11 checkpoint (DFL head) and a YOLO26 one (NMS-free head, no DFL: boxloop reads
    its one-to-many branch, which carries every class's probability) predict the same boxes,
    class probabilities and embedding with PyTorch and ONNX Runtime. Untrained weights: what
    is checked is the graph: the weights are drawn at random at a scale that keeps the signal
    alive through the layers, and the class logits spread until the head finds boxes."""
    import torch
    from ultralytics import YOLO

    from boxloop.backends.onnx import OnnxBackend, export_onnx
    from boxloop.backends.ultralytics import load_backend

    weights = tmp_path / f"{arch.split('.')[0]}.pt"
    yolo = YOLO(arch)
    head = yolo.model.model[-1]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for conv in yolo.model.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2 / conv.weight[0].numel()) ** 0.5)
        for branch in (head.cv3, getattr(head, "one2one_cv3", None) or []):
            for level in branch:
                level[-1].weight.mul_(30)
                level[-1].bias.fill_(-4.0)
    if hasattr(head, "one2one_cv2"):
        head.end2end = True  # as YOLO26's released weights choose: Ultralytics' own predict takes the top 300, no NMS
    yolo.save(weights)
    names = [str(i) for i in range(int(head.nc))]
    torch_be = load_backend(weights, classes=names, imgsz=IMGSZ)
    onnx_be = load_backend(export_onnx(weights, imgsz=IMGSZ, out=tmp_path / "m.onnx"), classes=names)
    assert isinstance(onnx_be, OnnxBackend)
    rng = np.random.default_rng(5)
    images = [draw_image(rng, max_objects=3)[0] for _ in range(4)]
    a = torch_be.predict(images, conf=0.05)
    b = onnx_be.predict(images, conf=0.05)
    for pa, pb in zip(a, b, strict=True):
        da, db = pa.detections, pb.detections
        assert len(da) == len(db) > 0
        # matched by corners, not IoU: random weights clip some boxes to a line at the border
        gap = np.abs(da.xyxy[:, None] - db.xyxy[None]).max(axis=2)
        j = gap.argmin(axis=1)
        assert (gap.min(axis=1) < 0.1).all()
        np.testing.assert_allclose(da.confidence, db.confidence[j], atol=1e-3)
        assert da.data["class_probs"].shape[1] == len(names)
        np.testing.assert_allclose(da.data["class_probs"], db.data["class_probs"][j], atol=1e-3)
        np.testing.assert_allclose(pa.embedding, pb.embedding, rtol=1e-3, atol=1e-3)
