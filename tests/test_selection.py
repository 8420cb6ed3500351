"""select() and explain() against a real store: the pool, the manifest, the why, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.selection import explain, flipped_version, select
from boxloop.store import Store
from boxloop.types import Detections, Item

CLASSES = ["person", "bike", "bus", "truck", "dog", "cat", "sign", "car"]
CAR = [100, 100, 200, 180]


def pred(boxes=(), classes=(), conf=()) -> Detections:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    probs = np.zeros((len(boxes), len(CLASSES)), np.float32)
    probs[np.arange(len(boxes)), np.array(classes, np.int64)] = 1.0
    return Detections(boxes, np.array(classes, np.int64), np.array(conf, np.float32), {"class_probs": probs})


@pytest.fixture
def store() -> Store:
    """Frames 40-45 of one video (the car vanishes in 42) and four still images; frame 40 labeled."""
    s = Store.memory()
    s.set_classes(CLASSES)
    predictions = {}
    for f in range(40, 46):
        s.add_item(Item(f"cam-{f}", f"/v/cam/{f}.jpg", 320, 240, f"sha-cam-{f}", video_id="cam", frame_index=f))
        predictions[f"cam-{f}"] = pred() if f == 42 else pred([CAR], [7], [0.9])
    confidences = {"still-a": 0.95, "still-b": 0.4, "still-c": 0.3, "still-d": 0.2}
    for name, c in confidences.items():
        s.add_item(Item(name, f"/s/{name}.jpg", 320, 240, f"sha-{name}"))
        predictions[name] = pred([[10, 10, 50, 50]], [0], [c])
    s.put_predictions("v1", predictions)
    s.add_label("cam-40", Detections(np.array([CAR], np.float32), np.array([7])), source="test", round=0)
    return s


def add_embeddings(store: Store, ids: list[str]) -> None:
    rng = np.random.default_rng(0)
    vecs = {i: rng.normal(size=16).astype(np.float32) for i in ids}
    vecs["still-c"] = vecs["still-b"] + 0.01  # a near-copy
    store.put_embeddings("v1", vecs)


ALL = [f"cam-{f}" for f in range(40, 46)] + ["still-a", "still-b", "still-c", "still-d"]


def test_selection_is_saved_with_config_seed_and_why(store):
    report = select(store, budget=3, strategy="least_confidence:1,flicker:2", seed=7)
    sel = store.selection()
    assert sel.id == report.selection.id
    assert sel.item_ids[0] == "cam-42"  # the flickering frame, flicker weighs double
    assert "cam-40" not in sel.item_ids  # labeled
    assert sel.seed == 7 and sel.model_version == "v1" and sel.strategy == "least_confidence:1,flicker:2"
    for key in ("normalisation", "aggregation", "band", "t_track", "t_assert", "dedup_threshold", "diverse", "exact"):
        assert key in sel.config
    assert sel.config["exact"] is True and sel.config["approximations"] == []
    why = sel.why["cam-42"]
    assert set(why["components"]) == {"least_confidence", "flicker"}
    assert why["components"]["flicker"]["details"]["events"][0]["missing_in"] == 42


def test_flicker_stores_imputed_boxes_for_prelabels(store):
    select(store, budget=2, strategy="flicker", seed=0)
    imputed = store.imputed("v1")
    assert list(imputed) == ["cam-42"]
    np.testing.assert_allclose(imputed["cam-42"].xyxy, [CAR])
    assert imputed["cam-42"].class_id.tolist() == [7]
    assert imputed["cam-42"].data["imputed"].tolist() == [True]


def test_explain_says_which_class_was_seen_and_missing_in_which_frames(store):
    select(store, budget=3, strategy="least_confidence:1,flicker:2", seed=7)
    text = explain(store, "cam-42")
    assert "flicker: box of class 7 (car) seen in frames 41 and 43, missing in 42 at confidence >= 0.25" in text
    assert "rank 1 of 3" in text
    text = explain(store, "still-c")
    assert "least_confidence" in text and "class 0 (person) at confidence 0.30" in text
    # the score is each scorer's rank in the pool times its weight; each scorer's own value follows
    assert re.search(r"score [\d.]+ = 1 x [\d.]+ \(least_confidence's rank in the pool\) \+ "
                     r"2 x [\d.]+ \(flicker's rank in the pool\); each scorer's own value:", text)


def test_explain_finds_the_item_by_its_file_name_or_uri(store):
    select(store, budget=3, strategy="least_confidence:1,flicker:2", seed=7)
    by_id = explain(store, "still-c")
    assert by_id.startswith("still-c (/s/still-c.jpg): rank ")
    assert explain(store, "still-c.jpg") == by_id == explain(store, "/s/still-c.jpg")
    store.add_item(Item("other-c", "/t/still-c.jpg", 320, 240, "sha-other-c"))
    store.put_predictions("v1", {"other-c": pred([[10, 10, 50, 50]], [0], [0.25])})
    select(store, budget=5, strategy="least_confidence", seed=7)
    with pytest.raises(InputError, match=r"2 images in selection sel-\S+ are named 'still-c.jpg' .*give the item id"):
        explain(store, "still-c.jpg")
    assert "rank" in explain(store, "/t/still-c.jpg")
    # what is not in the selection says why: no such image, or it was not picked
    with pytest.raises(InputError, match=r"is not in selection .*: no image of this workspace has that id"):
        explain(store, "nowhere.jpg")
    left = next(it for it in store.items(state="prelabeled") if it.id not in store.selection().why)
    with pytest.raises(InputError, match=rf"{re.escape(left.uri)} is in the pool but was not picked"):
        explain(store, left.id)


def test_explain_an_item_not_in_the_selection(store):
    select(store, budget=1, strategy="flicker", seed=0)
    with pytest.raises(InputError, match="item 'still-a' is not in selection sel-.*: /s/still-a.jpg is in the pool but was not picked"):
        explain(store, "still-a")
    store.add_label("still-a", Detections(np.array([[0, 0, 5, 5]], np.float32), np.array([0])), source="test")
    with pytest.raises(InputError, match="/s/still-a.jpg is labeled; selections pick from the unlabeled images"):
        explain(store, "still-a.jpg")
    # two frames of two videos share a file name: both are named, none is guessed
    store.add_item(Item("other-a", "/t/still-a.jpg", 320, 240, "sha-other-a"))
    with pytest.raises(InputError, match=r"2 images of this workspace are named so \(/s/still-a.jpg, /t/still-a.jpg\)"):
        explain(store, "still-a.jpg")


def test_same_seed_same_selection(store):
    add_embeddings(store, ALL)
    a = select(store, budget=4, strategy="random,least_confidence", diverse=True, seed=3, save=False).selection
    b = select(store, budget=4, strategy="random,least_confidence", diverse=True, seed=3, save=False).selection
    c = select(store, budget=4, strategy="random", seed=4, save=False).selection
    d = select(store, budget=4, strategy="random", seed=5, save=False).selection
    assert a.item_ids == b.item_ids and a.why == b.why
    assert c.item_ids != d.item_ids


def test_the_random_baseline_stays_a_uniform_sample_when_diversity_is_on(store):
    from boxloop.scoring.select import top_k
    from boxloop.selection import load_pool

    add_embeddings(store, ALL)
    for diverse in (True, None):
        report = select(store, budget=4, strategy="random", diverse=diverse, seed=7, save=False)
        sel = report.selection
        assert sel.config["selector"] == "top_k" and sel.config["dedup"] == "off: the random baseline"
        assert any("uniform sample" in n for n in report.notes)
        pool, _ = load_pool(store, sel.model_version)
        expected = top_k(np.random.default_rng(7).random(len(pool)), 4)  # the seeded draw, nothing reshaped
        assert list(sel.item_ids) == [pool.ids[i] for i in expected]
    spread = select(store, budget=4, strategy="random,diverse", seed=7, save=False).selection
    assert spread.config["selector"] == "diverse"  # asked for by name: still possible


def test_budget_larger_than_the_pool_takes_all_and_says_so(store):
    report = select(store, budget=50, strategy="least_confidence", seed=0)
    assert sorted(report.selection.item_ids) == sorted(set(ALL) - {"cam-40"})
    assert any("budget 50 is not less than the 9 unlabeled item(s) to pick from: selecting all of them" in n for n in report.notes)


def test_no_predictions_says_which_command_to_run():
    s = Store.memory()
    s.set_classes(CLASSES)
    s.add_item(Item("a", "/a.jpg", 10, 10, "x"))
    with pytest.raises(InputError, match=r"no predictions yet; add labels \(`boxloop add labels PATH`\), then "
                       r"`boxloop train`, then `boxloop predict`"):
        select(s, budget=1, strategy="least_confidence")
    s.add_label("a", Detections(np.array([[0, 0, 5, 5]], np.float32), np.array([0])), source="test")
    with pytest.raises(InputError, match=r"no predictions yet; run `boxloop train`, then `boxloop predict`"):
        select(s, budget=1, strategy="least_confidence")
    s.add_model_version("m001", backend="fake", classes=CLASSES, path="/runs/m001/best.pt")
    with pytest.raises(InputError, match=r"no predictions yet; run `boxloop predict` .* before selecting"):
        select(s, budget=1, strategy="least_confidence")


def test_unknown_model_version_lists_the_known_ones(store):
    with pytest.raises(InputError, match=r"no predictions from model version 'v9'; run `boxloop predict --model v9` first; model versions with predictions: v1"):
        select(store, budget=1, strategy="least_confidence", model_version="v9")


def test_diversity_asked_without_embeddings_is_an_error(store):
    with pytest.raises(InputError, match="diversity and novelty need image embeddings, but 9 of the 9 pool items have none"):
        select(store, budget=2, strategy="least_confidence", diverse=True)
    with pytest.raises(InputError, match="need image embeddings"):
        select(store, budget=2, strategy="k_center")
    # diversity by default (config) quietly falls back to a ranking, and says so
    report = select(store, budget=2, strategy="least_confidence", diverse=None, seed=0)
    assert report.selection.config["selector"] == "top_k"
    assert any("no embeddings" in n for n in report.notes)


def test_flicker_on_items_without_frame_order_is_an_error(store):
    store.add_label("cam-41", Detections(np.array([CAR], np.float32), np.array([7])), source="t")
    for f in range(42, 46):
        store.add_label(f"cam-{f}", Detections(np.array([CAR], np.float32), np.array([7])), source="t")
    with pytest.raises(InputError, match="flicker needs frames in order, but none of the 4 pool items comes from a video"):
        select(store, budget=2, strategy="flicker")


def test_unknown_strategy_name_lists_the_known_ones(store):
    with pytest.raises(InputError, match=r"unknown scorer or selector 'flickr'.*known scorers: random, least_confidence"):
        select(store, budget=2, strategy="flickr")


def test_budget_must_be_positive(store):
    with pytest.raises(InputError, match="budget must be a positive number of images, got 0"):
        select(store, budget=0, strategy="random")


def test_near_duplicate_of_a_pick_is_suppressed(store):
    add_embeddings(store, ALL)
    report = select(store, budget=2, strategy="uncertain_count", diverse=False, seed=0)
    picked = report.selection.item_ids
    assert "still-b" in picked and "still-c" not in picked
    assert report.selection.why["still-b"]["suppressed_duplicates"] == ["still-c"]
    assert "near-duplicate(s) left out in its favour: still-c.jpg" in explain(store, "still-b")  # by file name


def test_diverse_selection_and_k_center_run_on_embeddings(store):
    add_embeddings(store, ALL)
    diverse = select(store, budget=3, strategy="least_confidence", diverse=True, seed=1).selection
    assert diverse.config["selector"] == "diverse" and len(diverse.item_ids) == 3
    assert "still-b" not in diverse.item_ids or "still-c" not in diverse.item_ids
    core = select(store, budget=3, strategy="k_center", seed=1).selection
    assert core.config["selector"] == "k_center" and len(set(core.item_ids)) == 3
    assert "picked by k-center" in explain(store, core.item_ids[0])


def test_consistency_reads_the_flipped_predictions(store):
    with pytest.raises(InputError, match=r"consistency needs predictions on horizontally flipped images \(model version 'v1@hflip'\)"):
        select(store, budget=2, strategy="consistency")
    pool_ids = [i for i in ALL if i != "cam-40"]
    preds = store.predictions("v1", pool_ids)
    flips = {}
    for i, d in preds.items():
        x = d.xyxy.copy()
        mirrored = np.stack([320 - x[:, 2], x[:, 1], 320 - x[:, 0], x[:, 3]], 1)
        flips[i] = Detections(mirrored, d.class_id, d.confidence)
    flips["still-a"] = Detections.empty(with_confidence=True)  # the mirror misses the person
    store.put_predictions(flipped_version("v1"), flips)
    sel = select(store, budget=1, strategy="consistency", seed=0).selection
    assert sel.item_ids == ("still-a",)
    assert sel.model_version == "v1"  # the flip version is never the default


def test_test_split_and_excluded_items_are_never_selected(store):
    store.set_split({"still-b": "test"})
    report = select(store, budget=50, strategy="least_confidence", exclude=["still-d"], seed=0)
    assert "still-b" not in report.selection.item_ids and "still-d" not in report.selection.item_ids
    assert any("frozen test split" in n for n in report.notes)


def test_embeddings_that_all_look_alike_still_fill_the_budget(store):
    # an untrained model's pooled features: positive, nearly one direction for every image
    base = np.abs(np.random.default_rng(1).normal(size=32)).astype(np.float32) + 5.0
    store.put_embeddings("v1", {i: base + 1e-4 * k for k, i in enumerate(ALL)})
    report = select(store, budget=4, strategy="least_confidence", diverse=False, seed=0)
    assert len(report.selection.item_ids) == 4
    assert any("filled" in n for n in report.notes)


def test_centered_similarity_tells_apart_images_raw_cosine_calls_alike(store):
    rng = np.random.default_rng(2)
    offset = np.full(32, 50.0, np.float32)  # a large shared positive component
    store.put_embeddings("v1", {i: offset + rng.normal(size=32).astype(np.float32) for i in ALL})
    report = select(store, budget=4, strategy="least_confidence", diverse=False, seed=0)
    assert len(report.selection.item_ids) == 4
    assert not any("filled" in n for n in report.notes)


def _cold_store(n: int = 30, informed: int = 0) -> Store:
    """An untrained model's pool: no box on most images, three outlying embeddings among
    them; the first ``informed`` images hold a doubtful box (evidence)."""
    s = Store.memory()
    s.set_classes(CLASSES)
    rng = np.random.default_rng(3)
    predictions, vecs = {}, {}
    for k in range(n):
        s.add_item(Item(f"img-{k:02d}", f"/s/{k}.jpg", 320, 240, f"sha-{k}"))
        predictions[f"img-{k:02d}"] = pred([[10, 10, 50, 50]], [0], [0.3 + 0.01 * k]) if k < informed else pred()
        vecs[f"img-{k:02d}"] = rng.normal(size=16).astype(np.float32) * (0.05 if k < n - 3 else 5.0)
    s.put_predictions("v1", predictions)
    s.put_embeddings("v1", vecs)
    return s


def test_a_cold_start_samples_uniformly_instead_of_spreading_over_an_untrained_model():
    s = _cold_store()
    outliers = {"img-27", "img-28", "img-29"}  # what diversity on these embeddings goes for
    counts: dict[str, int] = {}
    for seed in range(120):
        report = select(s, budget=3, strategy="least_confidence", diverse=True, seed=seed, save=False)
        sel = report.selection
        assert sel.config["cold_start"] == {"tied": 30, "score": 0.0, "ranked": 0, "uniform": 3}
        assert sel.config["dedup"] == "off: a cold start, sampled uniformly"
        assert {w["selector"] for w in sel.why.values()} == {"uniform"}
        assert any("(least_confidence 0.1)" in n and "cold start" in n and "uniform sample of 3" in n for n in report.notes)
        for i in sel.item_ids:
            counts[i] = counts.get(i, 0) + 1
    assert len(counts) == 30  # every image gets its chance
    assert sum(counts[o] for o in outliers) / 360 < 0.25  # uniform: 0.10 expected; diversity took 2 of them every time
    again = select(s, budget=3, strategy="least_confidence", diverse=True, seed=5, save=False).selection
    assert again.item_ids == select(s, budget=3, strategy="least_confidence", diverse=True, seed=5, save=False).selection.item_ids


def test_images_with_evidence_are_ranked_first_and_only_the_rest_is_sampled():
    s = _cold_store(informed=5)
    report = select(s, budget=8, strategy="least_confidence", diverse=True, seed=1)
    sel = report.selection
    informed = {f"img-{k:02d}" for k in range(5)}
    assert set(sel.item_ids[:5]) == informed  # the scored images, by the diverse selector
    assert {sel.why[i]["selector"] for i in informed} == {"diverse"}
    assert {sel.why[i]["selector"] for i in sel.item_ids[5:]} == {"uniform"}
    assert sel.config["cold_start"] == {"tied": 25, "score": 0.0, "ranked": 5, "uniform": 3}
    assert any("5 picked from the 5 scored above it" in n for n in report.notes)
    assert "sampled uniformly" in explain(s, sel.item_ids[-1])
    # with evidence on more images than the budget, the tied ones are left out altogether
    wide = select(s, budget=4, strategy="least_confidence", diverse=True, seed=1, save=False).selection
    assert set(wide.item_ids) <= informed and wide.config["cold_start"]["uniform"] == 0


def test_a_trained_model_has_no_cold_start(store):
    sel = select(store, budget=3, strategy="least_confidence:1,flicker:2", seed=7, save=False).selection
    assert sel.config["cold_start"] is None


def test_nothing_to_select_says_where_the_unlabeled_items_are(tmp_path) -> None:
    """Every unlabeled item sent out to be labeled: the error says so and what brings them back."""
    from _images import write_image
    from boxloop.backends.fake import FakeBackend
    from boxloop.errors import NothingToSelect
    from boxloop.export import export_dataset
    from boxloop.ingest import add_images
    from boxloop.modeling import predict
    from boxloop.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    add_images(ws, [write_image(tmp_path / "pool" / f"{i}.jpg", seed=i) for i in range(3)])
    predict(ws, backend=FakeBackend(["cat", "dog"]), model="fake")
    export_dataset(ws, what="prelabeled", zip=True, out=tmp_path / "out.zip", batch=True)
    with pytest.raises(NothingToSelect, match=r"3 are in review, sent out to be labeled \(`boxloop pull`"):
        select(ws.store, budget=2, strategy="least_confidence", model_version="fake")


def test_nothing_to_select_when_the_newest_model_has_not_predicted_the_pool_says_predict() -> None:
    """A model `boxloop serve` trained predicted only the test split: the pool is not empty,
    its images carry an older model's predictions; the error says to predict, not to add images."""
    from boxloop.errors import NothingToSelect

    s = Store.memory()
    s.set_classes(CLASSES)
    for k in ("a", "b", "t"):
        s.add_item(Item(k, f"/{k}.jpg", 10, 10, f"sha-{k}"))
    s.add_label("t", Detections(np.array([[0, 0, 5, 5]], np.float32), np.array([0])), source="test")
    s.set_split({"t": "test"})
    s.put_predictions("v1", {k: pred([[1, 1, 5, 5]], [0], [0.4]) for k in ("a", "b")})
    s.put_predictions("v2", {"t": pred([[1, 1, 5, 5]], [0], [0.9])})
    with pytest.raises(NothingToSelect) as e:
        select(s, budget=1, strategy="least_confidence", model_version="v2")
    said = str(e.value)
    assert "2 have predictions from other model versions only: `boxloop predict` (model v2)" in said
    assert "the pool is empty" not in said


def test_a_newer_version_that_predicted_a_few_images_does_not_shrink_the_pool(store):
    """`predict --model other.pt --items ID` (a quick look at one image) made that file the
    newest predictions: select then picked from that one image alone, calling it the pool.
    The newest predictions covering the pool are scored, and the choice is said."""
    import time

    time.sleep(0.01)
    store.put_predictions("quick-look", {"still-b": pred([[10, 10, 50, 50]], [0], [0.5])})
    report = select(store, budget=3, strategy="least_confidence", diverse=False)
    assert report.selection.model_version == "v1" and len(report.selection.item_ids) == 3
    assert any(n.startswith("scoring v1's predictions (9 of the 9 pool images): the newer quick-look's cover 1") for n in report.notes)
    # asked for by name, that version scores its own images, and says the others have none of its predictions
    alone = select(store, budget=3, strategy="least_confidence", diverse=False, model_version="quick-look")
    assert list(alone.selection.item_ids) == ["still-b"]
    assert any("8 unlabeled item(s) have predictions of other versions, none of quick-look's" in n for n in alone.notes)
    # a model trained since that predicted nothing yet is named
    store.add_model_version("m007", backend="fake", classes=CLASSES, path="/runs/m007/best.pt")
    again = select(store, budget=1, strategy="least_confidence", diverse=False)
    assert any(n.startswith("the newest model, m007, has not predicted the pool: scoring v1's") for n in again.notes)


def test_a_selector_named_in_the_strategy_stands_over_the_default_diversity(store):
    """`select -s "entropy:1,top_k"` with [select] diverse = true (the default): once silently
    the diverse selector; k_center was honoured."""
    add_embeddings(store, ALL)
    assert select(store, budget=2, strategy="least_confidence", diverse=None, seed=0).selection.strategy.endswith(",diverse")
    named = select(store, budget=2, strategy="least_confidence:1,top_k", diverse=None, seed=0)
    assert named.selection.strategy == "least_confidence:1"  # top_k, the plain ranking: no ",diverse"
    with pytest.raises(InputError, match=r"--diverse asks for the diverse selector, but the strategy .* names top_k"):
        select(store, budget=2, strategy="least_confidence:1,top_k", diverse=True, seed=0)


def test_a_scorer_that_gives_most_of_the_pool_its_top_value_is_noted():
    """consistency saturating (139 of 240 images at 1) said nothing: now select and score say
    the scorer cannot rank those images."""
    from boxloop.selection import _saturated

    notes = _saturated({"consistency": np.array([1.0] * 139 + [0.2] * 101), "least_confidence": np.linspace(0, 1, 240)})
    assert notes == ["consistency gives 139 of the 240 pool images its highest value (1): it cannot rank them against "
                     "each other"]


def test_pool_images_without_predictions_whose_file_is_gone_are_not_sent_to_predict(store, tmp_path):
    """An image moved away after it was added gets no predictions: select's note once sent the
    user to `boxloop predict`, which cannot help; it says the file is gone."""
    here = tmp_path / "here.jpg"
    here.write_bytes(b"x")
    store.add_item(Item("here", str(here), 320, 240, "sha-here"))
    store.add_item(Item("moved", str(tmp_path / "moved.jpg"), 320, 240, "sha-moved"))
    report = select(store, budget=1, strategy="least_confidence", diverse=False)
    assert "1 unlabeled item(s) have no predictions yet; run `boxloop predict` to include them" in report.notes
    assert any(n.startswith("1 unlabeled item(s) have no predictions and their file is no longer where it was added")
               and str(tmp_path / "moved.jpg") in n for n in report.notes)
