"""Large JPEGs (a phone's 12-megapixel photos): `boxloop predict` decodes a JPEG at 1/2, 1/4 or
1/8 of its size when the network input is that much smaller (libjpeg scales while it
decodes), against decoding it whole and letterboxing down, as before. Same model, same images;
prints images/s and mAP50-95 on the generated labels for both, and as the last line
``ratio: X`` = reduced / full images/s.

    .venv/bin/python bench/decode.py                                  # 60 images 4032x3024, imgsz 320
    .venv/bin/python bench/decode.py --size 1600x1200 --n 120
    .venv/bin/python bench/decode.py --weights bench/out/default-agg/pretrain/weights.pt

Without --weights, a yolov8n is trained for a few epochs on 200 generated 320x240 images.
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


def _run(backend, files: list[Path], size: tuple[int, int], *, reduced: bool) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    """Seconds and predictions (by file stem) for one pass; ``reduced=False`` decodes whole."""
    import boxloop.modeling as modeling

    keep = modeling.reduction
    if not reduced:
        modeling.reduction = lambda size, fit: 1  # the decode before reduced JPEGs
    try:
        t = time.perf_counter()
        preds = {files[i].stem: p.detections
                 for i, p, _ in modeling.iter_predictions(backend, [(str(f), size) for f in files], conf=0.01, iou=0.6)}
        return time.perf_counter() - t, preds
    finally:
        modeling.reduction = keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="images")
    ap.add_argument("--size", default="4032x3024", help="generated JPEG size WxH")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--weights", type=Path, default=None, help="a trained .pt (default: train a quick one)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs for the quick model")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from boxloop.backends.ultralytics import load_backend, rect_shape, use_all_cores
    from boxloop.evaluate import coco_metrics
    from boxloop.formats.yolo import read_yolo_labels
    from boxloop.synth import generate_images, train_quick_model

    with tempfile.TemporaryDirectory(prefix="boxloop-bench-decode-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
        print(f"writing {args.n} images {width}x{height}...", flush=True)
        data = generate_images(tmp_path / "data", n=args.n, seed=11, size=(width, height))
        files = sorted((data / "images").iterdir())
        weights = args.weights
        if weights is None:
            print(f"training yolov8n.yaml for {args.epochs} epoch(s) at {args.imgsz} (pass --weights to skip)...", flush=True)
            generate_images(tmp_path / "train", n=200, seed=0, size=(320, 240))
            weights = train_quick_model(tmp_path / "train", tmp_path / "run", imgsz=args.imgsz, epochs=args.epochs)
        use_all_cores()
        backend = load_backend(weights, imgsz=rect_shape(args.imgsz, width, height))
        gt = {f.stem: read_yolo_labels((data / "labels" / f"{f.stem}.txt").read_text(), width=width, height=height,
                                       n_classes=len(backend.classes), source=f.name).labels for f in files}
        _run(backend, files[:4], (width, height), reduced=True)  # warm-up
        print(f"{args.n} JPEGs {width}x{height}, network input {backend.imgsz[0]}x{backend.imgsz[1]}, "
              f"{os.cpu_count()} CPU cores")
        seconds, best = {}, 0.0
        for reduced in (False, True, False, True):  # twice each, interleaved: the second pair is read
            s, preds = _run(backend, files, (width, height), reduced=reduced)
            seconds[reduced] = s
            m = coco_metrics(gt, preds, classes=backend.classes)
            best = max(best, m["map50_95"])
            name = "reduced while decoded" if reduced else "decoded whole        "
            print(f"{name} {args.n / s:6.1f} images/s   mAP50 {m['map50']:.4f}  mAP50-95 {m['map50_95']:.4f}", flush=True)
        if best < 0.05:
            print("(the model finds too little for the mAP to compare: pass --weights of a trained model, "
                  "e.g. bench/simulate.py's <out>/pretrain/weights.pt)")
        print(f"ratio: {seconds[False] / seconds[True]:.2f}")


if __name__ == "__main__":
    main()
