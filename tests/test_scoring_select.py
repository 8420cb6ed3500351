"""Selectors, normalisation, strategy strings, streaming scores and seeds."""

from __future__ import annotations

import re
from itertools import pairwise

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.scoring import (
    Pool,
    ScoreOptions,
    ScoreStream,
    Strategy,
    combine,
    k_center,
    normalise,
    parse_strategy,
    ranked_diverse,
    score_pool,
    suppress_duplicates,
    top_k,
)
from boxloop.types import Detections


def reference_k_center(x: np.ndarray, k: int, first: int | None = None, labeled: np.ndarray | None = None) -> list[int]:
    """Greedy k-center as anyone would write it: full distance pass per pick."""
    d = np.full(len(x), np.inf)
    picks = []
    if labeled is not None:
        for c in labeled:
            d = np.minimum(d, ((x - c) ** 2).sum(1))
    else:
        picks.append(first)
        d = np.minimum(d, ((x - x[first]) ** 2).sum(1))
        d[first] = -1
    while len(picks) < k:
        j = int(np.argmax(d))
        picks.append(j)
        d = np.minimum(d, ((x - x[j]) ** 2).sum(1))
        d[j] = -1
    return picks


@pytest.mark.parametrize("frontier", [16, 4096])
def test_k_center_equals_plain_greedy(frontier):
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 4, (12, 16))
    x = (centres[rng.integers(0, 12, 1500)] + rng.normal(0, 1, (1500, 16))).astype(np.float32)
    first = int(np.random.default_rng(9).integers(len(x)))
    got = k_center(x, 40, rng=np.random.default_rng(9), frontier=frontier, batch=8)
    assert got.tolist() == reference_k_center(x.astype(np.float64), 40, first=first)
    labeled = x[:5] + 0.5
    got = k_center(x, 40, rng=np.random.default_rng(0), labeled=labeled, frontier=frontier, batch=8)
    assert got.tolist() == reference_k_center(x.astype(np.float64), 40, labeled=labeled.astype(np.float64))


def test_k_center_with_more_picks_than_distinct_points_takes_each_point_once():
    x = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)
    picks = k_center(x, 10, rng=np.random.default_rng(0))
    assert sorted(picks.tolist()) == list(range(6))


def test_top_k_is_highest_first_with_ties_in_pool_order():
    assert top_k(np.array([0.2, 0.9, 0.5, 0.9, 0.0]), 3).tolist() == [1, 3, 2]
    assert top_k(np.array([0.0, 0.0, 0.0]), 5).tolist() == [0, 1, 2]


def test_percentile_normalisation_keeps_zero_at_zero_and_ignores_scale():
    np.testing.assert_allclose(normalise(np.array([0.0, 0.0, 3.0, 1.0, 0.0])), [0, 0, 1, 0.75, 0])
    a = normalise(np.array([0.1, 0.5, 0.2]))
    np.testing.assert_allclose(a, normalise(np.array([10.0, 5000.0, 11.0])))
    np.testing.assert_allclose(normalise(np.array([2.0, 4.0, 3.0]), "minmax"), [0, 1, 0.5])


def test_a_saturated_scorer_ranks_its_tied_top_high():
    """consistency gave 139 of 240 images its top value, each once normalised to the share of
    the pool strictly below them (0.42): mixed with another scorer, its most telling images
    counted for less than half. Ties share the middle of their ranks; the lowest stays 0."""
    scores = np.array([1.0] * 139 + [0.5] * 61 + [0.0] * 40)
    p = normalise(scores)
    assert p[0] == (101 + 138 / 2) / 239 and p[-1] == 0.0
    assert p[139] == (40 + 60 / 2) / 239


def test_weighted_combination_lets_the_heavier_scorer_win():
    lc = np.array([0.9, 0.1, 0.5])
    fl = np.array([0.0, 2.0, 0.0])
    total, parts = combine({"least_confidence": lc, "flicker": fl}, {"least_confidence": 1, "flicker": 2})
    assert parts["flicker"].tolist() == [0.0, 1.0, 0.0]
    assert int(np.argmax(total)) == 1
    total, _ = combine({"least_confidence": lc, "flicker": fl}, {"least_confidence": 3, "flicker": 1})
    assert int(np.argmax(total)) == 0


def test_an_image_with_a_duplicate_already_selected_is_suppressed():
    emb = np.array([[1, 0, 0], [0.999, 0.01, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    picks = suppress_duplicates(np.array([0, 1, 2, 3]), emb, 3, threshold=0.95)
    assert picks.indices.tolist() == [0, 2, 3]
    assert picks.suppressed == {1: 0}


def test_ranked_diverse_skips_the_near_copy_of_a_pick_and_favours_uncovered_images():
    emb = np.array([[1, 0, 0], [0.98, 0.2, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    scores = np.array([1.0, 0.95, 0.5, 0.4])
    assert top_k(scores, 2).tolist() == [0, 1]
    picks = ranked_diverse(scores, 2, embeddings=emb, alpha=0.5)
    assert picks.indices.tolist() == [0, 2]
    # image 3 sits on a labeled image: the uncovered image 2 wins although it scores the same
    picks = ranked_diverse(np.array([0.0, 0.0, 0.5, 0.5]), 1, embeddings=emb, labeled=np.array([[0, 0, 1]], np.float32))
    assert picks.indices.tolist() == [2]
    hard = ranked_diverse(scores, 3, embeddings=emb, alpha=0.0, threshold=0.95)
    assert 1 not in hard.indices.tolist() and hard.suppressed == {1: 0}


@pytest.mark.parametrize(
    ("text", "components", "selector"),
    [
        ("least_confidence:1,flicker:2", (("least_confidence", 1.0), ("flicker", 2.0)), "top_k"),
        (" entropy , k_center ", (("entropy", 1.0),), "k_center"),
        ("k_center", (), "k_center"),
        ("margin:0.5,diverse", (("margin", 0.5),), "diverse"),
    ],
)
def test_parse_strategy(text, components, selector):
    s = parse_strategy(text)
    assert s == Strategy(components, selector)
    assert parse_strategy(str(s)) == s


def test_diverse_flag_picks_the_diverse_selector_unless_one_is_named():
    assert parse_strategy("entropy", diverse=True).selector == "diverse"
    assert parse_strategy("entropy,k_center", diverse=True).selector == "k_center"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("least_confidance:1", "unknown scorer or selector 'least_confidance' in strategy 'least_confidance:1'; "
                               "known scorers: random, least_confidence, margin, entropy, uncertain_count, "
                               "consistency, flicker, missed, class_rarity, novelty; selectors: top_k, diverse, k_center"),
        ("", "empty strategy"),
        ("entropy:abc", "weight of 'entropy' must be a number, got 'abc'"),
        ("entropy:-1", "weight of 'entropy' must be a positive number"),
        ("entropy,entropy:2", "scorer 'entropy' appears twice"),
        ("entropy,k_center,diverse", "names two selectors: k_center, diverse"),
        ("diverse", "names no scorer"),
        ("k_center:2", "selector 'k_center' takes no weight"),
    ],
)
def test_bad_strategy_strings(text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse_strategy(text)


def video_pool(n: int, seed: int) -> Pool:
    rng = np.random.default_rng(seed)
    preds = []
    for j in range(n):
        m = int(rng.integers(0, 4))
        xy = rng.uniform(0, 200, (m, 2))
        boxes = np.concatenate([xy, xy + 40], 1) if m else np.zeros((0, 4))
        if j % 7 == 3:
            boxes, m = np.zeros((0, 4)), 0  # frames where the object drops out
        probs = rng.dirichlet(np.ones(4), m).astype(np.float32)
        preds.append(Detections(boxes, probs.argmax(1) if m else np.zeros(0), rng.uniform(0.05, 1, m), {"class_probs": probs}))
    # two fixed tracked boxes so flicker has events
    fixed = np.array([[10, 10, 60, 60], [100, 100, 150, 170]], np.float32)
    preds = [Detections.concat([d, Detections(fixed, [1, 2], [0.9, 0.9], {"class_probs": np.eye(4, dtype=np.float32)[[1, 2]]})])
             if j % 7 != 3 else d for j, d in enumerate(preds)]
    return Pool.from_detections(
        [f"f{j:03d}" for j in range(n)], preds, num_classes=4,
        video_ids=[f"v{j // 40}" for j in range(n)], frame_indices=[j % 40 for j in range(n)],
        embeddings=rng.normal(size=(n, 8)).astype(np.float32),
        labeled_embeddings=rng.normal(size=(5, 8)).astype(np.float32),
        labeled_class_counts=[30, 5, 1, 0],
    )


def test_streaming_scores_equal_batch_scores():
    pool = video_pool(130, seed=1)
    strategy = parse_strategy("least_confidence:1,margin,entropy,uncertain_count,flicker:2,class_rarity,novelty,random")
    batch = score_pool(pool, strategy, rng=np.random.default_rng(42))
    assert batch.raw["flicker"].sum() > 0
    for cuts in ([0, 17, 40, 41, 90, 130], [0, 65, 130], [0, 1, 2, 3, 130]):
        stream = ScoreStream(strategy, rng=np.random.default_rng(42))
        for a, b in pairwise(cuts):
            stream.feed(pool.slice(a, b))
        streamed = stream.finish()
        assert streamed.ids == pool.ids
        for name in strategy.weights:
            np.testing.assert_allclose(streamed.raw[name], batch.raw[name], rtol=1e-6, err_msg=name)


def test_same_seed_same_scores_and_picks_different_seed_different():
    pool = video_pool(80, seed=2)
    strategy = parse_strategy("random,least_confidence")

    def pick(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        s = score_pool(pool, strategy, rng=rng)
        total, _ = combine(s.raw, strategy.weights)
        return k_center(pool.embeddings[top_k(total, 40)], 10, rng=rng).tolist()

    assert pick(7) == pick(7)
    assert pick(7) != pick(8)


def test_score_options_reach_the_scorers():
    pool = video_pool(40, seed=3)
    strategy = parse_strategy("uncertain_count")
    wide = score_pool(pool, strategy, options=ScoreOptions(band=(0.0, 1.0)), rng=np.random.default_rng(0))
    narrow = score_pool(pool, strategy, options=ScoreOptions(band=(0.4, 0.5)), rng=np.random.default_rng(0))
    assert wide.raw["uncertain_count"].sum() > narrow.raw["uncertain_count"].sum()
