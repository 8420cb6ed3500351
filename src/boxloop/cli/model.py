"""Commands for the model: train, predict, evaluate, export-model, add predictions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from ..workspace import Workspace
from ._app import (
    StrictOpt,
    WorkspaceOpt,
    add_app,
    app,
    check_epochs_or_steps,
    check_out,
    console,
    open_workspace,
    progress_bar,
    progress_disabled,
    report_problems,
)

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="A model version (m001) or a weights file (.pt/.onnx); default: the newest trained."),
]
RuntimeOpt = Annotated[
    str | None, typer.Option("--runtime", help="torch or onnx (default: \\[predict] runtime; .onnx files use onnx).")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, 0, 0,1 (default: \\[train] device).")]
ImgszOpt = Annotated[int | None, typer.Option(
    "--imgsz", help="Network input size, at least 32 (default: the size it was trained at)."
)]
ClassMapOpt = Annotated[
    list[str] | None,
    typer.Option("--class-map", help="Map a class name of the weights to the project's: old=new (repeatable); classes neither named alike nor mapped are not predicted."),
]
ItemsOpt = Annotated[str | None, typer.Option("--items", help="Comma-separated item ids instead of --scope.")]
PredictBatchOpt = Annotated[int | None, typer.Option(
    "--batch", help="Images per network call, at least 1 (default: \\[predict] batch)."
)]
EngineOpt = Annotated[
    str, typer.Option("--engine", help="Where the pass runs: local (this process) or ray (Ray Data on a Ray cluster).")
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="With --engine ray: auto (this machine's cluster) or ray://HOST:10001 (default: RAY_ADDRESS, else a local Ray)."),
]
RayActorsOpt = Annotated[
    int | None, typer.Option("--ray-actors", help="With --engine ray: model replicas (default: one per GPU, else one per CPU).")
]
MissingOpt = Annotated[
    bool, typer.Option("--missing", help="Skip items this model version has already done (resume an interrupted pass).")
]


def quiet_ray(engine: str) -> None:
    """With --engine ray, keep Ray's own INFO lines (cluster start, dataset plans) out of the
    output unless BOXLOOP_LOG asks for them."""
    import logging
    import os

    if engine != "ray" or os.environ.get("BOXLOOP_LOG", "").upper() in ("INFO", "DEBUG"):
        return
    try:
        import ray  # noqa: F401  (Ray sets up its loggers on import; quiet them after)
    except ImportError:
        return  # the engine says how to install it
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.command("train")
def train_cmd(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="A YOLO or RT-DETR detector: yolov8n.yaml / yolo11n.yaml / yolo26n.yaml / rtdetr-l.yaml (from scratch) or PATH.pt (transfer); default: \\[train] model."),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs, at least 1 (default: \\[train] epochs).")] = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", help="About this many optimizer steps instead of --epochs, at least 1 (the epochs follow the label count)."
    )] = None,
    imgsz: Annotated[int | None, typer.Option(
        "--imgsz", help="Training image size, at least 32 (default: \\[train] imgsz; with --tile: the tile's)."
    )] = None,
    tile: Annotated[int | None, typer.Option(
        "--tile", min=32,
        help="Train on TILE x TILE crops (at least 32) at full resolution, and predict window by window: for objects a few "
        "dozen pixels wide in large pictures (default: \\[train] tile, 0 = whole pictures).",
    )] = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", help="Batch size, at least 1 (default: \\[train] batch); Ultralytics' automatic batch size (-1) is "
        "not taken: the optimizer steps of an epoch follow the batch size.",
    )] = None,
    device: DeviceOpt = None,
    allow_missing_classes: Annotated[
        bool, typer.Option("--allow-missing-classes", help="Train even when a class has no labeled box.")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train a detector on every human label (train/val splits) and record a model version.

    Run again after an interruption, with the same labels and settings, it goes on from the
    last epoch saved.

    Example: boxloop train --model yolov8n.yaml --epochs 30 --imgsz 320
    Small objects in large photos: boxloop train --tile 640
    """
    from ..modeling import check_numbers, train

    check_epochs_or_steps(epochs, steps)
    check_numbers(epochs=epochs, steps=steps, imgsz=imgsz, batch=batch)
    ws = open_workspace(workspace)
    by_steps = steps is not None or (epochs is None and ws.config.train.steps > 0)
    total = None if by_steps else (ws.config.train.epochs if epochs is None else epochs)
    from ..loop import round_lock
    from ..split import assign_splits

    with round_lock(ws, doing="a training (boxloop train)"):
        labeled = ws.store.items(state="labeled")
        if labeled and not any(it.split for it in labeled):
            # the first training deals the splits: the test split too, as `boxloop round` does, or none could
            # ever be drawn from these labels (the model learns from every one of them)
            dealt = assign_splits(ws.store, val=0.2, test=0.1)
            console.print(f"no split yet: dealt train {dealt.totals['train']}, val {dealt.totals['val']}, test "
                          f"{dealt.totals['test']} (the test split is frozen: boxloop evaluate measures on it)")
            if dealt.warning:
                console.print(f"[yellow]warning:[/yellow] {escape(dealt.warning)}")
        with epochs_shown(total) as on_epoch:
            outcome = train(
                ws, model=model, epochs=epochs, steps=steps, imgsz=imgsz, batch=batch, device=device,
                allow_missing_classes=allow_missing_classes, on_epoch=on_epoch, tile=tile,
            )
    unit = "tiles" if (tile if tile is not None else ws.config.train.tile) else "images"
    console.print(
        f"model version [bold]{outcome.version}[/bold]: {outcome.train_images} train / "
        f"{outcome.val_images} val {unit}, weights {outcome.weights}"
    )
    m50 = outcome.metrics.get("metrics/mAP50(B)")
    if m50 is not None:
        console.print(f"val mAP50 {m50:.3f}, mAP50-95 {outcome.metrics.get('metrics/mAP50-95(B)', 0.0):.3f}")
    console.print(f"next: {after_training(ws)}")


@contextmanager
def epochs_shown(total: int | None) -> Iterator[Callable[[int, int], None]]:
    """Training's progress as an ``on_epoch(epoch, of)`` callback: a bar on a terminal, else a
    line an epoch ("train epoch 3/30"), as `boxloop round` says it, so a log or a pipe shows
    training is alive. A resumed run's first epoch is, say, 3."""
    if progress_disabled():

        def say(epoch: int, of: int) -> None:
            if epoch <= of:
                console.print(f"[dim]train epoch {epoch}/{of}[/dim]")

        yield say
        return
    with progress_bar("training (epochs)", total=total) as advance:
        done = [0]

        def on_epoch(epoch: int, _of: int) -> None:
            advance(epoch - done[0])
            done[0] = epoch

        yield on_epoch


def after_training(ws: Workspace) -> str:
    """The next steps once a model is trained; evaluating needs a test split first, drawn only
    from labeled images not yet in train/val (training put every labeled image in one)."""
    if any(it.split == "test" for it in ws.store.items(state="labeled")):
        return "boxloop predict  (pre-label the pool), boxloop evaluate"
    return ("boxloop predict  (pre-label the pool); to evaluate, a test split first, drawn only from labeled "
            "images not yet in train/val: add labels (boxloop add labels PATH), then boxloop split --test 0.1, "
            "then boxloop evaluate")


@app.command("predict", on_interrupt="what was predicted is kept: `boxloop predict --missing` (with the same "
             "options) goes on where it stopped")
def predict_cmd(
    model: ModelOpt = None,
    conf: Annotated[float | None, typer.Option("--conf", help="Keep boxes down to this confidence (default 0.01).")] = None,
    iou: Annotated[float | None, typer.Option("--iou", help="NMS IoU threshold.")] = None,
    scope: Annotated[
        str, typer.Option("--scope", help="Which items: unlabeled (the pool), all, labeled, train, val, test.")
    ] = "unlabeled",
    items: ItemsOpt = None,
    runtime: RuntimeOpt = None,
    device: DeviceOpt = None,
    imgsz: ImgszOpt = None,
    batch: PredictBatchOpt = None,
    class_map: ClassMapOpt = None,
    hflip: Annotated[
        bool, typer.Option("--hflip", help="Also predict the mirrored images (for the consistency scorer).")
    ] = False,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
    missing: MissingOpt = False,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Pre-label images: boxes, class probabilities and an embedding per image, stored per model version.

    Example: boxloop predict --conf 0.01 --runtime onnx
    Example: boxloop predict --engine ray --ray-address auto
    """
    from ..modeling import _scope_items, predict

    ws = open_workspace(workspace)
    ids = [i.strip() for i in items.split(",") if i.strip()] if items else None
    total = len(_scope_items(ws, scope, ids))
    quiet_ray(engine)
    on = {"engine": engine, "ray_address": ray_address, "ray_actors": ray_actors, "missing": missing}
    with progress_bar("predicting", total=total) as advance:
        report = predict(
            ws, model=model, scope=scope, ids=ids, conf=conf, iou=iou, runtime=runtime, device=device,
            imgsz=imgsz, batch=batch, class_map=class_map, progress=advance, **on,  # type: ignore[arg-type]
        )
    console.print(report.summary())
    if scope == "unlabeled" and ids is None:
        from ..modeling import embed_labeled, labeled_to_embed

        with progress_bar("embedding labeled images", total=len(labeled_to_embed(ws, report.version))) as advance:
            embedded = embed_labeled(
                ws, report.version, runtime=runtime, device=device, imgsz=imgsz, batch=batch, class_map=class_map,
                progress=advance, engine=engine, ray_address=ray_address, ray_actors=ray_actors,
            )
        if embedded.items or embedded.problems:
            console.print(f"labeled images (picks keep apart from them): {embedded.summary()}")
        report.problems.extend(embedded.problems)
    if hflip:
        with progress_bar("predicting mirrored images", total=total) as advance:
            flipped = predict(
                ws, model=model, scope=scope, ids=ids, conf=conf, iou=iou, runtime=runtime, device=device,
                imgsz=imgsz, batch=batch, class_map=class_map, progress=advance, hflip=True, **on,  # type: ignore[arg-type]
            )
        console.print(flipped.summary())
        report.problems.extend(flipped.problems)
    nothing_read = total > report.skipped and report.items == 0 and len(report.problems) > 0
    report_problems(report.problems, strict=strict and not nothing_read)
    if nothing_read:  # an endpoint down, a folder unmounted: a failure, not a batch with some bad images
        raise InputError(f"none of the {total - report.skipped} image(s) could be read: nothing predicted "
                         "(the problems above say why); once they can, boxloop predict --missing")


@app.command("evaluate")
def evaluate_cmd(
    model: ModelOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split to evaluate on (the frozen test split by default).")] = "test",
    conf: Annotated[
        float | None, typer.Option("--conf", help="Working threshold for precision/recall (default 0.25).")
    ] = None,
    runtime: RuntimeOpt = None,
    device: DeviceOpt = None,
    imgsz: ImgszOpt = None,
    class_map: ClassMapOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """COCO-style mAP@0.5, mAP@0.5:0.95, per-class AP, precision/recall on the test split.

    Example: boxloop evaluate --model m002
    """
    import json

    from ..evaluate import few_boxes_note, listed_classes, size_advice, unlisted_classes_line
    from ..modeling import evaluate_model

    ws = open_workspace(workspace)
    version, metrics = evaluate_model(
        ws, model=model, split=split, conf=conf, runtime=runtime, device=device, imgsz=imgsz, class_map=class_map,
    )
    if json_out:
        console.print_json(json.dumps({"model_version": version, **metrics}))
        return
    console.print(
        f"[bold]{version}[/bold] on {split} ({metrics['images']} images, {metrics['labels']} boxes): "
        f"mAP50 {metrics['map50']:.3f}  mAP50-95 {metrics['map50_95']:.3f}  "
        f"precision {metrics['precision']:.3f}  recall {metrics['recall']:.3f} at conf {metrics['conf']:g}"
    )
    noisy = few_boxes_note(metrics)
    if noisy:
        console.print(f"[yellow]{noisy}[/yellow]")
    console.print(class_table(metrics))
    unlisted = unlisted_classes_line(listed_classes(metrics)[1], split, metrics["conf"])
    if unlisted:
        console.print(escape(unlisted))
    sizes = metrics.get("by_size") or {}
    if any(v["labels"] for v in sizes.values()):
        console.print(
            f"by object size, in {metrics['size_unit']}: " + "  ".join(
                f"{name} {'-' if v['map50_95'] is None else format(v['map50_95'], '.3f')} ({v['labels']} boxes)"
                for name, v in sizes.items()
            ) + "   (mAP50-95; small < 32 px a side, medium < 96)"
        )
        hint = size_advice(metrics)
        if hint:
            console.print(f"[yellow]{hint}[/yellow]")
    line = prelabel_line(metrics.get("prelabel"), ws.config.labelstudio.prelabel_conf)
    if line:
        console.print(line)


def class_table(metrics: dict[str, Any]) -> Table:
    """An evaluation's row a class, for the classes with a box in the split or predicted
    there: labeled boxes, boxes predicted at the working threshold, AP50 and AP50-95."""
    from ..evaluate import listed_classes

    predicted = metrics.get("per_class_predictions") or {}
    table = Table("class", "labels", f"predicted\nconf >= {metrics['conf']:g}", "AP50", "AP50-95")
    for name in listed_classes(metrics)[0]:
        ap, ap50 = metrics["per_class_ap"][name], metrics["per_class_ap50"][name]
        table.add_row(
            escape(name), str(metrics["per_class_labels"][name]), str(predicted.get(name, "-")),
            "-" if ap50 is None else f"{ap50:.3f}", "-" if ap is None else f"{ap:.3f}",
        )
    return table


def prelabel_line(choice: Any, setting: str) -> str | None:
    """What an evaluation says of its model's pre-labels, in a sentence: the drawing they
    would save per image at the threshold in use and at the best one."""
    from ..annotation.acceptance import (
        DEFAULT_PRELABEL_CONF,
        MIN_PRELABEL_BOXES,
        prelabel_threshold,
    )

    if not choice or not choice.get("seconds_per_image"):
        return None
    saved = {float(t): v for t, v in choice["seconds_per_image"].items()}
    used = prelabel_threshold(setting, {"prelabel": choice})
    auto = str(setting) == "auto"

    def at(t: float) -> str:
        v = saved.get(round(t, 2))
        return f"{v:+.1f} s" if v is not None else "not measured"

    head = f"pre-labels: at confidence >= {used:g} they would save {at(used)} of drawing an image here"
    if choice.get("conf") is None:
        return (f"{head}; {choice.get('boxes', 0)} labeled boxes are too few (< {MIN_PRELABEL_BOXES}) to choose a "
                f"threshold by, so {DEFAULT_PRELABEL_CONF:g} is used")
    best = float(choice["conf"])
    if auto and best >= 1.0:
        return ("pre-labels: at every threshold they would cost more drawing than they save here, so push, export "
                "and serve show (next to) none (\\[labelstudio] prelabel_conf = \"auto\"); the next model may earn some")
    if auto:
        return f"{head}, the most of any threshold: push, export and serve use it (\\[labelstudio] prelabel_conf = \"auto\")"
    if best == used or saved.get(round(used, 2), float("-inf")) >= saved[best]:
        return f"{head}, the most of any threshold"
    return (f"{head} (\\[labelstudio] prelabel_conf = {setting}); at {best:g} {at(best)}, the most "
            f"(prelabel_conf = \"auto\" uses it)")


@app.command("export-model")
def export_model_cmd(
    model: ModelOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="Export format: onnx.")] = "onnx",
    imgsz: ImgszOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: beside the weights).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Export a model version to ONNX (pre-NMS head output plus the embedding), for `predict --runtime onnx`.

    Example: boxloop export-model --format onnx --imgsz 320
    """
    from ..modeling import export_model, resolve_model

    check_out(out)
    ws = open_workspace(workspace)
    path = export_model(ws, model=model, format=format, imgsz=imgsz, out=out)
    console.print(f"wrote {path}")
    resolved = resolve_model(ws, model)  # the version the export used (a file: found by its content hash)
    tile = resolved.meta.get("tile")
    if tile:
        console.print(f"trained on tiles of {tile}: the file says so, and predicts window by window wherever it goes")
    console.print(f"predict with it: boxloop predict --model {escape(str(path))} (here, --runtime onnx runs it for "
                  f"{escape(resolved.version)})")


@add_app.command("predictions")
def add_predictions_cmd(
    path: Annotated[Path, typer.Argument(help="A folder of YOLO txt files (class cx cy w h conf), named by image (video "
                                              "frames: one subfolder per video, as under frames/), or a COCO results JSON.")],
    format: Annotated[str, typer.Option("--format", "-f", help="yolo or coco-results.")] = "yolo",
    model_version: Annotated[str, typer.Option("--model-version", help="Name to store these predictions under.")] = ...,  # type: ignore[assignment]
    coco_json: Annotated[
        Path | None, typer.Option("--coco-json", help="COCO dataset file naming the images and categories of the results.")
    ] = None,
    class_map: ClassMapOpt = None,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Bring in predictions from any other detector (MMDetection, TF, ...) for scoring and pre-labels.

    Example: boxloop add predictions results.json --format coco-results --coco-json val.json --model-version mmdet-1
    """
    from ..modeling import add_predictions

    ws = open_workspace(workspace)
    report = add_predictions(
        ws, path, format=format, model_version=model_version, coco_json=coco_json, class_map=class_map
    )
    console.print(report.summary())
    report_problems(report.problems, strict=strict)
