"""Tiles: small objects in large pictures. A detector sees a picture resized to its input (320
or 640 pixels); in a 4000-pixel photo a 30-pixel knot or LCD digit becomes 3 pixels and is lost.
A model version trained with ``--tile T`` learns from T x T crops of the labeled pictures at
their full resolution, and predicts the same way: each picture is cut into overlapping T x T
windows, every window is predicted, and the boxes are mapped back to the picture and merged
where one object was seen in several windows. The whole picture is predicted once more, for
its embedding and for objects too large for a window (its boxes of half a tile or more). The pool, the scores and the annotation tool see whole pictures as before.

Windows overlap by ``overlap`` of their side, so an object a window's edge cuts is whole in
its neighbour. In training a label a window cuts keeps the part inside when at least
:data:`MIN_VISIBLE` of its area is; smaller slivers are left out of that tile. Tiles are made
once per picture and window size and kept under the workspace's ``tiles/``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import InputError
from .types import Detections, Item

__all__ = ["DEFAULT_OVERLAP", "MIN_VISIBLE", "TILES_DIR", "WHOLE_PICTURE_MIN", "labels_in_window", "merge_windows",
           "tile_training_set", "tile_windows"]

log = logging.getLogger(__name__)
TILES_DIR = "tiles"
DEFAULT_OVERLAP = 0.2
MIN_VISIBLE = 0.3
# boxes from two windows (or a window and the whole picture) are one object when the smaller
# lies this much inside the larger (intersection over the smaller's area): a box a window's
# edge cut off is mostly inside the whole box its neighbour saw, though their IoU is low
SAME_OBJECT_IOS = 0.5
# of the whole picture's own pass, only boxes at least this share of a tile on their long side
# are kept: objects too large for the windows (the rest is a tile-trained model far off scale)
WHOLE_PICTURE_MIN = 0.5

Window = tuple[int, int, int, int]


def tile_windows(width: int, height: int, tile: int, overlap: float = DEFAULT_OVERLAP) -> list[Window]:
    """The (x0, y0, x1, y1) windows of side ``tile`` (or the picture's, where it is smaller)
    that cover a ``width`` x ``height`` picture, neighbours overlapping by at least ``overlap``
    of a side, spread evenly from edge to edge. Row by row."""
    if tile < 32:
        raise ValueError(f"a tile is at least 32 pixels, got {tile}")
    if not 0.0 <= overlap < 0.9:
        raise ValueError(f"overlap must be in [0, 0.9), got {overlap}")

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        step = max(1, round(tile * (1.0 - overlap)))
        count = -(-(n - tile) // step) + 1  # windows a row needs at that step; spread them evenly
        return [int(v) for v in np.linspace(0, n - tile, count).round()]

    tw, th = min(tile, width), min(tile, height)
    return [(x, y, x + tw, y + th) for y in starts(height) for x in starts(width)]


def labels_in_window(labels: Detections, window: Window, min_visible: float = MIN_VISIBLE) -> Detections:
    """The labels a window shows, in its pixels: each box clipped to the window, kept when at
    least ``min_visible`` of its area is inside."""
    if not len(labels):
        return Detections.empty()
    x0, y0, x1, y1 = window
    xyxy = labels.xyxy.astype(np.float64)
    clipped = np.clip(xyxy, [x0, y0, x0, y0], [x1, y1, x1, y1])
    inside = np.maximum(clipped[:, 2] - clipped[:, 0], 0) * np.maximum(clipped[:, 3] - clipped[:, 1], 0)
    area = np.maximum(xyxy[:, 2] - xyxy[:, 0], 0) * np.maximum(xyxy[:, 3] - xyxy[:, 1], 0)
    keep = (inside > 0) & (inside >= min_visible * np.maximum(area, 1e-9))
    return Detections((clipped[keep] - [x0, y0, x0, y0]).astype(np.float32), labels.class_id[keep])


def merge_windows(parts: Sequence[tuple[Detections, Window | None]]) -> Detections:
    """One picture's boxes from its windows' predictions (each in its window's pixels; a
    window of ``None``: the whole picture). Boxes of one class from different windows that
    are one object (:data:`SAME_OBJECT_IOS`) become one: the union of their boxes, with the
    most confident one's confidence and per-box extras. Boxes of one window are kept as the
    model gave them (its own NMS has run)."""
    shifted, origin = [], []
    for k, (d, win) in enumerate(parts):
        if not len(d):
            continue
        dx, dy = (win[0], win[1]) if win is not None else (0, 0)
        shifted.append(Detections(d.xyxy + np.array([dx, dy, dx, dy], np.float32), d.class_id, d.confidence, d.data))
        origin.append(np.full(len(d), k))
    if not shifted:  # nothing found: the model's own empty answer (confidences, class probabilities: none)
        return parts[0][0] if parts else Detections.empty()
    d = Detections.concat(shifted)
    src = np.concatenate(origin)
    conf = d.confidence if d.confidence is not None else np.ones(len(d), np.float32)
    order = np.argsort(-conf, kind="stable")
    xyxy = d.xyxy.astype(np.float64)
    area = np.maximum(xyxy[:, 2] - xyxy[:, 0], 0) * np.maximum(xyxy[:, 3] - xyxy[:, 1], 0)
    taken = np.zeros(len(d), bool)
    keep: list[int] = []
    boxes = xyxy.copy()
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        keep.append(int(i))
        seen = {int(src[i])}  # one box per window: a window's own boxes are separate objects
        while True:  # grow the object while other windows' boxes lie mostly inside it
            rest = np.flatnonzero(~taken & (d.class_id == d.class_id[i]) & ~np.isin(src, list(seen)))
            if not len(rest):
                break
            u = boxes[i]
            ix = np.maximum(0, np.minimum(xyxy[rest, 2], u[2]) - np.maximum(xyxy[rest, 0], u[0]))
            iy = np.maximum(0, np.minimum(xyxy[rest, 3], u[3]) - np.maximum(xyxy[rest, 1], u[1]))
            u_area = max((u[2] - u[0]) * (u[3] - u[1]), 1e-9)
            ios = ix * iy / np.maximum(np.minimum(area[rest], u_area), 1e-9)
            same = rest[ios >= SAME_OBJECT_IOS]
            if not len(same):
                break
            for j in same[np.argsort(-conf[same], kind="stable")]:  # the most confident of each window
                if int(src[j]) in seen:
                    continue
                seen.add(int(src[j]))
                taken[j] = True
                boxes[i, :2] = np.minimum(boxes[i, :2], xyxy[j, :2])
                boxes[i, 2:] = np.maximum(boxes[i, 2:], xyxy[j, 2:])
    idx = np.array(keep, dtype=np.int64)
    kept = d[idx]
    return Detections(boxes[idx].astype(np.float32), kept.class_id, kept.confidence, kept.data)


def tile_training_set(
    folder: Path, items: Sequence[Item], boxes: Mapping[str, Detections], names: Mapping[str, str], tile: int,
    *, overlap: float = DEFAULT_OVERLAP, workers: int | None = None,
) -> tuple[list[Item], dict[str, Detections], dict[str, str]]:
    """A training set of tiles: for each labeled picture, its windows as pictures of their own
    (JPEGs under ``folder``, made once), each with the labels it shows. A picture's windows
    that show no label go in too, as many as those that do (at least one), evenly spread: the
    model learns the background without it outnumbering the objects. A picture no larger than
    a tile is its own single tile. Returns the tiles as items (split as their picture's), their
    labels and their file names in the view. A picture that cannot be read is left out, with
    a warning."""
    from .backends.ultralytics import usable_cores

    folder.mkdir(parents=True, exist_ok=True)

    def cut(it: Item) -> list[tuple[Item, Detections, str]]:
        labels = boxes.get(it.id, Detections.empty())
        windows = tile_windows(it.width, it.height, tile, overlap)
        shown = [labels_in_window(labels, w) for w in windows]
        full = [k for k, s in enumerate(shown) if len(s)]
        empty = [k for k, s in enumerate(shown) if not len(s)]
        n_empty = min(len(empty), max(1, len(full)))
        spread = np.linspace(0, len(empty) - 1, n_empty).round().astype(int) if n_empty else []
        chosen = sorted(set(full) | {empty[j] for j in spread})
        paths = {k: folder / f"{it.sha256[:24]}-{tile}-{windows[k][0]}-{windows[k][1]}.jpg" for k in chosen}
        if any(not p.is_file() for p in paths.values()):
            from .atomic import write_bytes_atomic
            from .modeling import decode_file
            from .shrink import encode_picture

            rgb = decode_file(it.uri, size=(it.width, it.height), sha256=it.sha256)
            for k, p in paths.items():
                if not p.is_file():
                    x0, y0, x1, y1 = windows[k]
                    write_bytes_atomic(p, encode_picture(np.ascontiguousarray(rgb[y0:y1, x0:x1]), ".jpg"))
        stem = PurePosixPath(names[it.id]).stem
        out = []
        for k in chosen:
            x0, y0, x1, y1 = windows[k]
            tile_item = replace(it, id=f"{it.id}@{x0},{y0}", uri=str(paths[k]), width=x1 - x0, height=y1 - y0)
            out.append((tile_item, shown[k], f"{stem}_{x0}_{y0}.jpg"))
        return out

    def safe_cut(it: Item) -> list[tuple[Item, Detections, str]]:
        try:
            return cut(it)
        except (InputError, OSError, ValueError) as e:  # one picture, not the run
            log.warning("%s: no tiles (%s); left out of training", it.uri, e)
            return []

    tiles: list[Item] = []
    tile_boxes: dict[str, Detections] = {}
    tile_names: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers or usable_cores(), thread_name_prefix="boxloop-tiles") as pool:
        for made in pool.map(safe_cut, items):
            for t, d, name in made:
                tiles.append(t)
                tile_boxes[t.id] = d
                tile_names[t.id] = name
    log.info("%d tile(s) of %d picture(s) under %s", len(tiles), len(items), folder)
    return tiles, tile_boxes, tile_names
