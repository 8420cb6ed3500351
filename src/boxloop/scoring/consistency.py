"""Consistency under a horizontal flip: a model that sees different things in an image and
in its mirror image has not learned that image yet.

The flipped predictions are in the flipped image's pixels (what running the detector on
the mirrored image returns); they are mirrored back with the item width. Boxes at or above
``min_confidence`` are matched one-to-one, greedily by IoU >= ``match_iou`` (any class).
Disagreement = (unmatched boxes + matches that change class + sum of (1 - IoU) over the
matches that keep their class) / (matches + unmatched boxes), in [0, 1]; 0 when neither
view has a box.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .boxes import PackedBoxes, greedy_match, group_pairs, pair_iou
from .pool import Pool, ScoreOptions

__all__ = ["consistency", "consistency_parts", "explain_consistency"]

_PAIRS_PER_BLOCK = 1 << 22


def _unflip(flipped: PackedBoxes, widths: np.ndarray) -> np.ndarray:
    w = np.repeat(np.asarray(widths, np.float32), flipped.counts)
    x = flipped.xyxy
    return np.stack([w - x[:, 2], x[:, 1], w - x[:, 0], x[:, 3]], axis=1)


def consistency_parts(
    boxes: PackedBoxes, flipped: PackedBoxes, widths: np.ndarray, options: ScoreOptions
) -> dict[str, np.ndarray]:
    """Per item: matches, unmatched boxes, class changes and summed (1 - IoU) of the rest."""
    orig = boxes.keep(boxes.confidence >= options.min_confidence)
    flip = flipped.keep(flipped.confidence >= options.min_confidence)
    flip_xyxy = _unflip(flip, widths)
    a, b, g = group_pairs(orig.offsets[:-1], orig.counts, flip.offsets[:-1], flip.counts)
    iou = pair_iou(orig.xyxy[a], flip_xyxy[b])
    ok = iou >= options.match_iou
    a, b, g, iou = a[ok], b[ok], g[ok], iou[ok]
    acc = greedy_match(a, b, iou)
    a, b, g, iou = a[acc], b[acc], g[acc], iou[acc]
    n = len(boxes)
    matches = np.bincount(g, minlength=n).astype(np.float64)
    changed = orig.class_id[a] != flip.class_id[b]
    class_changes = np.bincount(g, weights=changed.astype(np.float64), minlength=n)
    loose = np.bincount(g, weights=np.where(changed, 0.0, 1.0 - iou), minlength=n)
    unmatched = orig.counts + flip.counts - 2 * matches
    return {"matches": matches, "unmatched": unmatched, "class_changes": class_changes, "loose": loose}


def _blocked_parts(
    boxes: PackedBoxes, flipped: PackedBoxes, widths: np.ndarray, options: ScoreOptions
) -> dict[str, np.ndarray]:
    """consistency_parts over blocks of items, so no block holds more than ~4M box pairs."""
    cum = np.cumsum(boxes.counts * flipped.counts + 1)
    parts: list[dict[str, np.ndarray]] = []
    start = 0
    while start < len(boxes):
        limit = (cum[start - 1] if start else 0) + _PAIRS_PER_BLOCK
        stop = max(int(np.searchsorted(cum, limit, side="right")), start + 1)
        parts.append(consistency_parts(boxes.slice(start, stop), flipped.slice(start, stop), widths[start:stop], options))
        start = stop
    if not parts:
        return consistency_parts(boxes, flipped, widths, options)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def consistency(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """Disagreement in [0, 1] between the predictions on an image and on its mirror image."""
    if pool.flipped is None or pool.widths is None:
        raise InputError(
            "consistency needs predictions on the horizontally flipped images; run "
            "`boxloop predict --hflip` for this model version first"
        )
    p = _blocked_parts(pool.boxes, pool.flipped, pool.widths, options)
    total = p["matches"] + p["unmatched"]
    return np.where(total > 0, (p["unmatched"] + p["class_changes"] + p["loose"]) / np.maximum(total, 1), 0.0)


def explain_consistency(pool: Pool, index: int, options: ScoreOptions) -> dict[str, Any]:
    """The counts behind one item's disagreement."""
    if pool.flipped is None or pool.widths is None:
        return {}
    p = consistency_parts(
        pool.boxes.slice(index, index + 1), pool.flipped.slice(index, index + 1),
        pool.widths[index : index + 1], options,
    )
    return {k: round(float(v[0]), 4) if k == "loose" else int(v[0]) for k, v in p.items()}
