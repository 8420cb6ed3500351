"""Finding label mistakes: a batch of labeled images with mistakes planted in some of them
(an object nobody drew, a wrong class, a loose box, a box on nothing, in turn), re-checked
in the order `boxloop audit` ranks them against re-checking them in any order (what a person
does without it). Prints how many images each has to open to find half, 80% and all of the
planted mistakes, the false alarms among audit's first picks, and as the last line
``ratio: X`` = images opened in a random order / in audit's order, to find 80%.

    .venv/bin/python bench/audit.py                          # trains a yolov8n first (~13 min on 2 cores; kept in bench/out/audit)
    .venv/bin/python bench/audit.py --weights your.pt        # a digits model you have
    .venv/bin/python bench/audit.py --folds 2 --epochs 40    # mistakes in the training labels: out-of-fold (~1.5 h)

Generated LCD digits (320x240): a model trained on 200 of them (or --weights), audited on
150 others it never saw, 15% of them with one mistake planted. Random order is the mean over
2,000 shuffles.

With ``--folds K`` the mistakes are in labels the models train on: all 350 images are
labeled, and `boxloop audit --folds K` (K held-out models, each judging the labels it did not
train on) is compared with what a user has without it: one model trained on every label,
audited with ``--include-trained``. Both train with the same settings; the ratio is against
any order over all 350.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's select module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

KINDS = ("missed", "class", "loose", "unsupported")


def plant(ws, ids: list[str], share: float, seed: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One mistake in each of ``share`` of the images, the kinds in turn; {item id: kind}."""
    from boxloop.types import Detections

    rng = np.random.default_rng(seed)
    labels = ws.store.latest_labels(ids)
    items = {it.id: it for it in ws.store.items(ids)}
    planted: dict[str, str] = {}
    want = round(share * len(ids))
    for item_id in rng.permutation(ids):
        d = labels[item_id]
        xyxy, cls = d.xyxy.copy(), d.class_id.copy()
        kind = KINDS[len(planted) % len(KINDS)]
        if kind != "unsupported" and not len(cls):
            continue
        if kind == "missed":
            k = int(rng.integers(len(cls)))
            xyxy, cls = np.delete(xyxy, k, axis=0), np.delete(cls, k)
        elif kind == "class":
            k = int(rng.integers(len(cls)))
            cls[k] = (cls[k] + int(rng.integers(1, 10))) % 10
        elif kind == "loose":
            k = int(rng.integers(len(cls)))
            xyxy[k, 2] += 0.5 * (xyxy[k, 2] - xyxy[k, 0])  # past the digit's right edge: IoU 0.67
            xyxy[k, 2] = min(xyxy[k, 2], items[item_id].width)
        else:
            w, h = items[item_id].width, items[item_id].height
            box = np.array([[0.02 * w, 0.02 * h, 0.12 * w, 0.2 * h]], np.float32)  # a digit-sized box in a corner
            free = not len(cls) or not (
                (xyxy[:, 0] < box[0, 2]) & (xyxy[:, 2] > box[0, 0]) & (xyxy[:, 1] < box[0, 3]) & (xyxy[:, 3] > box[0, 1])
            ).any()
            if not free:
                continue
            xyxy, cls = np.vstack([xyxy, box]), np.append(cls, int(rng.integers(10)))
        ws.store.add_label(str(item_id), Detections(xyxy.astype(np.float32), cls), source="planted")
        planted[str(item_id)] = kind
        if len(planted) == want:
            break
    return planted


def opened_to_find(order: list[str], planted: set[str], fraction: float) -> int:
    """Images opened, in this order, until ``fraction`` of the planted ones were seen."""
    need = int(np.ceil(fraction * len(planted)))
    seen = 0
    for n, item_id in enumerate(order, 1):
        seen += item_id in planted
        if seen >= need:
            return n
    return len(order)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="a digits model (default: train one)")
    ap.add_argument("--epochs", type=int, default=60, help="epochs of the model trained without --weights")
    ap.add_argument("--n", type=int, default=150, help="labeled images audited")
    ap.add_argument("--share", type=float, default=0.15, help="share of them given a mistake")
    ap.add_argument("--conf", type=float, default=0.5, help="audit's --conf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/out/audit"), help="keeps the model it trains, for reruns")
    ap.add_argument("--folds", type=int, default=None, help="mistakes in training labels: audit out of fold with K models")
    args = ap.parse_args()
    if args.folds is not None:
        out_of_fold(args)
        return

    from boxloop.audit import audit
    from boxloop.backends.ultralytics import use_all_cores
    from boxloop.ingest import add_labels
    from boxloop.synth import generate_images, train_quick_model
    from boxloop.workspace import Workspace

    use_all_cores()
    with tempfile.TemporaryDirectory(prefix="boxloop-bench-audit-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
        weights = args.weights
        kept = args.out / f"model-s{args.seed}-e{args.epochs}.pt"
        if weights is None and kept.is_file():
            weights = kept
            print(f"the model trained before: {kept}")
        elif weights is None:
            print(f"training yolov8n.yaml for {args.epochs} epochs on 200 generated images at 320...", flush=True)
            generate_images(tmp_path / "train", n=200, seed=args.seed, size=(320, 240))
            t = time.perf_counter()
            trained = train_quick_model(tmp_path / "train", tmp_path / "run", imgsz=320, epochs=args.epochs)
            print(f"  {time.perf_counter() - t:.0f} s", flush=True)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(trained, kept)
            weights = kept
        batch = generate_images(tmp_path / "batch", n=args.n, seed=args.seed, size=(320, 240), start=200)
        ws = Workspace.init(tmp_path / "ws", classes=[str(d) for d in range(10)])
        add_labels(ws, batch, format="yolo")
        ids = sorted(it.id for it in ws.store.items())
        planted = plant(ws, ids, args.share, args.seed)
        t = time.perf_counter()
        report = audit(ws, model=str(weights), conf=args.conf, imgsz=320, )
        seconds = time.perf_counter() - t
        ranked = [item_id for item_id, _, _ in report.images]
        order = ranked + [i for i in ids if i not in set(ranked)]  # then the rest, as a person would
        rng = np.random.default_rng(args.seed)
        shuffles = [list(rng.permutation(ids)) for _ in range(2000)]
        kinds_found = {k: sum(1 for i, v in planted.items() if v == k and i in set(ranked)) for k in KINDS}
        print(f"{len(ids)} labeled images, {len(planted)} with a planted mistake "
              f"({', '.join(f'{sum(v == k for v in planted.values())} {k}' for k in KINDS)}); "
              f"audit {seconds:.1f} s, {len(ranked)} image(s) with suspects at --conf {args.conf}")
        print(f"planted mistakes audit lists at all: {sum(kinds_found.values())} of {len(planted)} "
              f"({', '.join(f'{n} {k}' for k, n in kinds_found.items())})")
        top = ranked[: len(planted)]
        print(f"false alarms among audit's first {len(planted)}: {sum(1 for i in top if i not in planted)}")
        results = {}
        for fraction in (0.5, 0.8, 1.0):
            a = opened_to_find(order, set(planted), fraction)
            r = float(np.mean([opened_to_find(s, set(planted), fraction) for s in shuffles]))
            results[fraction] = (a, r)
            print(f"images opened to find {fraction:.0%} of them: audit {a:4d}   any order {r:6.1f}")
        a, r = results[0.8]
        print(f"ratio: {r / a:.2f}")


def report_orders(orders: dict[str, list[str]], ids: list[str], planted: dict[str, str], seed: int) -> None:
    """Images opened to find 50/80/100% of the planted mistakes in each order and in any
    order; the last line is the first order's ratio against any order, at 80%."""
    rng = np.random.default_rng(seed)
    shuffles = [list(rng.permutation(ids)) for _ in range(2000)]
    names = list(orders)
    print("images opened to find   " + "".join(f"{n:>16}" for n in names) + f"{'any order':>12}")
    at80 = {}
    for fraction in (0.5, 0.8, 1.0):
        found = {n: opened_to_find(o, set(planted), fraction) for n, o in orders.items()}
        r = float(np.mean([opened_to_find(s, set(planted), fraction) for s in shuffles]))
        print(f"{fraction:>6.0%} of them          " + "".join(f"{found[n]:>16d}" for n in names) + f"{r:>12.1f}")
        if fraction == 0.8:
            at80 = {**found, "any": r}
    for n in names[1:]:
        print(f"{n} against any order at 80%: {at80['any'] / at80[n]:.2f}")
    print(f"ratio: {at80['any'] / at80[names[0]]:.2f}")


def out_of_fold(args: argparse.Namespace) -> None:
    """Mistakes planted among labels the models train on: out-of-fold against in-sample."""
    from boxloop import modeling
    from boxloop.audit import audit, audit_out_of_fold
    from boxloop.backends.ultralytics import use_all_cores
    from boxloop.ingest import add_labels
    from boxloop.synth import generate_images
    from boxloop.workspace import Workspace

    use_all_cores()
    with tempfile.TemporaryDirectory(prefix="boxloop-bench-audit-folds-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
        clean = generate_images(tmp_path / "clean", n=200, seed=args.seed, size=(320, 240))
        batch = generate_images(tmp_path / "batch", n=args.n, seed=args.seed, size=(320, 240), start=200)
        ws = Workspace.init(tmp_path / "ws", classes=[str(d) for d in range(10)])
        add_labels(ws, clean, format="yolo")
        add_labels(ws, batch, format="yolo")
        ids = sorted(it.id for it in ws.store.items())
        batch_ids = sorted(it.id for it in ws.store.items() if Path(it.uri).is_relative_to(batch))
        planted = plant(ws, batch_ids, args.share, args.seed)
        train = {"epochs": args.epochs, "imgsz": 320}
        print(f"{len(ids)} labeled images, {len(planted)} of them with a planted mistake; yolov8n.yaml, "
              f"{args.epochs} epochs at 320", flush=True)
        t = time.perf_counter()
        folds = audit_out_of_fold(ws, folds=args.folds, conf=args.conf, say=lambda m: print("  " + m, flush=True), **train)
        t_folds = time.perf_counter() - t
        print(f"  out of fold ({args.folds} models): {t_folds:.0f} s", flush=True)
        t = time.perf_counter()
        one = modeling.train(ws, model="yolov8n.yaml", **train)
        inside = audit(ws, model=one.version, conf=args.conf, include_trained=True)
        print(f"  one model on every label, --include-trained: {time.perf_counter() - t:.0f} s", flush=True)
        orders = {}
        for name, report in ((f"{args.folds} folds", folds), ("one model", inside)):
            ranked = [item_id for item_id, _, _ in report.images]
            listed = sum(1 for i in planted if i in set(ranked))
            false = sum(1 for i in ranked[: len(planted)] if i not in planted)
            print(f"{name}: {len(ranked)} image(s) with suspects, {listed} of {len(planted)} planted listed, "
                  f"{false} false alarms among the first {len(planted)}")
            orders[name] = ranked + [i for i in ids if i not in set(ranked)]
        report_orders(orders, ids, planted, args.seed)


if __name__ == "__main__":
    main()
