"""COCO-style evaluation: hand-computed AP on a few boxes, and agreement with Ultralytics val."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _tiny_data import CLASSES, read_yolo_split, trained_tiny_model
from boxloop.errors import InputError
from boxloop.evaluate import box_iou, coco_metrics, precision_recall, size_advice
from boxloop.types import Detections


def labels(*rows: tuple[int, float, float, float, float]) -> Detections:
    return Detections(np.array([r[1:] for r in rows], np.float32).reshape(-1, 4), np.array([r[0] for r in rows]))


def preds(*rows: tuple[int, float, float, float, float, float]) -> Detections:
    return Detections(
        np.array([r[1:5] for r in rows], np.float32).reshape(-1, 4),
        np.array([r[0] for r in rows]),
        np.array([r[5] for r in rows], np.float32),
    )


# 101-point interpolated AP (COCO): precision envelope sampled at recall 0, 0.01, ..., 1
TP_FP_TP = (51 * 1.0 + 50 * (2 / 3)) / 101


@pytest.mark.parametrize(
    ("gt", "pred", "map50", "map50_95"),
    [
        # perfect boxes
        ({"a": labels((0, 0, 0, 10, 10))}, {"a": preds((0, 0, 0, 10, 10, 0.9))}, 1.0, 1.0),
        # ranked TP, FP, TP over two labels: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
        (
            {"a": labels((0, 0, 0, 10, 10), (0, 20, 20, 40, 40))},
            {"a": preds((0, 0, 0, 10, 10, 0.9), (0, 50, 50, 60, 60, 0.8), (0, 20, 20, 40, 40, 0.7))},
            TP_FP_TP,
            TP_FP_TP,
        ),
        # IoU 0.62: a hit at IoU thresholds 0.50, 0.55, 0.60 only -> AP50 1, AP50-95 3/10
        ({"a": labels((0, 0, 0, 100, 100))}, {"a": preds((0, 0, 0, 100, 62, 0.5))}, 1.0, 0.3),
        # a wrong class is a miss and a false positive
        ({"a": labels((0, 0, 0, 10, 10))}, {"a": preds((1, 0, 0, 10, 10, 0.9))}, 0.0, 0.0),
        # an image with labels and no prediction: half the labels are found at precision 1
        (
            {"a": labels((0, 0, 0, 10, 10)), "b": labels((0, 5, 5, 15, 15))},
            {"a": preds((0, 0, 0, 10, 10, 0.9))},
            51 / 101,
            51 / 101,
        ),
    ],
)
def test_ap_matches_hand_computation(gt, pred, map50: float, map50_95: float) -> None:
    m = coco_metrics(gt, pred, classes=["x", "y"])
    assert m["map50"] == pytest.approx(map50, abs=1e-6)
    assert m["map50_95"] == pytest.approx(map50_95, abs=1e-6)


def test_per_class_ap_and_classes_without_labels() -> None:
    gt = {"a": labels((0, 0, 0, 10, 10), (1, 30, 30, 50, 50))}
    pred = {"a": preds((0, 0, 0, 10, 10, 0.9), (1, 60, 60, 70, 70, 0.8))}
    m = coco_metrics(gt, pred, classes=["x", "y", "z"])
    assert m["per_class_ap50"] == {"x": pytest.approx(1.0), "y": pytest.approx(0.0), "z": None}
    assert m["per_class_labels"] == {"x": 1, "y": 1, "z": 0}
    assert m["map50"] == pytest.approx(0.5)  # z has no label and does not count


def test_precision_and_recall_at_the_working_threshold() -> None:
    gt = {"a": labels((0, 0, 0, 10, 10), (0, 20, 20, 40, 40), (1, 50, 50, 70, 70))}
    pred = {"a": preds((0, 0, 0, 10, 10, 0.9), (0, 21, 21, 40, 40, 0.6), (0, 80, 80, 90, 90, 0.5), (1, 50, 50, 70, 70, 0.1))}
    pr = precision_recall(gt, pred, conf=0.25)
    assert (pr["tp"], pr["fp"], pr["fn"]) == (2, 1, 1)
    assert pr["precision"] == pytest.approx(2 / 3) and pr["recall"] == pytest.approx(2 / 3)
    assert coco_metrics(gt, pred, classes=["x", "y"], conf=0.05)["recall"] == pytest.approx(1.0)


def test_box_iou_by_hand() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0]])


def test_ap_by_object_size_as_the_network_sees_it() -> None:
    """A 40-px box in a 640x480 image is medium in the image's pixels but small at a
    320-px network input (20 px): the buckets go by what the model sees when told imgsz."""
    gt = {
        "a": labels((0, 100, 100, 140, 140), (0, 200, 200, 400, 400)),  # 40 px and 200 px boxes
        "b": labels((0, 10, 10, 50, 50)),
    }
    pred = {  # the big box found, both 40-px ones missed
        "a": preds((0, 200, 200, 400, 400, 0.9), (0, 500, 300, 540, 340, 0.8)),
        "b": preds((0, 300, 300, 340, 340, 0.7)),
    }
    sizes = {"a": (640, 480), "b": (640, 480)}
    in_image = coco_metrics(gt, pred, classes=["x"], sizes=sizes)
    at_input = coco_metrics(gt, pred, classes=["x"], sizes=sizes, input_side=320)
    assert in_image["size_unit"] == "image pixels"
    assert in_image["by_size"]["small"] == {"map50_95": None, "labels": 0}
    assert in_image["by_size"]["medium"] == {"map50_95": 0.0, "labels": 2}
    assert in_image["by_size"]["large"] == {"map50_95": pytest.approx(1.0), "labels": 1}
    assert at_input["size_unit"] == "network input pixels (long side 320)"
    assert at_input["by_size"]["small"] == {"map50_95": 0.0, "labels": 2}
    assert at_input["by_size"]["large"] == {"map50_95": pytest.approx(1.0), "labels": 1}  # 100 px at the input
    assert at_input["map50_95"] == in_image["map50_95"]  # sizes change the buckets, not the mAP
    advice = size_advice(at_input)
    assert advice is not None and "2 of 3 boxes are under 32 px a side at the network input" in advice
    assert "--imgsz" in advice
    assert size_advice(in_image) is None  # no small boxes in the image's own pixels
    nothing = coco_metrics(gt, {}, classes=["x"], sizes=sizes, input_side=320)
    assert size_advice(nothing) is None  # a model that finds nothing says nothing about sizes


def test_nothing_to_evaluate_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no labeled images"):
        coco_metrics({}, {}, classes=["x"])


def test_map50_agrees_with_ultralytics_val(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Same trained model, same split: our metric and our whole prediction path against
    Ultralytics' own val (the number its users know).

    Ultralytics' val runs rectangular batches padded by half a stride, so 128x128 images
    reach the network as 160x160 with a 16-pixel grey border. Two checks:
    1. the metric alone: pycocotools (ours) on the very predictions val made (its
       predictions.json) against val's mAP;
    2. end to end: our letterbox, network call, NMS and metric on the same 160x160 input."""
    import json

    import cv2
    from ultralytics import YOLO

    from _tiny_data import make_yolo_dataset
    from boxloop.backends.ultralytics import PAD_VALUE, load_backend
    from boxloop.modeling import decode_file

    weights, _ = trained_tiny_model(tmp_path_factory)
    root = tmp_path / "square"
    make_yolo_dataset(root, n_train=0, n_val=0, n_test=30, seed=11, size=(128, 128))
    data = tmp_path / "test-as-val.yaml"
    data.write_text(f"path: {root}\ntrain: images/test\nval: images/test\nnames: {dict(enumerate(CLASSES))}\n")
    theirs = YOLO(str(weights)).val(
        data=str(data), imgsz=128, batch=16, conf=0.001, iou=0.7, plots=False, verbose=False, device="cpu",
        project=str(tmp_path / "val"), name="v", save_json=True,
    )
    assert theirs.box.map50 > 0.5  # the model learned: the comparison means something
    split = read_yolo_split(root, "test")
    gt = {p.stem: Detections(xyxy, cls) for p, xyxy, cls in split}
    sizes = {p.stem: (128, 128) for p, _, _ in split}

    # 1. the metric on identical predictions (measured: within 0.005)
    rows: dict[str, list[dict]] = {}
    for r in json.loads((Path(theirs.save_dir) / "predictions.json").read_text()):
        rows.setdefault(str(r["image_id"]), []).append(r)
    their_preds = {}
    for stem, rs in rows.items():
        xyxy = np.array([r["bbox"] for r in rs], np.float32)
        xyxy[:, 2:] += xyxy[:, :2]
        their_preds[stem] = Detections(
            xyxy, np.array([r["category_id"] - 1 for r in rs]), np.array([r["score"] for r in rs], np.float32)
        )
    on_theirs = coco_metrics(gt, their_preds, classes=CLASSES, sizes=sizes)
    assert abs(on_theirs["map50"] - theirs.box.map50) <= 0.02, (on_theirs["map50"], theirs.box.map50)
    assert abs(on_theirs["map50_95"] - theirs.box.map) <= 0.02, (on_theirs["map50_95"], theirs.box.map)

    # 2. end to end, the network seeing what val's padded batch shows it
    border = 16
    be = load_backend(weights, classes=CLASSES, imgsz=128 + 2 * border)
    padded = [
        cv2.copyMakeBorder(decode_file(str(p)), *(border,) * 4, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
        for p, _, _ in split
    ]
    out = be.predict(padded, conf=0.001, iou=0.7)
    shift = np.array([border, border, border, border], np.float32)
    ours = coco_metrics(
        gt,
        {p.stem: Detections((o.detections.xyxy - shift).clip(0, 128), o.detections.class_id, o.detections.confidence)
         for (p, _, _), o in zip(split, out, strict=False)},
        classes=CLASSES, sizes=sizes,
    )
    assert abs(ours["map50"] - theirs.box.map50) <= 0.02, (ours["map50"], theirs.box.map50)
    assert abs(ours["map50_95"] - theirs.box.map) <= 0.02, (ours["map50_95"], theirs.box.map)
