"""Direction tests for the uncertainty scorers on hand-built Detections."""

from __future__ import annotations

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.scoring import Pool, ScoreOptions, parse_strategy, score_pool
from boxloop.types import Detections

C = 3
UNCERTAINTY = ["least_confidence", "margin", "entropy"]


def det(boxes, classes, conf, probs=None) -> Detections:
    data = {} if probs is None else {"class_probs": np.array(probs, np.float32).reshape(-1, C)}
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(classes), np.array(conf, np.float32), data)


def scores(name: str, predictions: list[Detections], **options) -> np.ndarray:
    pool = Pool.from_detections([f"i{j}" for j in range(len(predictions))], predictions, num_classes=C)
    return score_pool(pool, parse_strategy(name), options=ScoreOptions(**options), rng=np.random.default_rng(0)).raw[name]


BOX = [10, 10, 40, 40]
CONFIDENT = det([BOX], [1], [0.97], [[0.0, 1.0, 0.0]])
DOUBTFUL = det([BOX], [1], [0.45], [[0.1, 0.6, 0.3]])
TORN = det([BOX], [1], [0.97], [[0.48, 0.52, 0.0]])
ONLY_LOW = det([BOX, [50, 50, 90, 90]], [0, 2], [0.18, 0.22], [[1, 0, 0], [0, 0, 1]])
EMPTY = Detections.empty(with_confidence=True)


@pytest.mark.parametrize("name", UNCERTAINTY)
@pytest.mark.parametrize("aggregation", ["max", "mean", "sum"])
def test_low_confidence_image_scores_above_confident_image(name, aggregation):
    confident, doubtful = scores(name, [CONFIDENT, DOUBTFUL], aggregation=aggregation)
    assert doubtful > confident


@pytest.mark.parametrize("name", ["margin", "entropy", "least_confidence"])
def test_box_torn_between_two_classes_scores_above_sure_box(name):
    sure, torn = scores(name, [CONFIDENT, TORN])
    assert torn > sure


@pytest.mark.parametrize("name", UNCERTAINTY)
def test_image_without_confident_detections_is_not_certain(name):
    confident, only_low, empty = scores(name, [CONFIDENT, ONLY_LOW, EMPTY])
    # boxes in the low band are evidence of doubt; nothing at all is weak evidence, never "certain"
    assert only_low > empty > confident


@pytest.mark.parametrize("name", UNCERTAINTY)
def test_boxes_below_the_band_are_noise(name):
    with_noise = det([BOX, [60, 60, 80, 80]], [1, 0], [0.97, 0.02], [[0, 1, 0], [1, 0, 0]])
    clean, noisy = scores(name, [CONFIDENT, with_noise], aggregation="mean")
    assert noisy == pytest.approx(clean)


def test_sum_aggregation_counts_every_doubtful_box_and_max_does_not():
    two = det([BOX, [50, 50, 90, 90]], [1, 1], [0.45, 0.45], [[0.1, 0.6, 0.3]] * 2)
    one_max, two_max = scores("least_confidence", [DOUBTFUL, two], aggregation="max")
    one_sum, two_sum = scores("least_confidence", [DOUBTFUL, two], aggregation="sum")
    assert two_max == pytest.approx(one_max)
    assert two_sum == pytest.approx(2 * one_sum)


def test_without_class_probs_falls_back_to_confidence():
    bare = det([BOX], [1], [0.6])
    one_hot = det([BOX], [1], [0.6], [[0, 1, 0]])
    for name in UNCERTAINTY:
        a, b = scores(name, [bare, one_hot])
        assert a == pytest.approx(b)
    # least confidence of a box at 0.6 with a sure class: 1 - max(0.6, 0.4)
    assert scores("least_confidence", [bare])[0] == pytest.approx(0.4)


def test_uncertain_count_counts_boxes_inside_the_band():
    d = det([BOX] * 5, [0] * 5, [0.05, 0.1, 0.3, 0.59, 0.6])
    assert scores("uncertain_count", [d, EMPTY]).tolist() == [3.0, 0.0]
    assert scores("uncertain_count", [d], band=(0.2, 0.7)).tolist() == [3.0]


def test_class_probs_of_the_wrong_width_are_an_error():
    bad = Detections(np.array([BOX], np.float32), np.array([0]), np.array([0.5]), {"class_probs": np.ones((1, 5))})
    with pytest.raises(InputError, match=r"item i0: class_probs has shape \(1, 5\), expected \(1, 3\)"):
        scores("least_confidence", [bad])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aggregation": "median"}, "unknown aggregation 'median'; known: max, mean, sum"),
        ({"band": (0.6, 0.1)}, "confidence band must satisfy 0 <= low < high <= 1"),
        ({"t_track": 1.5}, r"t_track must lie in \[0, 1\]"),
    ],
)
def test_bad_options_are_errors(options, message):
    with pytest.raises(InputError, match=message):
        ScoreOptions(**options)
