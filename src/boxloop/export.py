"""Write the dataset out: YOLO (Ultralytics layout), COCO, Pascal VOC, CVAT, Label Studio
tasks; labeled, pre-labeled (the zip people upload to an annotator) or all.

Every export is written aside and renamed into place: a failed export leaves no half file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import unicodedata
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from .atomic import temporary_beside
from .errors import InputError
from .formats import ImageLabels
from .formats.labelstudio import IMPUTED_NOTE
from .formats.yolo import format_yolo_labels, yolo_data_yaml
from .sources.images import JPEG_SUFFIXES, suffix_of
from .split import assign_splits
from .types import Detections, Item
from .workspace import Workspace

__all__ = ["EXPORT_FORMATS", "EXPORT_WHAT", "Exported", "export", "export_dataset", "gone_note", "safe_names",
           "write_yolo_dataset"]

log = logging.getLogger(__name__)
EXPORT_FORMATS = ("yolo", "coco", "voc", "cvat", "labelstudio")
EXPORT_WHAT = ("labeled", "prelabeled", "all")
CVAT_SUBSETS = {"train": "Train", "val": "Validation", "test": "Test"}  # CVAT's own subset names


# the picture kinds an export hands over as they are: what other tools (annotation tools in a
# browser, OpenCV-based trainers) read. A phone's HEIC, an AVIF or a JPEG 2000 goes out as a
# JPEG of the picture as displayed; a JPEG saved as .jfif (Windows) as .jpg, its bytes unchanged.
OTHER_TOOLS_READ = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def safe_names(
    items: Sequence[Item], readable: frozenset[str] = OTHER_TOOLS_READ, videos: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A unique, portable file name per item: ASCII letters, digits, ``._-`` only, the
    original stem kept where possible, the item id appended on a clash; a video frame's name
    starts with its video's (``videos``: video id → name; ``clipA_frame_000010.jpg``, where every
    video has a ``frame_000010.jpg``). A picture whose kind is not ``readable`` (the suffixes
    the reader takes) is named ``.jpg``: :func:`_place_item` then writes a JPEG of it."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for it in items:
        name = it.name.split("?", 1)[0]
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, "jpg"
        if videos and it.video_id in videos:
            stem = f"{PurePosixPath(videos[it.video_id]).stem}_{stem}"
        suffix = suffix.lower()
        if f".{suffix}" in JPEG_SUFFIXES - {".jpeg"}:  # a .jfif or .jpe is named .jpg; .jpeg stays
            suffix = "jpg"
        if f".{suffix}" not in readable:
            suffix = "jpg"
        ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
        clean = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_stem).strip("._") or "image"
        candidate = f"{clean}.{suffix}"
        if candidate.lower() in taken:
            candidate = f"{clean}_{it.id[:8]}.{suffix}"
        taken.add(candidate.lower())
        out[it.id] = candidate
    return out


@contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    """Build a folder aside and move it to ``dest`` when complete (replacing an old one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(dest)
    tmp.mkdir()  # not mkdtemp: the export is for others to read (0700 is not)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{time.time_ns()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _place_item(it: Item, dst: Path, *, link: bool) -> None:
    """Put an item's image at ``dst``: an image in a bucket (``s3://...``) is always a copy,
    read through the content-hash cache; a local file as :func:`_place_image` puts it. A
    ``.jpg`` destination for a picture of another kind (a HEIC) is a JPEG of it as displayed."""
    from .sources.remote import fetch, is_remote

    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".jpg" and suffix_of(it.uri) not in JPEG_SUFFIXES:
        from PIL import Image

        from .sources.images import load_image

        Image.fromarray(load_image(it.uri, sha256=it.sha256)).save(dst, format="JPEG", quality=95)
        return
    if is_remote(it.uri):
        dst.write_bytes(fetch(it.uri, sha256=it.sha256))
        return
    _place_image(it.uri, dst, link=link)


def _place_image(src: str, dst: Path, *, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.symlink(os.path.abspath(src), dst)
            return
        except OSError:
            log.debug("symlink failed for %s, copying", src)
    shutil.copy2(src, dst)


@dataclass(frozen=True)
class _Chosen:
    """What an export writes: the items, their boxes, which are human labels, the model
    version the pre-labels come from, and each item's file name."""

    items: list[Item]
    boxes: dict[str, Detections]
    human: dict[str, bool]
    model_version: str | None
    names: dict[str, str]
    imputed: dict[str, Detections]
    prelabel_conf: float | None = None  # the pre-labels' threshold
    gone: tuple[str, ...] = ()  # the pictures left out: their file is no longer where it was added from


def _on_disk(items: Sequence[Item]) -> tuple[list[Item], tuple[str, ...]]:
    """The items whose picture is there (a local file that exists, or an image in a bucket),
    and the paths of the local files gone since they were added (moved or deleted)."""
    from .sources.remote import is_remote

    kept: list[Item] = []
    gone: list[str] = []
    for it in items:
        if is_remote(it.uri) or os.path.exists(it.uri):
            kept.append(it)
        else:
            gone.append(it.uri)
    return kept, tuple(gone)


def gone_note(gone: Sequence[str], what: str = "image(s)") -> str:
    """``2 image(s) left out: their file is gone ...``, naming the first few."""
    shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
    return (f"{len(gone)} {what} left out: their file is no longer where it was added from (moved or deleted): "
            f"{shown}; put the files back there to use them again")


def _choose(
    ws: Workspace, what: str, model_version: str | None, conf: float | None, ids: Sequence[str] | None = None,
    *, with_imputed: bool = True,
) -> _Chosen:
    """Items to export (all, or those of ``ids``) with their boxes, read from the store once.
    A flickering frame's pre-labels include the box flicker imputed there (``with_imputed``);
    they are the boxes at or above ``conf``, by default [labelstudio] prelabel_conf (with
    "auto", the threshold the model version's evaluation chose)."""
    store = ws.store
    mv = model_version
    labels = store.latest_labels() if what in ("labeled", "all") else {}
    preds: dict[str, Detections] = {}
    imputed: dict[str, Detections] = {}
    if what in ("prelabeled", "all"):
        versions = store.predicted_versions()
        mv = model_version or (versions[0] if versions else None)
        if mv is None and what == "prelabeled":
            from .modeling import way_to_predictions

            raise InputError(f"no predictions yet; {way_to_predictions(store)} before a prelabeled export")
        if mv is not None:
            if conf is None:
                conf = ws.prelabel_conf(mv)
            # a labeled image is never pre-labeled again: brought back unchanged, the model's boxes
            # would become its newest label, over the human one
            labeled = set(labels) if what == "all" else {it.id for it in store.items(state="labeled")}
            for item_id, d in store.predictions(mv).items():
                if item_id not in labeled and d.confidence is not None:
                    preds[item_id] = d[d.confidence >= conf]
            if with_imputed:
                imputed = store.imputed(mv, list(preds))
                for item_id, extra in imputed.items():
                    preds[item_id] = Detections.concat([preds[item_id], extra])
    if what == "labeled":
        items = store.items(ids=list(labels)) if labels else []
    elif what == "prelabeled":
        items = store.items(ids=list(preds)) if preds else []
    else:
        items = store.items()
    if ids is not None:
        keep = set(ids)
        items = [it for it in items if it.id in keep]
    items, gone = _on_disk(items)
    if not items and gone:
        raise InputError(f"nothing to export for --what {what}: {gone_note(gone)}")
    if not items:
        if ids is not None:
            raise InputError(
                f"nothing to export for --what {what} among the {len(ids)} image(s) asked for"
                + (f": each is labeled already or has no predictions from model version {mv}" if what == "prelabeled" else "")
            )
        raise InputError(
            f"nothing to export for --what {what}: "
            + ("no labeled images yet (boxloop add labels ...)" if what != "prelabeled" else "no pre-labeled images")
        )
    boxes = {it.id: labels.get(it.id, preds.get(it.id)) for it in items}
    boxes = {k: v for k, v in boxes.items() if v is not None}
    exported = {it.id for it in items}
    videos = store.video_names() if any(it.video_id for it in items) else {}
    return _Chosen(items, boxes, {it.id: it.id in labels for it in items}, mv, safe_names(items, videos=videos),
                   {i: d for i, d in imputed.items() if i in exported}, conf if preds else None, gone)


def write_yolo_dataset(
    ws: Workspace,
    dest: Path,
    *,
    what: str = "labeled",
    link: bool = True,
    splits: Sequence[str] = ("train", "val", "test"),
    model_version: str | None = None,
    conf: float | None = None,
    ids: Sequence[str] | None = None,
    readable: frozenset[str] | None = None,
    shrink_to: int | None = None,
    tile: int | None = None,
    stretch: bool = False,
) -> Path:
    """Write an Ultralytics dataset (``images/<split>/``, ``labels/<split>/``, data.yaml)
    and return the data.yaml path; ``yolo train data=<it>`` accepts it unchanged.

    Labeled items without a split get train/val first. Images are symlinked with ``link``
    (a training view) or copied (an export); a picture whose suffix is not in ``readable``
    (what the trainer reads; by default what other tools read) is written as a JPEG of it.
    With ``shrink_to`` (the training size) a picture twice that or more is a training copy
    (:func:`boxloop.shrink.shrunk_copies`; with ``stretch``, for an RT-DETR, measured on its
    short side). With ``tile`` (labeled views only) the view holds the pictures' tiles, each
    with the labels it shows (:func:`boxloop.tiles.tile_training_set`).
    Pre-labeled exports are flat (``images/``, ``labels/``, ``classmap.yaml``): the zip people
    upload to an annotator."""
    if what == "labeled":
        assign_splits(ws.store, val=0.2, test=0.0)
    chosen = _choose(ws, what, model_version, conf, ids)
    if chosen.gone:  # a training view: said where the run's output goes, the log
        log.warning("%s", gone_note(chosen.gone, "labeled image(s)" if what == "labeled" else "image(s)"))
    if readable is not None:
        videos = ws.store.video_names() if any(it.video_id for it in chosen.items) else {}
        chosen = replace(chosen, names=safe_names(chosen.items, readable, videos))
    sources: dict[str, Path] = {}
    if tile and what == "labeled":
        from .tiles import TILES_DIR, tile_training_set

        kept = [it for it in chosen.items if (it.split or "train") in splits]
        tiles, tile_boxes, tile_names = tile_training_set(ws.root / TILES_DIR, kept, chosen.boxes, chosen.names, tile)
        chosen = replace(chosen, items=tiles, boxes=tile_boxes, human=dict.fromkeys(tile_boxes, True), names=tile_names,
                         imputed={})
    elif shrink_to:
        from .shrink import shrunk_copies

        kept = [it for it in chosen.items if what != "labeled" or (it.split or "train") in splits]
        sources = shrunk_copies(ws, kept, chosen.names, shrink_to, stretch=stretch)
    return _write_yolo(ws, dest, chosen, what=what, link=link, splits=splits, sources=sources)


def _write_yolo(
    ws: Workspace, dest: Path, chosen: _Chosen, *, what: str, link: bool, splits: Sequence[str] = ("train", "val", "test"),
    zipped: bool = False, sources: Mapping[str, Path] | None = None,
) -> Path:
    """``sources``: item id → the file to place instead of its own picture (a training copy)."""
    items, boxes, names = chosen.items, chosen.boxes, chosen.names
    sources = sources or {}
    classes = ws.classes
    by_split: dict[str, int] = {}
    with _atomic_dir(dest) as tmp:
        for it in items:
            sub = (it.split or "train") if what == "labeled" else ""
            if what == "labeled" and sub not in splits:
                continue
            by_split[sub] = by_split.get(sub, 0) + 1
            if it.id in sources:
                _place_image(str(sources[it.id]), tmp / "images" / sub / names[it.id], link=link)
            else:
                _place_item(it, tmp / "images" / sub / names[it.id], link=link)
            if it.id in boxes:
                text = format_yolo_labels(boxes[it.id], width=it.width, height=it.height)
                label = (tmp / "labels" / sub / names[it.id]).with_suffix(".txt")
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(text, encoding="utf-8")
        if what == "labeled":
            split_paths = {s: f"images/{s}" for s in ("train", "val", "test") if by_split.get(s)}
            split_paths.setdefault("train", "images/train")
            split_paths.setdefault("val", split_paths["train"])
        else:
            split_paths = {"train": "images", "val": "images"}
        (tmp / "data.yaml").write_text(yolo_data_yaml(None if zipped else dest, classes, split_paths), encoding="utf-8")
        if what != "labeled":
            import yaml

            (tmp / "classmap.yaml").write_text(
                yaml.safe_dump({i: n for i, n in enumerate(classes)}, allow_unicode=True), encoding="utf-8"
            )
    return dest / "data.yaml"


def _records(items: Sequence[Item], boxes: dict[str, Detections], names: dict[str, str], classes: list[str], prefix: str) -> list[ImageLabels]:
    out = []
    for it in items:
        d = boxes.get(it.id, Detections.empty())
        out.append(
            ImageLabels(
                file_name=f"{prefix}{names[it.id]}",
                width=it.width,
                height=it.height,
                xyxy=d.xyxy,
                class_names=tuple(classes[c] for c in d.class_id),
                scores=d.confidence,
                extra={"subset": CVAT_SUBSETS[it.split]} if it.split else {},
            )
        )
    return out


@dataclass(frozen=True)
class Exported:
    """Where an export went, how many imputed boxes its pre-labels hold, the threshold they
    were cut at (None without pre-labels), how many images went out pre-labeled, and whether
    as a batch out for labeling (held out of selections until it comes back)."""

    path: Path
    imputed_boxes: int
    prelabel_conf: float | None = None
    prelabeled: int = 0
    batch: bool = False
    gone: tuple[str, ...] = ()  # pictures left out: their file is gone
    model_version: str | None = None  # whose boxes the pre-labels are
    unreadable: tuple[str, ...] = ()  # pictures in a bucket left out, each "uri: why" (changed, unreachable)


def _readable_in_buckets(chosen: _Chosen) -> tuple[_Chosen, tuple[str, ...]]:
    """``chosen`` without the pictures in a bucket that cannot be read as they were added (the
    object changed or went, the endpoint is down), and those, each "uri: why". Read once now
    (into the image cache the export then reads from): one such picture once failed the whole
    export."""
    from .sources.remote import fetch, is_remote

    bad: list[str] = []
    for it in chosen.items:
        if is_remote(it.uri):
            try:
                fetch(it.uri, sha256=it.sha256)
            except InputError as e:
                bad.append(str(e))
    if not bad:
        return chosen, ()
    left = {msg.split(": ", 1)[0] for msg in bad}
    return replace(chosen, items=[it for it in chosen.items if it.uri not in left]), tuple(bad)


def unreadable_note(unreadable: Sequence[str]) -> str:
    """``2 image(s) in a bucket left out: they cannot be read as they were added (...)``."""
    more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
    return f"{len(unreadable)} image(s) in a bucket left out: they cannot be read as they were added: {unreadable[0]}{more}"


def export(ws: Workspace, **kwargs: Any) -> Path:
    """The folder (or .zip) :func:`export_dataset` wrote."""
    return export_dataset(ws, **kwargs).path


def export_dataset(
    ws: Workspace,
    *,
    format: str = "yolo",
    what: str = "labeled",
    zip: bool = False,
    out: Path | None = None,
    model_version: str | None = None,
    conf: float | None = None,
    ids: Sequence[str] | None = None,
    with_model: bool = False,
    with_imputed: bool = True,
    batch: bool = False,
) -> Exported:
    """Export the workspace's dataset (or only the items ``ids``, e.g. a selection) to a
    folder (or .zip) under exports/. ``with_model`` adds the training run of the
    model whose boxes a pre-labeled export holds (the newest model for labeled ones) under
    ``model/``: weights, args.yaml, results.csv. ``with_imputed``: a flickering video frame's
    pre-labels include the box the model lost there, imputed from its neighbours (as `push`
    sends it; a YOLO file cannot flag it, so ``imputed.csv`` beside data.yaml lists them).
    The images that go out pre-labeled are a ``batch`` out for labeling (a selection's, a
    round's), which ``select`` leaves out until they come back, or else only offered (the
    whole pool pre-labeled): they stay in the pool. Either way labels brought back count what
    people did with the pre-labels."""
    if format not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {format!r}; known: {', '.join(EXPORT_FORMATS)}")
    if what not in EXPORT_WHAT:
        raise InputError(f"unknown --what {what!r}; known: {', '.join(EXPORT_WHAT)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = _checked_out(ws, Path(out), zip=zip) if out else ws.exports_dir / f"{format}-{what}-{stamp}"
    archive = dest.with_suffix(".zip") if zip and dest.suffix != ".zip" else dest
    if zip:  # the folder zipped is built aside, never at the zip's name less .zip (a folder of that name stays)
        dest = archive.with_name(f".{archive.stem}.{os.getpid()}.{time.time_ns()}.build")
    chosen = _choose(ws, what, model_version, conf, ids, with_imputed=with_imputed)
    chosen, unreadable = _readable_in_buckets(chosen)
    if not chosen.items:
        raise InputError(f"nothing to export: {unreadable_note(unreadable)}")
    if what == "labeled":
        # images with no split yet go to train/val folders as a split would deal them, but the store
        # keeps none of it: an export only looks, and a test split is still to be made (`boxloop split`)
        dealt = assign_splits(ws.store, val=0.2, test=0.0, dry_run=True).assignments
        chosen = replace(chosen, items=[it if it.split else replace(it, split=dealt.get(it.id)) for it in chosen.items])
    run = _model_run(ws, chosen.model_version or model_version) if with_model else []
    if format == "yolo":
        _write_yolo(ws, dest, chosen, what=what, link=False, zipped=zip)
    else:
        _export_other(ws, dest, chosen, format=format)
    if chosen.imputed:
        _write_imputed_list(dest / "imputed.csv", chosen, ws.classes)
    if run:
        (dest / "model").mkdir(exist_ok=True)
        for f in run:
            shutil.copy2(f, dest / "model" / f.name)
    prelabeled = 0
    if what in ("prelabeled", "all"):
        prelabeled = _record_prelabels(ws, archive.name, chosen, batch=batch)
    done = Exported(
        dest, sum(len(d) for d in chosen.imputed.values()), chosen.prelabel_conf, prelabeled, batch, chosen.gone,
        chosen.model_version if prelabeled else None, unreadable,
    )
    if not zip:
        (dest / EXPORT_MARK).write_text(json.dumps({"workspace": str(ws.root), "format": format, "what": what}) + "\n")
        return done
    tmp = temporary_beside(archive)  # not mkstemp: the zip is for others to read (0600 is not)
    try:
        with zipfile.ZipFile(tmp, "x", zipfile.ZIP_DEFLATED) as z:
            z.comment = ZIP_COMMENT
            for f in sorted(dest.rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(dest).as_posix())
        os.replace(tmp, archive)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return replace(done, path=archive)


EXPORT_MARK = ".boxloop-export"  # in an exported folder: `export --out` may replace it
ZIP_COMMENT = b"boxloop export"  # an exported zip's comment: `export --out` may replace it


def _checked_out(ws: Workspace, out: Path, *, zip: bool) -> Path:
    """``--out`` made absolute, where an export may be written: a new path, or an earlier
    boxloop export (replaced); never a folder or file of anything else (a dataset the images
    were added from, the workspace or a folder holding it), nor one holding a workspace image."""
    dest = Path(os.path.abspath(out.expanduser()))
    target = dest if not zip or dest.suffix == ".zip" else dest.with_suffix(".zip")
    here = Path(os.path.abspath(ws.root))
    if here == target or target in here.parents:
        raise InputError(f"--out {out}: that is {'the workspace' if here == target else 'a folder holding the workspace'}; "
                         "an export replaces what is there: give a new folder (default: under exports/)")
    for parent in [target, *target.parents]:
        if parent.exists() and not parent.is_dir() and parent != target:
            raise InputError(f"--out {out}: {parent} is a file, not a folder")
    if not target.exists() and not target.is_symlink():
        return dest
    if zip:
        ours = False
        if target.is_file():
            try:
                with zipfile.ZipFile(target) as z:
                    ours = z.comment == ZIP_COMMENT
            except (OSError, zipfile.BadZipFile):
                ours = False
        if not ours:
            raise InputError(f"--out {out}: {target} exists and is not a zip boxloop exported; it is left as it is: "
                             "give a new name (an earlier export's zip is replaced)")
        return dest
    if not target.is_dir() or target.is_symlink():
        raise InputError(f"--out {out}: {target} exists and is not a folder; give a new folder")
    if any(target.iterdir()) and not (target / EXPORT_MARK).is_file():
        raise InputError(f"--out {out}: {target} exists and holds files of its own (not an earlier boxloop export, "
                         "which would be replaced); it is left as it is: give a new or empty folder")
    inside = next((it.uri for it in ws.store.items() if _under(it.uri, target)), None)
    if inside is not None:
        raise InputError(f"--out {out}: the workspace's image {inside} is in it, and an export replaces the folder; "
                         "give another folder")
    return dest


def _under(uri: str, folder: Path) -> bool:
    """Whether a local picture ``uri`` lies in ``folder``."""
    from .sources.remote import is_remote

    if is_remote(uri):
        return False
    return folder in Path(os.path.abspath(uri)).parents


def _noting_imputed(rec: ImageLabels, imputed: Detections | None) -> ImageLabels:
    """A pre-labeled record whose last boxes are imputed ones (``_choose`` appends them)
    with those boxes noted, as `push` flags them in Label Studio."""
    if imputed is None or not len(imputed):
        return rec
    k = len(imputed)
    return replace(rec, extra={**rec.extra, "notes": [None] * (len(rec.xyxy) - k) + [IMPUTED_NOTE] * k})


def _write_imputed_list(path: Path, chosen: _Chosen, classes: Sequence[str]) -> None:
    """The pre-drawn boxes no model found in their frame (imputed from the neighbouring
    frames), for whoever checks the batch: a YOLO label file cannot flag them."""
    import csv
    import io

    from .atomic import write_text_atomic

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "class", "x1", "y1", "x2", "y2", "note"])
    for item in chosen.items:
        d = chosen.imputed.get(item.id, Detections.empty())
        for box, c in zip(d.xyxy, d.class_id, strict=True):
            w.writerow([chosen.names[item.id], classes[int(c)], *(f"{v:.1f}" for v in box), IMPUTED_NOTE])
    write_text_atomic(path, buf.getvalue())


def _model_run(ws: Workspace, version: str | None) -> list[Path]:
    """The files of a model version's training run worth handing on: its weights, and the
    Ultralytics args.yaml and results.csv where boxloop trained it."""
    versions = [v["id"] for v in ws.store.model_versions()]
    version = version or (versions[-1] if versions else None)
    if version is None or version not in versions:
        raise InputError(f"--with-model: {'no trained model yet' if version is None else f'no model version {version!r}'} "
                         f"in this workspace (known: {', '.join(versions) or 'none'})")
    info = ws.store.model_version(version)
    weights = Path(info["path"]) if info.get("path") else None
    run_dir = Path(info["meta"]["run_dir"]) if info["meta"].get("run_dir") else None
    files = [f for f in (weights, *((run_dir / "args.yaml", run_dir / "results.csv") if run_dir else ())) if f]
    missing = [str(f) for f in files if not f.is_file()]
    if weights is None or missing:
        raise InputError(f"--with-model: the files of model version {version} are gone: {', '.join(missing) or 'no weights'}")
    return files


def _record_prelabels(ws: Workspace, export_name: str, chosen: _Chosen, *, batch: bool) -> int:
    """Sent-out pre-labels become file tasks, so labels brought back count acceptance; the
    number of images they went out on."""
    from .annotation.files import record_prelabels

    pre = {i: d for i, d in chosen.boxes.items() if not chosen.human[i]}
    record_prelabels(
        ws.store, export_name, pre, chosen.names, model_version=chosen.model_version,
        prelabel_conf=chosen.prelabel_conf, batch=batch,
    )
    return len(pre)


def _export_other(ws: Workspace, dest: Path, chosen: _Chosen, *, format: str) -> None:
    items, boxes, human, names = chosen.items, chosen.boxes, chosen.human, chosen.names
    classes = ws.classes
    with _atomic_dir(dest) as tmp:
        image_dir = "JPEGImages" if format == "voc" else "images"
        for it in items:
            _place_item(it, tmp / image_dir / names[it.id], link=False)
        if format == "coco":
            from .formats.coco import to_coco

            records = _records(items, boxes, names, classes, "images/")
            (tmp / "annotations.json").write_text(json.dumps(to_coco(records, classes)), encoding="utf-8")
            for split in ("train", "val", "test"):  # and one file per split, as detectron2 and MMDetection train
                part = [rec for it, rec in zip(items, records, strict=True) if it.split == split]
                if part:
                    (tmp / f"annotations_{split}.json").write_text(json.dumps(to_coco(part, classes)), encoding="utf-8")
        elif format == "voc":
            from .formats.voc import to_voc

            (tmp / "Annotations").mkdir()
            for rec in _records(items, boxes, names, classes, ""):
                xml = to_voc(rec, folder=image_dir)
                (tmp / "Annotations" / Path(rec.file_name).with_suffix(".xml").name).write_text(xml, encoding="utf-8")
            sets = tmp / "ImageSets" / "Main"
            sets.mkdir(parents=True)
            for split in ("train", "val", "test"):
                stems = [Path(names[it.id]).stem for it in items if it.split == split]
                if stems:
                    (sets / f"{split}.txt").write_text("\n".join(stems) + "\n", encoding="utf-8")
        elif format == "cvat":
            from .formats.cvat import to_cvat_images

            records = _records(items, boxes, names, classes, "")
            (tmp / "annotations.xml").write_text(to_cvat_images(records, classes), encoding="utf-8")
        elif format == "labelstudio":
            from .formats.labelstudio import export_tasks

            records = [_noting_imputed(rec, chosen.imputed.get(it.id)) for it, rec in
                       zip(items, _records(items, boxes, names, classes, "images/"), strict=True)]
            tasks = export_tasks(records, human=[human[it.id] for it in items], model_version=chosen.model_version)
            (tmp / "tasks.json").write_text(json.dumps(tasks, indent=1), encoding="utf-8")
