"""Commands for the dataset: init, add images/labels/video, split, export, status."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError, Problems
from ..ingest import LABEL_FORMATS, IngestReport
from ..workspace import CONFIG_NAME, Workspace
from ._app import (
    StrictOpt,
    WorkspaceOpt,
    acceptance_table,
    add_app,
    app,
    check_out,
    console,
    open_workspace,
    progress_bar,
    report_problems,
)


def _finish(report: IngestReport, strict: bool) -> None:
    """The summary, notes and problems of an import; a path given that names nothing fails
    the command (exit 1) once the others are in."""
    console.print(report.summary())
    for note in report.notes:
        console.print(note)
    missing = set(report.not_found)
    others = Problems([p for p in report.problems if p.path not in missing])
    report_problems(others, strict=strict and not missing)
    if missing:
        named = [str(p) for p in report.problems if p.path in missing]
        tail = "; the other paths given were read" if report.added or report.known or others else ""
        raise InputError("\n".join(named) + tail)


@app.command("init")
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace (created if missing).")],
    classes: Annotated[str | None, typer.Option("--classes", help="Comma-separated class names, e.g. car,person.")] = None,
    classes_from: Annotated[
        Path | None, typer.Option("--classes-from", help="data.yaml, classes.txt or classmap.yaml to take class names from.")
    ] = None,
) -> None:
    """Create a workspace: boxloop.toml, the store, runs/ and exports/.

    Example: boxloop init lcd --classes-from ~/data/lcd/data.yaml
    """
    from ..formats.yolo import parse_class_names

    if (classes is None) == (classes_from is None):
        raise InputError("give exactly one of --classes a,b,c or --classes-from FILE")
    names = parse_class_names(classes_from) if classes_from else [c.strip() for c in classes.split(",") if c.strip()]  # type: ignore[union-attr]
    if (directory / CONFIG_NAME).is_file():
        _init_again(directory, names)
        return
    ws = Workspace.init(directory, names)
    console.print(f"workspace [bold]{escape(str(ws.root))}[/bold] with {len(names)} classes: {escape(_some(names, 20))}")
    console.print(f"next: boxloop -w {escape(str(directory))} add images PATH  (or add labels PATH --format yolo)")


def _init_again(directory: Path, names: list[str]) -> None:
    """`init` on a folder that is already a workspace: nothing changes when the classes are
    its own; classes given after its own are added; other classes are refused, briefly."""
    ws = Workspace.open(directory)
    have = ws.classes
    use = f"Use it: cd {directory} (or boxloop -w {directory} COMMAND)."
    if names == have:
        console.print(f"{escape(str(ws.root))} is already a boxloop workspace with these {len(have)} classes; "
                      f"nothing changed.\n{escape(use)}")
        return
    if names[: len(have)] == have:
        Workspace.init(directory, names)
        added = names[len(have):]
        console.print(f"{escape(str(ws.root))} is already a boxloop workspace; added {len(added)} class(es) after "
                      f"its {len(have)}: {escape(_some(added))}.\n{escape(use)}")
        return
    raise InputError(f"{ws.root} is already a boxloop workspace, with {len(have)} classes; "
                     f"{_class_difference(have, names)}.\nIts class list cannot change: classes can only be added "
                     f"(after its own, or with add labels --add-classes).\n{use}")


def _class_difference(have: list[str], given: list[str]) -> str:
    """How the classes given differ from a workspace's, in a few words."""
    i = next((k for k, (a, b) in enumerate(zip(have, given)) if a != b), min(len(have), len(given)))
    if i == len(given) < len(have):  # a beginning of the workspace's classes
        return f"the {len(given)} given are its first {len(given)}, and it has {_some(have[i:], 3)} besides"
    said = f"the {len(given)} given differ" + (f" from class {i} on" if i else "")
    if i < len(have) and i < len(given):
        return f"{said}: {have[i]!r} in the workspace, {given[i]!r} given"
    return f"{said}: the workspace's go on with {_some(have[i:], 3)}"


def _some(names: list[str], k: int = 5, *, total: bool = True) -> str:
    """The first ``k`` names, and (with ``total``) how many there are in all when some are left out."""
    if len(names) <= k:
        return ", ".join(names)
    return ", ".join(names[:k]) + (f", ... ({len(names)} in all)" if total else ", ...")


@add_app.command("images")
def add_images_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(help="Image files, folders (recursive), globs or .zip files; or URIs: s3://bucket/prefix/, "
                            "gs://..., az://..., https://..."),
    ],
    sequence: Annotated[
        bool, typer.Option("--sequence", help="Each folder is one ordered frame sequence (2.jpg before 10.jpg).")
    ] = False,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Add images to the pool (jpg, png, bmp, webp, tif, a phone's heic, avif, jp2); exact duplicates are kept once.

    Example: boxloop add images ~/photos/batch1 "~/photos/extra/*.jpg"
    Example: boxloop add images s3://my-bucket/frames/2024-05/
    """
    from ..ingest import add_images

    ws = open_workspace(workspace)
    with progress_bar("indexing images") as advance:
        report = add_images(ws, paths, sequence=sequence, progress=advance)
    _finish(report, strict)


@add_app.command("labels")
def add_labels_cmd(
    path: Annotated[
        str,
        typer.Argument(help="A YOLO/VOC folder, or a COCO / Label Studio JSON or CVAT XML file (or a folder of them, one "
                            "per split as Roboflow exports COCO); local or in a bucket (s3://...); or a .zip of any of "
                            "them, as an annotation tool exports it (unpacked under imports/)."),
    ],
    format: Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(LABEL_FORMATS)}.")] = "yolo",
    classes_from: Annotated[
        Path | None, typer.Option("--classes-from", help="Class names of YOLO ids (default: data.yaml/classes.txt/obj.names found under PATH).")
    ] = None,
    add_classes: Annotated[bool, typer.Option("--add-classes", help="Add class names the project does not have yet.")] = False,
    images: Annotated[
        str | None, typer.Option("--images", help="Folder (or bucket prefix, s3://...) to find the images a label file names; "
                                 "for CVAT for video, the video it annotates.")
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", metavar="SPLIT", help="Put the labeled images in a split: train, val, test, or "
                                 "folders (each image's train/, val/ (valid/) or test/ folder, as Ultralytics and Roboflow "
                                 "lay datasets out; else CVAT's subset, VOC's ImageSets/Main lists, or a COCO file's name as "
                                 "instances_val2017.json), to keep a dataset's own test split (without one, its train "
                                 "images are left for `boxloop split` to draw it from). Default: `boxloop split` decides.")
    ] = None,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import human labels and their images; each import is a new label version.

    Example: boxloop add labels ~/data/lcd --format yolo
    Example: boxloop add labels ~/Downloads/task_7-coco.zip --format coco
    Example: boxloop add labels annotations.xml --format cvat --images rowing.mp4   (CVAT for video)
    Example: boxloop add labels ~/Downloads/task_7-yolo.zip   (labels only: for the images a batch sent out)
    Example: boxloop add labels ~/data/roboflow-export --split folders   (keep its train/valid/test)
    """
    from ..ingest import add_labels

    ws = open_workspace(workspace)
    with progress_bar("importing labels") as advance:
        report = add_labels(
            ws, path, format=format, classes_from=classes_from, add_classes=add_classes, images=images, split=split,
            progress=advance,
        )
    _finish(report, strict)


@add_app.command("video")
def add_video_cmd(
    paths: Annotated[
        list[str], typer.Argument(help="Video files (mp4, mov, avi, mkv, ...), folders of them (recursive) or globs.")
    ],
    every: Annotated[int | None, typer.Option("--every", help="Keep every Nth frame.")] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Keep F frames per second.")] = None,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Decode frames of videos into the workspace, in order, for temporal scoring; each
    video is its own sequence. A video that cannot be read is reported and the rest go on;
    re-running decodes only what is missing.

    Example: boxloop add video rowing.mp4 --fps 2
    Example: boxloop add video ~/clips --every 10
    """
    from ..ingest import add_videos

    if every is not None and fps is not None:
        raise InputError("give --every N or --fps F, not both")
    ws = open_workspace(workspace)
    with progress_bar("decoding frames") as advance:
        report = add_videos(ws, paths, every=every, fps=fps, progress=advance)
    _finish(report, strict)


@app.command("split")
def split_cmd(
    val: Annotated[float, typer.Option("--val", help="Fraction of new labeled items for validation.")] = 0.2,
    test: Annotated[float, typer.Option("--test", help="Fraction for the test split (only when none exists yet).")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the shuffle.")] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what the split would be (and the test split's size) without writing it.")
    ] = False,
    redo: Annotated[
        bool, typer.Option("--redo", help="Deal every labeled image afresh, the test split too; only until a model is trained.")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Split labeled items into train/val/test (test is frozen once made; a video stays on one side).

    A test split too small to measure mAP on well (few boxes, or many classes without a box in
    it) is warned about; --dry-run shows it before it is frozen, and until a model is trained
    --redo deals the splits again.

    Example: boxloop split --val 0.2 --test 0.1 --seed 0
    Example: boxloop split --test 0.3 --dry-run
    Example: boxloop split --test 0.3 --redo
    """
    from ..split import assign_splits

    ws = open_workspace(workspace)
    report = assign_splits(ws.store, val=val, test=test, seed=seed, dry_run=dry_run, redo=redo)
    new = ", ".join(f"{n} {s}" for s, n in report.assigned.items() if n) or "nothing new"
    console.print(f"{'would assign' if dry_run else 'assigned'}: {new}")
    console.print("totals: " + ", ".join(f"{s} {n}" for s, n in report.totals.items()))
    if report.test_frozen and not redo:
        went = "would go" if dry_run else "went"
        console.print(f"the test split already existed and was kept (frozen); new labels {went} to train/val")
    elif test > 0 and not report.totals["test"] and not report.assigned["test"]:
        from ..split import trained_here

        trained = trained_here(ws.store)
        why = ("every labeled image is in train/val already"
               + (f", and model version(s) {', '.join(trained[:3])} trained on them" if trained else ""))
        way = ("the next labels you add make one (boxloop split --test again after add labels)" if trained
               else "boxloop split --test 0.2 --redo deals every labeled image afresh")
        console.print(f"[yellow]no test split made:[/yellow] {escape(why)}; {escape(way)}")
    if report.warning:
        console.print(f"[yellow]warning:[/yellow] {escape(report.warning)}")
    if dry_run:
        console.print("dry run: nothing was written")


@app.command("export")
def export_cmd(
    format: Annotated[str, typer.Option("--format", "-f", help="yolo, coco, voc, cvat or labelstudio.")] = "yolo",
    what: Annotated[
        str | None,
        typer.Option("--what", help="labeled, prelabeled (pool with predicted boxes) or all "
                     "(default: labeled; prelabeled with --selection).", show_default=False),
    ] = None,
    selection: Annotated[
        str | None,
        typer.Option("--selection", metavar="ID", help="Only the images of this selection (an id, or latest): "
                     "the batch `boxloop select` picked, for any annotation tool."),
    ] = None,
    under: Annotated[
        str | None,
        typer.Option("--from", metavar="PATH", help="Only images added from under this folder or bucket prefix "
                     "(a new batch, pre-labeled by the current model)."),
    ] = None,
    zip: Annotated[bool, typer.Option("--zip", help="Write one .zip instead of a folder.")] = False,
    with_model: Annotated[bool, typer.Option(
        "--with-model", help="Add the model's training run under model/ (weights, args.yaml, results.csv): the "
                             "pre-labels' model, else the newest."
    )] = False,
    with_imputed: Annotated[bool, typer.Option(
        "--with-imputed/--without-imputed",
        help="Pre-draw the boxes flicker scoring imputed on video frames (the model lost them there; listed in imputed.csv).",
    )] = True,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write (default: a folder in exports/ named by format, what and time).")] = None,
    model_version: Annotated[
        str | None,
        typer.Option("--model-version", "-m", help="Predictions to use for prelabels (default: the selection's model, else the newest)."),
    ] = None,
    conf: Annotated[float | None, typer.Option(
        "--conf", help='Lowest confidence of a predicted box in a prelabeled export (default: \\[labelstudio] prelabel_conf; "auto": the threshold `evaluate` found saves the most drawing, else 0.25).',
    )] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Export the dataset; written aside and renamed, so a failed export leaves no half file.

    Pre-labeled exports are remembered: labels brought back with `boxloop add labels` count
    what was accepted, adjusted, deleted and added.

    Example: boxloop export --format yolo --what prelabeled --selection latest --zip
    Example: boxloop export --what prelabeled --from ~/data/batch-7 --zip
    """
    from ..export import export_dataset
    from ..sources import absolute_path
    from ..sources.remote import is_remote

    check_out(out if out is None or not zip or out.suffix == ".zip" else out.with_suffix(".zip"), folder=not zip)
    ws = open_workspace(workspace)
    ids = None
    if selection is not None:
        sel = ws.store.selection(selection)
        ids = list(sel.item_ids)
        model_version = model_version or sel.model_version
        console.print(f"selection {escape(sel.id)}: {len(ids)} image(s)")
    if under is not None:
        if not is_remote(under) and (Path(under).expanduser().is_file() or any(c in under for c in "*?[")):
            raise InputError(f"--from {under}: a file or a pattern; --from takes the folder (or bucket prefix) the "
                             "images were added from (for some images alone: boxloop select, then --selection)")
        prefix = under if is_remote(under) else str(absolute_path(under))
        prefix = prefix.rstrip("/") + "/"
        found = [it.id for it in ws.store.items()  # (uris stored before paths were normalized may hold "..")
                 if (it.uri if is_remote(it.uri) else os.path.normpath(it.uri)).startswith(prefix)]
        if not found:
            raise InputError(f"{prefix}: no image of this workspace was added from under it")
        keep = set(found)
        ids = found if ids is None else [i for i in ids if i in keep]
        console.print(f"from {escape(prefix)}: {len(found)} image(s)")
    what = what or ("prelabeled" if selection is not None else "labeled")
    done = export_dataset(ws, format=format, what=what, zip=zip, out=out, model_version=model_version, conf=conf,
                          ids=ids, with_model=with_model, with_imputed=with_imputed, batch=selection is not None)
    path = done.path
    console.print(f"exported to [bold]{path}[/bold]")
    if done.unreadable:
        from ..export import unreadable_note

        console.print(f"[yellow]{escape(unreadable_note(done.unreadable))}[/yellow]")
    if done.gone:
        from ..export import gone_note

        console.print(f"[yellow]{escape(gone_note(done.gone))}[/yellow]")
    if done.prelabel_conf is not None:
        console.print(f"pre-labels: the boxes of model version {escape(str(done.model_version))} at confidence "
                      f">= {done.prelabel_conf:g}")
        newer = _newer_trained(ws, done.model_version)
        if newer:
            mine = set(ids) if ids is not None else ws.store.done_item_ids(str(done.model_version))
            if mine <= ws.store.done_item_ids(newer):
                console.print(f"note: model version {escape(newer)} is newer and predicted these images too: "
                              f"-m {escape(newer)} exports its pre-labels")
            else:
                console.print(f"[yellow]note:[/yellow] model version {escape(newer)} is newer but has not predicted "
                              "these images: boxloop predict, then export again, for its pre-labels")
    if done.prelabeled and done.batch:
        console.print(f"{done.prelabeled} image(s) are out for labeling: `boxloop select` leaves them out "
                      "until they come back")
    elif done.prelabeled:
        console.print(f"{done.prelabeled} image(s) went out pre-labeled and stay in the pool (no batch was "
                      "selected): label any of them and bring them back; a batch to label: --selection latest")
    if done.imputed_boxes:
        console.print(f"{done.imputed_boxes} box(es) the model lost on video frames are drawn in, imputed from the "
                      "neighbouring frames: imputed.csv lists them for checking")
    if format == "yolo" and not zip and what == "labeled":
        console.print(f"train with: yolo train data={path / 'data.yaml'}")
    elif what != "labeled":
        console.print(f"correct the boxes in any tool, then bring them back: boxloop add labels PATH --format {format}")


@app.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print it as one JSON object, for scripts and CI.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Items by state and split, boxes per class, model versions, training runs cut off, and
    the disk each of the workspace's folders takes.

    Example: boxloop status
    Example: boxloop status --json | jq .by_state.pool
    """
    from ..ledger import unfinished_round, where_it_stopped
    from ..status import STATE_HELP, disk_usage, next_step, training_runs, workspace_status

    ws = open_workspace(workspace)
    st = workspace_status(ws)
    if as_json:
        unfinished = unfinished_round(ws.store)
        doc = {
            "workspace": str(ws.root), **{k: v for k, v in st.items() if k not in ("model_versions", "acceptance")},
            "model_versions": [
                {"id": v, **{k: (ws.store.evaluation(v) or {}).get(k) for k in ("map50", "map50_95")}}
                for v in st["model_versions"]
            ],
            "acceptance": {("none" if rnd is None else str(rnd)): a for rnd, a in st["acceptance"].items()},
            "training_runs": training_runs(ws),
            "unfinished_round": None if unfinished is None else where_it_stopped(ws.store, unfinished),
            "disk_bytes": disk_usage(ws),
            "next": next_step(ws, st),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    console.print(f"[bold]{ws.root}[/bold]: {st['items']} images, round {st['round']}")
    t = Table(title="items by state")
    t.add_column("state")
    t.add_column("images", justify="right")
    t.add_column("meaning")
    for state, n in st["by_state"].items():
        t.add_row(state, str(n), STATE_HELP.get(state, ""))
    if st["out_for_review"]:
        t.add_row("labeled, out for review", str(st["out_for_review"]), "labels sent to be checked")
    console.print(t)
    t = Table(title="labeled items by split")
    t.add_column("split")
    t.add_column("images", justify="right")
    for split, n in st["by_split"].items():
        t.add_row(split, str(n))
    console.print(t)
    _print_boxes_per_class(st["boxes_per_class"])
    if st["acceptance"]:
        rows = [("-" if rnd is None else str(rnd), a) for rnd, a in st["acceptance"].items()]
        console.print(acceptance_table("pre-label acceptance per round", rows))
    videos = _videos_line(ws)
    if videos:
        console.print(videos)
    if st["model_versions"]:
        console.print("model versions: " + ", ".join(st["model_versions"]))
    runs = training_runs(ws)  # the disk and the runs only here: the report does not show them
    now = [name for name, state in runs.items() if state == "training now"]
    cut = [name for name, state in runs.items() if state == "cut off"]
    if now:
        console.print(f"training now: {', '.join(now)}")
    if cut:
        console.print(
            f"training runs cut off: {', '.join(cut)} (boxloop train with the same labels and "
            "settings goes on with one; boxloop prune drops them)"
        )
    empty = [name for name, state in runs.items() if state == "nothing saved"]
    if empty:
        console.print(f"training runs stopped before saving an epoch: {', '.join(empty)} (nothing to go on from; "
                      "boxloop prune drops them)")
    unfinished = unfinished_round(ws.store)
    if unfinished is not None:
        console.print(f"[yellow]{escape(where_it_stopped(ws.store, unfinished))}[/yellow]")
    disk = disk_usage(ws)
    tail = " (boxloop prune shows what can go)" if disk.get("runs") or disk.get("shrunk") or disk.get("tiles") else ""
    console.print("disk: " + ", ".join(f"{name} {_size(n)}" for name, n in disk.items() if n) + tail)
    console.print(f"next: {escape(next_step(ws, st))}")


def _videos_line(ws: Workspace, shown: int = 8) -> str | None:
    """The videos (and frame sequences) the workspace holds, with their frames and the folder
    under frames/ they were decoded into."""
    videos = ws.store.videos()
    if not videos:
        return None
    decoded = ws.root / "frames"

    def said(v: dict) -> str:
        parent = Path(v["uri"]).parent
        where = f", frames/{parent.name}/" if parent.parent == decoded else ""
        return f"{escape(v['name'])} ({v['frames']} frames{where})"

    parts = [said(v) for v in sorted(videos.values(), key=lambda v: v["name"])]
    more = f" and {len(parts) - shown} more" if len(parts) > shown else ""
    return f"videos: {', '.join(parts[:shown])}{more}"


def _newer_trained(ws: Workspace, version: str | None) -> str | None:
    """The newest trained model version made after ``version``, if any."""
    versions = ws.store.model_versions()
    made = {str(v["id"]): v["created_at"] for v in versions}
    trained = [v for v in versions if v["path"] and str(v["id"]) != version]
    if version is None or version not in made or not trained:
        return None
    newest = max(trained, key=lambda v: v["created_at"])
    return str(newest["id"]) if newest["created_at"] > made[version] else None


def _print_boxes_per_class(counts: dict[str, int]) -> None:
    """The classes that have boxes, a row each; those with none yet in one line."""
    boxed = [(i, name, n) for i, (name, n) in enumerate(counts.items()) if n]
    empty = [name for name, n in counts.items() if not n]
    if boxed:
        t = Table(title="boxes per class (newest human labels)")
        t.add_column("id", justify="right")
        t.add_column("class")
        t.add_column("boxes", justify="right")
        for i, name, n in boxed:
            t.add_row(str(i), escape(name), str(n))
        console.print(t)
    if empty:
        console.print(f"{len(empty)} class(es) with no box yet: {escape(_some(empty, 10, total=False))}")


@app.command("prune")
def prune_cmd(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove them (without it, only list them).")] = False,
    shrunk: Annotated[
        bool, typer.Option("--shrunk", help="Also the training copies of large pictures and the tiles (made again when next needed).")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Give disk back: checkpoints of finished runs, runs cut off, held-out audit models.

    A model version keeps its own weights; the held-out models are those of out-of-fold
    audits; with --shrunk the training copies and tiles go too. Never a picture, a label or a
    model version's weights. Lists them first.

    Example: boxloop prune && boxloop prune --yes
    """
    from ..prune import prunable, prune

    ws = open_workspace(workspace)
    found = prunable(ws, shrunk=shrunk)
    if not found:
        console.print("nothing to prune")
        return
    t = Table(title="what can go")
    t.add_column("path")
    t.add_column("why")
    t.add_column("size", justify="right")
    for p in found:
        t.add_row(escape(str(p.path.relative_to(ws.root))), escape(p.what), _size(p.bytes))
    console.print(t)
    total = sum(p.bytes for p in found)
    if not yes:
        console.print(f"{_size(total)} in {len(found)} place(s); nothing removed: boxloop prune --yes removes them")
        return
    console.print(f"removed {len(found)}, {_size(prune(ws, found))} given back")


def _size(n: int) -> str:
    """Bytes in the units `du -h` and file managers of this kind show: KiB, MiB, GiB (1024s)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
