"""The model half of the loop at workspace level: train on the human labels, predict the
pool (boxes, class probabilities, embeddings), evaluate on the frozen test split, export to
ONNX, and bring in predictions made by any other detector.

Model versions: a training run is ``m001``, ``m002``, ... (one more than the highest number
known to the store or present under runs/), and its folder is ``runs/<version>``. Weights
given by path get ``<file stem>-<first 8 hex of their sha256>``, so the same file is always
the same version. Predictions imported with ``add predictions`` use the name given.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BackendError, InputError, Problems
from .sources import absolute_path
from .store import Store
from .types import Detections, Item
from .workspace import Workspace

__all__ = [
    "PREDICTION_FORMATS",
    "PREDICT_SCOPES",
    "ImportReport",
    "PredictReport",
    "ResolvedModel",
    "TrainOutcome",
    "add_predictions",
    "check_numbers",
    "decode_file",
    "decode_reduced",
    "embed_labeled",
    "epochs_for_steps",
    "evaluate_model",
    "export_model",
    "iter_predictions",
    "labeled_to_embed",
    "next_version",
    "predict",
    "resolve_model",
    "small_data_recipe",
    "train",
    "way_to_predictions",
]

log = logging.getLogger(__name__)
PREDICT_SCOPES = ("unlabeled", "all", "labeled", "train", "val", "test")
PREDICTION_FORMATS = ("yolo", "coco-results")
EVAL_CONF = 0.001  # mAP needs every box; the working threshold is separate
_CHUNK = 64  # predictions per store transaction
Progress = Callable[[int], None]
MIN_IMGSZ = 32  # a network input side: one stride of the coarsest feature map
_LEAST = {"epochs": 1, "steps": 1, "imgsz": MIN_IMGSZ, "batch": 1}


def check_numbers(**given: int | None) -> None:
    """Refuse an epochs, steps, imgsz or batch option (``given`` by name; None: not given)
    below the least that can work: 0 is no way to ask for the default. (boxloop.toml's
    values are checked when it is read: :mod:`boxloop.config`.)"""
    for name, value in given.items():
        least = _LEAST[name]
        if value is not None and value < least:
            auto = (" (Ultralytics' automatic batch size, -1, is not taken: the optimizer steps of an epoch "
                    "follow the batch size; give a number)") if name == "batch" and value == -1 else ""
            raise InputError(f"--{name} must be at least {least}, got {value}{auto}")


# -- model versions -------------------------------------------------------------------------------


def next_version(ws: Workspace) -> str:
    """The id of the next training run: m001, m002, ..."""
    taken = [v["id"] for v in ws.store.model_versions()]
    if ws.runs_dir.is_dir():
        taken += [p.name for p in ws.runs_dir.iterdir()]
    nums = [int(m.group(1)) for t in taken if (m := re.fullmatch(r"m(\d+)", t))]
    return f"m{max(nums, default=0) + 1:03d}"


@dataclass(frozen=True)
class ResolvedModel:
    """A model version the store knows, with the file to load it from (None for imported
    predictions) and its settings and measurements (``meta``: imgsz, tile, ...)."""

    version: str
    path: Path | None
    classes: list[str]
    backend: str
    meta: dict[str, Any] = field(default_factory=dict)


def _file_version(path: Path) -> str:
    """A weights file's version: its name (a run's ``weights/best.pt`` by its run folder, as
    every Ultralytics run names its weights best.pt) and the start of its content hash."""
    from .sources.images import file_sha256

    stem = path.stem
    if path.parent.name == "weights" and path.parent.parent.name and (stem in ("best", "last") or stem.startswith("epoch")):
        stem = path.parent.parent.name if stem == "best" else f"{path.parent.parent.name}_{stem}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "model"
    return f"{stem}-{file_sha256(path)[:8]}"


def weights_tile(path: Path) -> int | None:
    """The tile a weights file was trained on, where it says: an ONNX file boxloop exported
    (its metadata), or a .pt in the run folder boxloop trained it in (``run_inputs.json``)."""
    from .runs import INPUTS_FILE

    if path.suffix.lower() == ".onnx":
        try:
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as e:  # the loader names a bad file when it loads it for real
            log.debug("%s: no metadata: %s", path, e)
            return None
        return int(props["tile"]) if props.get("tile", "").isdigit() else None
    inputs = path.parent.parent / INPUTS_FILE if path.parent.name == "weights" else None
    if inputs is None or not inputs.is_file():
        return None
    try:
        tile = json.loads(inputs.read_text(encoding="utf-8")).get("settings", {}).get("tile")
    except (OSError, ValueError):
        return None
    return int(tile) if isinstance(tile, int) and tile > 0 else None


def way_to_a_model(store: Store) -> str:
    """The steps from where the workspace's store stands to a trained model, as a message
    ends: labels first where there are none."""
    if not store.latest_labels():
        return "add labels (`boxloop add labels PATH`), then `boxloop train`"
    return "run `boxloop train`"


def way_to_predictions(store: Store) -> str:
    """The steps from where the workspace's store stands to predictions on the pool (what
    `select` scores and exports pre-label): a model first where there is none."""
    if any(v["path"] for v in store.model_versions()):
        return "run `boxloop predict` (or `boxloop add predictions` for another detector's)"
    return f"{way_to_a_model(store)}, then `boxloop predict` (or `boxloop add predictions` for another detector's)"


def resolve_model(ws: Workspace, model: str | Path | None = None) -> ResolvedModel:
    """A model version id (None: the newest trained here, else the newest weights file given) or
    a weights file (.pt / .onnx), which is registered as a version named after its content."""
    store = ws.store
    if model is None:
        versions = [v for v in store.model_versions() if v["path"]]
        if not versions:
            raise InputError(f"no trained model yet; {way_to_a_model(store)}, or pass --model PATH")
        # the newest trained here; weights passed once as a file (a quick look at a few images with
        # someone's model) do not become the default, unless no model was trained here
        own = [v for v in versions if (v.get("meta") or {}).get("source") != "file"]
        v = (own or versions)[-1]
        return ResolvedModel(v["id"], Path(v["path"]), list(v["classes"]), v["backend"], dict(v["meta"] or {}))
    known = {v["id"]: v for v in store.model_versions()}
    if str(model) in known:
        v = known[str(model)]
        return ResolvedModel(v["id"], Path(v["path"]) if v["path"] else None, list(v["classes"]), v["backend"],
                             dict(v["meta"] or {}))
    path = Path(model).expanduser()
    if not path.is_file():
        raise InputError(
            f"{model}: neither a model version ({', '.join(known) or 'none yet'}) nor a weights file"
        )
    path = absolute_path(path)
    version = _file_version(path)
    backend = "onnx" if path.suffix.lower() == ".onnx" else "ultralytics"
    if version in known:
        return ResolvedModel(version, path, ws.classes, backend, dict(known[version]["meta"] or {}))
    from .backends.ultralytics import trained_imgsz

    # it predicts at the size it was trained at (read once, here), unless told otherwise; a model
    # trained on tiles predicts by tiles (an ONNX file boxloop exported says so, a .pt its run's inputs)
    size, tile = trained_imgsz(path), weights_tile(path)
    if tile and size is None and backend == "onnx":
        size = tile
    meta: dict[str, Any] = {"source": "file", **({"imgsz": size} if size else {}), **({"tile": tile} if tile else {})}
    store.add_model_version(version, backend=backend, classes=ws.classes, path=str(path), meta=meta)
    return ResolvedModel(version, path, ws.classes, backend, meta)


# -- training -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOutcome:
    """A finished training run registered in the store."""

    version: str
    run_dir: Path
    weights: Path
    metrics: dict[str, float]
    train_images: int
    val_images: int


def _check_trainable(ws: Workspace, *, allow_missing_classes: bool) -> tuple[int, int]:
    store = ws.store
    labels = store.latest_labels()
    if not labels:
        raise InputError("no labeled images to train on; add some with `boxloop add labels PATH`")
    items = store.items(ids=list(labels))
    train_ids = [it.id for it in items if it.split in (None, "train")]
    val_n = sum(1 for it in items if it.split == "val")
    if not train_ids:
        raise InputError(
            f"no labeled images in the train split ({len(items)} labeled, all in val/test); label more images"
        )
    counts = np.zeros(len(ws.classes), np.int64)
    for i in train_ids:
        counts += np.bincount(labels[i].class_id, minlength=len(counts))[: len(counts)]
    if not counts.any():
        raise InputError(f"the {len(train_ids)} labeled train image(s) have no boxes; draw some boxes first")
    missing = [c for c, n in zip(ws.classes, counts, strict=False) if n == 0]
    if missing and not allow_missing_classes:
        raise InputError(
            f"class(es) with no labeled box in the train split: {', '.join(missing)}; label at least one "
            "example of each, or pass --allow-missing-classes (or set [train] allow_missing_classes = true "
            "in boxloop.toml)"
        )
    if missing:
        log.warning("training without a labeled box of class(es) %s: the model cannot learn them yet", ", ".join(missing))
    return len(train_ids), val_n


SMALL_TRAIN_SET = 500  # images; below this every batch is an optimizer step
ULTRALYTICS_NBS = 64  # Ultralytics' nominal batch: it accumulates gradients up to this many images


def small_data_recipe(train_images: int, batch: int, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Training settings for the few labels active learning starts from: Ultralytics
    accumulates gradients up to a nominal batch of 64 (``nbs``), which on 36 images at batch
    16 leaves 30 optimizer steps in 40 epochs, and a model trained from scratch learns
    nothing (measured on the demo's digits: mAP50 0.00 with, 0.13-0.26 without). Below
    ``SMALL_TRAIN_SET`` images each batch is a step; above it one more batch is accumulated
    per ``SMALL_TRAIN_SET`` images, up to Ultralytics' 64, so an epoch never has fewer steps
    than it had on ``SMALL_TRAIN_SET`` images, and a label set that grows past it from one
    round to the next does not lose most of its training (at batch 4 an epoch on 499 images
    was 125 steps, on 500 it was 8; fine-tuning 15 epochs at batch 4 on 512 of the
    three-quarters-empty digits, bench/simulate.py's seed-0 reference: validation mAP50-95
    0.20 with a step per 16 batches, 0.34 with one per batch). The weight decay, which
    Ultralytics scales by batch x accumulation / nbs, stays as it is. Settings in ``extra``
    win."""
    out = dict(extra or {})
    accumulate = max(1, min(train_images // SMALL_TRAIN_SET, ULTRALYTICS_NBS // max(1, int(batch))))
    if accumulate * int(batch) < ULTRALYTICS_NBS:
        out.setdefault("nbs", accumulate * int(batch))
    return out


def epochs_for_steps(steps: int, train_images: int, batch: int, nbs: int = ULTRALYTICS_NBS) -> int:
    """The epochs that give about ``steps`` optimizer steps on ``train_images`` at ``batch``,
    Ultralytics accumulating gradients up to ``nbs`` images per step: at least one epoch,
    and never fewer steps than asked (the last epoch is whole). A round that trains for a
    fixed number of steps trains as long on 20 labels as on 2000, where a fixed number of
    epochs gives the first rounds, the ones with the fewest labels, almost no training."""
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    # Ultralytics' trainer accumulates max(round(nbs / batch), 1) batches and steps whenever
    # that many have passed, across epochs: e epochs of nb batches make floor(e * nb / accumulate)
    accumulate = max(round(nbs / max(1, batch)), 1)
    batches = math.ceil(max(1, train_images) / max(1, batch))
    return max(1, math.ceil(steps * accumulate / batches))


def _view_sizes(dataset: Path) -> tuple[int, int]:
    """Images in a dataset view's train and val splits."""
    sizes = []
    for split in ("train", "val"):
        d = dataset / "images" / split
        sizes.append(len(list(d.glob("*"))) if d.is_dir() else 0)
    return sizes[0], sizes[1]


@dataclass(frozen=True)
class _RunPlan:
    """A run's dataset view written, its settings and what they fingerprint."""

    data_yaml: Path
    settings: dict[str, Any]
    extra: dict[str, Any]  # Ultralytics' extra arguments, the small-data recipe included
    steps: int | None
    train_images: int
    val_images: int
    fingerprint: str


def _trainer_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings as the trainer takes them: the tile side shaped its view already."""
    return {k: v for k, v in settings.items() if k != "tile"}


def _plan_run(
    ws: Workspace, run_dir: Path, *, ids: Sequence[str] | None, model: str, epochs: int | None, steps: int | None,
    imgsz: int, batch: int | None, device: str | None, patience: int | None, extra: Mapping[str, Any] | None,
    tile: int | None = None,
) -> _RunPlan:
    """Write the run's dataset view (every labeled item, or those of ``ids``; with ``tile``,
    their tiles) and settle its settings (boxloop.toml [train] where not given; the epochs
    follow ``steps`` when asked)."""
    from .backends.ultralytics import detr_model, readable_suffixes
    from .export import write_yolo_dataset
    from .runs import run_fingerprint

    if tile:
        labeled = ws.store.items(ids=list(ids)) if ids is not None else ws.store.items(state="labeled")
        largest = max(labeled, key=lambda it: max(it.width, it.height), default=None)
        if largest is not None and max(largest.width, largest.height) <= tile:
            log.warning(
                "tile %d is no smaller than any picture (the largest is %dx%d): they train whole, enlarged to %d; tiles "
                "are for pictures several times the tile (without --tile, --imgsz sets the size)",
                tile, largest.width, largest.height, imgsz,
            )
    data_yaml = write_yolo_dataset(
        ws, run_dir / "dataset", what="labeled", link=True, splits=("train", "val"), ids=ids,
        readable=readable_suffixes(), shrink_to=None if tile else imgsz, tile=tile,
        stretch=not tile and detr_model(model),  # an RT-DETR trains on pictures stretched to a square
    )
    train_n, val_n = _view_sizes(run_dir / "dataset")
    cfg = ws.config.train
    settings: dict[str, Any] = {
        "model": str(model),
        "epochs": int(cfg.epochs if epochs is None else epochs),
        "imgsz": int(imgsz),
        "batch": int(cfg.batch if batch is None else batch),
        "device": str(device or cfg.device),
        "patience": int(cfg.patience if patience is None else patience),  # 0: no early stopping
        **({"tile": int(tile)} if tile else {}),  # (absent when untiled: earlier runs' fingerprints hold)
    }
    extra_args = small_data_recipe(train_n, settings["batch"], extra)
    steps = steps if steps is not None else (None if epochs is not None else cfg.steps or None)
    if steps is not None:
        settings["epochs"] = epochs_for_steps(steps, train_n, settings["batch"], extra_args.get("nbs", ULTRALYTICS_NBS))
    fingerprint = run_fingerprint(
        run_dir / "dataset", classes=ws.classes, settings={**settings, "extra": extra_args, "workers": cfg.workers}
    )
    return _RunPlan(data_yaml, settings, extra_args, steps, train_n, val_n, fingerprint)


def train(
    ws: Workspace,
    *,
    model: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    device: str | None = None,
    patience: int | None = None,
    allow_missing_classes: bool = False,
    extra: Mapping[str, Any] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    tile: int | None = None,
) -> TrainOutcome:
    """Train on every human label (train/val splits) and register the run as a new model
    version; settings default to boxloop.toml [train]. ``steps`` (or [train] steps, unless
    ``epochs`` is given) trains about that many optimizer steps: the epochs follow the
    number of training images (``epochs_for_steps``); early stopping (``patience`` epochs
    without a better validation score) can still end it sooner. ``tile`` (or [train] tile):
    train on ``tile`` x ``tile`` crops at full resolution, for small objects in large
    pictures (:mod:`boxloop.tiles`); the version then predicts window by window, and its
    input size defaults to the tile's. Every option is checked before the run's folder is
    made, and a run that fails before it saved an epoch leaves no folder behind."""
    from .backends.ultralytics import require_trainable_model
    from .runs import dropped_unless_saved

    cfg = ws.config.train
    model = model or cfg.model
    tile = tile if tile is not None else cfg.tile
    if tile and tile < 32:
        raise InputError(f"--tile is a window's side in pixels, at least 32; got {tile}")
    # every option, the model and the labels are checked before anything is written
    check_numbers(epochs=epochs, steps=steps, imgsz=imgsz, batch=batch)
    require_trainable_model(model)
    _check_trainable(ws, allow_missing_classes=allow_missing_classes or cfg.allow_missing_classes)
    version = next_version(ws)
    run_dir = ws.runs_dir / version
    run_dir.mkdir(parents=True, exist_ok=True)
    with dropped_unless_saved(run_dir):
        return _train_run(
            ws, run_dir, model=model, epochs=epochs, steps=steps, imgsz=_train_imgsz(ws, imgsz, tile), batch=batch,
            device=device, patience=patience, extra=extra, on_epoch=on_epoch, tile=tile or None,
        )


def _train_imgsz(ws: Workspace, imgsz: int | None, tile: int | None) -> int:
    """The training input size: as given, else a tile's side, else boxloop.toml [train] imgsz."""
    return int(imgsz if imgsz is not None else tile or ws.config.train.imgsz)


def _train_run(
    ws: Workspace, run_dir: Path, *, model: str, epochs: int | None, steps: int | None, imgsz: int,
    batch: int | None, device: str | None, patience: int | None, extra: Mapping[str, Any] | None,
    on_epoch: Callable[[int, int], None] | None, tile: int | None,
) -> TrainOutcome:
    """`train` in its new run folder: go on with an interrupted run of the same labels and
    settings, or train this one, and register the model version."""
    from .backends.ultralytics import resumable_epoch, train_yolo
    from .ingest import current_round
    from .runs import interrupted_run, training, write_run_inputs

    cfg = ws.config.train
    version = run_dir.name
    plan = _plan_run(
        ws, run_dir, ids=None, model=model, epochs=epochs, steps=steps, imgsz=imgsz,
        batch=batch, device=device, patience=patience, extra=extra, tile=tile,
    )
    data_yaml, settings, extra, steps, fingerprint = plan.data_yaml, plan.settings, plan.extra, plan.steps, plan.fingerprint
    train_n, val_n = plan.train_images, plan.val_images
    registered = {v["id"] for v in ws.store.model_versions()}
    earlier = interrupted_run(ws.runs_dir, registered=registered | {version}, fingerprint=fingerprint)
    resumed_at = resumable_epoch(earlier / "weights" / "last.pt") if earlier is not None else None
    if earlier is not None and resumed_at is not None:
        # the same labels and settings as a run that was cut off: go on with it
        shutil.rmtree(run_dir)
        version, run_dir = earlier.name, earlier
        data_yaml = run_dir / "dataset" / "data.yaml"
        log.warning("resuming %s, interrupted after epoch %d of %d", version, resumed_at, settings["epochs"])
    else:
        resumed_at = None
        write_run_inputs(run_dir, fingerprint, settings)
    t0 = time.perf_counter()
    with training(run_dir):
        result = train_yolo(
            data_yaml, run_dir=run_dir, workers=cfg.workers, extra=extra, on_epoch=on_epoch,
            resume=resumed_at is not None, **_trainer_settings(settings),  # type: ignore[arg-type]
        )
    seconds = time.perf_counter() - t0
    ws.store.add_model_version(
        version,
        backend="ultralytics",
        classes=ws.classes,
        path=str(result.weights),
        round=current_round(ws),
        meta={
            **settings,
            **({"steps": int(steps)} if steps is not None else {}),
            "run_dir": str(result.run_dir),
            "metrics": result.metrics,
            "train_images": train_n,
            "val_images": val_n,
            "seconds": round(seconds, 2),
            **({"resumed_after_epoch": resumed_at} if resumed_at is not None else {}),
        },
    )
    log.info("trained %s in %.0fs: %s", version, seconds, result.weights)
    return TrainOutcome(version, result.run_dir, result.weights, result.metrics, train_n, val_n)


def train_held_out(
    ws: Workspace,
    run_dir: Path,
    *,
    exclude: Collection[str],
    model: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    device: str | None = None,
    patience: int | None = None,
    extra: Mapping[str, Any] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> Path:
    """Train on every human label (train/val splits) but those of ``exclude`` into
    ``run_dir``, as `train` would, without registering a model version (a held-out model of
    an out-of-fold audit); returns its weights. Run again with the same labels and settings,
    a finished run is reused and one cut off goes on from its last epoch."""
    from .backends.ultralytics import require_trainable_model, resumable_epoch, train_yolo
    from .runs import INPUTS_FILE, LOCK_FILE, training, write_run_inputs

    cfg = ws.config.train
    model = model or cfg.model
    tile = cfg.tile or None  # [train] tile: a held-out model learns from tiles as `train`'s would
    check_numbers(epochs=epochs, steps=steps, imgsz=imgsz, batch=batch)
    require_trainable_model(model)
    imgsz = _train_imgsz(ws, imgsz, tile)
    keep = [i for i in ws.store.latest_labels() if i not in exclude]
    if not keep:
        raise InputError("every labeled image is held out: nothing left to train on")
    run_dir.mkdir(parents=True, exist_ok=True)
    with training(run_dir):
        shutil.rmtree(run_dir / "dataset", ignore_errors=True)  # links only: cheap to write again
        plan = _plan_run(
            ws, run_dir, ids=keep, model=model, epochs=epochs, steps=steps, imgsz=imgsz, batch=batch, device=device,
            patience=patience, extra=extra, tile=tile,
        )
        settings, fingerprint = plan.settings, plan.fingerprint
        try:
            saved = json.loads((run_dir / INPUTS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        same = saved.get("fingerprint") == fingerprint
        if same and saved.get("weights") and Path(saved["weights"]).is_file():
            log.info("%s: trained already on these labels and settings", run_dir)
            return Path(saved["weights"])
        resume = same and resumable_epoch(run_dir / "weights" / "last.pt") is not None
        if not resume:  # another run's files would mix with this one's
            for p in run_dir.iterdir():
                if p.name not in ("dataset", LOCK_FILE):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            write_run_inputs(run_dir, fingerprint, settings)
        result = train_yolo(
            plan.data_yaml, run_dir=run_dir, workers=cfg.workers, extra=plan.extra, on_epoch=on_epoch, resume=resume,
            **_trainer_settings(settings),
        )
        write_run_inputs(run_dir, fingerprint, settings, weights=result.weights)
    return result.weights


# -- prediction -----------------------------------------------------------------------------------


def decode_file(uri: str, *, size: tuple[int, int] | None = None, sha256: str | None = None) -> np.ndarray:
    """Decode an image as displayed, RGB uint8: OpenCV (fast, EXIF-aware), PIL when OpenCV
    disagrees with the recorded (width, height). A URI (``s3://``, ``gs://``, ...) is read
    into memory through the image cache (``sha256``: the content it must have)."""
    return decode_reduced(uri, size=size, sha256=sha256)[0]


def reduction(size: tuple[int, int] | None, fit: tuple[int, int] | None, *, stretch: bool = False) -> int:
    """The largest JPEG reduction (8, 4, 2 or 1) that keeps an image of ``size`` (w, h) at least
    as large as its letterbox into ``fit`` (h, w), or with ``stretch`` (an RT-DETR's input) each
    side at least ``fit``'s: what the network sees is then resized down from the reduced
    image, never up."""
    if size is None or fit is None or min(size) <= 0:
        return 1
    r = (max if stretch else min)(fit[0] / size[1], fit[1] / size[0])
    return next((f for f in (8, 4, 2) if f * r <= 1), 1)


def decode_reduced(
    uri: str, *, size: tuple[int, int] | None = None, sha256: str | None = None, fit: tuple[int, int] | None = None,
    copies: Path | None = None, stretch: bool = False,
) -> tuple[np.ndarray, tuple[float, float]]:
    """:func:`decode_file`, a JPEG reduced while it is decoded where a network input ``fit``
    (h, w) is that much smaller than its recorded ``size`` (:func:`reduction`; ``stretch`` for
    a network that sees the picture stretched to ``fit``); any other large
    picture (HEIC, PNG, TIFF, ...), with ``copies`` (a workspace's shrunk/) and ``sha256``,
    read from its kept copy (:func:`boxloop.shrink.kept_copy`). Returns the image and the
    original's pixels per pixel of it (x, y)."""
    import cv2

    from .sources.images import JPEG_SUFFIXES, load_image, suffix_of
    from .sources.remote import fetch, is_remote

    kind = suffix_of(uri)
    if copies is not None and size is not None and sha256:
        from .shrink import KEPT_KINDS, kept_copy

        f = reduction(size, fit, stretch=stretch)
        if kind in KEPT_KINDS and f > 1:
            if "://" not in uri and not Path(uri).is_file():  # gone since added: its copy is no stand-in
                raise InputError(f"{uri}: image file not found")
            rgb = kept_copy(copies, uri, size, sha256, f)
            return rgb, (size[0] / rgb.shape[1], size[1] / rgb.shape[0])
    # libjpeg scales while it decodes: a 12-MP photo for a 640-pixel input needs a quarter
    f = reduction(size, fit, stretch=stretch) if kind in JPEG_SUFFIXES else 1
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[f]
    expect = None if size is None else (-(-size[0] // f), -(-size[1] // f))  # libjpeg rounds up

    def read(bgr: np.ndarray | None) -> tuple[np.ndarray, tuple[float, float]] | None:
        if bgr is None or (expect is not None and (bgr.shape[1], bgr.shape[0]) != expect):
            return None
        scale = (1.0, 1.0) if size is None else (size[0] / bgr.shape[1], size[1] / bgr.shape[0])
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), scale

    if is_remote(uri):
        data = fetch(uri, sha256=sha256)
        got = read(cv2.imdecode(np.frombuffer(data, np.uint8), flag))
        return got or (load_image(uri, data=data), (1.0, 1.0))
    if "://" not in uri and Path(uri).is_file():
        got = read(cv2.imread(uri, flag))
        if got is not None:
            return got
    elif "://" not in uri:
        raise InputError(f"{uri}: image file not found")
    return load_image(uri), (1.0, 1.0)


def iter_predictions(
    backend: Any,
    sources: Sequence[tuple[str, tuple[int, int] | None] | tuple[str, tuple[int, int] | None, str | None]],
    *,
    conf: float,
    iou: float,
    batch: int = 8,
    workers: int = 2,
    times: dict[str, float] | None = None,
    hflip: bool = False,
    copies: Path | None = None,
) -> Iterator[tuple[int, Any, str | None]]:
    """Run ``backend`` over image files or URIs, each ``(uri, (width, height) or None[,
    sha256])``: decoding (and letterboxing, for backends that
    have ``prepare``) happens in worker threads while the model runs batches. Yields
    ``(index, Prediction, None)`` in order, or ``(index, None, reason)`` for an image that
    could not be read; one bad image never stops the rest. ``copies``: where a large HEIC's or
    PNG's copy is kept between rounds (:func:`decode_reduced`)."""
    prepare = getattr(backend, "prepare", None)
    run = getattr(backend, "run", None) if prepare is not None else None
    decode_seconds = [0.0]
    lock = threading.Lock()

    # a backend that letterboxes to a fixed input gets a JPEG reduced while decoded, and maps
    # its boxes back to the original's pixels (the Letterboxed's scale)
    fit = getattr(backend, "imgsz", None) if prepare is not None else None
    stretch = bool(getattr(backend, "stretch", False))  # an RT-DETR's input: each side at least fit's

    def load(src: tuple[Any, ...]) -> Any:
        t = time.perf_counter()
        image, scale = decode_reduced(
            src[0], size=src[1], sha256=src[2] if len(src) > 2 else None, fit=fit, copies=copies if fit else None,
            stretch=stretch,
        )
        if hflip:
            image = np.ascontiguousarray(image[:, ::-1])
        with lock:
            decode_seconds[0] += time.perf_counter() - t
        if prepare is None:
            return image
        boxed = prepare(image)
        if scale == (1.0, 1.0):
            return boxed
        return replace(boxed, scale=scale, shape=(int(src[1][1]), int(src[1][0])))

    def flush(pending: list[tuple[int, Any]]) -> Iterator[tuple[int, Any, str | None]]:
        if not pending:
            return
        inputs = [x for _, x in pending]
        preds = run(inputs, conf=conf, iou=iou) if run is not None else backend.predict(inputs, conf=conf, iou=iou)
        for (i, _), p in zip(pending, preds, strict=False):
            yield i, p, None
        pending.clear()

    window = max(batch * 3, workers * 2)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="boxloop-decode") as pool:
        queue: deque[tuple[int, Future[Any]]] = deque()
        it = iter(enumerate(sources))
        pending: list[tuple[int, Any]] = []
        exhausted = False
        while True:
            while not exhausted and len(queue) < window:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                    break
                queue.append((nxt[0], pool.submit(load, nxt[1])))
            if not queue:
                break
            i, fut = queue.popleft()
            try:
                pending.append((i, fut.result()))
            except InputError as e:
                yield i, None, str(e).removeprefix(f"{sources[i][0]}: ")
            except (OSError, ValueError) as e:
                yield i, None, f"cannot decode image: {e}"
            if len(pending) >= batch:
                yield from flush(pending)
        yield from flush(pending)
    if times is not None:
        times["decode"] = times.get("decode", 0.0) + decode_seconds[0]


@dataclass
class PredictReport:
    """What a predict run did."""

    version: str
    items: int = 0
    boxes: int = 0
    seconds: float = 0.0
    problems: Problems = field(default_factory=Problems)
    ms_per_image: dict[str, float] = field(default_factory=dict)
    engine: str = "local"
    kept: str = "all"
    skipped: int = 0  # already done by this model version (``missing``)
    input_side: int | None = None  # the network input's long side (imgsz)
    onnx: str | None = None  # the ONNX file that ran, where ONNX Runtime ran it

    def summary(self) -> str:
        rate = self.items / self.seconds if self.seconds > 0 else 0.0
        if self.kept == "embeddings":
            text = f"{self.items} image(s) embedded with {self.version}, {rate:.1f} images/s"
        else:
            text = f"{self.items} image(s) predicted with {self.version}: {self.boxes} box(es), {rate:.1f} images/s"
        if self.engine != "local":
            text += f" on {self.engine}"
        if self.onnx:
            text += f" (ONNX Runtime: {self.onnx})"
        if self.skipped:
            text += f", {self.skipped} already done"
        if self.problems:
            text += f", {len(self.problems)} skipped"
        return text


def _scope_items(ws: Workspace, scope: str, ids: Sequence[str] | None) -> list[Item]:
    if ids is not None:
        return ws.store.items(ids=ids)
    if scope not in PREDICT_SCOPES:
        raise InputError(f"unknown scope {scope!r}; known: {', '.join(PREDICT_SCOPES)}")
    if scope == "all":
        return ws.store.items()
    if scope in ("unlabeled", "labeled"):
        return ws.store.items(state=scope)
    labeled = ws.store.latest_labels()
    return [it for it in ws.store.items(split=scope) if it.id in labeled]


def _rect_input(items: Sequence[Item], imgsz: int) -> tuple[int, int]:
    """The network input (h, w) for the most common image size among ``items``, long side ``imgsz``."""
    from collections import Counter

    from .backends.ultralytics import rect_shape

    (w, h), _ = Counter((it.width, it.height) for it in items).most_common(1)[0]
    return rect_shape(imgsz, w, h)


def predict_with_weights(
    ws: Workspace, weights: Path, items: Sequence[Item], *, imgsz: int, tile: int | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Detections], Problems]:
    """Predict ``items`` with a weights file, as `predict` does (boxes down to [predict] conf,
    with class probabilities; by windows of ``tile`` for weights trained on tiles), keeping
    the results in memory: no model version is registered, nothing is stored. An image that
    cannot be read is a problem; the rest go on."""
    from .shrink import SHRUNK_DIR

    out: dict[str, Detections] = {}
    problems = Problems()
    if not items:
        return out, problems
    cfg = ws.config.predict
    from .backends.ultralytics import load_backend

    backend = load_backend(
        weights, classes=ws.classes, runtime=cfg.runtime, device=ws.config.train.device,
        imgsz=imgsz if tile else _rect_input(items, imgsz), batch=cfg.batch, tile=tile,
    )
    sources = [(it.uri, (it.width, it.height), it.sha256) for it in items]
    for i, pred, problem in iter_predictions(
        backend, sources, conf=cfg.conf, iou=cfg.iou, batch=cfg.batch, copies=ws.root / SHRUNK_DIR,
    ):
        if problem is not None:
            problems.add(items[i].uri, problem)
        else:
            out[items[i].id] = pred.detections
        if progress is not None:
            progress(1)
    return out, problems


def _weights_and_onnx_dir(ws: Workspace, resolved: ResolvedModel) -> tuple[Path, Path | None]:
    """A version's weights file, and where its ONNX export goes: beside weights trained here
    (None), in this workspace's runs/onnx/ for weights brought from elsewhere (not beside them)."""
    path = absolute_path(resolved.path)  # type: ignore[arg-type]
    return path, None if ws.runs_dir in path.parents else ws.runs_dir / "onnx" / resolved.version


def load_model_backend(
    ws: Workspace, resolved: ResolvedModel, *, runtime: str | None = None, device: str | None = None,
    imgsz: int | tuple[int, int] | None = None, class_map: Sequence[str] | Mapping[str, str] | None = None,
    batch: int | None = None,
) -> Any:
    """The backend for a resolved model version, with the project's classes."""
    from .backends.ultralytics import load_backend

    if resolved.path is None:
        raise InputError(f"model version {resolved.version} has no weights (its predictions were imported)")
    cfg = ws.config.predict
    path, onnx_dir = _weights_and_onnx_dir(ws, resolved)
    return load_backend(
        path, classes=ws.classes, runtime=runtime or cfg.runtime, device=device or ws.config.train.device,
        imgsz=imgsz, class_map=class_map, batch=cfg.batch if batch is None else batch,
        tile=int(resolved.meta.get("tile") or 0) or None,  # trained on tiles: predicts by tiles
        onnx_dir=onnx_dir,
    )


def predict(
    ws: Workspace,
    *,
    model: str | Path | None = None,
    scope: str = "unlabeled",
    ids: Sequence[str] | None = None,
    conf: float | None = None,
    iou: float | None = None,
    runtime: str | None = None,
    device: str | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    class_map: Sequence[str] | Mapping[str, str] | None = None,
    rect: bool = True,
    backend: Any = None,
    progress: Progress | None = None,
    hflip: bool = False,
    engine: str | Any = "local",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    keep: str = "all",
    missing: bool = False,
) -> PredictReport:
    """Predict items (the unlabeled pool by default) and store, per item and model version,
    every box down to ``conf`` with class probabilities, and the image embedding. Re-running
    replaces, never duplicates. A ready ``backend`` may be passed (tests, the fake).

    With ``rect`` the network input fits the most common image size (long side ``imgsz``),
    as Ultralytics does: 320x240 images run at 256x320, not 320x320.

    ``engine``: ``local`` (this process) or ``ray`` (Ray Data on the cluster at
    ``ray_address``, ``ray_actors`` model replicas); results are the same and stream into
    the store in batches either way. ``keep="embeddings"`` stores only the embeddings
    (``boxloop embed``): the items keep their state. ``missing``: skip items this model
    version has already predicted (or embedded), so an interrupted pass resumes."""
    from .engine import PredictJob, get_engine
    from .sources.remote import is_remote

    check_numbers(imgsz=imgsz, batch=batch)
    if keep not in ("all", "embeddings"):
        raise InputError(f"keep must be 'all' or 'embeddings', got {keep!r}")
    eng = get_engine(engine, address=ray_address, actors=ray_actors) if isinstance(engine, str) else engine
    given_backend = backend is not None
    cfg = ws.config.predict
    conf = cfg.conf if conf is None else conf
    iou = cfg.iou if iou is None else iou
    batch = cfg.batch if batch is None else batch
    if not 0.0 <= conf < 1.0:
        raise InputError(f"--conf must be in [0, 1), got {conf}")
    items = _scope_items(ws, scope, ids)
    if backend is None:
        resolved = resolve_model(ws, model)
        shape: int | tuple[int, int] | None = imgsz
        meta = resolved.meta
        if meta.get("tile"):  # each window at the size the model was trained at
            shape = int(imgsz if imgsz is not None else meta.get("imgsz") or meta["tile"])
        elif rect and items:
            shape = _rect_input(items, int(imgsz if imgsz is not None else meta.get("imgsz") or ws.config.train.imgsz))
        # on Ray the driver loads the model on its CPU only to check it before the cluster starts
        backend = load_model_backend(
            ws, resolved, runtime=runtime, device="cpu" if eng.name != "local" else device, imgsz=shape,
            class_map=class_map, batch=batch,
        )
        version = resolved.version
    else:
        version = str(model or getattr(backend, "name", "backend"))
        if version not in {v["id"] for v in ws.store.model_versions()}:
            ws.store.add_model_version(version, backend=getattr(backend, "name", "backend"), classes=ws.classes)
    if list(backend.classes) != ws.classes:
        raise BackendError(f"backend classes {backend.classes} differ from the project's {ws.classes}")
    if hflip:
        # the consistency scorer compares these with the plain predictions: flipped image pixels
        from .selection import flipped_version

        version = flipped_version(version)
    if keep == "embeddings" and hflip:
        raise InputError("embeddings of mirrored images are not kept; drop --hflip")
    # the long side a picture has at the network input (object sizes are measured there); a model
    # predicting by tiles sees the picture's own pixels
    size = None if getattr(backend, "tile", None) else getattr(backend, "imgsz", None)
    inner = getattr(backend, "inner", backend)  # a tiled backend's own
    report = PredictReport(
        version, engine=eng.name, kept=keep, input_side=int(max(size)) if isinstance(size, (tuple, list)) else None,
        onnx=str(inner.weights) if hasattr(inner, "session") and hasattr(inner, "weights") else None,
    )
    if missing:
        done_ids = ws.store.done_item_ids(version, what="predictions" if keep == "all" else "embeddings")
        report.skipped = sum(1 for it in items if it.id in done_ids)
        items = [it for it in items if it.id not in done_ids]
    times: dict[str, float] = {}
    if hasattr(backend, "times"):
        backend.times.reset()
    t0 = time.perf_counter()
    preds: dict[str, Detections] = {}
    embs: dict[str, np.ndarray] = {}

    def save() -> None:
        with ws.store.transaction():
            if keep == "all":
                ws.store.put_predictions(version, preds)
            if embs:
                ws.store.put_embeddings(version, embs)
        preds.clear()
        embs.clear()

    sources = [(it.uri, (it.width, it.height), it.sha256) for it in items]
    remote = any(is_remote(it.uri) for it in items)
    from .shrink import SHRUNK_DIR

    job = PredictJob(
        _ReadyBackend(backend) if given_backend or eng.name == "local" else _ship(eng, backend, batch, class_map),
        conf=conf, iou=iou, batch=batch, hflip=hflip, workers=8 if remote else 2,
        # a large HEIC's or PNG's copy is kept in the workspace; Ray's workers may not share its disk
        copies=str(ws.root / SHRUNK_DIR) if eng.name == "local" else None,
    )
    done: set[str] = set()
    for i, pred, problem in eng.predict(
        job, sources, backend=backend if eng.name == "local" or given_backend else None, times=times
    ):
        item = items[i]
        if problem is not None:
            report.problems.add(item.uri, problem)
        elif item.id not in done:  # one result per item, even if an engine retried its batch
            done.add(item.id)
            preds[item.id] = pred.detections
            if pred.embedding is not None and not hflip:
                embs[item.id] = pred.embedding
            report.items += 1
            report.boxes += len(pred.detections)
            if len(preds) >= _CHUNK:
                save()
        if progress is not None:
            progress(1)
    save()
    report.seconds = time.perf_counter() - t0
    n = max(report.items, 1)
    report.ms_per_image = {"decode": 1000 * times.get("decode", 0.0) / n}
    if hasattr(backend, "times"):
        report.ms_per_image.update(backend.times.ms_per_image())
    return report


def labeled_to_embed(ws: Workspace, version: str) -> list[str]:
    """The labeled training images (train, val, unsplit; not test) without an embedding from
    ``version``: what the pool is compared with for diversity and novelty."""
    done = ws.store.done_item_ids(version, what="embeddings")
    return sorted(it.id for it in ws.store.items(state="labeled") if it.split != "test" and it.id not in done)


def embed_labeled(ws: Workspace, version: str, *, progress: Progress | None = None, **kwargs: Any) -> PredictReport:
    """Embed the labeled training images with model ``version`` (those it has not embedded yet),
    so that picks can be far from what is labeled (``--diverse``, ``novelty``, ``k_center``),
    not only from each other; each new model sees them anew. ``kwargs`` go to :func:`predict`
    (a ready ``backend``, ``engine``, ``device``, ...). The items keep their state."""
    ids = labeled_to_embed(ws, version)
    if not ids:
        return PredictReport(version, kept="embeddings")
    return predict(ws, model=version, ids=ids, keep="embeddings", progress=progress, **kwargs)


class _ReadyBackend:
    """The loader of a backend that is already loaded (the local engine, a given backend)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __call__(self) -> Any:
        return self.backend


def _ship(engine: Any, backend: Any, batch: int, class_map: Sequence[str] | Mapping[str, str] | None) -> Callable[[], Any]:
    """A loader of the checked backend's weights file for the engine's workers."""
    weights = Path(backend.weights)
    runtime = "onnx" if weights.suffix.lower() == ".onnx" else "torch"
    return engine.ship(  # type: ignore[no-any-return]
        weights, classes=list(backend.classes), runtime=runtime, imgsz=tuple(backend.imgsz),
        class_map=class_map, batch=batch, **({"tile": backend.tile} if getattr(backend, "tile", None) else {}),
    )


# -- evaluation -----------------------------------------------------------------------------------


def evaluate_model(
    ws: Workspace,
    *,
    model: str | Path | None = None,
    split: str = "test",
    conf: float | None = None,
    runtime: str | None = None,
    device: str | None = None,
    imgsz: int | None = None,
    class_map: Sequence[str] | Mapping[str, str] | None = None,
    backend: Any = None,
    progress: Progress | None = None,
) -> tuple[str, dict[str, Any]]:
    """COCO-style metrics of a model version on the frozen ``split`` (test), stored per
    version; returns (version, metrics). The model predicts the split at conf 0.001 first
    (stored too); imported predictions are evaluated as they are. ``metrics["prelabel"]``:
    the drawing its pre-labels would save there at each threshold, and the threshold that
    saves the most (:func:`boxloop.annotation.acceptance.prelabel_choice`), which push,
    export and serve use where [labelstudio] prelabel_conf is "auto"."""
    from .annotation.acceptance import prelabel_choice
    from .evaluate import WORKING_CONF, coco_metrics

    check_numbers(imgsz=imgsz)
    store = ws.store
    items = [it for it in store.items(split=split)]
    labels = store.latest_labels([it.id for it in items])
    items = [it for it in items if it.id in labels]
    if not items:
        raise InputError(_no_split_to_evaluate(ws, split, model))
    resolved = resolve_model(ws, model) if backend is None else None
    input_side: int | None = None
    if resolved is not None and resolved.path is None:
        version = resolved.version
        preds = store.predictions(version, [it.id for it in items])
    else:
        report = predict(
            ws, model=model, ids=[it.id for it in items], conf=EVAL_CONF, iou=0.7, runtime=runtime,
            device=device, imgsz=imgsz, class_map=class_map, backend=backend, progress=progress,
        )
        version = report.version
        input_side = report.input_side
        preds = store.predictions(version, [it.id for it in items])
    metrics = coco_metrics(
        labels, preds, classes=ws.classes, sizes={it.id: (it.width, it.height) for it in items},
        conf=WORKING_CONF if conf is None else conf, input_side=input_side,
    )
    metrics["split"] = split
    metrics["prelabel"] = prelabel_choice(preds, labels)
    store.put_evaluation(version, split, metrics)
    return version, metrics


def _no_split_to_evaluate(ws: Workspace, split: str, model: str | Path | None) -> str:
    """Why there is nothing to evaluate on, and the steps to a ``split`` that holds labeled
    images and a model to evaluate: a test split is drawn only from labeled images not in
    train/val yet (`boxloop split`), so labels may be the first step."""
    labeled = ws.store.items(state="labeled")
    unsplit = sum(1 for it in labeled if it.split is None)
    no_model = model is None and not any(v["path"] for v in ws.store.model_versions())
    then_train = ", then `boxloop train`" if no_model else ""
    make = "`boxloop split --test 0.1`" if split == "test" else "`boxloop split`"
    if not labeled:
        return f"no labeled images to evaluate on; add labels (`boxloop add labels PATH`), then {make}{then_train}"
    if unsplit >= (3 if split == "test" else 1):
        return f"no labeled images in the {split} split; make one with {make}{then_train}"
    return (
        f"no labeled images in the {split} split, and none can be made from the {len(labeled)} labeled images: "
        f"it is drawn only from labeled images not yet in {'train/val' if split == 'test' else 'a split'}; "
        f"add labels for more images (`boxloop add labels PATH`), then {make}{then_train}"
    )


# -- export ---------------------------------------------------------------------------------------


def export_model(
    ws: Workspace, *, model: str | Path | None = None, format: str = "onnx", imgsz: int | None = None,
    out: Path | None = None,
) -> Path:
    """Export a model version's weights (ONNX, with the embedding output); returns the file.
    Its input is the shape `predict` gives the workspace's pictures (the most common aspect
    of the pool, long side ``imgsz``), so ``boxloop predict --runtime onnx`` runs this very
    file: beside the weights, or for weights from elsewhere under runs/onnx/."""
    from .backends.onnx import export_onnx

    if format != "onnx":
        raise InputError(f"unknown export format {format!r}; known: onnx")
    check_numbers(imgsz=imgsz)
    resolved = resolve_model(ws, model)
    if resolved.path is None or resolved.path.suffix.lower() != ".pt":
        raise InputError(f"model version {resolved.version} has no .pt weights to export")
    tile = int(resolved.meta.get("tile") or 0) or None  # kept in the file: it predicts by tiles wherever it goes
    side = int(imgsz or resolved.meta.get("imgsz") or (tile or ws.config.train.imgsz))
    shape: int | tuple[int, int] = side
    pool = ws.store.items(state="unlabeled") or ws.store.items()
    if not tile and pool:  # the input `predict --runtime onnx` gives the pictures: it runs this very file
        shape = _rect_input(pool, side)
    path, cache = _weights_and_onnx_dir(ws, resolved)
    return export_onnx(path, imgsz=shape, out=out, tile=tile, cache_dir=cache)


# -- predictions from other detectors -------------------------------------------------------------


@dataclass
class ImportReport:
    """What ``add predictions`` did."""

    version: str
    items: int = 0
    boxes: int = 0
    problems: Problems = field(default_factory=Problems)

    def summary(self) -> str:
        text = f"{self.items} image(s), {self.boxes} box(es) of predictions stored as {self.version}"
        return text + (f", {len(self.problems)} problem(s)" if self.problems else "")


class _ItemNames:
    """Finds the item an image reference names: by file name, then stem (over every path the
    item was seen at, and its uri), then by item id. Where several items share the name (every
    video's frame_000012.jpg), the folders in the reference choose: ``8432092dfacf7e63/frame_000012``
    names the item seen at ``.../8432092dfacf7e63/frame_000012.jpg``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._index: tuple[dict[str, set[str]], dict[str, set[str]], dict[str, list[str]]] | None = None

    def _build(self) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, list[str]]]:
        if self._index is None:
            by_name: dict[str, set[str]] = {}
            by_stem: dict[str, set[str]] = {}
            seen_at: dict[str, list[str]] = {}
            rows = self.ws.store.conn.execute("SELECT item_id, path FROM item_sources").fetchall()
            pairs = [(r[0], r[1]) for r in rows] + [(it.id, it.uri) for it in self.ws.store.items()]
            for item_id, p in pairs:
                name = Path(p.split("?", 1)[0]).name
                by_name.setdefault(name, set()).add(item_id)
                by_stem.setdefault(Path(name).stem, set()).add(item_id)
                seen_at.setdefault(item_id, []).append(p)
            self._index = (by_name, by_stem, seen_at)
        return self._index

    def find(self, ref: str) -> tuple[str | None, str | None]:
        """(item id, problem). ``ref`` may carry folders (a path relative to where the
        predictions were written) that tell items of the same name apart."""
        from .ingest import closest_by_folders, image_ref_name

        by_name, by_stem, seen_at = self._build()
        name = image_ref_name(str(ref))
        ids = by_name.get(name) or by_stem.get(Path(name).stem) or by_stem.get(name) or set()
        if len(ids) > 1:
            ids = closest_by_folders({i: seen_at.get(i, []) for i in ids}, str(ref))
        if len(ids) == 1:
            return next(iter(ids)), None
        if len(ids) > 1:
            return None, (
                f"ambiguous image {ref!r}: {len(ids)} items named {name} (keep the folders the images "
                "are in, e.g. one per video under frames/, in the path)"
            )
        try:
            return self.ws.store.get_item(str(ref)).id, None
        except InputError:
            return None, f"no item in the workspace for image {ref!r}"


def _project_ids(names: Sequence[str], ws: Workspace, class_map: Mapping[str, str], source: str) -> np.ndarray:
    from .backends.ultralytics import class_matrix

    m = class_matrix(names, ws.classes, class_map, source=source)
    return np.arange(len(names)) if m is None else np.where(m.any(axis=1), m.argmax(axis=1), -1)


def _read_yolo_predictions(
    ws: Workspace, root: Path, class_map: Mapping[str, str], problems: Problems
) -> dict[str, Detections]:
    from .formats.yolo import CLASS_FILES, parse_class_names, read_yolo_labels

    files = [root] if root.is_file() else sorted(root.rglob("*.txt"))
    class_file = next((root / n for n in CLASS_FILES if root.is_dir() and (root / n).is_file()), None)
    if class_file is not None and class_file.name == "classes.txt":
        files = [f for f in files if f != class_file]
    names = parse_class_names(class_file) if class_file else ws.classes
    to_project = _project_ids(names, ws, class_map, str(class_file or root))
    out: dict[str, Detections] = {}
    finder = _ItemNames(ws)
    for f in files:
        item_id, problem = finder.find(f.relative_to(root).with_suffix("").as_posix() if f != root else f.stem)
        if problem:
            problems.add(f, problem)
            continue
        item = ws.store.get_item(item_id)  # type: ignore[arg-type]
        read = read_yolo_labels(
            f.read_text(encoding="utf-8-sig"), width=item.width, height=item.height,
            n_classes=len(names), source=str(f), with_confidence=True,
        )
        d = read.labels
        problems.extend(read.every_problem)
        if read.problems:  # a line that cannot be read may be a box: this image's predictions would lack it
            problems.add(f, "predictions skipped (this image keeps none of this version's) until the file is fixed")
            continue
        ids = to_project[d.class_id]
        kept = ids >= 0  # boxes of classes the project does not have are left out
        out[item.id] = Detections(d.xyxy[kept], ids[kept], None if d.confidence is None else d.confidence[kept])
    return out


def _read_coco_results(
    ws: Workspace, path: Path, coco_json: Path | None, class_map: Mapping[str, str], problems: Problems
) -> dict[str, Detections]:
    try:
        results = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(results, list):
        raise InputError(f"{path}: COCO results are a JSON list of {{image_id, category_id, bbox, score}}")
    image_names: dict[Any, str] = {}
    cat_names: dict[int, str] = {}
    if coco_json is not None:
        try:
            doc = json.loads(Path(coco_json).read_text(encoding="utf-8-sig"))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{coco_json}: cannot read the COCO dataset file: {e}") from e
        image_names = {im["id"]: im["file_name"] for im in doc.get("images", [])}
        cat_names = {int(c["id"]): str(c["name"]) for c in doc.get("categories", [])}
    names = [cat_names[k] for k in sorted(cat_names)] if cat_names else ws.classes
    to_project = _project_ids(names, ws, class_map, str(coco_json or path))
    cat_index = {k: i for i, k in enumerate(sorted(cat_names))} if cat_names else None
    rows: dict[str, list[tuple[list[float], int, float]]] = {}
    finder = _ItemNames(ws)
    item_of: dict[Any, tuple[str | None, str | None]] = {}
    for n, r in enumerate(results, start=1):
        where = f"{path}[{n - 1}]"
        try:
            image_id = r["image_id"]
            x, y, w, h = (float(v) for v in r["bbox"])
            score = float(r["score"])
            cat = int(r["category_id"])
        except (KeyError, TypeError, ValueError) as e:
            problems.add(where, f"not a COCO result (image_id, category_id, bbox, score): {e}")
            continue
        if image_id not in item_of:
            ref = image_names.get(image_id, image_id if isinstance(image_id, str) else None)
            item_of[image_id] = (
                finder.find(ref) if ref is not None
                else (None, f"image_id {image_id} needs --coco-json (the dataset file naming the images)")
            )
        item_id, problem = item_of[image_id]
        if problem:
            problems.add(where, problem)
            continue
        k = cat_index.get(cat) if cat_index is not None else cat
        if k is None or not 0 <= k < len(names):
            problems.add(where, f"unknown category_id {cat}")
            continue
        if to_project[k] < 0:
            continue  # a class the project does not have (class_matrix warned)
        rows.setdefault(item_id, []).append(([x, y, x + w, y + h], int(to_project[k]), score))  # type: ignore[arg-type]
    return {
        i: Detections(np.array([b for b, _, _ in r], np.float32), np.array([c for _, c, _ in r]),
                      np.array([s for _, _, s in r], np.float32))
        for i, r in rows.items()
    }


def add_predictions(
    ws: Workspace,
    path: str | Path,
    *,
    format: str = "yolo",
    model_version: str,
    coco_json: str | Path | None = None,
    class_map: Sequence[str] | Mapping[str, str] | None = None,
) -> ImportReport:
    """Store predictions made by another detector as model version ``model_version``:
    YOLO txt (``class cx cy w h conf`` per line, one file per image stem) or COCO results
    JSON. No class probabilities come with them; scorers fall back to the confidence."""
    from .backends.ultralytics import parse_class_map

    if format not in PREDICTION_FORMATS:
        raise InputError(f"unknown predictions format {format!r}; known: {', '.join(PREDICTION_FORMATS)}")
    if not model_version or not re.fullmatch(r"[A-Za-z0-9._:-]+", model_version):
        raise InputError(f"--model-version must be a name of letters, digits and ._:-, got {model_version!r}")
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    cmap = parse_class_map(class_map)
    report = ImportReport(model_version)
    if format == "yolo":
        preds = _read_yolo_predictions(ws, root, cmap, report.problems)
    else:
        preds = _read_coco_results(ws, root, Path(coco_json) if coco_json else None, cmap, report.problems)
    known = {v["id"]: v for v in ws.store.model_versions()}
    if model_version in known and known[model_version]["path"]:
        raise InputError(f"model version {model_version!r} is a trained model; choose another name")
    with ws.store.transaction():
        if model_version not in known:
            ws.store.add_model_version(
                model_version, backend=f"import:{format}", classes=ws.classes, meta={"source": str(root.absolute())}
            )
        ws.store.put_predictions(model_version, preds)
    report.items = len(preds)
    report.boxes = sum(len(d) for d in preds.values())
    return report

