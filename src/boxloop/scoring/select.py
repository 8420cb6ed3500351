"""Selectors: from scores (and embeddings) to the k items a person labels next.

* ``top_k``: the k highest scores, ties broken by pool order.
* ``k_center``: greedy core-set (Sener & Savarese, 2018) on embeddings, seeded with the
  labeled set: each pick is the item farthest from everything labeled or picked.
* ``ranked_diverse``: ranked batch-mode (Cardoso et al., 2017, as in modAL): each pick
  maximises alpha * (1 - cosine similarity to the nearest labeled or picked item)
  + (1 - alpha) * score, so high scorers win unless they sit next to something covered.
* ``suppress_duplicates``: walk a ranking and drop every item whose cosine similarity to an
  item already kept reaches a threshold (a video must not fill the batch with one moment).

Scores are combined by :func:`combine` after :func:`normalise` ("percentile": the fraction
of the pool an item beats, so 0 stays 0 and scales of different scorers do not matter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .diversity import nearest_cosine, unit_rows

__all__ = [
    "NORMALISATIONS",
    "Picks",
    "combine",
    "k_center",
    "normalise",
    "ranked_diverse",
    "suppress_duplicates",
    "top_k",
]

NORMALISATIONS = ("percentile", "minmax")
_ROWS_PER_BLOCK = 16384


def normalise(scores: np.ndarray, method: str = "percentile") -> np.ndarray:
    """Scores → [0, 1]. "percentile": fraction of the other items with a lower score, ties
    sharing the middle of their ranks, save the lowest score's, which maps to 0 (an image
    a scorer finds nothing in adds nothing; a scorer that saturates, giving many images its
    top value, still ranks them high, not at the bottom of their tie); "minmax": linear."""
    s = np.asarray(scores, np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n = len(s)
    if method == "percentile":
        if n < 2:
            return np.zeros(n)
        ordered = np.sort(s)
        below = np.searchsorted(ordered, s, side="left")
        ties = np.searchsorted(ordered, s, side="right") - below - 1
        return np.where(s == ordered[0], 0.0, (below + ties / 2) / (n - 1))
    if method == "minmax":
        if n == 0:
            return s
        lo, hi = s.min(), s.max()
        return (s - lo) / (hi - lo) if hi > lo else np.zeros(n)
    raise InputError(f"unknown normalisation {method!r}; known: {', '.join(NORMALISATIONS)}")


def combine(
    components: Mapping[str, np.ndarray], weights: Mapping[str, float], *, normalisation: str = "percentile"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of normalised component scores; returns (combined, normalised parts)."""
    parts = {name: normalise(components[name], normalisation) for name in weights}
    n = len(next(iter(components.values()))) if components else 0
    total = np.zeros(n)
    for name, w in weights.items():
        total += w * parts[name]
    return total, parts


def top_k(scores: np.ndarray, k: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the k highest scores, highest first; equal scores keep pool order."""
    s = np.asarray(scores, np.float64)
    k = min(int(k), len(s))
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < len(s):
        cut = np.partition(-s, k - 1)[k - 1]
        cand = np.flatnonzero(-s <= cut)
    else:
        cand = np.arange(len(s))
    order = np.lexsort((cand, -s[cand]))
    return cand[order][:k].astype(np.int64)


def _sq_dist_to(points: np.ndarray, norms: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Smallest squared Euclidean distance of each point to any of ``centres``."""
    cn = np.einsum("ij,ij->i", centres, centres)
    out = np.empty(len(points), np.float32)
    for a in range(0, len(points), _ROWS_PER_BLOCK):
        block = points[a : a + _ROWS_PER_BLOCK]
        d = norms[a : a + _ROWS_PER_BLOCK, None] - 2 * (block @ centres.T) + cn[None, :]
        out[a : a + _ROWS_PER_BLOCK] = np.maximum(d.min(axis=1), 0)
    return out


def k_center(
    embeddings: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    labeled: np.ndarray | None = None,
    frontier: int = 8192,
    batch: int = 64,
) -> np.ndarray:
    """Greedy k-center picks (indices, in pick order): each is the point farthest (Euclidean)
    from the labeled points and the picks so far; without labeled points the first is random.

    Exact, yet reads the matrix far less often than once per pick: a point's distance to the
    picks only shrinks, so a stale distance is an upper bound. Only the frontier (the points
    with the largest bounds) is brought up to date, in small batches, until the best one is
    current and no bound outside the frontier exceeds it (lazy greedy). When the frontier
    runs dry, one blocked pass updates every point with the picks made since the last pass
    and a new frontier is drawn.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(x)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    norms = np.einsum("ij,ij->i", x, x)
    centres = np.empty((k, x.shape[1]), np.float32)
    centre_norms = np.empty(k, np.float32)
    picks: list[int] = []
    if labeled is not None and len(labeled):
        bound = _sq_dist_to(x, norms, np.asarray(labeled, np.float32))
    else:
        first = int(rng.integers(n))
        picks.append(first)
        centres[0], centre_norms[0] = x[first], norms[first]
        bound = np.maximum(norms - 2 * (x @ x[first]) + norms[first], 0).astype(np.float32)
        bound[first] = -1.0
    fresh = np.full(n, len(picks), np.int64)  # how many picks each bound already accounts for
    size = min(max(frontier, 2 * k), n)
    passed = len(picks)  # picks already folded into every bound

    def update(rows: np.ndarray | slice, lo: int, t: int) -> None:
        d = norms[rows, None] - 2 * (x[rows] @ centres[lo:t].T) + centre_norms[None, lo:t]
        bound[rows] = np.minimum(bound[rows], np.maximum(d.min(axis=1), 0))
        fresh[rows] = np.maximum(fresh[rows], t)

    def rebuild(t: int) -> tuple[np.ndarray, float]:
        nonlocal passed
        if passed < t:
            for a in range(0, n, _ROWS_PER_BLOCK):
                update(slice(a, a + _ROWS_PER_BLOCK), passed, t)
            passed = t
        if size >= n:
            return np.arange(n), -np.inf
        idx = np.argpartition(-bound, size - 1)[:size]
        return idx, float(bound[idx].min())

    front, tau = rebuild(len(picks))
    while len(picks) < k:
        t = len(picks)
        while True:
            b = bound[front]
            top_value = b.max()
            if top_value < tau:
                front, tau = rebuild(t)
                continue
            tied = front[b == top_value]
            if (fresh[tied] == t).all():
                top = int(tied.min())  # the lowest index among equals, as a plain argmax
                break
            m = min(batch, len(front))
            stale = front[np.argpartition(-b, m - 1)[:m]] if m < len(front) else front
            stale = stale[fresh[stale] < t]
            if not len(stale):  # more equal bounds than one batch holds
                stale = tied[fresh[tied] < t]
            order = np.argsort(fresh[stale], kind="stable")
            for group in np.array_split(stale[order], max(1, len(stale) // 32)):
                update(group, int(fresh[group].min()), t)
        picks.append(top)
        centres[t], centre_norms[t] = x[top], norms[top]
        bound[top] = -1.0
        fresh[top] = k
    return np.array(picks, np.int64)


@dataclass(frozen=True)
class Picks:
    """Chosen indices (in pick order) and, per suppressed near-duplicate, the pick it resembles."""

    indices: np.ndarray
    suppressed: Mapping[int, int] = field(default_factory=dict)


def suppress_duplicates(
    order: np.ndarray, embeddings: np.ndarray, k: int, *, threshold: float
) -> Picks:
    """The first k of ``order`` after dropping items whose cosine similarity to an item kept
    before them is >= ``threshold``."""
    kept: list[int] = []
    suppressed: dict[int, int] = {}
    unit = np.zeros((0, embeddings.shape[1]), np.float32)
    for i in np.asarray(order, np.int64):
        if len(kept) >= k:
            break
        v = unit_rows(embeddings[i : i + 1])[0]
        if len(kept):
            sim = unit @ v
            j = int(np.argmax(sim))
            if sim[j] >= threshold:
                suppressed[int(i)] = kept[j]
                continue
        kept.append(int(i))
        unit = np.vstack([unit, v[None, :]])
    return Picks(np.array(kept, np.int64), suppressed)


def ranked_diverse(
    scores: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator | None = None,
    embeddings: np.ndarray,
    labeled: np.ndarray | None = None,
    alpha: float = 0.5,
    candidates: int | None = None,
    threshold: float | None = None,
) -> Picks:
    """Ranked batch-mode picks among the ``candidates`` best scorers (default 10 k): each
    maximises alpha * (1 - max cosine similarity to labeled and picked) + (1 - alpha) * score
    (scores scaled to [0, 1] by their maximum); an item with similarity >= ``threshold`` to a
    pick is suppressed outright."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must lie in [0, 1], got {alpha}")
    s = np.asarray(scores, np.float64)
    k = min(int(k), len(s))
    if k <= 0:
        return Picks(np.zeros(0, np.int64))
    cand = top_k(s, min(len(s), candidates if candidates is not None else 10 * k))
    unit = unit_rows(embeddings[cand])
    top = s[cand].max()
    quality = s[cand] / top if top > 0 else np.zeros(len(cand))
    if labeled is not None and len(labeled):
        covered, _ = nearest_cosine(unit, labeled)
        covered = np.clip(covered.astype(np.float64), 0, 1)
    else:
        covered = np.zeros(len(cand))
    alive = np.ones(len(cand), bool)
    picks: list[int] = []
    suppressed: dict[int, int] = {}
    while len(picks) < k and alive.any():
        gain = np.where(alive, alpha * (1 - covered) + (1 - alpha) * quality, -np.inf)
        j = int(np.argmax(gain))
        picks.append(j)
        alive[j] = False
        sim = (unit @ unit[j]).astype(np.float64)
        covered = np.maximum(covered, np.clip(sim, 0, 1))
        if threshold is not None:
            dup = alive & (sim >= threshold)
            for d in np.flatnonzero(dup):
                suppressed[int(cand[d])] = int(cand[j])
            alive &= ~dup
    return Picks(cand[np.array(picks, np.int64)], suppressed)
