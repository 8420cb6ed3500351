"""Scorers of what the labels do not cover yet: ``class_rarity`` (predicted classes that are
rare among the labels) and ``novelty`` (cosine distance to the nearest labeled image)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .boxes import segment_max, segment_sum
from .pool import Pool, ScoreOptions

__all__ = [
    "class_rarity",
    "explain_class_rarity",
    "explain_novelty",
    "nearest_cosine",
    "novelty",
    "rarity_weights",
    "unit_rows",
]

_ROWS_PER_BLOCK = 8192


def rarity_weights(label_counts: np.ndarray) -> np.ndarray:
    """Per class, its surprise among the labeled boxes in [0, 1]:
    log((N + C) / (n_c + 1)) / log(N + C), N boxes in all, C classes (add-one smoothing)."""
    counts = np.asarray(label_counts, np.float64)
    total = counts.sum() + len(counts)
    if total <= 1:
        return np.ones(len(counts))
    return np.log(total / (counts + 1.0)) / np.log(total)


def _label_counts(pool: Pool) -> np.ndarray:
    if pool.labeled_class_counts is None:
        return np.zeros(pool.num_classes, np.int64)
    counts = np.zeros(pool.num_classes, np.int64)
    given = np.asarray(pool.labeled_class_counts, np.int64)[: pool.num_classes]
    counts[: len(given)] = given
    return counts


def class_rarity(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """Largest (confidence x expected rarity of the box's class) over boxes at or above the
    band's low edge; the expectation runs over the box's class probabilities."""
    b = pool.boxes
    weights = rarity_weights(_label_counts(pool)).astype(np.float32)
    per_box = b.confidence * (b.class_probs @ weights)
    evidence = b.confidence >= options.band[0]
    has = segment_sum(evidence.astype(np.float64), b.offsets) > 0
    best = segment_max(np.where(evidence, per_box, -np.inf), b.offsets, empty=0.0)
    return np.where(has, best, 0.0)


def explain_class_rarity(pool: Pool, index: int, options: ScoreOptions) -> dict[str, Any]:
    """The rarest confident class predicted in an item and how often it is labeled."""
    counts = _label_counts(pool)
    weights = rarity_weights(counts)
    d = pool.boxes.detections(index)
    conf = np.asarray(d.confidence)
    keep = conf >= options.band[0]
    if not keep.any():
        return {"note": f"no box at or above confidence {options.band[0]}"}
    per_box = conf[keep] * (np.asarray(d.data["class_probs"])[keep] @ weights)
    j = int(np.argmax(per_box))
    cid = int(d.class_id[keep][j])
    return {
        "class_id": cid,
        "confidence": round(float(conf[keep][j]), 4),
        "labeled_boxes": int(counts[cid]),
        "labeled_total": int(counts.sum()),
        "rarity": round(float(weights[cid]), 4),
    }


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1).astype(np.float32)


def nearest_cosine(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, (cosine similarity to its nearest reference row, that row's index);
    computed in blocks of rows so the similarity matrix never holds the whole pool."""
    q, r = unit_rows(queries), unit_rows(references)
    best = np.empty(len(q), np.float32)
    which = np.empty(len(q), np.int64)
    for a in range(0, len(q), _ROWS_PER_BLOCK):
        sim = q[a : a + _ROWS_PER_BLOCK] @ r.T
        which[a : a + _ROWS_PER_BLOCK] = sim.argmax(axis=1)
        best[a : a + _ROWS_PER_BLOCK] = sim[np.arange(len(sim)), which[a : a + _ROWS_PER_BLOCK]]
    return best, which


def _novelty_inputs(pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    if pool.embeddings is None:
        raise InputError(
            "novelty needs image embeddings of the pool; run `boxloop embed` (the newest trained "
            "model embeds every image; `--model` for another)"
        )
    if pool.labeled_embeddings is None or not len(pool.labeled_embeddings):
        version = f" --model {pool.embeddings_version}" if pool.embeddings_version else ""
        raise InputError(
            "novelty needs embeddings of labeled images too; run "
            f"`boxloop embed --scope labeled{version}`"
        )
    return pool.embeddings, pool.labeled_embeddings


def novelty(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """Cosine distance (1 - similarity, in [0, 2]) to the nearest labeled image."""
    emb, labeled = _novelty_inputs(pool)
    sim, _ = nearest_cosine(emb, labeled)
    return 1.0 - sim.astype(np.float64)


def explain_novelty(pool: Pool, index: int, options: ScoreOptions) -> dict[str, Any]:
    """The nearest labeled image (its row among the labeled embeddings) and the distance."""
    emb, labeled = _novelty_inputs(pool)
    sim, which = nearest_cosine(emb[index : index + 1], labeled)
    row = int(which[0])
    nearest = pool.labeled_ids[row] if row < len(pool.labeled_ids) else row
    return {"nearest_labeled": nearest, "distance": round(float(1.0 - sim[0]), 4)}
