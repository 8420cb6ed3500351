"""Bring images, frame sequences, videos and label files into a workspace.

Source folders are only read. Every bad file or line becomes a Problem (``path:line:
reason``) and the rest of the batch goes on; re-running an import adds nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from .annotation.acceptance import in_words
from .annotation.files import SentNames, roboflow_original, settle_prelabels
from .copies import Placement, placement
from .errors import InputError, Problems
from .formats import ImageLabels, clip_box
from .formats.yolo import CLASS_FILES, parse_class_names, read_yolo_labels
from .sources import absolute_path
from .sources.archive import is_zip, label_files_in, unpack_zip
from .sources.images import (
    IMAGE_SUFFIXES,
    NOT_READ_SUFFIXES,
    expand_paths,
    hidden,
    natural_key,
    not_read_reason,
    read_image_info,
)
from .sources.remote import is_remote, list_folder
from .sources.video import VIDEO_SUFFIXES
from .split import SPLIT_CHOICES, SplitRequest, split_named
from .store import Store
from .types import Detections, Item
from .workspace import Workspace

__all__ = [
    "LABEL_FORMATS",
    "IngestReport",
    "add_images",
    "add_labels",
    "add_video",
    "add_videos",
    "current_round",
    "find_class_file",
    "index_image",
]

log = logging.getLogger(__name__)
LABEL_FORMATS = ("yolo", "coco", "voc", "labelstudio", "cvat")
Progress = Callable[[int], None]
_CHUNK = 256


@dataclass
class IngestReport:
    """What an import did: new items, items already known, label versions added."""

    added: int = 0
    known: int = 0
    labeled: int = 0
    unchanged_labels: int = 0
    problems: Problems = field(default_factory=Problems)
    notes: list[str] = field(default_factory=list)
    acceptance: dict[str, int] = field(default_factory=dict)
    as_drawn: int = 0  # images whose pre-labels came back with no box moved, deleted or added
    clipped: list[str] = field(default_factory=list)  # where each box that reached past its image is (file:line)
    not_found: list[str] = field(default_factory=list)  # paths given that name nothing to read (also problems)
    checked: int = 0  # images sent to be re-checked whose labels came back as they were: confirmed
    # label files holding an older version of their image than its newest, from another file: (file, version, newest)
    stale: list[tuple[str, int, int]] = field(default_factory=list)
    labeled_from: dict[str, tuple[str, Detections]] = field(default_factory=dict, repr=False)  # item → this import's first

    def stale_note(self) -> str | None:
        """What became of label files that would have put back an older version."""
        if not self.stale:
            return None
        path, old, newest = self.stale[0]
        more = f" and {len(self.stale) - 1} more" if len(self.stale) > 1 else ""
        return (
            f"{len(self.stale)} label file(s) hold an older version of their image's labels than its newest, which "
            f"came from another file since (corrected, most likely): the newer ones stand ({path}: version {old} of "
            f"{newest}{more}); to put an old one back, change it (add labels takes a changed file)"
        )

    def summary(self) -> str:
        parts = [f"{self.added} new image(s)", f"{self.known} already known"]
        if self.labeled or self.unchanged_labels or self.stale:
            parts.append(f"{self.labeled} label version(s) added")
            if self.unchanged_labels:
                parts.append(f"{self.unchanged_labels} unchanged")
            if self.stale:
                parts.append(f"{len(self.stale)} older than the newest (kept the newest)")
            if self.checked:
                parts.append(f"{self.checked} re-checked and kept as they were (audits pass them over)")
        if self.acceptance:
            parts.append(
                f"pre-labels: {in_words(self.acceptance)}"
                + (f" ({self.as_drawn} image(s) came back unchanged, as pre-labeled)" if self.as_drawn else "")
            )
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s)")
        return ", ".join(parts)


def _say_clipped(report: IngestReport) -> None:
    """The note naming the boxes that reached past their image and were clipped to it."""
    if report.clipped:
        shown = ", ".join(report.clipped[:3]) + (" ..." if len(report.clipped) > 3 else "")
        report.notes.append(
            f"{len(report.clipped)} box(es) reached past the edge of their image and were clipped to it, as "
            f"Ultralytics clips them ({shown})"
        )


def current_round(ws: Workspace) -> int:
    """The round new human labels belong to (0 = labels brought in before any round)."""
    return int(ws.store.get_meta("round", "0") or 0)


def _frame_item_id(video_id: str, frame_index: int) -> str:
    return hashlib.sha256(f"{video_id}:{frame_index}".encode()).hexdigest()[:16]


def index_image(
    path: Path | str, *, video_id: str | None = None, frame_index: int | None = None
) -> Item:
    """An Item for an image file or URI, from its header (InputError naming it if unreadable).
    Stills are identified by content (exact duplicates are one item); frames by position."""
    info = read_image_info(path)
    item_id = info.sha256[:16] if video_id is None else _frame_item_id(video_id, frame_index or 0)
    return Item(
        id=item_id,
        uri=str(path),
        width=info.width,
        height=info.height,
        sha256=info.sha256,
        video_id=video_id,
        frame_index=frame_index,
    )


def _record(ws: Workspace, item: Item, path: Path | str, report: IngestReport) -> Item:
    if item.video_id is None:  # a frame added with --sequence keeps its sequence when met again
        item = ws.store.frame_at(str(path), item.sha256) or item
    stored, new = ws.store.add_item(item, str(path))
    if new:
        report.added += 1
    else:
        report.known += 1
    return stored


def add_images(
    ws: Workspace,
    paths: Iterable[str | Path],
    *,
    sequence: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Index image files, folders (recursive) or globs into the pool.

    With ``sequence``, each folder is one ordered frame sequence (natural order, so
    ``2.jpg`` comes before ``10.jpg``) and its frames keep their order for temporal scorers.

    URIs (``s3://bucket/prefix/``, ``gs://...``, globs, single objects) are listed and read
    through fsspec, several objects at a time; their bytes land in the image cache.
    """
    report = IngestReport()
    paths = [u for u in (_unpacked(ws, p, report) for p in paths) if u is not None]
    if not sequence:
        files = _expand_reporting(paths, report)
        videos = [f for f in files if PurePosixPath(str(f)).suffix.lower() in VIDEO_SUFFIXES]
        if videos:
            set_aside = set(videos)
            files = [f for f in files if f not in set_aside]
            report.notes.append(
                f"{len(videos)} video file(s) left out ({', '.join(str(v) for v in videos[:3])}"
                f"{' ...' if len(videos) > 3 else ''}): add their frames with `boxloop add video PATH --fps 2`"
            )
        with ThreadPoolExecutor(max_workers=_REMOTE_READERS, thread_name_prefix="boxloop-index") as pool:
            for start in range(0, len(files), _CHUNK):
                chunk = files[start : start + _CHUNK]
                indexed = _index_chunk(chunk, pool)
                with ws.store.transaction():  # one commit per chunk: fast, and a re-run resumes
                    for f, item in zip(chunk, indexed):
                        _add_one(ws, f, report, indexed=item)
                if progress:
                    progress(len(chunk))
        return report
    for p in paths:
        if is_remote(str(p)):
            try:
                frames: list[Path | str] = list(list_folder(str(p), IMAGE_SUFFIXES))
            except InputError as e:
                report.problems.add(p, str(e).removeprefix(f"{p}: "))
                continue
            if not frames:
                report.problems.add(p, "--sequence needs a prefix with frames directly under it")
                continue
            key = str(p).rstrip("/")
        else:
            folder = absolute_path(p)
            if not folder.exists():
                _not_found(report, folder, "no such folder")
                continue
            if not folder.is_dir():
                report.problems.add(folder, "--sequence needs a folder of frames")
                continue
            listed = sorted((f for f in folder.iterdir() if not hidden(f.relative_to(folder)) and f.is_file()),
                            key=lambda f: natural_key(f.name))
            frames = [f for f in listed if f.suffix.lower() in IMAGE_SUFFIXES]
            for f in listed:
                if f.suffix.lower() in NOT_READ_SUFFIXES:
                    report.problems.add(f, not_read_reason(f))
            if not frames and not any(f.suffix.lower() in NOT_READ_SUFFIXES for f in listed):
                report.problems.add(folder, _no_images())
            key = str(folder)
        seq_id = "seq-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        for index, f in zip(_frame_numbers(frames), frames):
            _add_one(ws, f, report, video_id=seq_id, frame_index=index)
            if progress:
                progress(1)
    return report


_REMOTE_READERS = 16  # objects read at once from a bucket: latency, not bandwidth, is the limit


def _index_chunk(files: Sequence[Path | str], pool: ThreadPoolExecutor) -> list[Item | InputError | None]:
    """Objects of a chunk indexed by several threads at once (URIs only: local files are
    indexed as they are recorded); an unreadable one becomes its InputError."""

    def one(f: Path | str) -> Item | InputError | None:
        if not is_remote(str(f)):
            return None
        try:
            return index_image(f)
        except InputError as e:
            return e

    if not any(is_remote(str(f)) for f in files):
        return [None] * len(files)
    return list(pool.map(one, files))


def _unpacked(ws: Workspace, path: str | Path, report: IngestReport) -> str | Path | None:
    """A local .zip unpacked under imports/ (once; its images are read from there), else
    ``path``; None (reported) for a zip that cannot be read or holds no image."""
    if is_remote(str(path)) or not is_zip(path):
        return path
    archive = absolute_path(path)
    try:
        folder, note, pictures = _unpack(ws, archive)
    except InputError as e:
        report.problems.add(path, str(e).removeprefix(f"{archive}: "))
        return None
    if not pictures:
        report.problems.add(archive, _no_images("this zip"))
        return None
    report.notes.append(note)
    return folder


def _unpack(ws: Workspace, archive: Path, *, matched: str = "in this workspace") -> tuple[Path, str, bool]:
    """The folder under imports/ a zip is unpacked into (once), a note saying so (where its
    images are read, or, for labels without images, where the images they label are found:
    ``matched``), and whether it holds images."""
    folder = unpack_zip(archive, ws.root / "imports")
    said = f"unpacked {archive.name} into {folder}"
    if _holds_images(folder):
        return folder, f"{said} (its images are read from there)", True
    return folder, f"{said} (it holds labels, no images: they label the images of their names {matched})", False


def _holds_images(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_SUFFIXES and not hidden(f.relative_to(folder)) for f in folder.rglob("*"))


def _no_images(where: str = "this folder") -> str:
    """What an existing folder (or zip) with no picture in it is told."""
    return f"no images found in {where} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"


def _not_found(report: IngestReport, path: Path | str, reason: str) -> None:
    """A path given that names nothing: a problem, and an error for the command once the
    other paths are read."""
    report.problems.add(path, reason)
    report.not_found.append(str(path))


def _frame_numbers(frames: Sequence[Path | str]) -> list[int]:
    """The number in each frame's name when every name has a distinct one, else positions."""
    numbers = []
    for f in frames:
        digits = re.findall(r"\d+", PurePosixPath(str(f)).stem if isinstance(f, str) else f.stem)
        numbers.append(int(digits[-1]) if digits else None)
    if None not in numbers and len(set(numbers)) == len(numbers):
        return numbers  # type: ignore[return-value]
    return list(range(len(frames)))


def _expand_reporting(paths: Sequence[str | Path], report: IngestReport) -> list[Path | str]:
    """Image files under ``paths`` (and video files, which the caller sets aside); a path
    that names nothing, or a folder with no picture in it, reported."""
    files: list[Path | str] = []
    not_read: list[Path] = []
    for p in paths:
        before = len(files) + len(not_read)
        try:
            files.extend(expand_paths([p], IMAGE_SUFFIXES | VIDEO_SUFFIXES, not_read=not_read))
        except InputError as e:
            # a URI that lists nothing (no such bucket or prefix, no credentials, no network) names nothing to read
            _not_found(report, p, str(e).removeprefix(f"{p}: "))
            continue
        if len(files) + len(not_read) == before and not is_remote(str(p)) and Path(p).is_dir():
            report.problems.add(absolute_path(p), _no_images())
    for f in dict.fromkeys(not_read):
        report.problems.add(f, not_read_reason(f))
    return list(dict.fromkeys(files))


def _add_one(
    ws: Workspace,
    path: Path | str,
    report: IngestReport,
    *,
    video_id: str | None = None,
    frame_index: int | None = None,
    indexed: Item | InputError | None = None,
) -> Item | None:
    try:
        if isinstance(indexed, InputError):
            raise indexed
        item = indexed or index_image(path, video_id=video_id, frame_index=frame_index)
    except InputError as e:
        report.problems.add(path, str(e).removeprefix(f"{path}: "))
        return None
    return _record(ws, item, path, report)


def add_video(
    ws: Workspace,
    path: str | Path,
    *,
    every: int | None = None,
    fps: float | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Decode frames of a video into the workspace (``frames/<video id>/``) and add them
    in order; re-running after an interruption decodes only what is missing. A still image
    or a file no decoder reads is an InputError and leaves no folder behind. Notes say when
    ``fps`` asks for more frames than the clip has (every frame is kept), and when the clip
    was sampled before at another rate (its frames are then the union of both samplings)."""
    from .sources.video import check_sampling, probe_video, sample_frames, video_id

    if is_remote(str(path)):
        raise InputError(f"{path}: videos are decoded from local files; copy it to this machine first")
    path = absolute_path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such video file")
    every, fps = check_sampling(every, fps)
    vid = video_id(path)
    info = probe_video(path)  # a still image, or bytes no decoder reads, fail here: before any folder
    out = ws.frames_dir / vid
    made = not out.exists()
    before = ws.store.frame_indices(vid)  # frames an earlier sampling added
    report = IngestReport()
    decoded = 0

    def seen(n: int) -> None:
        nonlocal decoded
        decoded = n

    kept: list[int] = []
    try:
        for index, frame in sample_frames(path, out, every=every, fps=fps, progress=seen):
            kept.append(index)
            item = _add_one(ws, frame, report, video_id=vid, frame_index=index)
            if item is not None:
                ws.store.add_item(item, f"{path}#frame={index}")
            if progress:
                progress(1)
    except InputError:
        _drop_empty_folder(out, made)
        raise
    if not report.added and not report.known:
        report.problems.add(path, "no frames decoded")
        _drop_empty_folder(out, made)
    how = f"--fps {fps:g}" if fps is not None else f"--every {every}" if every != 1 else "every frame"
    if fps is not None and decoded > 1 and len(kept) == decoded and (info.fps is None or fps > info.fps * 1.001):
        rate = f"only {round(info.fps, 3):g} frames a second" if info.fps else f"fewer than {fps:g} frames a second"
        report.notes.append(f"{path.name}: the clip has {rate}, so every frame is kept ({decoded} frames; {how} asks for more)")
    key = f"video_sampling:{vid}"
    earlier = [h for h in json.loads(ws.store.get_meta(key, "[]") or "[]") if h != how]
    older = before - set(kept)
    if before and older:
        frames = sorted(before | set(kept))
        shown = ", ".join(map(str, frames[:8])) + (", ..." if len(frames) > 8 else "")
        when = f" ({', '.join(earlier)})" if earlier else ""
        report.notes.append(
            f"{path.name} was sampled before at another rate{when}; {how} keeps {len(kept)} frame(s), and the "
            f"{len(older)} only the earlier sampling kept stay: its {len(frames)} frames in the workspace are the "
            f"union of both samplings (frames {shown})"
        )
    if kept:
        ws.store.set_meta(key, json.dumps([*earlier, how]))
    return report


def _drop_empty_folder(folder: Path, made: bool) -> None:
    """Remove a frames folder this call made when nothing was written into it."""
    if made and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def add_videos(
    ws: Workspace,
    paths: Iterable[str | Path],
    *,
    every: int | None = None,
    fps: float | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """:func:`add_video` for every video file under ``paths`` (files, folders searched
    recursively, globs), each its own sequence; a video that cannot be read is a problem and
    the others go on."""
    from .sources.video import check_sampling

    check_sampling(every, fps)  # bad options fail once, before any video
    report = IngestReport()
    videos: list[Path | str] = []
    for p in paths:
        if is_remote(str(p)):
            report.problems.add(p, "videos are decoded from local files; copy it to this machine first")
            continue
        try:
            found = list(expand_paths([p], VIDEO_SUFFIXES))
        except InputError as e:
            _not_found(report, p, str(e).removeprefix(f"{p}: "))
            continue
        if not found:
            report.problems.add(absolute_path(p), f"no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) here")
        videos.extend(found)
    decoded = 0
    for v in dict.fromkeys(videos):
        try:
            one = add_video(ws, v, every=every, fps=fps, progress=progress)
        except InputError as e:
            report.problems.add(v, str(e).removeprefix(f"{v}: "))
            continue
        decoded += 1
        report.added += one.added
        report.known += one.known
        report.problems.extend(one.problems)
        report.notes.extend(one.notes)
    if decoded > 1:
        report.notes.append(f"{decoded} videos, each its own frame sequence")
    return report


# -- labels ------------------------------------------------------------------------------


def add_labels(
    ws: Workspace,
    path: str | Path,
    *,
    format: str,
    classes_from: str | Path | None = None,
    add_classes: bool = False,
    images: str | Path | None = None,
    split: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Import human labels (a new label version per image) and the images they belong to.

    Class ids are mapped to the project's classes **by name**; a name the project does not
    have is an InputError naming both lists, unless ``add_classes``. ``split`` puts the
    labeled images in a split: ``train``, ``val`` or ``test`` for all of them, or ``folders``
    for the split folder in each one's path (:class:`~boxloop.split.SplitRequest`).
    """
    if format not in LABEL_FORMATS:
        raise InputError(f"unknown label format {format!r}; known: {', '.join(LABEL_FORMATS)}")
    if split is not None and split not in SPLIT_CHOICES:
        raise InputError(f"unknown --split {split!r}; known: {', '.join(SPLIT_CHOICES)}")
    where: Path | str
    if is_remote(str(path)):
        where = str(path)  # a bucket prefix (YOLO, VOC) or one object (COCO, Label Studio, CVAT)
    else:
        where = absolute_path(path)
        if not where.exists():
            raise InputError(f"{where}: no such file or folder")
    unpacked = None
    folder: Path | None = None  # where the label files are: an unpacked zip, or a folder given
    if isinstance(where, Path) and is_zip(where):  # an annotation tool's export, or a corrected boxloop zip
        matched = f"under {images} or in this workspace" if images and format != "yolo" else "in this workspace"
        unpacked, note, _ = _unpack(ws, where, matched=matched)
        folder = unpacked
    elif isinstance(where, Path) and where.is_dir():
        folder = where
    files: list[Path | str] = [where]
    if folder is not None:  # YOLO and VOC read the folder; the others, each file in it (one per split)
        files = [folder] if format in ("yolo", "voc") else list(label_files_in(folder, format, where))
    where = files[0] if len(files) == 1 else folder or where
    if format == "yolo":
        splits = SplitRequest(split, where)
        report = _add_yolo(ws, where, classes_from=classes_from, add_classes=add_classes, splits=splits, progress=progress)
    else:
        report = IngestReport()
        video = None
        if images and PurePosixPath(str(images)).suffix.lower() in VIDEO_SUFFIXES:  # what a CVAT for video file annotates
            video, images = PurePosixPath(str(images)).name, None
        records: list[ImageLabels] = []
        for file in files:  # one file, or one per split (Roboflow: train/_annotations.coco.json, valid/, test/)
            found, base = _parse_records(file, format, report.problems, video=video)
            stem = PurePosixPath(str(file)).stem  # instances_val2017: a split for --split folders
            records.extend(replace(r, extra={**r.extra, "label_file": stem}) for r in found)
        if format == "voc" and split == "folders":
            records = _with_voc_image_sets(records, base)
        if len(files) > 1:
            named = ", ".join(PurePosixPath(str(f)).relative_to(str(folder)).as_posix() for f in files[:4])
            report.notes.append(f"read {len(files)} {format} files: {named}{' ...' if len(files) > 4 else ''}")
            records = _once_each(records)
        records = _frames_of_this_workspace(ws, records, report)
        # images are looked for under the zip, the folder of label files, or (VOC) beside Annotations/
        roots: list[Path | str] = [unpacked or (base if format == "voc" else folder or base)]
        if images:
            roots = [str(images) if is_remote(str(images)) else absolute_path(images)]
        splits = SplitRequest(split, roots[0])
        _add_records(ws, records, roots, report, format=format, source=where, add_classes=add_classes, splits=splits,
                     progress=progress)
    _say_clipped(report)
    stale = report.stale_note()
    if stale:
        report.notes.append(stale)
    if unpacked is not None:
        report.notes.append(note)
    return report


def _once_each(records: list[ImageLabels]) -> list[ImageLabels]:
    """Records read from several files, an image that two of them label alike kept once (a
    whole-dataset file beside one per split, as boxloop's COCO export writes): the one from the
    file that names a split. Images labeled differently stay, each a label version."""
    kept: dict[tuple, int] = {}
    out: list[ImageLabels] = []
    for rec in records:
        key = (rec.file_name, rec.class_names, rec.xyxy.round(2).tobytes())
        if key not in kept:
            kept[key] = len(out)
            out.append(rec)
        elif split_named(rec.extra.get("label_file")) and not split_named(out[kept[key]].extra.get("label_file")):
            out[kept[key]] = rec
    return out


def _with_voc_image_sets(records: list[ImageLabels], base: Path | str) -> list[ImageLabels]:
    """VOC records with the split their ``ImageSets/Main/train.txt`` (``val``, ``test``) names
    them in, as ``extra["subset"]`` (what ``--split folders`` reads where no folder says it)."""
    if not isinstance(base, Path) or not (base / "ImageSets" / "Main").is_dir():
        return records
    subset: dict[str, str] = {}
    for listing in sorted((base / "ImageSets" / "Main").glob("*.txt")):
        if listing.stem.lower() in ("train", "val", "test"):
            for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.strip():
                    subset.setdefault(line.split()[0], listing.stem.lower())
    return [replace(r, extra={**r.extra, "subset": subset[PurePosixPath(r.file_name).stem]})
            if PurePosixPath(r.file_name).stem in subset else r for r in records]


def _frames_of_this_workspace(ws: Workspace, records: list[ImageLabels], report: IngestReport) -> list[ImageLabels]:
    """Of the frames a video's labels name (CVAT for video: ``<video>#frame=<n>``), those this
    workspace sampled; the others are left out, said once. Records of images pass through."""
    videos = {r.extra["video"] for r in records if "video" in r.extra}
    if not videos:
        return records
    keep = []
    for video in sorted(videos):
        sampled = {PurePosixPath(p).name for _, p in ws.store.items_by_stem(PurePosixPath(video).stem)}
        mine = [r for r in records if r.extra.get("video") == video]
        here = [r for r in mine if r.file_name in sampled]
        if not here:
            raise InputError(
                f"no frame of {video} in this workspace: add the video first (boxloop add video {video} --fps 2), "
                "or name the video the file annotates with --images VIDEO"
            )
        if len(here) < len(mine):
            report.notes.append(
                f"{len(mine) - len(here)} of the {len(mine)} frames of {video} with boxes are not frames this workspace "
                "sampled; left out (boxloop add video --every 1 samples every frame)"
            )
        keep.extend(here)
    return [r for r in records if "video" not in r.extra] + keep


def _read_text(where: Path | str) -> str:
    """A label file's text (utf-8, BOM dropped), local or in a bucket."""
    from .sources.remote import read_bytes

    data = read_bytes(where) if isinstance(where, str) else where.read_bytes()
    return data.decode("utf-8-sig")


def _parent(where: Path | str) -> Path | str:
    return where.rstrip("/").rsplit("/", 1)[0] if isinstance(where, str) else where.parent


def _tree(root: Path | str, suffixes: Iterable[str]) -> dict[PurePosixPath, Path | str]:
    """Every file under a folder or bucket prefix with one of ``suffixes``, by its path
    relative to the root."""
    from .sources.remote import expand_uri

    suffixes = {x.lower() for x in suffixes}
    if isinstance(root, str):
        base = root.rstrip("/") + "/"
        return {PurePosixPath(u.removeprefix(base)): u for u in expand_uri(root, suffixes)}
    return {
        PurePosixPath(f.relative_to(root).as_posix()): f
        for f in root.rglob("*") if f.suffix.lower() in suffixes and f.is_file()
    }


def _map_names(ws: Workspace, names: Iterable[str], *, add_classes: bool, source: Path | str) -> dict[str, int]:
    """Project class id for each name; unknown names are an error naming both lists."""
    names = list(dict.fromkeys(names))
    project = ws.store.classes()
    unknown = [n for n in names if n not in project]
    if unknown:
        if not add_classes:
            raise InputError(
                f"{source}: class name(s) {unknown} are not in the project.\n"
                f"  in the labels: {names}\n  in the project: {project}\n"
                "Rename them, or pass --add-classes to add them to the project."
            )
        project = ws.store.add_classes(unknown)
    return {n: project.index(n) for n in names}


def find_class_file(root: Path) -> Path | None:
    """The class-names file next to YOLO labels (data.yaml, classmap.yaml, classes.txt), shallowest first."""
    if root.is_file():
        root = root.parent
    candidates = [f for f in root.rglob("*") if f.name.lower() in CLASS_FILES and f.is_file()]
    if not candidates:
        return None
    return min(candidates, key=lambda f: (len(f.relative_to(root).parts), CLASS_FILES.index(f.name.lower())))


def _pair_yolo(
    root: Path | str, problems: Problems
) -> tuple[list[tuple[Path | str, Path | str | None]], list[Path | str]]:
    """(image, label file or None) pairs under ``root`` (a folder or bucket prefix), by file
    stem: Ultralytics layout (``images/`` beside ``labels/``), side by side, or a stem
    unique in the tree; and the label files with no image in the tree. A picture boxloop
    does not read (HEIC, GIF) is a problem, and its label file is left out with it."""
    tree = _tree(root, IMAGE_SUFFIXES | NOT_READ_SUFFIXES | {".txt"})
    images, texts = [], []
    for rel in sorted(tree, key=lambda r: natural_key(str(tree[r]))):
        if hidden(rel):
            continue
        if rel.suffix.lower() in IMAGE_SUFFIXES | NOT_READ_SUFFIXES:
            images.append(rel)
        elif rel.name.lower() not in CLASS_FILES:
            texts.append(rel)
    by_stem: dict[str, list[PurePosixPath]] = {}
    by_path_stem: dict[PurePosixPath, PurePosixPath] = {}
    for img in images:
        by_stem.setdefault(img.stem, []).append(img)
        by_path_stem[img.with_suffix("")] = img
    paired: dict[PurePosixPath, PurePosixPath] = {}
    orphans: list[Path | str] = []
    for txt in texts:
        img = _image_for_label(txt, by_path_stem)
        if img is None:
            same = by_stem.get(txt.stem, [])
            if len(same) == 1:
                img = same[0]
            elif len(same) > 1:
                problems.add(
                    tree[txt],
                    f"ambiguous: images with stem {txt.stem!r} in several folders "
                    f"({', '.join(str(_parent(tree[s])) for s in same[:3])}); use the images/ + labels/ layout",
                )
                continue
            else:
                orphans.append(tree[txt])
                continue
        if img in paired:
            problems.add(tree[txt], f"a second label file for {tree[img]} (first: {tree[paired[img]]})")
            continue
        paired[img] = txt
    for img in images:
        if img.suffix.lower() in NOT_READ_SUFFIXES:
            problems.add(tree[img], not_read_reason(tree[img])
                         + (f"; its labels ({tree[paired[img]]}) are left out with it" if img in paired else ""))
    return [(tree[img], tree[paired[img]] if img in paired else None)
            for img in images if img.suffix.lower() in IMAGE_SUFFIXES], orphans


def _label_text(txt: Path | str, report: IngestReport) -> str | None:
    try:
        return _read_text(txt)
    except (OSError, UnicodeDecodeError, InputError) as e:
        report.problems.add(txt, f"cannot read: {str(e).removeprefix(f'{txt}: ')}")
        return None


def _yolo_labels(
    text: str, txt: Path | str, item: Item, n_classes: int, report: IngestReport, store: Store | None = None
) -> Detections | None:
    """A YOLO label file's boxes in ``item``'s pixels (boxes reaching past the image clipped
    to it, those with nothing inside it left out), or None (its problems reported; ``store``
    says whether the image keeps labels it had)."""
    read = read_yolo_labels(text, width=item.width, height=item.height, n_classes=n_classes, source=str(txt))
    report.problems.extend(read.dropped)  # no object lost: the rest of the file stands
    if read.problems or (read.dropped and not len(read.labels)):
        # partial labels would teach the model that a missed object is background (and a file whose
        # every box lies outside its image, that a picture with objects shows none): the image stays
        # in the pool until its label file is fixed
        report.problems.extend(read.problems)
        had = store.label_version(item.id) if store is not None else None
        keeps = "its image stays unlabeled" if had is None else f"its image keeps its labels of version {had}"
        report.problems.add(txt, f"label file skipped ({keeps}) until fixed")
        return None
    report.clipped.extend(f"{txt}:{line}" for line in read.clipped)
    return read.labels


def _reads_as_labels(text: str) -> bool:
    """Whether a .txt holds YOLO labels (or none): its first line starts with a class id. Image
    lists (CVAT's train.txt) and notes (Roboflow's README.roboflow.txt) do not."""
    first = next((line.split() for line in text.splitlines() if line.strip()), None)
    if first is None:
        return True
    try:  # a class id, even one a tool wrote as 0.0 (parsing then says what is wrong with it)
        float(first[0])
    except ValueError:
        return False
    return True


def _known(ws: Workspace, item_id: str | None) -> str | None:
    return item_id if item_id is not None and ws.store.has_item(item_id) else None


def _workspace_named(ws: Workspace, ref: str, stem: str, name: str | None = None) -> set[str]:
    """The items the workspace met under file stem ``stem`` (and file name ``name``, when
    given); several told apart, where they can be, by the folders ``ref`` ends in."""
    seen: dict[str, list[str]] = {}
    for item_id, path in ws.store.items_by_stem(stem):
        if name is None or PurePosixPath(path).name == name:
            seen.setdefault(item_id, []).append(path)
    return closest_by_folders(seen, ref) if len(seen) > 1 else set(seen)


def _labels_without_images(
    ws: Workspace, orphans: Sequence[Path | str], *, has_images: bool, sent: SentNames, report: IngestReport
) -> list[tuple[Item, Path | str, str]]:
    """Label files with no image beside them, each with the workspace item it names and its
    text. Where the folder holds no image at all (CVAT's or Label Studio's YOLO export without
    images), they are labels for images the workspace has: named as a pre-labeled export sent
    each out (``frame_000012_<id>.jpg``), else by file stem (the folders in the label's path
    choose among several). Beside images, a label file without its image is a problem. Text
    files that hold no labels (``train.txt``, a README) are passed over."""
    found: list[tuple[Item, Path | str, str]] = []
    other: list[str] = []
    for txt in orphans:
        text = _label_text(txt, report)
        if text is None:
            continue
        name, stem = PurePosixPath(str(txt)).name, PurePosixPath(str(txt)).stem
        if not _reads_as_labels(text):
            other.append(name)
            continue
        if has_images:
            report.problems.add(txt, f"label file with no image (no image named {stem}.* here)")
            continue
        named = _workspace_named(ws, str(txt), stem)
        only = next(iter(named)) if len(named) == 1 else None
        # a batch out now, the workspace's one image of that name, a batch back already (a re-run)
        item_id = _known(ws, sent.item_for_label(name)) or only or _known(ws, sent.item_for_label(name, closed=True))
        if item_id is None and named:
            report.problems.add(
                txt,
                f"{len(named)} images in the workspace are named {stem}.* and no folder in this path tells "
                "them apart: bring the labels back with their images (or, from Label Studio, as JSON)",
            )
            continue
        if item_id is None:
            report.problems.add(
                txt, f"label file with no image: none named {stem}.* here, sent out, or in the workspace"
            )
            continue
        found.append((ws.store.get_item(item_id), txt, text))
    if found:
        report.notes.append(
            f"{len(found)} label file(s) came without their images: each labels the workspace's image of its "
            "name (as a pre-labeled export sent it out, or its own)"
        )
    if other:
        report.notes.append(
            f"{len(other)} text file(s) that hold no labels passed over ({', '.join(other[:3])}"
            f"{' ...' if len(other) > 3 else ''}): image lists, notes"
        )
    return found


def _image_for_label(txt: PurePosixPath, by_path_stem: dict[PurePosixPath, PurePosixPath]) -> PurePosixPath | None:
    parts = list(txt.with_suffix("").parts)
    for i in range(len(parts) - 1, -1, -1):  # the last `labels` folder becomes `images`
        if parts[i] == "labels":
            img = by_path_stem.get(PurePosixPath(*parts[:i], "images", *parts[i + 1 :]))
            if img is not None:
                return img
    return by_path_stem.get(txt.with_suffix(""))


def _remote_class_file(root: str) -> str | None:
    """The class-names object under a bucket prefix (as :func:`find_class_file`)."""
    tree = _tree(root, {".yaml", ".yml", ".txt", ".names"})
    found = [rel for rel in tree if rel.name.lower() in CLASS_FILES]
    if not found:
        return None
    best = min(found, key=lambda r: (len(r.parts), CLASS_FILES.index(r.name.lower())))
    return str(tree[best])


def _class_names(where: Path | str) -> list[str]:
    """parse_class_names for a local file or an object in a bucket (errors name the URI)."""
    if not isinstance(where, str):
        return parse_class_names(where)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="boxloop-classes-") as tmp:
        local = Path(tmp) / where.rsplit("/", 1)[-1]
        local.write_text(_read_text(where), encoding="utf-8")
        try:
            return parse_class_names(local)
        except InputError as e:
            raise InputError(str(e).replace(str(local), where)) from None


def _add_yolo(
    ws: Workspace,
    root: Path | str,
    *,
    classes_from: str | Path | None,
    add_classes: bool,
    splits: SplitRequest,
    progress: Progress | None,
) -> IngestReport:
    report = IngestReport()
    if isinstance(root, Path) and not root.is_dir():
        raise InputError(f"{root}: YOLO labels are read from a folder (images/ and labels/)")
    names_file: Path | str | None
    if classes_from:
        names_file = str(classes_from) if is_remote(str(classes_from)) else Path(classes_from)
    else:
        names_file = _remote_class_file(root) if isinstance(root, str) else find_class_file(root)
    if names_file is None:
        file_names = ws.store.classes()
        report.notes.append(_workspace_classes_note(root, file_names))
    else:
        file_names = _class_names(names_file)
    pairs, orphans = _pair_yolo(root, report.problems)
    parsed: list[tuple[Item, Path | str | None, Path | str | None, Detections | None]] = []
    with ThreadPoolExecutor(max_workers=_REMOTE_READERS, thread_name_prefix="boxloop-index") as pool:
        indexed = _index_chunk([img for img, _ in pairs], pool)
    sent = SentNames(ws.store)
    sent_out = _SentOut(ws, sent)
    for (img, txt), pre in zip(pairs, indexed):
        try:
            if isinstance(pre, InputError):
                raise pre
            item = pre or index_image(img)
        except InputError as e:
            report.problems.add(img, str(e).removeprefix(f"{img}: "))
            if txt is not None:
                report.problems.add(txt, "skipped: its image is unreadable")
            continue
        copy = sent_out.original(img, item)
        labels = None
        if txt is not None:
            text = _label_text(txt, report)
            labels = None if text is None else _yolo_labels(text, txt, item, len(file_names), report, ws.store)
        if copy is not None:  # an annotation tool's copy: its boxes, in its pixels, moved to the original's
            if labels is not None:
                xyxy, keep = sent_out.boxes(labels.xyxy, copy, txt, report)  # type: ignore[arg-type]
                labels = Detections(xyxy[keep], labels.class_id[keep])
            item = copy[0]
        parsed.append((item, img, txt, labels))
    sent_out.say(report)
    for item, txt, text in _labels_without_images(ws, orphans, has_images=bool(pairs), sent=sent, report=report):
        parsed.append((item, None, txt, _yolo_labels(text, txt, item, len(file_names), report, ws.store)))
    unlabeled = sum(1 for _, _, txt, _ in parsed if txt is None)
    if unlabeled:
        report.notes.append(
            f"{unlabeled} image(s) had no label file: added to the pool, unlabeled "
            "(an empty .txt beside an image marks it labeled with nothing to draw)"
        )
    used = sorted({int(c) for *_, d in parsed if d is not None for c in d.class_id})
    mapping = _map_names(ws, [file_names[c] for c in used], add_classes=add_classes, source=names_file or root)
    to_project = np.full(len(file_names), -1, np.int64)
    for c in used:
        to_project[c] = mapping[file_names[c]]
    rnd = current_round(ws)
    with ws.store.transaction():
        for item, img, txt, labels in parsed:
            if img is not None:
                stored = _record(ws, item, img, report)
            else:  # labels for an image the workspace has
                stored = item
                report.known += 1
            if labels is not None:
                remapped = Detections(labels.xyxy, to_project[labels.class_id])
                _store_label(ws, stored.id, remapped, f"yolo:{txt}", rnd, report)
                splits.take(stored.id, img if img is not None else txt)  # type: ignore[arg-type]
            if progress:
                progress(1)
        report.notes.extend(splits.apply(ws.store))
    return report


def _workspace_classes_note(root: Path | str, names: Sequence[str]) -> str:
    """What a YOLO import with no class-names file reads its class ids as: the workspace's classes."""
    shown = ", ".join(f"{i} = {n}" for i, n in enumerate(names[:4])) + (", ..." if len(names) > 4 else "")
    return (
        f"{root}: no class names file (data.yaml, classes.txt, obj.names, ...), so class ids are read as the "
        f"workspace's {len(names)} classes ({shown}); pass --classes-from FILE if they are others"
    )


class _SentOut:
    """Images a pre-labeled export sent out, known again when the annotation tool sends them
    back re-encoded (and renamed, as Roboflow's ``p1_jpg.rf.<hash>.jpg``): bytes the workspace
    has never seen, under a name an open export used (or, renamed by Roboflow, the name of one
    image the workspace has), showing the same picture."""

    def __init__(self, ws: Workspace, sent: SentNames) -> None:
        self.ws = ws
        self._sent = sent
        self.matched = 0
        self.padded = 0

    def original(self, file: Path | str, item: Item) -> tuple[Item, Placement] | None:
        """The item ``file`` (indexed as ``item``) is a copy of, and where the copy shows it;
        or None."""
        store = self.ws.store
        if store.has_item(item.id) or store.frame_at(str(file), item.sha256) is not None:
            return None
        name = PurePosixPath(str(file)).name
        target = self._sent.item(name) or self._renamed_from_the_pool(name)
        if target is None:
            return None
        original = store.get_item(target)
        where = placement(file, original, copy_size=(item.width, item.height))
        if where is None:
            return None
        self.matched += 1
        self.padded += where.padded
        return original, where

    def boxes(
        self, xyxy: np.ndarray, copy: tuple[Item, Placement], source: Path | str, report: IngestReport
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes drawn on a copy, in its original's pixels, and which of them to keep: one drawn
        wholly on a fitted copy's padded edge is left out, named as a problem."""
        original, where = copy
        out, keep = where.to_original(xyxy, original.width, original.height)
        if not keep.all():
            report.problems.add(source, f"{int((~keep).sum())} box(es) lie on the padded edge of this copy, "
                                        "outside the picture: left out")
        return out, keep

    def _renamed_from_the_pool(self, name: str) -> str | None:
        """The workspace's one image of the name Roboflow renamed ``name`` from: the pool
        uploaded to Roboflow by hand, labeled there and exported (re-encoded, maybe resized)."""
        original = roboflow_original(name)
        if original is None:
            return None
        found = _workspace_named(self.ws, original, PurePosixPath(original).stem, original)
        return found.pop() if len(found) == 1 else None

    def say(self, report: IngestReport) -> None:
        if self.matched:
            report.notes.append(
                f"{self.matched} image(s) came back re-encoded or renamed by the annotation tool (e.g. Roboflow's "
                "name_jpg.rf.<hash>.jpg): each is the workspace's image of that name, the same picture, and took "
                "its labels"
                + (f" ({self.padded} fitted in with padded edges: their boxes moved off the padding)" if self.padded else "")
            )


def _store_label(ws: Workspace, item_id: str, labels: Detections, source: str, rnd: int, report: IngestReport) -> None:
    """A new label version of ``item_id`` from ``source`` (``format:file``), unless it changes
    nothing, another file of this import labeled the same picture otherwise (the first stands;
    a problem), or it is an older version come back from another file than the newest's (a
    setup script run again, an old export: the newer, corrected labels stand; a note)."""
    first = report.labeled_from.get(item_id)
    if first is not None and first[0] != source:
        if not first[1].equals(labels, atol=1e-3):
            report.problems.add(
                source.split(":", 1)[-1], f"labels the same picture as {first[0].split(':', 1)[-1]} (the same bytes) "
                "otherwise; left out, the first file's labels stand"
            )
        return
    report.labeled_from[item_id] = (source, labels)
    stale = ws.store.older_label_version(item_id, labels, source=source)
    if stale is not None:
        report.stale.append((source.split(":", 1)[-1], *stale))
        return
    if ws.store.add_label(item_id, labels, source=source, round=rnd) is None:
        report.unchanged_labels += 1
        if ws.store.checked_unchanged(item_id):  # sent to be re-checked (an audit's zip), kept as they were
            report.checked += 1
        return
    report.labeled += 1
    counts = settle_prelabels(ws.store, item_id, labels, source=source, round=rnd)
    if counts is not None:
        for k, v in counts.items():
            report.acceptance[k] = report.acceptance.get(k, 0) + v
        if not (counts.get("adjusted") or counts.get("deleted") or counts.get("added")):
            report.as_drawn += 1


# -- COCO, VOC, CVAT, Label Studio: records that name their image ---------------------------


def _parse_records(
    path: Path | str, format: str, problems: Problems, *, video: str | None = None
) -> tuple[list[ImageLabels], Path | str]:
    """Parse a label file (or a folder of VOC XML files), local or in a bucket, into records;
    returns (records, the folder or prefix image references are relative to). ``video``: the
    file name of the video a CVAT for video file annotates (default: the one it names)."""
    remote = isinstance(path, str)
    if format == "voc":
        from .formats.voc import parse_voc

        if remote:
            single = str(path).lower().endswith(".xml")
            files: list[Path | str] = [path] if single else list(_tree(path, {".xml"}).values())
            files.sort(key=lambda f: natural_key(str(f)))
        else:
            single = path.is_file()  # type: ignore[union-attr]
            files = [path] if single else sorted(path.rglob("*.xml"), key=lambda f: natural_key(str(f)))  # type: ignore[union-attr]
        records = []
        for f in files:
            try:
                record, probs = parse_voc(_read_text(f), source=str(f))
            except (InputError, OSError, UnicodeDecodeError) as e:
                problems.add(f, str(e).removeprefix(f"{f}: "))
                continue
            problems.extend(probs)
            records.append(record)
        base = _parent(path) if single else path
        name = str(base).rstrip("/").rsplit("/", 1)[-1]
        return records, (_parent(base) if name.lower() == "annotations" else base)
    if not remote and not path.is_file():  # type: ignore[union-attr]
        raise InputError(f"{path}: {format} labels are read from one file")
    try:
        text = _read_text(path)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text: {e}") from e
    if format == "cvat":
        from .formats.cvat import is_cvat_video, parse_cvat_images, parse_cvat_video

        if is_cvat_video(text):  # frames named <video>#frame=<n>, as a video's frames are stored
            records, _, probs = parse_cvat_video(text, source=str(path), video=video)
        else:
            records, _, probs = parse_cvat_images(text, source=str(path))
    else:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
        if format == "coco":
            from .formats.coco import parse_coco

            records, _, probs = parse_coco(obj, source=str(path))
        else:
            from .formats.labelstudio import parse_labelstudio_export

            records, probs = parse_labelstudio_export(obj, source=str(path))
    problems.extend(probs)
    return records, _parent(path)


_LS_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def image_ref_path(ref: str) -> str:
    """The path an image reference points at (``/`` separated): a path, a URL's path, a Label
    Studio local-files URL's ``d`` (``/data/local-files/?d=dir/a.jpg``: ``dir/a.jpg``)."""
    parsed = urlparse(ref)
    if parsed.query and "d" in parse_qs(parsed.query):
        ref = parse_qs(parsed.query)["d"][0]
    else:
        ref = unquote(parsed.path) if parsed.scheme or ref.startswith("/data/") else ref
    return ref.replace("\\", "/")


def image_ref_name(ref: str) -> str:
    """The file name an image reference points at: a path, a URL, a Label Studio
    local-files URL (``/data/local-files/?d=dir/a.jpg``) or upload (``/data/upload/1/3f2a9c1e-a.jpg``)."""
    name = image_ref_path(ref).rsplit("/", 1)[-1]
    if "/data/upload/" in urlparse(ref).path:
        name = _LS_UPLOAD_PREFIX.sub("", name)
    return name


def closest_by_folders(candidates: Mapping[str, Iterable[str]], ref: str) -> set[str]:
    """Of candidates sharing a file name (each with the paths it was seen at), those whose
    folders match most of the folders ``ref`` ends in, innermost first: every video's
    ``frame_000012.jpg`` told apart by ``.../<video>/frame_000012``. All of them when the
    reference names no folder that tells them apart."""
    want = [x for x in image_ref_path(ref).split("/") if x][:-1]

    def matched(paths: Iterable[str]) -> int:
        best = 0
        for p in paths:
            have = [x for x in image_ref_path(p).split("/") if x][:-1]
            n = 0
            while n < min(len(want), len(have)) and want[-1 - n] == have[-1 - n]:
                n += 1
            best = max(best, n)
        return best

    score = {key: matched(paths) for key, paths in candidates.items()}
    top = max(score.values(), default=0)
    return {k for k, n in score.items() if n == top} if top else set(score)


class _ImageFinder:
    """Resolves an image reference from a label file to a file under some roots (folders or
    bucket prefixes), or to an item the store already knows: by the name a pre-labeled export
    sent it out under, or by its own file name. A reference
    that is itself a URI (``s3://...``) is taken as it is."""

    def __init__(self, ws: Workspace, roots: Sequence[Path | str], sent: SentNames) -> None:
        self.ws = ws
        self.roots = roots
        self.sent = sent
        self._by_name: dict[str, list[Path | str]] | None = None
        self._by_key: dict[str, str] = {}  # key relative to a bucket prefix -> URI

    def _index(self) -> dict[str, list[Path | str]]:
        if self._by_name is None:
            from .sources.remote import expand_uri

            self._by_name = {}
            for root in self.roots:
                if isinstance(root, str):
                    base = root.rstrip("/") + "/"
                    for uri in expand_uri(root, IMAGE_SUFFIXES):
                        self._by_key[uri.removeprefix(base)] = uri
                        self._by_name.setdefault(uri.rsplit("/", 1)[-1], []).append(uri)
                elif root.is_dir():
                    for f in root.rglob("*"):
                        if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                            self._by_name.setdefault(f.name, []).append(f)
        return self._by_name

    def find(self, ref: str) -> tuple[Path | str | None, str | None, str | None]:
        """(file or URI, known item id, problem)."""
        if is_remote(ref):
            return ref, None, None
        direct = Path(ref)
        local_roots = [r for r in self.roots if isinstance(r, Path)]
        for candidate in ([direct] if direct.is_absolute() else [r / ref for r in local_roots]):
            if candidate.is_file():
                return candidate, None, None
        if any(isinstance(r, str) for r in self.roots):
            self._index()
            uri = self._by_key.get(ref.replace("\\", "/").removeprefix("./"))
            if uri is not None:
                return uri, None, None
        name = image_ref_name(ref)
        files = self._index().get(name, [])
        if len(files) > 1:  # several files of that name: the folders in the reference choose
            closest = closest_by_folders({str(f): [str(f)] for f in files}, ref)
            files = [f for f in files if str(f) in closest]
        if len(files) == 1:
            return files[0], None, None
        if len(files) > 1:
            return None, None, f"ambiguous image {ref!r}: {len(files)} files named {name}"
        sent = _known(self.ws, self.sent.item(name))  # the name a batch out now was given (frame_000012_<id>.jpg)
        if sent is not None:
            return None, sent, None
        known = _workspace_named(self.ws, ref, Path(name).stem, name)
        if len(known) == 1:
            return None, known.pop(), None
        back = _known(self.ws, self.sent.item(name, closed=True))  # a batch back already: a re-run
        if back is not None:
            return None, back, None
        if known:
            return None, None, (f"ambiguous image {ref!r}: {len(known)} images named {name} in the workspace "
                                "and no folder in the reference tells them apart")
        return None, None, f"no image found for {ref!r} (looked under {', '.join(map(str, self.roots))})"


def _inside_image(rec: ImageLabels, item: Item, where: str, report: IngestReport) -> ImageLabels:
    """A record of a file that gives no image size, its boxes clipped to ``item`` (as the
    parsers clip those of files that give one); a box with nothing inside it is a problem."""
    boxes, keep, clipped = [], [], []
    for box in rec.xyxy.tolist():
        inside, past = clip_box(box, item.width, item.height)
        keep.append(inside is not None)
        if inside is None:
            report.problems.add(where, f"box {[round(v, 1) for v in box]} lies outside the "
                                       f"{item.width}x{item.height} image; left out", rec.line)
            continue
        boxes.append(inside)
        if past:
            clipped.append(where)
    mask = np.asarray(keep, bool)
    return replace(
        rec, xyxy=np.asarray(boxes, np.float64).reshape(-1, 4),
        class_names=tuple(n for n, k in zip(rec.class_names, keep) if k),
        scores=None if rec.scores is None else rec.scores[mask],
        extra={**rec.extra, "clipped": [*rec.extra.get("clipped", ()), *clipped]},
    )


def _add_records(
    ws: Workspace,
    records: Sequence[ImageLabels],
    roots: Sequence[Path | str],
    report: IngestReport,
    *,
    format: str,
    source: Path | str,
    add_classes: bool,
    splits: SplitRequest,
    progress: Progress | None,
) -> None:
    sent = SentNames(ws.store)
    finder = _ImageFinder(ws, roots, sent)
    sent_out = _SentOut(ws, sent)
    resolved: list[tuple[Item, Path | str | None, ImageLabels]] = []
    unlabeled: list[tuple[Item, Path | str]] = []  # images whose labels wait to be fixed: in the pool meanwhile
    for rec in records:
        where = f"{format}:{rec.file_name}" if rec.line is None else f"{format}:{rec.file_name} (line {rec.line})"
        pushed = _known(ws, rec.extra.get("item_id"))  # a task `boxloop push` made names its item
        if pushed is not None:
            file, item_id, problem = None, pushed, None
        else:
            file, item_id, problem = finder.find(rec.file_name)
        if problem:
            report.problems.add(where, problem, rec.line)
            continue
        try:
            item = index_image(file) if file is not None else ws.store.get_item(item_id)  # type: ignore[arg-type]
        except InputError as e:
            report.problems.add(file or rec.file_name, str(e).removeprefix(f"{file}: "))
            continue
        if rec.width and rec.height and (rec.width, rec.height) != (item.width, item.height):
            report.problems.add(
                where,
                f"size in the label file {rec.width}x{rec.height} differs from the image as "
                f"displayed {item.width}x{item.height}",
                rec.line,
            )
            continue
        if rec.extra.get("unreadable"):  # partial labels are never stored: the image would train without those objects
            report.problems.add(
                where, f"labels skipped (its image stays unlabeled) until the {rec.extra['unreadable']} annotation(s) "
                "that could not be read are fixed", rec.line,
            )
            if file is not None:
                unlabeled.append((item, file))
            continue
        if rec.width is None or rec.height is None:  # a file that gives no image size: its boxes met the image here
            rec = _inside_image(rec, item, where, report)
        copy = sent_out.original(file, item) if file is not None else None
        if copy is not None:  # an annotation tool's copy: its boxes, in its pixels, moved to the original's
            xyxy, keep = sent_out.boxes(rec.xyxy, copy, where, report)
            rec = replace(rec, xyxy=xyxy[keep], class_names=tuple(n for n, k in zip(rec.class_names, keep) if k),
                          scores=None if rec.scores is None else rec.scores[keep],
                          width=copy[0].width, height=copy[0].height)
            item = copy[0]
        resolved.append((item, file, rec))
        report.clipped.extend(rec.extra.get("clipped", ()))
    crowds = sum(len(rec.extra.get("crowd_xyxy", ())) for _, _, rec in resolved)
    if crowds:
        report.notes.append(f"{crowds} crowd region(s) (iscrowd: 1) left out of the boxes: a detector is not taught "
                            "to box a crowd as one object")
    sent_out.say(report)
    mapping = _map_names(
        ws, (n for _, _, r in resolved for n in r.class_names), add_classes=add_classes, source=source
    )
    rnd = current_round(ws)
    with ws.store.transaction():
        for item, file in unlabeled:
            _record(ws, item, file, report)
        for item, file, rec in resolved:
            if file is not None:
                stored = _record(ws, item, file, report)
            else:  # an item the workspace has (a video's frame, a task boxloop pushed)
                stored = item
                report.known += 1
            labels = Detections(rec.xyxy, np.array([mapping[n] for n in rec.class_names], np.int64))
            _store_label(ws, stored.id, labels, f"{format}:{rec.file_name}", rnd, report)
            splits.take(stored.id, file if file is not None else rec.file_name,
                        named=rec.extra.get("subset") or rec.extra.get("label_file"))
            if progress:
                progress(1)
        report.notes.extend(splits.apply(ws.store))
