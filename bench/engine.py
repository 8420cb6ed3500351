"""The same prediction pass with the local engine and with ``--engine ray`` on this machine.

    .venv/bin/python bench/engine.py                      # 2,000 LCD images, imgsz 320
    .venv/bin/python bench/engine.py --n 200              # quicker
    .venv/bin/python bench/engine.py --weights best.pt    # your model instead of a quick one

Both passes are ``boxloop.modeling.predict`` over the same workspace (images 320x240 on
local disk, the torch runtime on CPU, conf 0.01, batch 8), timed end to end as a user waits
for them: model loading, and for Ray the actors' start-up, included. Ray runs on a local
cluster this script starts with every core (``ray.init(num_cpus=os.cpu_count())``), one
actor per core.

Prints images/s for each engine; the per-actor throughput (images / seconds an actor spent
on its batches), which is what a cluster multiplies by its number of actors (one per GPU
there); the start-up cost Ray adds; whether the results match; the SQLite store's write and
read rates for predictions (where it becomes the limit, docs/scale.md); and as the last line
``ratio: X`` = local images/s / Ray images/s, the overhead Ray costs on one machine (above 1:
Ray is slower here).
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

EMBEDDING_WIDTH = 480  # yolov8n's image embedding: layers 2, 4, 6, 9 pooled (32 + 64 + 128 + 256 channels)


def _store_rates(root: Path, n: int, boxes: int = 50, classes: int = 10) -> tuple[float, float, float, float]:
    """(write items/s, read items/s, embedding read items/s, bytes per item) of the SQLite
    store for ``n`` predictions of ``boxes`` boxes with class probabilities and an embedding
    as wide as yolov8n's (:data:`EMBEDDING_WIDTH`), written as predict writes them (transactions of 64)."""
    import numpy as np

    from boxloop.store import Store
    from boxloop.types import Detections

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (boxes, 2))
    probs = rng.dirichlet(np.ones(classes), boxes).astype(np.float32)
    d = Detections(np.concatenate([xy, xy + 20], 1), probs.argmax(1), rng.uniform(0, 1, boxes), {"class_probs": probs})
    store = Store.open(root / "store-bench.db")
    store.set_classes([str(i) for i in range(classes)])
    ids = [f"{i:016x}" for i in range(n)]
    with store.transaction() as c:
        c.executemany(
            "INSERT INTO items (id, uri, width, height, sha256, added_at) VALUES (?,?,?,?,?,0)",
            [(i, f"s3://bucket/{i}.jpg", 320, 240, "0" * 64) for i in ids],
        )
    vector = rng.standard_normal(EMBEDDING_WIDTH).astype(np.float32)
    t = time.perf_counter()
    for k in range(0, n, 64):
        chunk = ids[k : k + 64]
        with store.transaction():
            store.put_predictions("m", {i: d for i in chunk})
            store.put_embeddings("m", {i: vector for i in chunk})
    write = n / (time.perf_counter() - t)
    t = time.perf_counter()
    assert len(store.predictions("m")) == n
    read = n / (time.perf_counter() - t)
    t = time.perf_counter()
    store.embeddings("m")
    emb = n / (time.perf_counter() - t)
    store.close()
    return write, read, emb, (root / "store-bench.db").stat().st_size / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images in the pass")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8, help="images per network call")
    ap.add_argument("--weights", type=Path, default=None, help="a trained .pt (default: train a quick one)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs for the quick model")
    ap.add_argument("--actors", type=int, default=None, help="Ray actors (default: one per core)")
    ap.add_argument("--store-n", type=int, default=20000, help="predictions in the store measurement")
    ap.add_argument("--store-only", action="store_true", help="only measure the store")
    args = ap.parse_args()
    if args.store_only:
        with tempfile.TemporaryDirectory(prefix="boxloop-bench-store-") as tmp:
            _print_store(Path(tmp), args.store_n)
        return

    import numpy as np

    from boxloop.ingest import add_images
    from boxloop.modeling import predict
    from boxloop.synth import generate_images, train_quick_model
    from boxloop.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="boxloop-bench-engine-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
        weights = args.weights
        if weights is None:
            generate_images(tmp_path / "train", n=200, seed=1)
            print(f"training yolov8n.yaml for {args.epochs} epoch(s) at {args.imgsz} on 200 images (pass --weights to skip)...", flush=True)
            weights = train_quick_model(tmp_path / "train", tmp_path / "run", imgsz=args.imgsz, epochs=args.epochs)
        generate_images(tmp_path / "pool", n=args.n, seed=0)
        from boxloop.backends.ultralytics import _names_list, load_torch_model

        ws = Workspace.init(tmp_path / "ws", _names_list(load_torch_model(weights)[1]))
        added = add_images(ws, [tmp_path / "pool" / "images"])
        if added.added != args.n:
            sys.exit(f"expected {args.n} images in the workspace, got {added.added}: {added.summary()}")
        cores = os.cpu_count() or 1
        print(f"{args.n} images 320x240, imgsz {args.imgsz}, conf 0.01, batch {args.batch}, torch on CPU, {cores} cores, "
              f"load average {os.getloadavg()[0]:.1f} at the start")

        t = time.perf_counter()
        local = predict(ws, model=str(weights), imgsz=args.imgsz, batch=args.batch)
        local_s = time.perf_counter() - t
        version = local.version
        expected = ws.store.predictions(version)
        expected_emb = ws.store.embeddings(version, sorted(expected))
        print(f"local engine:  {args.n / local_s:7.1f} images/s  ({local_s:.1f} s, {local.boxes} boxes; "
              f"{local.items / local.seconds:.1f} images/s after the model was loaded)")
        print("  ms per image by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in local.ms_per_image.items()))

        import ray

        from boxloop.engine.ray import RayEngine

        t = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        init_s = time.perf_counter() - t
        engine = RayEngine(actors=args.actors)
        try:
            t = time.perf_counter()
            on_ray = predict(ws, model=version, imgsz=args.imgsz, batch=args.batch, engine=engine)
            ray_s = time.perf_counter() - t
        finally:
            ray.shutdown()
        stats = engine.last_pass
        got = ws.store.predictions(version)
        same = set(got) == set(expected) and all(
            len(got[i]) == len(expected[i]) and np.array_equal(got[i].class_id, expected[i].class_id)
            and np.allclose(got[i].xyxy, expected[i].xyxy, atol=1e-3) for i in expected
        )
        _, emb_local = expected_emb
        _, emb_ray = ws.store.embeddings(version, sorted(expected))
        exact = same and np.array_equal(emb_local, emb_ray) and all(
            np.array_equal(got[i].xyxy, expected[i].xyxy) and np.array_equal(got[i].confidence, expected[i].confidence)
            for i in expected
        )
        per_actor = stats["images"] / stats["busy_seconds"] if stats.get("busy_seconds") else float("nan")
        print(f"ray engine:    {args.n / ray_s:7.1f} images/s  ({ray_s:.1f} s, {on_ray.boxes} boxes; "
              f"{stats['actors']} actor(s) x {stats['cpus_per_actor']:g} CPU, batches of {stats['batch']}; "
              f"ray.init {init_s:.1f} s not counted)")
        print(f"  per actor:   {per_actor:7.1f} images/s  (images / seconds an actor spent on its batches; "
              f"a cluster multiplies this by its actors)")
        startup = ray_s - stats["images"] / (per_actor * stats["actors"]) if per_actor == per_actor else float("nan")
        print(f"  start-up and hand-back: about {startup:.1f} s of the Ray pass were not spent predicting")
        print(f"results: {'identical' if exact else 'same boxes and classes (float32 rounding apart)' if same else 'DIFFERENT'}"
              f" ({len(got)} items, boxes and embeddings compared)")
        _print_store(tmp_path, args.store_n)
        print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on this machine slows both passes)")
        print(f"ratio: {(args.n / local_s) / (args.n / ray_s):.2f}")


def _print_store(root: Path, n: int) -> None:
    write, read, emb, size = _store_rates(root, n)
    print(f"store (SQLite, {n} predictions of 50 boxes x 10 classes + {EMBEDDING_WIDTH}-d embeddings): write {write:.0f} items/s, "
          f"read {read:.0f} items/s, embeddings read {emb:.0f} items/s, {size / 1024:.1f} KiB per item")


if __name__ == "__main__":
    main()
