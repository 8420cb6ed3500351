"""Small objects in large pictures: a model version trained on tiles (`boxloop train --tile`,
predicting window by window) against the whole pictures at the same input size, and at twice
it (what a user tries first: a larger --imgsz). Same labels, same starting checkpoint, same
epochs; prints each one's training seconds, test mAP50 and mAP50-95 (on whole pictures, as
`boxloop evaluate` scores them) and predict milliseconds per picture, and as the last line
``ratio: X`` = tiled test mAP50-95 / the whole pictures' at twice the input size.

    .venv/bin/python -u bench/tiles.py
    .venv/bin/python -u bench/tiles.py --canvas 1920x1440 --scale 0.3 --epochs 30

The pictures: generated LCD displays (320x240 scenes, scaled by --scale) put at a random place
on a --canvas picture of textured clutter, so a digit is a few dozen pixels tall in a picture
four times the input size. Without --weights a yolov8n is first trained for 30 epochs on 200
generated 320x240 displays at 160 (digits half the size the tiles show them at: the scale the
whole pictures at twice the input see, no head start for the tiles), and every variant
fine-tunes that.
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

import numpy as np  # noqa: E402
import yaml  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def small_digits(out: Path, scenes: Path, *, canvas: tuple[int, int], scale: float, seed: int) -> Path:
    """Each generated display of ``scenes`` (YOLO layout) shrunk by ``scale`` onto a clutter
    picture of size ``canvas``, written with its labels in the YOLO layout under ``out``."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = canvas
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for img_path in sorted((scenes / "images").iterdir()):
        scene = cv2.imread(str(img_path))
        sh, sw = scene.shape[:2]
        noise = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        pic = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
        pic = cv2.addWeighted(pic, 0.5, np.full_like(pic, int(rng.integers(60, 190))), 0.5, 0)
        for _ in range(int(rng.integers(10, 30))):  # clutter: boxes and bars of any colour
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.rectangle(pic, (x0, y0), (x0 + int(rng.integers(5, w // 6)), y0 + int(rng.integers(5, h // 6))),
                          tuple(int(c) for c in rng.integers(0, 255, 3)), -1 if rng.random() < 0.5 else 2)
        nw, nh = max(8, int(sw * scale)), max(8, int(sh * scale))
        small = cv2.resize(scene, (nw, nh), interpolation=cv2.INTER_AREA)
        x, y = int(rng.integers(0, w - nw)), int(rng.integers(0, h - nh))
        pic[y:y + nh, x:x + nw] = small
        cv2.imwrite(str(out / "images" / f"{img_path.stem}.jpg"), pic, [cv2.IMWRITE_JPEG_QUALITY, 92])
        rows = []
        label = scenes / "labels" / f"{img_path.stem}.txt"
        text = label.read_text().strip() if label.exists() else ""
        for line in text.splitlines():
            c, cx, cy, bw, bh = line.split()
            rows.append(f"{c} {(x + float(cx) * nw) / w:.6f} {(y + float(cy) * nh) / h:.6f} "
                        f"{float(bw) * nw / w:.6f} {float(bh) * nh / h:.6f}")
        (out / "labels" / f"{img_path.stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
    names = yaml.safe_load((scenes / "data.yaml").read_text())["names"]
    (out / "data.yaml").write_text(yaml.safe_dump({"names": names}))  # the class names
    return out


def variant(root: Path, data: Path, test: Path, weights: Path, *, imgsz: int, epochs: int, tile: int | None) -> dict:
    """Train one workspace on ``data`` and score it on ``test``: seconds, mAP, ms per picture."""
    from boxloop.ingest import add_labels
    from boxloop.modeling import evaluate_model, train
    from boxloop.split import assign_splits
    from boxloop.workspace import Workspace

    ws = Workspace.init(root, classes=[str(d) for d in range(10)])
    add_labels(ws, data, format="yolo")
    add_labels(ws, test, format="yolo", split="test")
    assign_splits(ws.store, val=0.2, test=0.0, seed=0)
    t = time.perf_counter()
    outcome = train(ws, model=str(weights), epochs=epochs, imgsz=imgsz, tile=tile)
    seconds = time.perf_counter() - t
    n_test = len(ws.store.items(split="test"))
    t = time.perf_counter()
    _, metrics = evaluate_model(ws, model=outcome.version)
    predict_ms = 1000 * (time.perf_counter() - t) / max(1, n_test)
    return {"seconds": seconds, "map50": float(metrics["map50"]), "map50_95": float(metrics["map50_95"]),
            "ms": predict_ms, "train_images": outcome.train_images}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="a trained .pt to fine-tune (default: a quick one)")
    ap.add_argument("--imgsz", type=int, default=320, help="input size; the tiles are this size too")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--quick-epochs", type=int, default=30, help="epochs of the starting checkpoint (no --weights)")
    ap.add_argument("--canvas", default="1280x960", help="picture size WxH")
    ap.add_argument("--scale", type=float, default=1.0, help="the 320x240 display's size on the picture")
    ap.add_argument("--labeled", type=int, default=100, help="labeled pictures (a fifth for validation)")
    ap.add_argument("--test", type=int, default=30, help="pictures in the test split")
    ap.add_argument("--out", type=Path, default=None, help="keep the data and workspaces here")
    args = ap.parse_args()
    width, height = (int(v) for v in args.canvas.lower().split("x"))

    from boxloop.backends.ultralytics import use_all_cores
    from boxloop.synth import generate_images, train_quick_model

    use_all_cores()
    with tempfile.TemporaryDirectory(prefix="boxloop-bench-tiles-") as tmp:
        base = args.out or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(base / "ultralytics-config"))
        print(f"writing {args.labeled + args.test} pictures {width}x{height}, displays at {args.scale:g} of 320x240...",
              flush=True)
        scenes = generate_images(base / "scenes", n=args.labeled, seed=21, size=(320, 240), empty_fraction=0.0)
        scenes_test = generate_images(base / "scenes-test", n=args.test, seed=21, size=(320, 240),
                                      empty_fraction=0.0, start=args.labeled)
        data = small_digits(base / "data", scenes, canvas=(width, height), scale=args.scale, seed=1)
        test = small_digits(base / "test", scenes_test, canvas=(width, height), scale=args.scale, seed=2)
        weights = args.weights
        if weights is None:
            # at 160 the displays' digits are half the size the tiles show them at and the size the
            # whole pictures at twice the input show them at: no head start for the tiles
            print(f"training yolov8n.yaml for {args.quick_epochs} epochs on 200 displays at 160 (pass --weights to "
                  "fine-tune yours)...", flush=True)
            generate_images(base / "quick", n=200, seed=0, size=(320, 240))
            weights = train_quick_model(base / "quick", base / "quick-run", imgsz=160, epochs=args.quick_epochs)
        print(f"{args.labeled} labeled + {args.test} test pictures, {args.epochs} epochs, {os.cpu_count()} CPU cores")
        runs = [("whole pictures", args.imgsz, None), ("whole pictures", 2 * args.imgsz, None),
                (f"tiles of {args.imgsz}", args.imgsz, args.imgsz)]
        got = {}
        for name, imgsz, tile in runs:
            r = variant(base / f"ws-{imgsz}-{tile or 0}", data, test, weights, imgsz=imgsz, epochs=args.epochs, tile=tile)
            got[(imgsz, tile)] = r
            print(f"{name:16s} imgsz {imgsz:4d}: {r['train_images']:4d} training pictures, train {r['seconds']:6.1f} s, "
                  f"test mAP50 {r['map50']:.3f} mAP50-95 {r['map50_95']:.3f}, predict {r['ms']:6.1f} ms/picture",
                  flush=True)
        # against what a user tries first: the whole pictures at twice the input
        whole = got[(2 * args.imgsz, None)]["map50_95"]
        tiled = got[(args.imgsz, args.imgsz)]["map50_95"]
        print(f"ratio: {tiled / whole:.2f}" if whole > 0 else f"ratio: inf (whole pictures 0.000, tiles {tiled:.3f})")


if __name__ == "__main__":
    main()
