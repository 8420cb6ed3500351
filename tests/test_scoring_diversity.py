"""Direction tests for class_rarity, novelty and consistency."""

from __future__ import annotations

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.scoring import Pool, ScoreOptions, parse_strategy, score_pool
from boxloop.scoring.diversity import rarity_weights
from boxloop.types import Detections

C = 3
BOX = [10, 10, 60, 60]


def det(boxes, classes, conf, probs=None) -> Detections:
    data = {} if probs is None else {"class_probs": np.array(probs, np.float32).reshape(-1, C)}
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(classes), np.array(conf, np.float32), data)


def run(name: str, pool: Pool, **options) -> np.ndarray:
    return score_pool(pool, parse_strategy(name), options=ScoreOptions(**options), rng=np.random.default_rng(0)).raw[name]


def test_rare_class_scores_above_common_class():
    pool = Pool.from_detections(
        ["common", "rare", "nothing"],
        [det([BOX], [0], [0.9]), det([BOX], [2], [0.9]), Detections.empty(with_confidence=True)],
        num_classes=C,
        labeled_class_counts=[500, 40, 2],
    )
    common, rare, nothing = run("class_rarity", pool)
    assert rare > common > nothing == 0.0


def test_rarity_follows_the_class_probabilities_and_the_confidence():
    counts = [500, 40, 2]
    pool = Pool.from_detections(
        ["sure_rare", "maybe_rare", "faint_rare"],
        [det([BOX], [2], [0.9], [[0, 0, 1]]), det([BOX], [2], [0.9], [[0.5, 0, 0.5]]), det([BOX], [2], [0.3], [[0, 0, 1]])],
        num_classes=C,
        labeled_class_counts=counts,
    )
    sure, maybe, faint = run("class_rarity", pool)
    assert sure > maybe and sure > faint
    w = rarity_weights(np.array(counts))
    assert sure == pytest.approx(0.9 * w[2], rel=1e-5)
    assert w[0] < w[1] < w[2] <= 1.0


def test_without_labels_every_class_is_equally_rare():
    np.testing.assert_allclose(rarity_weights(np.zeros(4)), 1.0)


def test_image_far_from_the_labeled_set_is_more_novel():
    labeled = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    pool = Pool.from_detections(
        ["near", "far"], [det([BOX], [0], [0.9])] * 2, num_classes=C,
        embeddings=np.array([[0.9, 0.1, 0], [0.1, 0.1, 1.0]], np.float32), labeled_embeddings=labeled,
    )
    near, far = run("novelty", pool)
    assert far > near >= 0.0


def test_novelty_needs_labeled_embeddings():
    pool = Pool.from_detections(["a"], [det([BOX], [0], [0.9])], num_classes=C, embeddings=np.ones((1, 3)))
    with pytest.raises(InputError, match="novelty needs image embeddings of labeled items"):
        run("novelty", pool)


def mirror(d: Detections, width: float) -> Detections:
    x = d.xyxy
    return Detections(np.stack([width - x[:, 2], x[:, 1], width - x[:, 0], x[:, 3]], 1), d.class_id, d.confidence)


def test_image_whose_mirror_disagrees_scores_above_consistent_image():
    width = 200
    a = det([BOX, [100, 20, 180, 90]], [0, 1], [0.9, 0.8])
    consistent = mirror(a, width)
    loose = mirror(det([[14, 10, 64, 60], [100, 20, 180, 90]], [0, 1], [0.9, 0.8]), width)
    class_change = mirror(det([BOX, [100, 20, 180, 90]], [0, 2], [0.9, 0.8]), width)
    lost_box = mirror(det([BOX], [0], [0.9]), width)
    pool = Pool.from_detections(
        ["same", "loose", "class", "lost"], [a] * 4, num_classes=C,
        flipped=[consistent, loose, class_change, lost_box], widths=[width] * 4,
    )
    same, loose_s, class_s, lost_s = run("consistency", pool)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert 0 < loose_s < class_s
    assert lost_s == pytest.approx(0.5)  # one box of two has no partner
    assert class_s == pytest.approx(0.5)  # one match of two changes class


def test_consistency_needs_flipped_predictions():
    pool = Pool.from_detections(["a"], [det([BOX], [0], [0.9])], num_classes=C)
    with pytest.raises(InputError, match="consistency needs predictions on horizontally flipped images"):
        run("consistency", pool)


def test_consistency_in_small_blocks_equals_one_piece(monkeypatch):
    import importlib

    module = importlib.import_module("boxloop.scoring.consistency")

    rng = np.random.default_rng(4)
    preds, flips = [], []
    for _ in range(60):
        m = int(rng.integers(0, 5))
        xy = rng.uniform(0, 150, (m, 2))
        boxes = np.concatenate([xy, xy + 40], 1)
        preds.append(det(boxes, rng.integers(0, C, m), rng.uniform(0.2, 1, m)))
        keep = rng.random(m) < 0.8
        moved = boxes[keep] + rng.normal(0, 4, (int(keep.sum()), 4))
        flips.append(mirror(det(moved, rng.integers(0, C, int(keep.sum())), rng.uniform(0.2, 1, int(keep.sum()))), 200))
    pool = Pool.from_detections([f"i{j}" for j in range(60)], preds, num_classes=C, flipped=flips, widths=[200] * 60)
    whole = run("consistency", pool)
    monkeypatch.setattr(module, "_PAIRS_PER_BLOCK", 7)
    np.testing.assert_allclose(run("consistency", pool), whole)
    assert whole.max() > 0
