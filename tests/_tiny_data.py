"""A tiny, easy YOLO dataset for detector tests: big coloured shapes on noise.

Each class has its own shape *and* colour, so a few epochs of a small model learn it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

CLASSES = ["square", "disc", "bar"]
_COLOURS = [(230, 40, 40), (40, 200, 60), (50, 80, 230)]  # RGB, one per class


def ultralytics_offline(config_dir: Path) -> None:
    """Keep Ultralytics offline and its settings file under ``config_dir`` (a tmp folder)."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ["YOLO_VERBOSE"] = "False"


def draw_image(rng: np.random.Generator, *, size: tuple[int, int] = (160, 120), max_objects: int = 2):
    """One RGB image (H, W, 3) and its boxes [(class, x1, y1, x2, y2)] in pixels."""
    import cv2

    w, h = size
    img = rng.integers(90, 160, size=(h, w, 3), dtype=np.uint8)
    boxes: list[tuple[int, float, float, float, float]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            cls = int(rng.integers(0, len(CLASSES)))
            bw = int(rng.integers(w // 5, w // 2.5))
            bh = int(rng.integers(h // 5, h // 2.5))
            if cls == 1:
                bh = bw = min(bw, bh)
            if cls == 2:
                bw, bh = max(bw, 2 * bh), max(h // 8, bh // 2)
            x1 = int(rng.integers(0, w - bw))
            y1 = int(rng.integers(0, h - bh))
            x2, y2 = x1 + bw, y1 + bh
            if all(x2 <= b[1] or x1 >= b[3] or y2 <= b[2] or y1 >= b[4] for b in boxes):
                break
        else:
            continue
        colour = tuple(int(c) for c in _COLOURS[cls])
        if cls == 1:
            cv2.circle(img, ((x1 + x2) // 2, (y1 + y2) // 2), bw // 2, colour, -1)
        else:
            cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
        boxes.append((cls, float(x1), float(y1), float(x2), float(y2)))
    return img, boxes


def png_bytes(rng: np.random.Generator) -> bytes:
    """One ``draw_image`` picture encoded as PNG (for object stores and web servers)."""
    import cv2

    img, _ = draw_image(rng)
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    assert ok
    return buf.tobytes()


def make_yolo_dataset(
    root: Path, *, n_train: int = 48, n_val: int = 12, n_test: int = 0, seed: int = 0,
    size: tuple[int, int] = (160, 120),
) -> Path:
    """Write images/<split>/*.png, labels/<split>/*.txt and data.yaml under ``root``;
    returns the data.yaml path."""
    import cv2

    rng = np.random.default_rng(seed)
    splits = {"train": n_train, "val": n_val, "test": n_test}
    w, h = size
    for split, n in splits.items():
        if not n:
            continue
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, boxes = draw_image(rng, size=size)
            stem = f"{split}_{i:03d}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), img[:, :, ::-1])
            lines = [
                f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                for c, x1, y1, x2, y2 in boxes
            ]
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    yaml_lines = [f"path: {root}"]
    for split, n in splits.items():
        if n:
            yaml_lines.append(f"{split}: images/{split}")
    yaml_lines.append("names:")
    yaml_lines += [f"  {i}: {name}" for i, name in enumerate(CLASSES)]
    (root / "data.yaml").write_text("\n".join(yaml_lines) + "\n")
    return root / "data.yaml"


def read_yolo_split(root: Path, split: str) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(image path, xyxy pixels, class ids) for every image of a split written above."""
    from PIL import Image

    out = []
    for img in sorted((root / "images" / split).glob("*.png")):
        with Image.open(img) as im:
            w, h = im.size
        rows = np.loadtxt(root / "labels" / split / f"{img.stem}.txt", ndmin=2)
        cls = rows[:, 0].astype(np.int64)
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        out.append((img, xyxy, cls))
    return out


def fill_workspace(ws, root: Path, *, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, list[str]]:
    """Put the dataset at ``root`` into a workspace directly through the store: items, human
    labels and splits. Returns the item ids per split."""
    from boxloop.types import Detections, Item

    ids: dict[str, list[str]] = {}
    for split in splits:
        for path, xyxy, cls in read_yolo_split(root, split):
            from PIL import Image

            with Image.open(path) as im:
                w, h = im.size
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            item = Item(digest[:16], str(path), w, h, digest)
            ws.store.add_item(item)
            ws.store.add_label(item.id, Detections(xyxy, cls), source="test")
            ids.setdefault(split, []).append(item.id)
    ws.store.set_split({i: s for s, group in ids.items() for i in group})
    return ids


def add_pool(ws, root: Path, *, n: int, seed: int = 99, size: tuple[int, int] = (160, 120)) -> list[str]:
    """Unlabeled images (same kind) added to the workspace's pool; returns their ids."""
    import cv2

    from boxloop.types import Item

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        img, _ = draw_image(rng, size=size)
        path = root / f"pool_{i:03d}.png"
        cv2.imwrite(str(path), img[:, :, ::-1])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        ws.store.add_item(Item(digest[:16], str(path), size[0], size[1], digest))
        ids.append(digest[:16])
    return ids


_TRAINED: dict[str, tuple[Path, Path]] = {}
TRAIN_ARGS = {
    "mosaic": 0.0, "optimizer": "AdamW", "lr0": 0.005, "warmup_epochs": 0, "val": False,
    "fliplr": 0.5, "hsv_h": 0.0, "hsv_s": 0.3, "hsv_v": 0.2,
}


def trained_tiny_model(tmp_path_factory, *, epochs: int = 30, imgsz: int = 128) -> tuple[Path, Path]:
    """(best.pt, dataset root) of yolov8n trained on the tiny dataset, once per test session
    (cached in memory and under the session's base temp folder, so every module reuses it)."""
    base = Path(tmp_path_factory.getbasetemp())
    ultralytics_offline(base / "ultralytics-config")
    key = f"{epochs}-{imgsz}"
    if key in _TRAINED:
        return _TRAINED[key]
    root = base / f"tiny-data-{key}"
    run_dir = base / f"tiny-run-{key}"
    weights = run_dir / "weights" / "best.pt"
    # Ultralytics writes best.pt after every epoch: only a run that ended is reused (a run cut
    # off by a timeout would hand every later module a model of a few epochs)
    if not (run_dir / "complete").is_file():
        import shutil

        from boxloop.backends.ultralytics import train_yolo

        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        data = make_yolo_dataset(root, n_train=48, n_val=12, n_test=16, seed=0)
        result = train_yolo(
            data, model="yolov8n.yaml", run_dir=run_dir, epochs=epochs, imgsz=imgsz,
            batch=8, extra=TRAIN_ARGS,
        )
        weights = result.weights
        (run_dir / "complete").write_text(str(weights))
    _TRAINED[key] = (weights, root)
    return weights, root
