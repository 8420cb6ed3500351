"""The scorer of objects the model did not see: ``missed``.

Uncertainty scorers read the boxes a detector gives, so they cannot see the objects it
misses outright: a display filmed at night yields no box at all and ranks as the least
doubtful image of the pool, while it is the one whose labels teach most. ``missed`` compares
an image's confident boxes with what the labeled images hold: the expected number of boxes
beyond the ones seen, E[max(0, L - c)] over the labeled images' box counts L, where c counts
the image's boxes at or above ``min_confidence`` (the operating threshold). A pool whose
labeled images are often empty gives an empty prediction little weight; one where every
labeled image holds four digits gives it four.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .boxes import segment_sum
from .pool import Pool, ScoreOptions

__all__ = ["confident_counts", "expected_missed", "explain_missed", "missed"]


def confident_counts(pool: Pool, options: ScoreOptions) -> np.ndarray:
    """Per item, how many predicted boxes reach ``min_confidence``."""
    seen = (pool.boxes.confidence >= options.min_confidence).astype(np.float64)
    return segment_sum(seen, pool.boxes.offsets)


def expected_missed(seen: np.ndarray, labeled_counts: np.ndarray) -> np.ndarray:
    """Mean over ``labeled_counts`` of max(0, count - seen), for each entry of ``seen``."""
    seen = np.asarray(seen, np.float64)
    counts = np.sort(np.asarray(labeled_counts, np.float64))
    if not len(counts):
        return np.zeros(len(seen))
    above = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # sum of counts[j:]
    j = np.searchsorted(counts, seen, side="right")  # counts[j:] > seen
    return (above[j] - seen * (len(counts) - j)) / len(counts)


def missed(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """Expected boxes beyond the item's confident ones, by the labeled images' box counts."""
    return expected_missed(confident_counts(pool, options), pool.labeled_box_counts)  # type: ignore[arg-type]


def explain_missed(pool: Pool, index: int, options: ScoreOptions) -> dict[str, Any]:
    """The confident boxes seen in an item against the labeled images' box counts."""
    counts = np.asarray(pool.labeled_box_counts, np.float64)
    seen = float(confident_counts(pool.slice(index, index + 1), options)[0])
    return {
        "confident_boxes": int(seen),
        "min_confidence": options.min_confidence,
        "labeled_images": len(counts),
        "labeled_mean_boxes": round(float(counts.mean()), 3) if len(counts) else 0.0,
        "expected_missed": round(float(expected_missed(np.array([seen]), counts)[0]), 4),
    }
