"""Training on large photos: boxloop hands Ultralytics a photo at least twice the training size
as a copy at 1/2, 1/4 or 1/8 (libjpeg reduces it while decoding, as `predict` reads it; made
once under shrunk/), against handing it the photo itself, as before (Ultralytics then decodes
12 megapixels per image per epoch and shrinks them with bilinear interpolation). Same labels,
same checkpoint, same epochs; prints the training seconds and the test split's mAP50-95 for
both, and as the last line ``ratio: X`` = seconds on the photos / seconds on the copies.

    .venv/bin/python bench/shrink.py --weights bench/out/default-agg/pretrain/weights.pt
    .venv/bin/python bench/shrink.py --weights your.pt --imgsz 640

Generated LCD digits at 4032x3024 (a phone's 12 MP): 60 labeled (a fifth for validation) and 30
in a frozen test split. Without --weights a yolov8n is trained from scratch for a few epochs on
200 generated 320x240 images first (it finds little: the mAP then says nothing).
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


def _round(root: Path, data: Path, test: Path, weights: Path, *, imgsz: int, epochs: int, copies: bool) -> tuple[float, float]:
    """Training seconds and test mAP50-95 of one workspace trained with or without copies."""
    import boxloop.shrink as shrink
    from boxloop.ingest import add_labels
    from boxloop.modeling import evaluate_model, train
    from boxloop.split import assign_splits
    from boxloop.workspace import Workspace

    ws = Workspace.init(root, classes=[str(d) for d in range(10)])
    add_labels(ws, data, format="yolo")
    add_labels(ws, test, format="yolo", split="test")
    assign_splits(ws.store, val=0.2, test=0.0, seed=0)
    keep = shrink.shrunk_copies
    if not copies:
        shrink.shrunk_copies = lambda *args, **kwargs: {}  # the photos themselves, as before
    try:
        t = time.perf_counter()
        outcome = train(ws, model=str(weights), epochs=epochs, imgsz=imgsz)
        seconds = time.perf_counter() - t
    finally:
        shrink.shrunk_copies = keep
    _, metrics = evaluate_model(ws, model=outcome.version, imgsz=imgsz)
    return seconds, float(metrics["map50_95"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="a trained .pt to fine-tune (default: a quick one)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--size", default="4032x3024", help="generated JPEG size WxH")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from boxloop.backends.ultralytics import use_all_cores
    from boxloop.synth import generate_images, train_quick_model

    use_all_cores()
    with tempfile.TemporaryDirectory(prefix="boxloop-bench-shrink-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
        print(f"writing 90 images {width}x{height}...", flush=True)
        data = generate_images(tmp_path / "data", n=60, seed=11, size=(width, height))
        test = generate_images(tmp_path / "test", n=30, seed=11, size=(width, height), start=60)
        weights = args.weights
        if weights is None:
            print("training yolov8n.yaml for 5 epochs at 320 (pass --weights to fine-tune yours)...", flush=True)
            generate_images(tmp_path / "quick", n=200, seed=0, size=(320, 240))
            weights = train_quick_model(tmp_path / "quick", tmp_path / "quick-run", imgsz=320, epochs=5)
        print(f"60 labeled (48 train, 12 val) + 30 test, {width}x{height}, imgsz {args.imgsz}, {args.epochs} epochs, "
              f"{os.cpu_count()} CPU cores")
        seconds = {}
        for copies in (False, True):
            s, m = _round(tmp_path / f"ws-{copies}", data, test, weights, imgsz=args.imgsz, epochs=args.epochs,
                          copies=copies)
            seconds[copies] = s
            name = "training copies (1/2, 1/4, 1/8)" if copies else "the photos themselves"
            print(f"{name:32s} train {s:6.1f} s   test mAP50-95 {m:.3f}", flush=True)
        print(f"ratio: {seconds[False] / seconds[True]:.2f}")


if __name__ == "__main__":
    main()
