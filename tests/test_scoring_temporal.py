"""flicker: the model-assertion rule on hand-built sequences, imputed boxes included, and the
vectorised implementation against a frame-by-frame reference."""

from __future__ import annotations

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.scoring import Pool, ScoreOptions, flicker_frames, parse_strategy, score_pool
from boxloop.scoring.boxes import greedy_match
from boxloop.scoring.temporal import explain_flicker
from boxloop.types import Detections

C = 8


def det(boxes=(), classes=(), conf=None) -> Detections:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    conf = np.full(len(boxes), 0.9, np.float32) if conf is None else np.array(conf, np.float32)
    return Detections(boxes, np.array(classes, np.int64), conf)


def video(frames: list[Detections], first: int = 40, name: str = "cam") -> Pool:
    ids = [f"{name}-{first + j}" for j in range(len(frames))]
    return Pool.from_detections(
        ids, frames, num_classes=C, video_ids=[name] * len(frames), frame_indices=list(range(first, first + len(frames)))
    )


def flicker_scores(pool: Pool, **options) -> np.ndarray:
    return score_pool(pool, parse_strategy("flicker"), options=ScoreOptions(**options), rng=np.random.default_rng(0)).raw["flicker"]


CAR = [100, 100, 200, 180]
CAR_MOVED = [104, 100, 204, 180]


def test_box_seen_before_and_after_but_missing_in_between_flickers_with_its_imputed_box():
    pool = video([det([CAR], [7], [0.8]), det(), det([CAR_MOVED], [7], [0.9]), det([CAR_MOVED], [7])])
    result = flicker_frames(pool.sequence, ScoreOptions())
    assert result.missing.tolist() == [0, 1, 0, 0]
    assert result.appearing.tolist() == [0, 0, 0, 0]
    imputed = result.imputed(1)
    np.testing.assert_allclose(imputed.xyxy, [[102, 100, 202, 180]])  # the mean of frames 40 and 42
    assert imputed.class_id.tolist() == [7]
    np.testing.assert_allclose(imputed.confidence, [0.85])
    assert imputed.data["imputed"].tolist() == [True]
    assert flicker_scores(pool).tolist() == [0.0, 1.0, 0.0, 0.0]


def test_flickering_frame_scores_above_stable_frame():
    stable = [det([CAR], [7])] * 3
    flickering = [det([CAR], [7]), det(), det([CAR], [7])]
    pool = Pool.concat([video(stable, name="a"), video(flickering, name="b")])
    s = flicker_scores(pool)
    assert s[4] > s[1]


def test_box_seen_in_one_frame_only_is_scored():
    pool = video([det(), det([CAR], [3], [0.7]), det()])
    result = flicker_frames(pool.sequence, ScoreOptions())
    assert result.appearing.tolist() == [0, 1, 0]
    assert result.appear_class.tolist() == [3]
    assert result.missing.sum() == 0


def test_thresholds_of_the_rule():
    # i-1 and i+1 overlap with IoU 0.54 < t_track 0.8: not one tracked object
    far = [130, 100, 230, 180]
    assert flicker_frames(video([det([CAR], [7]), det(), det([far], [7])]).sequence, ScoreOptions()).missing[1] == 0
    assert flicker_frames(video([det([CAR], [7]), det(), det([far], [7])]).sequence, ScoreOptions(t_track=0.5)).missing[1] == 1
    # a box in i with IoU 0.667 >= t_assert 0.6 to the mean box covers it; IoU 0.538 does not
    near, off = [120, 100, 220, 180], [130, 100, 230, 180]
    assert flicker_frames(video([det([CAR], [7]), det([near], [7]), det([CAR], [7])]).sequence, ScoreOptions()).missing[1] == 0
    assert flicker_frames(video([det([CAR], [7]), det([off], [7]), det([CAR], [7])]).sequence, ScoreOptions()).missing[1] == 1


def test_a_box_of_another_class_or_below_min_confidence_does_not_cover():
    other_class = video([det([CAR], [7]), det([CAR], [2]), det([CAR], [7])])
    assert flicker_frames(other_class.sequence, ScoreOptions()).missing[1] == 1
    assert flicker_frames(other_class.sequence, ScoreOptions(match_class=False)).missing[1] == 0
    faint = video([det([CAR], [7]), det([CAR], [7], [0.1]), det([CAR], [7])])
    assert flicker_frames(faint.sequence, ScoreOptions()).missing[1] == 1
    assert flicker_frames(faint.sequence, ScoreOptions(min_confidence=0.05)).missing[1] == 0


def test_ends_of_a_video_and_other_videos_are_not_neighbours():
    pool = Pool.concat([video([det([CAR], [7]), det()], name="a"), video([det([CAR], [7]), det([CAR], [7])], name="b")])
    assert flicker_scores(pool).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_explain_names_the_class_and_the_frames():
    pool = video([det([CAR], [7]), det(), det([CAR], [7])], first=41)
    why = explain_flicker(pool, 1, ScoreOptions())
    assert why["frame"] == 42
    assert why["events"] == [
        {"kind": "missing", "class_id": 7, "seen_in": [41, 43], "missing_in": 42, "imputed_xyxy": [100.0, 100.0, 200.0, 180.0],
         "min_confidence": 0.25}
    ]


def test_flicker_without_frame_order_is_an_error():
    pool = Pool.from_detections(["a", "b"], [det(), det()], num_classes=C)
    with pytest.raises(InputError, match="flicker needs frame order"):
        flicker_scores(pool)


# -- the vectorised rule against a frame-by-frame reference --------------------------------
def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_flicker(frames: list[Detections], o: ScoreOptions):
    """The rule written out plainly, one frame and one box pair at a time."""
    seen = [[(d.xyxy[j].astype(np.float64), int(d.class_id[j]), float(d.confidence[j]))
             for j in range(len(d)) if d.confidence[j] >= o.min_confidence] for d in frames]
    missing, appearing, imputed = [0] * len(frames), [0] * len(frames), []
    for i in range(1, len(frames) - 1):
        before, now, after = seen[i - 1], seen[i], seen[i + 1]
        cands = [(_iou(a[0], b[0]), ia, ib) for ia, a in enumerate(before) for ib, b in enumerate(after)
                 if (a[1] == b[1] or not o.match_class)]
        cands = sorted((c for c in cands if c[0] >= o.t_track), key=lambda c: (-c[0], c[1], c[2]))
        used_a, used_b = set(), set()
        for _, ia, ib in cands:
            if ia in used_a or ib in used_b:
                continue
            used_a.add(ia)
            used_b.add(ib)
            mean = (before[ia][0] + after[ib][0]) / 2
            cls = before[ia][1]
            if not any(_iou(mean, x[0]) >= o.t_assert and (x[1] == cls or not o.match_class) for x in now):
                missing[i] += 1
                imputed.append((i, cls, tuple(np.round(mean, 3))))
        for x in now:
            near = [y for y in before + after if (y[1] == x[1] or not o.match_class) and _iou(x[0], y[0]) >= o.t_assert]
            if not near:
                appearing[i] += 1
    return missing, appearing, sorted(imputed)


def random_frames(rng: np.random.Generator, n: int) -> list[Detections]:
    tracks = rng.uniform(0, 300, (6, 2))
    frames = []
    for _ in range(n):
        rows, classes, conf = [], [], []
        for t, (x, y) in enumerate(tracks):
            if rng.random() < 0.7:
                jitter = rng.normal(0, 6, 4)
                rows.append([x + jitter[0], y + jitter[1], x + 60 + jitter[2], y + 50 + jitter[3]])
                classes.append(t % 3 if rng.random() < 0.9 else 3)
                conf.append(rng.uniform(0.05, 1))
        frames.append(det(rows, classes, conf))
        tracks += rng.normal(0, 3, tracks.shape)
    return frames


@pytest.mark.parametrize("match_class", [True, False])
def test_vectorised_flicker_equals_the_frame_by_frame_rule(match_class):
    rng = np.random.default_rng(11)
    options = ScoreOptions(t_track=0.6, t_assert=0.5, match_class=match_class)
    for _ in range(5):
        frames = random_frames(rng, 30)
        result = flicker_frames(video(frames).sequence, options)
        missing, appearing, imputed = reference_flicker(frames, options)
        assert result.missing.tolist() == missing
        assert result.appearing.tolist() == appearing
        got = sorted(
            (int(f), int(c), tuple(np.round(x.astype(np.float64), 3)))
            for f, c, x in zip(result.imputed_frame, result.imputed_class, result.imputed_xyxy, strict=True)
        )
        assert [g[:2] for g in got] == [r[:2] for r in imputed]
        np.testing.assert_allclose([g[2] for g in got], [r[2] for r in imputed], atol=1e-3)
        assert sum(missing) > 0 and sum(appearing) > 0  # the random scenes exercise both events


def test_greedy_match_equals_walking_the_sorted_pairs():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = 60
        a, b = rng.integers(0, 12, m), rng.integers(0, 12, m)
        w = rng.choice([0.5, 0.6, 0.7, 0.8, 0.9], m)  # many ties
        pairs = sorted(set(zip(a.tolist(), b.tolist(), w.tolist(), strict=True)), key=lambda p: (-p[2], p[0], p[1]))
        a, b, w = (np.array(v) for v in zip(*pairs, strict=True))
        used_a, used_b, expected = set(), set(), []
        for j in np.lexsort((b, a, -w)):
            if a[j] not in used_a and b[j] not in used_b:
                used_a.add(a[j])
                used_b.add(b[j])
                expected.append(j)
        assert sorted(np.flatnonzero(greedy_match(a, b, w)).tolist()) == sorted(expected)
