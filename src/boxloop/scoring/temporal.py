"""Temporal model assertions over ordered video frames (Kang et al., "Model Assertions for
Monitoring and Improving ML Models", MLSys 2020): the ``flicker`` scorer.

The rule, for every frame i that has a frame before (i-1) and after (i+1) in its video:

* boxes of i-1 and i+1 (same class when ``match_class``) are matched one-to-one, greedily
  by descending IoU, keeping pairs with IoU >= ``t_track``; the mean of a matched pair is
  where a box should be in frame i;
* if no box of frame i (same class) overlaps that mean box with IoU >= ``t_assert``, the box
  is **missing**: frame i flickers, and the mean box is kept as an **imputed box**
  (confidence = mean of the pair's) to offer as a pre-label;
* a box of frame i with no box (same class) of IoU >= ``t_assert`` in i-1 nor in i+1
  **appears** for one frame only.

Only boxes with confidence >= ``min_confidence`` take part (below it the model "did not
see" the box). Frame i's score is its number of missing plus appearing boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Detections
from .boxes import greedy_match, group_pairs, pair_iou, ranges
from .pool import FrameSequence, Pool, ScoreOptions

__all__ = ["FlickerResult", "explain_flicker", "flicker", "flicker_frames"]

_PAIRS_PER_BLOCK = 1 << 22  # box pairs materialised at once


@dataclass(frozen=True, eq=False)
class FlickerResult:
    """Flicker over a frame sequence: per-frame counts and every event, as flat arrays."""

    missing: np.ndarray  # (m,) boxes missing in each frame
    appearing: np.ndarray  # (m,) boxes seen in that frame only
    imputed_frame: np.ndarray  # (E,) frame (sequence position) of each imputed box
    imputed_xyxy: np.ndarray  # (E, 4)
    imputed_class: np.ndarray  # (E,)
    imputed_confidence: np.ndarray  # (E,)
    appear_frame: np.ndarray  # (A,)
    appear_xyxy: np.ndarray  # (A, 4)
    appear_class: np.ndarray  # (A,)
    appear_confidence: np.ndarray  # (A,)

    @property
    def scores(self) -> np.ndarray:
        """Per frame: missing + appearing boxes."""
        return (self.missing + self.appearing).astype(np.float64)

    def imputed(self, frame: int) -> Detections:
        """The imputed boxes of one frame (flagged ``data["imputed"]``)."""
        rows = self.imputed_frame == frame
        return Detections(
            self.imputed_xyxy[rows], self.imputed_class[rows], self.imputed_confidence[rows],
            {"imputed": np.ones(int(rows.sum()), bool)},
        )


def flicker_frames(sequence: FrameSequence, options: ScoreOptions) -> FlickerResult:
    """Run the flicker assertion over every frame of a sequence (see the module doc)."""
    boxes = sequence.boxes.keep(sequence.boxes.confidence >= options.min_confidence)
    starts, counts = boxes.offsets[:-1], boxes.counts
    xyxy, cls, conf = boxes.xyxy, boxes.class_id, boxes.confidence
    prev, nxt = sequence.neighbours()
    centres = np.flatnonzero((prev >= 0) & (nxt >= 0))
    m = len(sequence)
    missing = np.zeros(m, np.int64)
    appearing = np.zeros(m, np.int64)
    imp: list[tuple[np.ndarray, ...]] = []
    app: list[tuple[np.ndarray, ...]] = []

    # block the centre frames so no block materialises more than _PAIRS_PER_BLOCK pairs
    cp, cq, cc = counts[prev[centres]], counts[nxt[centres]], counts[centres]
    cost = cp * cq + cc * (cp + cq) + cc * np.minimum(cp, cq) + 1
    cum = np.cumsum(cost)
    bounds = [0]
    while bounds[-1] < len(centres):
        limit = (cum[bounds[-1] - 1] if bounds[-1] else 0) + _PAIRS_PER_BLOCK
        bounds.append(max(int(np.searchsorted(cum, limit, side="right")), bounds[-1] + 1))

    def same_class(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cls[a] == cls[b] if options.match_class else np.ones(len(a), bool)

    for lo, hi in pairwise(bounds):
        c = centres[lo:hi]
        p, q = prev[c], nxt[c]
        # 1. track: match boxes of i-1 with boxes of i+1
        a, b, g = group_pairs(starts[p], counts[p], starts[q], counts[q])
        ok = same_class(a, b)
        a, b, g = a[ok], b[ok], g[ok]
        iou = pair_iou(xyxy[a], xyxy[b])
        ok = iou >= options.t_track
        a, b, g, iou = a[ok], b[ok], g[ok], iou[ok]
        acc = greedy_match(a, b, iou)
        a, b, g = a[acc], b[acc], g[acc]
        order = np.argsort(g, kind="stable")
        a, b, g = a[order], b[order], g[order]
        mean_xyxy = (xyxy[a] + xyxy[b]) / 2
        mean_cls = cls[a]
        mean_conf = (conf[a] + conf[b]) / 2
        # 2. assert: is there a box in frame i where the mean box says one should be?
        n_imp = np.bincount(g, minlength=len(c))
        imp_start = np.concatenate([[0], np.cumsum(n_imp)[:-1]])
        ii, jj, _ = group_pairs(imp_start, n_imp, starts[c], counts[c])
        ok = (mean_cls[ii] == cls[jj]) if options.match_class else np.ones(len(ii), bool)
        ii, jj = ii[ok], jj[ok]
        covered = np.zeros(len(a), bool)
        covered[ii[pair_iou(mean_xyxy[ii], xyxy[jj]) >= options.t_assert]] = True
        lost = ~covered
        frames = c[g[lost]]
        np.add.at(missing, frames, 1)
        imp.append((frames, mean_xyxy[lost], mean_cls[lost], mean_conf[lost]))
        # 3. one-frame appearances: a box of i with nothing near it in i-1 nor in i+1
        seen = np.zeros(len(cls), bool)
        for other in (p, q):
            x, y, _ = group_pairs(starts[c], counts[c], starts[other], counts[other])
            ok = same_class(x, y)
            x, y = x[ok], y[ok]
            seen[x[pair_iou(xyxy[x], xyxy[y]) >= options.t_assert]] = True
        own = np.repeat(c, counts[c])
        rows = ranges(starts[c], counts[c])
        alone = rows[~seen[rows]]
        np.add.at(appearing, own[~seen[rows]], 1)
        app.append((own[~seen[rows]], xyxy[alone], cls[alone], conf[alone]))

    def cat(parts: list[tuple[np.ndarray, ...]], k: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.concatenate([t[k] for t in parts]) if parts else np.zeros(shape, dtype)

    return FlickerResult(
        missing, appearing,
        cat(imp, 0, (0,), np.int64), cat(imp, 1, (0, 4), np.float32).astype(np.float32),
        cat(imp, 2, (0,), np.int64), cat(imp, 3, (0,), np.float32).astype(np.float32),
        cat(app, 0, (0,), np.int64), cat(app, 1, (0, 4), np.float32),
        cat(app, 2, (0,), np.int64), cat(app, 3, (0,), np.float32),
    )


def _sequence(pool: Pool) -> FrameSequence:
    if pool.sequence is None or not (pool.sequence.pool_index >= 0).any():
        raise InputError(
            "flicker needs frames in order, but no item of the pool has a video id and frame "
            "index; add videos with `boxloop add video` or image folders with `--sequence`"
        )
    return pool.sequence


def flicker(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """Missing plus one-frame boxes of each pool frame; items outside any video score 0."""
    seq = _sequence(pool)
    per_frame = flicker_frames(seq, options).scores
    out = np.zeros(len(pool), np.float64)
    inside = seq.pool_index >= 0
    out[seq.pool_index[inside]] = per_frame[inside]
    return out


def _window(seq: FrameSequence, index: int) -> tuple[FrameSequence, int] | None:
    """The frame of pool item ``index`` with its two neighbours, and its position there."""
    where = np.flatnonzero(seq.pool_index == index)
    if not len(where):
        return None
    j = int(where[0])
    prev, nxt = seq.neighbours()
    frames = [f for f in (prev[j], j, nxt[j]) if f >= 0]
    return seq.take(np.array(frames, np.int64)), frames.index(j)


def explain_flicker(pool: Pool, index: int, options: ScoreOptions) -> dict[str, Any]:
    """Every flicker event of one pool item: which class, which frames (by frame index)."""
    seq = _sequence(pool)
    found = _window(seq, index)
    if found is None:
        return {"events": [], "note": "not part of a video"}
    window, j = found
    if len(window) < 3:
        return {"events": [], "frame": int(window.frame_index[j]), "note": "first or last frame of its video"}
    result = flicker_frames(window, options)
    fi = [int(f) for f in window.frame_index]
    events: list[dict[str, Any]] = []
    for row in np.flatnonzero(result.imputed_frame == j):
        events.append({
            "kind": "missing",
            "class_id": int(result.imputed_class[row]),
            "seen_in": [fi[0], fi[2]],
            "missing_in": fi[1],
            "imputed_xyxy": [round(float(v), 1) for v in result.imputed_xyxy[row]],
            "min_confidence": float(options.min_confidence),  # "missing": no such box at or above it
        })
    for row in np.flatnonzero(result.appear_frame == j):
        events.append({
            "kind": "appears",
            "class_id": int(result.appear_class[row]),
            "seen_in": fi[1],
            "absent_in": [fi[0], fi[2]],
            "confidence": round(float(result.appear_confidence[row]), 4),
        })
    return {"frame": fi[1], "events": events}
