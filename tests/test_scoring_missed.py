"""missed: the objects a detector does not see, counted against what labeled images hold."""

from __future__ import annotations

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.scoring import Pool, ScoreOptions, parse_strategy, score_pool
from boxloop.scoring.missed import expected_missed, explain_missed
from boxloop.selection import select
from boxloop.store import Store
from boxloop.types import Detections, Item

C = 2
BOX = [10, 10, 60, 60]


def det(conf) -> Detections:
    n = len(conf)
    probs = np.tile(np.array([[1.0, 0.0]], np.float32), (n, 1))
    return Detections(np.tile(np.array([BOX], np.float32), (n, 1)), np.zeros(n, np.int64), np.array(conf, np.float32),
                      {"class_probs": probs})


def run(pool: Pool, **options) -> np.ndarray:
    return score_pool(pool, parse_strategy("missed"), options=ScoreOptions(**options), rng=np.random.default_rng(0)).raw["missed"]


def test_an_image_without_confident_boxes_misses_what_labeled_images_hold():
    # labeled images hold 4, 4, 4 and 0 boxes: 3 boxes expected in all
    pool = Pool.from_detections(
        ["dark", "faint", "half", "full", "more"],
        [det([]), det([0.2, 0.15]), det([0.9, 0.8]), det([0.9] * 4), det([0.9] * 5)],
        num_classes=C, labeled_box_counts=[4, 4, 4, 0],
    )
    dark, faint, half, full, more = run(pool)
    assert dark == pytest.approx(3.0)
    assert faint == pytest.approx(3.0)  # boxes below min_confidence are not seen
    assert half == pytest.approx(1.5)  # (2 + 2 + 2 + 0) / 4
    assert full == more == 0.0
    assert run(pool, min_confidence=0.1)[1] == pytest.approx(1.5)


def test_a_pool_whose_labeled_images_are_mostly_empty_weighs_an_empty_prediction_little():
    pool = Pool.from_detections(["empty"], [det([])], num_classes=C, labeled_box_counts=[0] * 9 + [2])
    assert run(pool)[0] == pytest.approx(0.2)


def test_expected_missed_matches_the_plain_mean():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, 200)
    seen = rng.integers(0, 11, 50)
    want = np.array([np.maximum(counts - s, 0).mean() for s in seen])
    np.testing.assert_allclose(expected_missed(seen, counts), want)
    assert expected_missed(seen, np.zeros(0)).tolist() == [0.0] * 50


def test_explain_names_the_boxes_seen_and_the_labeled_mean():
    pool = Pool.from_detections(["a", "b"], [det([0.9]), det([])], num_classes=C, labeled_box_counts=[3, 1])
    why = explain_missed(pool, 1, ScoreOptions())
    assert why == {"confident_boxes": 0, "min_confidence": 0.25, "labeled_images": 2,
                   "labeled_mean_boxes": 2.0, "expected_missed": 2.0}


def test_without_labeled_images_missed_says_what_it_needs():
    pool = Pool.from_detections(["a"], [det([])], num_classes=C, labeled_box_counts=[])
    with pytest.raises(InputError, match="missed needs labeled images"):
        run(pool)


def test_selection_counts_labeled_training_images_and_picks_the_display_the_model_missed():
    """Four-digit displays: a doubtful box on most images, nothing at all on a dark one.
    least_confidence ranks the dark display last; with missed it ties the most doubtful day shot."""
    s = Store.memory()
    s.set_classes(["digit", "colon"])
    predictions = {}
    for k in range(8):
        s.add_item(Item(f"day-{k}", f"/d/{k}.jpg", 320, 240, f"sha-d{k}"))
        predictions[f"day-{k}"] = det([0.9, 0.9, 0.9, 0.45 + 0.01 * k])
    s.add_item(Item("night", "/n/0.jpg", 320, 240, "sha-n"))
    predictions["night"] = det([])
    four = Detections(np.tile(np.array([BOX], np.float32), (4, 1)), np.zeros(4, np.int64))
    for name, split in (("seen-0", None), ("seen-1", None), ("held-out", "test")):
        s.add_item(Item(name, f"/l/{name}.jpg", 320, 240, f"sha-{name}", split=split))
        s.add_label(name, four if split is None else Detections.empty(), source="test", round=0)
    s.put_predictions("v1", predictions)
    plain = select(s, budget=2, strategy="least_confidence", seed=0, save=False).selection
    assert "night" not in plain.item_ids
    picked = select(s, budget=2, strategy="least_confidence:1,missed:1", seed=0, save=False).selection
    assert "night" in picked.item_ids
    details = picked.why["night"]["components"]["missed"]["details"]
    assert details["labeled_images"] == 2 and details["expected_missed"] == 4.0  # the test image is not counted
