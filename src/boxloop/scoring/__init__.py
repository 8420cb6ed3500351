"""Choosing what to label: scorers (pool → one float per item, higher = more worth a
person's time), selectors (scores → k items) and the strategy strings that name them.

A strategy is ``"name[:weight],..."``, e.g. ``"least_confidence:1,flicker:2"``: the weighted
sum of the scorers' percentile-normalised scores (see :func:`select.normalise`), picked by
``top_k``, or by the selector named in the string (``k_center``, ``diverse``).

>>> strategy = parse_strategy("least_confidence:1,flicker:2")   # doctest: +SKIP
>>> scores = score_pool(pool, strategy, rng=np.random.default_rng(0))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .boxes import PackedBoxes
from .consistency import consistency, explain_consistency
from .diversity import class_rarity, explain_class_rarity, explain_novelty, novelty
from .missed import explain_missed, missed
from .pool import FrameSequence, Pool, ScoreOptions
from .select import combine, k_center, normalise, ranked_diverse, suppress_duplicates, top_k
from .temporal import explain_flicker, flicker, flicker_frames
from .uncertainty import entropy, explain_uncertainty, least_confidence, margin, uncertain_count

__all__ = [
    "SCORERS",
    "SELECTORS",
    "FrameSequence",
    "PackedBoxes",
    "Pool",
    "ScoreOptions",
    "ScoreStream",
    "Scorer",
    "Scores",
    "Strategy",
    "check_needs",
    "combine",
    "flicker_frames",
    "k_center",
    "normalise",
    "parse_strategy",
    "random_scores",
    "ranked_diverse",
    "register_scorer",
    "score_pool",
    "suppress_duplicates",
    "top_k",
]

ScoreFn = Callable[[Pool, ScoreOptions, np.random.Generator], np.ndarray]
ExplainFn = Callable[[Pool, int, ScoreOptions], Mapping[str, Any]]


@dataclass(frozen=True)
class Scorer:
    """A named scorer: ``fn(pool, options, rng) -> (n,) float``, higher = more worth labeling.

    ``needs`` names the Pool fields it cannot do without (checked before scoring starts);
    ``context`` is how many neighbouring frames each side it reads (streaming keeps them);
    ``explain(pool, index, options)`` gives the details behind one item's score.
    """

    name: str
    fn: ScoreFn
    summary: str
    needs: frozenset[str] = frozenset()
    context: int = 0
    explain: ExplainFn | None = None


def random_scores(pool: Pool, options: ScoreOptions, rng: np.random.Generator) -> np.ndarray:
    """Uniform random scores: the baseline every other strategy is measured against."""
    return rng.random(len(pool))


SCORERS: dict[str, Scorer] = {}

#: Selector names a strategy may end with; ``top_k`` is the default.
SELECTORS: dict[str, str] = {
    "top_k": "the k highest combined scores (near-duplicates suppressed when embeddings exist)",
    "diverse": "ranked batch-mode: high scores, but never next to a labeled or picked image",
    "k_center": "greedy core-set on embeddings, seeded with the labeled set (among the best "
                "scorers when the strategy also names scorers)",
}


def register_scorer(scorer: Scorer) -> Scorer:
    """Add a scorer to the registry (a name already taken is an error)."""
    if scorer.name in SCORERS or scorer.name in SELECTORS:
        raise ValueError(f"scorer name {scorer.name!r} is taken")
    SCORERS[scorer.name] = scorer
    return scorer


def _uncertainty_explainer(kind: str) -> ExplainFn:
    return lambda pool, index, options: explain_uncertainty(kind, pool, index, options)


for _s in (
    Scorer("random", random_scores, "uniform random: the baseline"),
    Scorer("least_confidence", least_confidence, "1 - top probability of the most doubtful box",
           explain=_uncertainty_explainer("least_confidence")),
    Scorer("margin", margin, "1 - (best - second best probability) of the boxes",
           explain=_uncertainty_explainer("margin")),
    Scorer("entropy", entropy, "normalised entropy of the boxes' class + background probabilities",
           explain=_uncertainty_explainer("entropy")),
    Scorer("uncertain_count", uncertain_count, "number of boxes with confidence inside the band",
           explain=_uncertainty_explainer("uncertain_count")),
    Scorer("consistency", consistency, "disagreement with the predictions on the mirrored image",
           needs=frozenset({"flipped"}), explain=explain_consistency),
    Scorer("flicker", flicker, "boxes missing for one frame or seen in one frame only",
           needs=frozenset({"sequence"}), context=1, explain=explain_flicker),
    Scorer("missed", missed, "boxes labeled images hold beyond this image's confident ones",
           needs=frozenset({"labeled_box_counts"}), explain=explain_missed),
    Scorer("class_rarity", class_rarity, "confident boxes of classes rare among the labels",
           explain=explain_class_rarity),
    Scorer("novelty", novelty, "cosine distance to the nearest labeled image",
           needs=frozenset({"embeddings", "labeled_embeddings"}), explain=explain_novelty),
):
    register_scorer(_s)


@dataclass(frozen=True)
class Strategy:
    """Weighted scorers and the selector that picks from their combined score."""

    components: tuple[tuple[str, float], ...]
    selector: str = "top_k"

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.components)

    @property
    def is_random_baseline(self) -> bool:
        """``random`` alone with the plain ranking: a uniform sample, never reshaped."""
        return self.selector == "top_k" and [name for name, _ in self.components] == ["random"]

    def __str__(self) -> str:
        parts = [f"{name}:{weight:g}" for name, weight in self.components]
        if self.selector != "top_k":
            parts.append(self.selector)
        return ",".join(parts)


def _known() -> str:
    return f"scorers: {', '.join(SCORERS)}; selectors: {', '.join(SELECTORS)}"


def parse_strategy(text: str, *, diverse: bool = False) -> Strategy:
    """Parse ``"name[:weight],..."``; ``diverse`` picks the ``diverse`` selector unless the
    string names one, or is ``random`` alone (the baseline: a uniform sample; ask for
    ``"random,diverse"`` to spread it). Unknown names are an error listing the known ones."""
    components: list[tuple[str, float]] = []
    selector: str | None = None
    tokens = [t.strip() for t in str(text).split(",") if t.strip()]
    if not tokens:
        raise InputError(f"empty strategy; name at least one of the {_known()}")
    for token in tokens:
        name, sep, weight_text = token.partition(":")
        name = name.strip()
        if name in SELECTORS:
            if sep:
                raise InputError(f"selector {name!r} takes no weight (got {token!r})")
            if selector is not None and selector != name:
                raise InputError(f"strategy {text!r} names two selectors: {selector}, {name}")
            selector = name
            continue
        if name not in SCORERS:
            raise InputError(f"unknown scorer or selector {name!r} in strategy {text!r}; known {_known()}")
        try:
            weight = float(weight_text) if sep else 1.0
        except ValueError:
            raise InputError(f"weight of {name!r} must be a number, got {weight_text!r}") from None
        if not math.isfinite(weight) or weight <= 0:
            raise InputError(f"weight of {name!r} must be a positive number, got {weight_text!r}")
        if name in dict(components):
            raise InputError(f"scorer {name!r} appears twice in strategy {text!r}")
        components.append((name, weight))
    if selector is None:
        # the random baseline stays uniform: diversity would make it a different strategy
        selector = "diverse" if diverse and not Strategy(tuple(components)).is_random_baseline else "top_k"
    if not components and selector != "k_center":
        raise InputError(f"strategy {text!r} names no scorer; known {_known()}")
    return Strategy(tuple(components), selector)


@dataclass(frozen=True, eq=False)
class Scores:
    """Raw component scores of a pool, one array per scorer, aligned with ``ids``."""

    ids: tuple[str, ...]
    raw: Mapping[str, np.ndarray] = field(default_factory=dict)


_NEEDS_HELP = {
    "sequence": "frame order (items with a video id and frame index)",
    "flipped": "predictions on horizontally flipped images",
    "embeddings": "image embeddings of the pool",
    "labeled_embeddings": "image embeddings of labeled items",
    "labeled_box_counts": "labeled images to count boxes in",
}


def check_needs(pool: Pool, names: Iterable[str]) -> None:
    """An InputError naming what the scorers ``names`` need (embeddings, frame order, ...)
    and the pool lacks, with the command that makes it."""
    for name in names:
        for need in sorted(SCORERS[name].needs):
            value = getattr(pool, need)
            if value is None or getattr(value, "size", 1) == 0:  # an empty array says as little as none
                raise InputError(f"{name} needs {_NEEDS_HELP[need]}, and this pool has none")


def score_pool(
    pool: Pool,
    strategy: Strategy,
    *,
    options: ScoreOptions | None = None,
    rng: np.random.Generator,
) -> Scores:
    """Every component score of the strategy over the whole pool, in strategy order."""
    options = options or ScoreOptions()
    names = [name for name, _ in strategy.components]
    check_needs(pool, names)
    return Scores(pool.ids, {name: np.asarray(SCORERS[name].fn(pool, options, rng), np.float64) for name in names})


class ScoreStream:
    """Score a pool that arrives in consecutive chunks; :meth:`finish` equals
    :func:`score_pool` on the whole pool. Scorers reading neighbouring frames (flicker) wait
    for the next chunk and see the chunks on both sides."""

    def __init__(self, strategy: Strategy, *, options: ScoreOptions | None = None, rng: np.random.Generator) -> None:
        self.strategy = strategy
        self.options = options or ScoreOptions()
        self.rng = rng
        self._names = [name for name, _ in strategy.components]
        self._ids: list[str] = []
        self._done: dict[str, list[np.ndarray]] = {n: [] for n in self._names}
        self._chunks: list[Pool] = []  # the last two chunks, for scorers with context

    def feed(self, chunk: Pool) -> None:
        """Score one more chunk (items continue the pool's order)."""
        check_needs(chunk, self._names)
        self._ids.extend(chunk.ids)
        for name in self._names:
            if SCORERS[name].context == 0:
                self._done[name].append(np.asarray(SCORERS[name].fn(chunk, self.options, self.rng), np.float64))
        self._chunks.append(chunk)
        if len(self._chunks) >= 2:
            self._context_scores(self._chunks[-2], self._chunks[-3:])
        self._chunks = self._chunks[-2:]

    def _context_scores(self, target: Pool, window: list[Pool]) -> None:
        start = sum(len(p) for p in window[: window.index(target)])
        joined = Pool.concat(window)
        for name in self._names:
            if SCORERS[name].context:
                scores = SCORERS[name].fn(joined, self.options, self.rng)
                self._done[name].append(np.asarray(scores[start : start + len(target)], np.float64))

    def finish(self) -> Scores:
        """The scores of everything fed so far."""
        if self._chunks:
            self._context_scores(self._chunks[-1], self._chunks[-2:])
            self._chunks = []
        return Scores(
            tuple(self._ids),
            {n: np.concatenate(v) if v else np.zeros(0) for n, v in self._done.items()},
        )
