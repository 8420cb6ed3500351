"""Prediction throughput: boxloop's ONNX Runtime path (decode + letterbox in worker threads,
batched, numpy/OpenCV NMS) against Ultralytics' own ``model.predict`` loop, on CPU.

    .venv/bin/python bench/predict.py                        # 200 LCD images, imgsz 320
    .venv/bin/python bench/predict.py --weights best.pt      # your model instead of a quick one
    .venv/bin/python bench/predict.py --n 50 --imgsz 256     # quicker
    .venv/bin/python bench/predict.py --n 60 --size 4032x3024   # phone-size photos (12 MP JPEGs)

Same images, same imgsz, confidence threshold 0.01 (active learning keeps many low boxes),
every box of every image consumed. Baselines:
  - Ultralytics as a user runs it: ``for r in model.predict(files, stream=True, conf=0.01)``
    (it sets torch to cpu_count - 1 threads: 1 on 2 cores);
  - Ultralytics tuned: all cores and ``batch=8``.
Prints images/s for each, ms per stage of boxloop's path (decode, preprocess, inference,
postprocess; the worker-thread stages overlap the inference), and as the last line
``ratio: X`` = boxloop / Ultralytics default. With a GPU, it also reports the PyTorch path there.
Without --weights, a yolov8n is trained from scratch for a few epochs on the generated images
(a trained model, so the head's scores look like a real model's, not random).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's select module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def _images(root: Path, n: int, size: tuple[int, int]) -> list[str]:
    from boxloop.synth import generate_images

    generate_images(root, n=n, seed=0, size=size)
    files = sorted(str(p) for p in (root / "images").iterdir())
    if len(files) < n:
        sys.exit(f"expected {n} images under {root / 'images'}, found {len(files)}")
    return files[:n]



def _ultralytics(weights: Path, files: list[str], *, imgsz: int, conf: float, tuned: bool) -> tuple[float, int]:
    """Seconds and boxes for Ultralytics' predict over ``files`` (after a warm-up)."""
    import torch
    from ultralytics import YOLO

    model = YOLO(str(weights))
    kwargs = {"imgsz": imgsz, "conf": conf, "verbose": False, "device": "cpu", "stream": True}
    if tuned:
        kwargs["batch"] = 8
        n = os.cpu_count() or 1
        model.add_callback("on_predict_start", lambda _p: torch.set_num_threads(n))
    for _ in model.predict(files[:4], **kwargs):
        pass
    boxes = 0
    t = time.perf_counter()
    for r in model.predict(files, **kwargs):
        boxes += len(r.boxes.xyxy.numpy())
    return time.perf_counter() - t, boxes


def _boxloop(backend, files: list[str], *, size: tuple[int, int], conf: float, batch: int) -> tuple[float, int, dict[str, float]]:  # type: ignore[no-untyped-def]
    from boxloop.modeling import iter_predictions

    sources = [(f, size) for f in files]  # as `boxloop predict` passes them: each item's recorded size
    for _ in iter_predictions(backend, sources[:4], conf=conf, iou=0.6, batch=batch):
        pass
    backend.times.reset()
    times: dict[str, float] = {}
    boxes = 0
    t = time.perf_counter()
    for _, pred, problem in iter_predictions(backend, sources, conf=conf, iou=0.6, batch=batch, times=times):
        if problem is None:
            boxes += len(pred.detections)
    seconds = time.perf_counter() - t
    stages = {"decode": 1000 * times.get("decode", 0.0) / len(files), **backend.times.ms_per_image()}
    return seconds, boxes, stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--conf", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--weights", type=Path, default=None, help="a trained .pt (default: train a quick one)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs for the quick model")
    ap.add_argument("--size", default="320x240", help="generated image size WxH (the quick model trains on 320x240)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="boxloop-bench-predict-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
        files = _images(tmp_path / "data", args.n, (width, height))
        from boxloop.synth import train_quick_model

        if args.weights is None:
            print(f"training yolov8n.yaml for {args.epochs} epoch(s) at {args.imgsz} (pass --weights to skip)...", flush=True)
            train_data = tmp_path / "data"
            if (width, height) != (320, 240):
                train_data = tmp_path / "train"
                _images(train_data, 200, (320, 240))
        weights = args.weights or train_quick_model(train_data, tmp_path / "run", imgsz=args.imgsz, epochs=args.epochs)

        from boxloop.backends.onnx import export_onnx
        from boxloop.backends.ultralytics import _names_list, load_torch_model, rect_shape

        _, names, _ = load_torch_model(weights)
        shape = rect_shape(args.imgsz, width, height)  # what `boxloop predict` picks for a pool of such images
        onnx_file = export_onnx(weights, imgsz=shape, out=tmp_path / "model.onnx")
        from boxloop.backends.ultralytics import load_backend

        onnx_be = load_backend(onnx_file, classes=_names_list(names), batch=args.batch)
        print(
            f"{args.n} images {width}x{height} (JPEG), imgsz {args.imgsz} (input {shape[0]}x{shape[1]} for boxloop and Ultralytics' "
            f"rect letterbox), conf {args.conf}, {os.cpu_count()} CPU cores"
        )

        ul_s, ul_boxes = _ultralytics(weights, files, imgsz=args.imgsz, conf=args.conf, tuned=False)
        print(f"ultralytics default (model.predict, stream): {args.n / ul_s:7.1f} images/s  ({ul_boxes} boxes)")
        tuned_s, tuned_boxes = _ultralytics(weights, files, imgsz=args.imgsz, conf=args.conf, tuned=True)
        print(f"ultralytics tuned (all cores, batch {args.batch}):    {args.n / tuned_s:7.1f} images/s  ({tuned_boxes} boxes)")
        bl_s, bl_boxes, stages = _boxloop(onnx_be, files, size=(width, height), conf=args.conf, batch=args.batch)
        print(f"boxloop predict (onnx runtime):              {args.n / bl_s:7.1f} images/s  ({bl_boxes} boxes)")
        print("  ms per image by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
        torch_be = load_backend(weights, classes=_names_list(names), imgsz=shape)
        pt_s, pt_boxes, pt_stages = _boxloop(torch_be, files, size=(width, height), conf=args.conf, batch=args.batch)
        print(f"boxloop predict (torch runtime, cpu):        {args.n / pt_s:7.1f} images/s  ({pt_boxes} boxes)")
        print("  ms per image by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in pt_stages.items()))
        import torch

        if torch.cuda.is_available():
            gpu_be = load_backend(weights, classes=_names_list(names), imgsz=shape, device="0")
            g_s, _, g_stages = _boxloop(gpu_be, files, size=(width, height), conf=args.conf, batch=32)
            print(f"boxloop predict (torch runtime, {torch.cuda.get_device_name(0)}): {args.n / g_s:7.1f} images/s")
            print("  ms per image by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in g_stages.items()))
        print(f"ratio vs ultralytics tuned: {tuned_s / bl_s:.2f}")
        print(f"ratio: {ul_s / bl_s:.2f}")


if __name__ == "__main__":
    main()
