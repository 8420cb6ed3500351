"""An RT-DETR read by boxloop against Ultralytics' own predict: the same trained weights, the same
test pictures, test mAP50 and mAP50-95 each way, milliseconds per picture, and as the last line
``ratio: X`` = boxloop's test mAP50-95 / Ultralytics'.

    .venv/bin/python -u bench/rtdetr.py
    .venv/bin/python -u bench/rtdetr.py --weights bench/out/rtdetr/run/weights/best.pt   # score again, no training

boxloop reads every decoder query's box with all its class scores (the class probabilities the
uncertainty scores need) and applies class-aware NMS at `boxloop evaluate`'s IoU (0.7);
Ultralytics answers a query's best (query, class) pairs, no NMS. Both stretch the picture to the
square input. The model is tests/tiny-rtdetr.yaml (an RT-DETR of a million parameters, so it
trains on 2 CPU cores; rtdetr-l has 33 million) trained from scratch through boxloop's trainer
(`boxloop train --model` runs the same function) on the test suite's generated shapes
(squares, discs, bars on noise, 160x120).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's select module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the shapes generator and the tiny RT-DETR of the test suite

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/out/rtdetr"))
    ap.add_argument("--model", default=str(TESTS / "tiny-rtdetr.yaml"), help="RT-DETR yaml or .pt to train from")
    ap.add_argument("--weights", type=Path, help="trained weights: skip training")
    ap.add_argument("--train", type=int, default=300, help="training pictures (a fifth as many validate)")
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--lr0", type=float, default=2e-4)
    args = ap.parse_args()

    from ultralytics import RTDETR

    from _tiny_data import (
        CLASSES,
        TRAIN_ARGS,
        make_yolo_dataset,
        read_yolo_split,
        ultralytics_offline,
    )
    from boxloop.backends.ultralytics import load_backend, train_yolo
    from boxloop.evaluate import coco_metrics
    from boxloop.modeling import decode_file
    from boxloop.types import Detections

    args.out.mkdir(parents=True, exist_ok=True)
    ultralytics_offline(args.out / "ultralytics-config")
    data = make_yolo_dataset(args.out / "data", n_train=args.train, n_val=max(args.train // 5, 4), n_test=args.test)
    weights = args.weights
    if weights is None:
        t = time.perf_counter()
        result = train_yolo(
            data, model=args.model, run_dir=args.out / "run", epochs=args.epochs, imgsz=args.imgsz, batch=8,
            extra={**TRAIN_ARGS, "lr0": args.lr0, "val": True},
        )
        weights = result.weights
        print(f"trained {args.model} {args.epochs} epochs on {args.train} pictures in {time.perf_counter() - t:.0f} s")
    split = read_yolo_split(data.parent, "test")
    truth = {p.name: Detections(xyxy, cls) for p, xyxy, cls in split}
    pictures = [decode_file(str(p)) for p, _, _ in split]

    backend = load_backend(weights, classes=CLASSES, imgsz=args.imgsz)
    backend.predict(pictures[:2], conf=0.001, iou=0.7)  # warm up
    t = time.perf_counter()
    ours = backend.predict(pictures, conf=0.001, iou=0.7)  # as `boxloop evaluate` predicts
    ours_ms = 1000 * (time.perf_counter() - t) / len(pictures)
    ultralytics = RTDETR(str(weights))
    ultralytics.predict([str(p) for p, _, _ in split[:2]], imgsz=args.imgsz, conf=0.001, verbose=False, device="cpu")
    t = time.perf_counter()
    answers = ultralytics.predict(
        [str(p) for p, _, _ in split], imgsz=args.imgsz, conf=0.001, verbose=False, device="cpu"
    )
    theirs_ms = 1000 * (time.perf_counter() - t) / len(pictures)
    theirs = {
        p.name: Detections(
            a.boxes.xyxy.numpy().astype(np.float32), a.boxes.cls.numpy().astype(np.int64),
            a.boxes.conf.numpy().astype(np.float32),
        )
        for (p, _, _), a in zip(split, answers, strict=True)
    }
    m_ours = coco_metrics(truth, {p.name: o.detections for (p, _, _), o in zip(split, ours, strict=True)}, classes=CLASSES)
    m_theirs = coco_metrics(truth, theirs, classes=CLASSES)
    print(f"{len(split)} test pictures, {sum(len(d) for d in truth.values())} boxes")
    print(f"{'reading':<40} {'mAP50':>6} {'mAP50-95':>9} {'ms/picture':>11}")
    print(f"{'boxloop (every class, NMS at 0.7)':<40} {m_ours['map50']:>6.3f} {m_ours['map50_95']:>9.3f} {ours_ms:>11.1f}")
    print(f"{'Ultralytics predict (top-k pairs)':<40} {m_theirs['map50']:>6.3f} {m_theirs['map50_95']:>9.3f} {theirs_ms:>11.1f}")
    print(f"ratio: {m_ours['map50_95'] / max(m_theirs['map50_95'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
