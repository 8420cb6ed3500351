"""Label Studio JSON, pure: export parsing, task building, labeling configs, and pre-label
acceptance, all on strings and arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from boxloop.annotation.acceptance import (
    acceptance,
    acceptance_words,
    saved_per_image,
    seconds_saved,
    sum_acceptance,
    threshold_text,
)
from boxloop.errors import InputError, Problems
from boxloop.formats import ImageLabels
from boxloop.formats.labelstudio import (
    build_task,
    export_tasks,
    label_config,
    newest_annotation,
    parse_label_config,
    parse_labelstudio_export,
    parse_regions,
    why_text,
)
from boxloop.store import Store
from boxloop.types import Detections


def region(x, y, w, h, label="car", *, rotation=0, ow=200, oh=100, rid="r1"):
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": rotation}
    if label is not None:
        value["rectanglelabels"] = [label]
    return {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": ow, "original_height": oh, "value": value}


EXPORT = json.dumps([
    {
        "id": 1,
        "data": {"image": "/data/local-files/?d=imgs/a.jpg"},
        "annotations": [
            {"id": 10, "was_cancelled": False, "updated_at": "2024-01-01T00:00:00Z",
             "result": [region(10, 20, 30, 40, "person")]},
            {"id": 11, "was_cancelled": False, "updated_at": "2024-01-02T00:00:00Z",
             "result": [region(50, 50, 25, 50, "car")]},
            {"id": 12, "was_cancelled": True, "updated_at": "2024-01-03T00:00:00Z", "result": []},
        ],
    },
    {"id": 2, "data": {"image": "b.jpg"}, "annotations": []},
    {"id": 3, "data": {"image": "c.jpg"}, "annotations": [{"id": 30, "was_cancelled": True, "result": []}]},
    {"id": 4, "data": {"image": "d.jpg"}, "annotations": [{"id": 40, "result": []}]},
])


def test_export_takes_the_newest_not_cancelled_annotation_in_pixels():
    records, problems = parse_labelstudio_export(json.loads(EXPORT), source="x.json")
    assert not problems
    assert [r.file_name for r in records] == ["/data/local-files/?d=imgs/a.jpg", "d.jpg"]
    a = records[0]
    assert a.class_names == ("car",)
    np.testing.assert_allclose(a.xyxy, [[100, 50, 150, 100]])
    assert (a.width, a.height) == (200, 100)
    assert a.extra["annotation_id"] == 11


def test_image_with_empty_annotation_is_a_record_with_no_boxes():
    records, _ = parse_labelstudio_export(json.loads(EXPORT), source="x.json")
    empty = records[1]
    assert empty.xyxy.shape == (0, 4) and empty.class_names == ()


@pytest.mark.parametrize(
    ("rotation", "expected"),
    [
        (90, [20, 20, 40, 60]),  # a 40x20 px box turned clockwise about its top-left corner (40, 20)
        (180, [0, 0, 40, 20]),
    ],
)
def test_rotated_rectangle_becomes_its_bounding_box_with_a_warning(rotation, expected):
    problems = Problems()
    # x=40 px, y=20 px, w=40 px, h=20 px on a 200x100 image
    xyxy, names, _ = parse_regions([region(20, 20, 20, 20, rotation=rotation)], where="t", problems=problems)
    np.testing.assert_allclose(xyxy, [expected], atol=1e-3)
    assert names == ("car",)
    assert len(problems) == 1 and "rotated" in str(problems.items[0])


def test_rotated_45_degrees_bounding_box():
    problems = Problems()
    xyxy, _, _ = parse_regions([region(50, 10, 10, 10, rotation=45, ow=100, oh=100)], where="t", problems=problems)
    s = 10 / math.sqrt(2)
    np.testing.assert_allclose(xyxy, [[50 - s, 10, 50 + s, 10 + 2 * s]], atol=1e-3)


@pytest.mark.parametrize(
    ("reg", "reason"),
    [
        (region(1, 1, 5, 5, label=None), "no label"),
        (region(1, 1, 5, 5, label="dragon"), "unknown label 'dragon'"),
        ({"id": "p", "type": "polygonlabels", "value": {"points": [[0, 0], [1, 1], [0, 1]]}}, "not a box"),
        (region(1, 1, 0, 5), "empty box"),
        ({"id": "q", "type": "rectanglelabels", "value": {"x": 1}}, "no usable"),
    ],
)
def test_bad_regions_are_reported_never_silently_dropped(reg, reason):
    problems = Problems()
    xyxy, names, _ = parse_regions([reg, region(0, 0, 10, 10)], known=["car", "person"], where="task 7", problems=problems)
    assert names == ("car",)
    np.testing.assert_allclose(xyxy, [[0, 0, 20, 10]])
    assert len(problems) == 1
    assert reason in problems.items[0].reason and problems.items[0].path == "task 7"


def test_unknown_labels_reported_by_the_export_parser_when_classes_are_given():
    obj = [{"id": 5, "data": {"image": "e.jpg"},
            "annotations": [{"id": 1, "result": [region(0, 0, 10, 10, "dragon"), region(0, 0, 10, 10, "car", rid="r2")]}]}]
    records, problems = parse_labelstudio_export(obj, source="s.json", classes=["car"])
    assert records[0].class_names == ("car",)
    assert "dragon" in str(problems.items[0]) and "task 5" in str(problems.items[0])


def test_export_that_is_not_a_list_is_an_input_error():
    with pytest.raises(InputError, match="list of tasks"):
        parse_labelstudio_export("nope", source="s.json")  # type: ignore[arg-type]


def test_task_without_image_reference_is_reported():
    records, problems = parse_labelstudio_export([{"id": 9, "data": {}, "annotations": []}], source="s.json")
    assert records == [] and "no image reference" in str(problems.items[0])


def test_build_task_predictions_round_trip_through_parse():
    rec = ImageLabels("a.jpg", 640, 480, np.array([[64, 48, 320, 240], [0, 0, 640, 480]]), ("car", "person"),
                      scores=np.array([0.9, 0.3], np.float32))
    task = build_task(rec, image="/data/local-files/?d=x/a.jpg", model_version="mv1", score=0.7, why="#1, score 0.7",
                      data={"boxloop_item": "abc"})
    assert task["data"] == {"image": "/data/local-files/?d=x/a.jpg", "why": "#1, score 0.7", "boxloop_item": "abc"}
    pred = task["predictions"][0]
    assert pred["model_version"] == "mv1" and pred["score"] == 0.7
    assert [r["score"] for r in pred["result"]] == [0.9, 0.3]
    v = pred["result"][0]["value"]
    assert (v["x"], v["y"], v["width"], v["height"]) == (10.0, 10.0, 40.0, 40.0)
    xyxy, names, drawn = parse_regions(pred["result"], where="t", problems=Problems())
    np.testing.assert_allclose(xyxy, rec.xyxy, atol=1e-3)
    assert names == rec.class_names and drawn == (640, 480)


# what `select` saves for a pick: the components, the selector, the near-duplicates it beat
SELECT_WHY = {
    "rank": 4, "score": 0.4722, "selector": "diverse", "suppressed_duplicates": ["a1b2c3"], "suppressed_count": 1,
    "components": {
        "least_confidence": {"weight": 1.0, "score": 0.472, "percentile": 0.95, "details": {
            "top_box": {"class_id": 2, "confidence": 0.53, "uncertainty": 0.47}, "boxes": 3, "aggregation": "max"}},
        "class_rarity": {"weight": 0.5, "score": 0.8, "percentile": 0.6, "details": {
            "class_id": 0, "confidence": 0.61, "labeled_boxes": 3, "labeled_total": 120}},
    },
}


def test_why_text_says_in_words_what_put_the_image_in_the_batch():
    names = ["person", "car", "wine glass"]
    text = why_text(SELECT_WHY, score=0.4722, rank=4, names=names, alpha=0.5, file_names={"a1b2c3": "p7.jpg"})
    lines = text.splitlines()
    assert lines[0] == ("#5, score 0.4722 = 1 x 0.95 (least_confidence's rank in the pool) + 0.5 x 0.60 "
                        "(class_rarity's rank in the pool); each scorer's own value:")
    assert lines[1] == ("least_confidence 0.472 (weight 1, beats 95% of the pool): most doubtful box is wine glass "
                        "at confidence 0.53 (uncertainty 0.47; 3 box(es), aggregation max)")
    assert lines[2] == ("class_rarity 0.8 (weight 0.5, beats 60% of the pool): person at confidence 0.61 has 3 of "
                        "120 labeled boxes")
    assert lines[3].startswith("picked by ranked batch-mode diversity (alpha 0.5)")
    assert lines[4] == "1 near-duplicate(s) left out in its favour: p7.jpg"
    # no repr of boxloop's own dicts, no class ids, the place in the batch once (one-based)
    for internal in ("{", "}", "[", "]", "': ", "class_id", "class 2", "class 0", "rank 4", "selector", "components"):
        assert internal not in text, internal


def test_why_text_of_plain_numbers_and_of_nothing():
    assert why_text({"least_confidence": 0.87, "rank": 0, "note": {"x": 1}}, score=0.9, rank=0) == (
        "#1, score 0.900; least_confidence 0.870")
    assert why_text(None, score=0.25, rank=2) == "#3, score 0.250"
    assert why_text(None) == ""
    # components saved without their rank in the pool: each scorer's score, never the dict
    assert why_text({"components": {"entropy": {"score": 0.5}}, "selector": "top_k"}, score=0.5, rank=1) == (
        "#2, score 0.500; entropy 0.500")
    # a class id the workspace does not have (any more) keeps its number
    why = {**SELECT_WHY, "components": {"least_confidence": SELECT_WHY["components"]["least_confidence"]}}
    assert "most doubtful box is class 2 at confidence" in why_text(why, rank=0, names=["person"])


def test_image_with_no_detections_gets_an_empty_prediction_not_a_fake_box():
    rec = ImageLabels("a.jpg", 10, 10, np.zeros((0, 4)), (), scores=np.zeros(0, np.float32))
    task = build_task(rec, model_version="mv1", score=0.1)
    assert task["predictions"][0]["result"] == []


def test_export_tasks_human_labels_are_annotations():
    recs = [ImageLabels("a.jpg", 10, 10, np.array([[1, 1, 5, 5]]), ("car",)),
            ImageLabels("b.jpg", 10, 10, np.array([[1, 1, 5, 5]]), ("car",), scores=np.array([0.5]))]
    tasks = export_tasks(recs, human=[True, False], model_version="mv2")
    assert "annotations" in tasks[0] and "predictions" not in tasks[0]
    assert tasks[1]["predictions"][0]["model_version"] == "mv2"
    records, problems = parse_labelstudio_export(tasks, source="t")
    assert [r.file_name for r in records] == ["a.jpg"] and not problems


def test_build_task_needs_the_image_size():
    with pytest.raises(InputError, match="image size"):
        build_task(ImageLabels("a.jpg", None, None, np.zeros((0, 4)), ()))


def test_label_config_lists_every_class_and_reads_back():
    classes = ["person", "traffic light", 'odd "name" & <x>']
    xml = label_config(classes)
    lc = parse_label_config(xml)
    assert lc.labels == tuple(classes)
    assert (lc.from_name, lc.to_name, lc.image_key) == ("label", "image", "image")
    assert '$why' in xml
    assert "$why" not in label_config(classes, with_why=False)


@pytest.mark.parametrize(
    ("xml", "match"),
    [("<View><Image name='i' value='$img'/></View>", "no RectangleLabels"),
     ("<View>", "not valid XML"),
     ("<View><RectangleLabels name='l' toName='nope'/></View>", "not an Image")],
)
def test_bad_label_configs(xml, match):
    with pytest.raises(InputError, match=match):
        parse_label_config(xml)


def test_newest_annotation_ignores_cancelled():
    task = {"annotations": [{"id": 1, "updated_at": "2024-01-02"}, {"id": 2, "updated_at": "2024-01-01"},
                            {"id": 3, "updated_at": "2024-01-05", "was_cancelled": True}]}
    assert newest_annotation(task)["id"] == 1
    assert newest_annotation({"annotations": [{"id": 3, "was_cancelled": True}]}) is None


# -- acceptance ---------------------------------------------------------------------------------
def dets(boxes, classes):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(classes))


PRE = dets([[0, 0, 100, 100], [200, 200, 300, 300], [400, 0, 500, 100]], [0, 1, 2])


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (PRE, {"accepted": 3, "adjusted": 0, "deleted": 0, "added": 0}),
        (dets([[0, 0, 100, 100], [200, 200, 300, 300], [400, 0, 500, 100]], [0, 1, 0]),
         {"accepted": 2, "adjusted": 1, "deleted": 0, "added": 0}),  # a class changed
        (dets([[10, 0, 110, 100], [200, 200, 300, 300]], [0, 1]),
         {"accepted": 1, "adjusted": 1, "deleted": 1, "added": 0}),  # moved one, deleted one
        (dets([[0, 0, 100, 100], [200, 200, 300, 300], [400, 0, 500, 100], [600, 600, 650, 650]], [0, 1, 2, 0]),
         {"accepted": 3, "adjusted": 0, "deleted": 0, "added": 1}),
        (dets([[60, 60, 160, 160]], [0]), {"accepted": 0, "adjusted": 0, "deleted": 3, "added": 1}),  # IoU < 0.5
        (Detections.empty(), {"accepted": 0, "adjusted": 0, "deleted": 3, "added": 0}),
    ],
)
def test_acceptance_counts(labels, expected):
    assert acceptance(PRE, labels) == expected


def test_acceptance_of_no_prelabels_is_all_added():
    assert acceptance(Detections.empty(), PRE) == {"accepted": 0, "adjusted": 0, "deleted": 0, "added": 3}


def test_acceptance_thresholds_are_validated():
    with pytest.raises(InputError, match="iou_adjust"):
        acceptance(PRE, PRE, iou_accept=0.4, iou_adjust=0.5)


def test_seconds_saved_direction():
    good = seconds_saved({"accepted": 10})
    mixed = seconds_saved({"accepted": 5, "adjusted": 5})
    bad = seconds_saved({"deleted": 10, "added": 10})
    assert good > mixed > 0 > bad
    assert good == 60.0  # 10 boxes x (7 s drawing - 1 s checking)


def test_sum_acceptance_and_store_totals_per_round():
    store = Store.memory()
    store.set_classes(["a"])
    from boxloop.types import Item

    for i in range(3):
        store.add_item(Item(id=f"i{i}", uri=f"/x/{i}.jpg", width=10, height=10, sha256=str(i)))
    rows = [{"accepted": 2, "adjusted": 1}, {"deleted": 1, "added": 2}, {"accepted": 1}]
    for i, (r, rnd) in enumerate(zip(rows, (1, 1, 2), strict=True)):
        store.put_acceptance("files", "p", f"i{i}", r, annotation="a", seconds_saved=seconds_saved(r), round=rnd)
    # pulling the same item again replaces its record, never counts it twice
    store.put_acceptance("files", "p", "i2", {"accepted": 1}, annotation="b", seconds_saved=6.0, round=2)
    totals = store.acceptance_by_round()
    assert totals[1] == {"items": 2, "accepted": 2, "adjusted": 1, "deleted": 1, "added": 2,
                         "seconds_saved": 12 + 4 - 1.5}
    assert totals[2]["items"] == 1 and totals[2]["accepted"] == 1
    s = sum_acceptance(rows)
    assert s["accepted"] == 3 and s["items"] == 3 and s["seconds_saved"] == pytest.approx(12 + 4 - 1.5 + 6)
    assert "prelabel_conf_min" not in totals[1] and threshold_text(totals[1]) == ""  # no threshold recorded
    # the threshold each item's pre-labels were cut at: the lowest and highest of a round's
    store.put_acceptance("files", "p", "i0", rows[0], annotation="c", seconds_saved=16.0, round=1, prelabel_conf=0.3)
    store.put_acceptance("files", "p", "i1", rows[1], annotation="c", seconds_saved=-1.5, round=1, prelabel_conf=0.15)
    again = store.acceptance_by_round()[1]
    assert store.acceptance_models() == {1: {"": 2}, 2: {"": 1}}  # no model version recorded here
    assert (again["prelabel_conf_min"], again["prelabel_conf_max"]) == (0.15, 0.3)
    assert threshold_text(again) == "0.15-0.3" and saved_per_image(again) == pytest.approx((16 - 1.5) / 2)
    assert acceptance_words(again) == (
        "2 accepted, 1 adjusted, 1 deleted, 2 added (saved 7.2 s an image; pre-labels at confidence >= 0.15-0.3)"
    )
    costly = {"deleted": 4, "items": 2, "seconds_saved": -6.0, "prelabel_conf_min": 0.1, "prelabel_conf_max": 0.1}
    assert acceptance_words(costly) == (
        "0 accepted, 0 adjusted, 4 deleted, 0 added (cost 3.0 s an image more than drawing; pre-labels at confidence >= 0.1)"
    )
    summed = sum_acceptance([{**rows[0], "prelabel_conf": 0.4}, {**rows[1], "prelabel_conf": 0.2}, rows[2]])
    assert threshold_text(summed) == "0.2-0.4" and saved_per_image({"items": 0}) is None


def test_a_pulled_box_dragged_past_the_image_edge_is_clipped_to_it() -> None:
    """Label Studio lets a box be dragged a little past the image: pulled, it is clipped to the
    image as every import clips it; one wholly outside is left out, named."""
    from boxloop.annotation.labelstudio import _regions_to_detections
    from boxloop.formats.labelstudio import LabelConfig
    from boxloop.types import Item

    item = Item("i", "/x/i.jpg", 200, 100, "sha")
    lc = LabelConfig(from_name="label", to_name="image", image_key="image", labels=("cat", "dog"))

    def region(x: float, y: float, w: float, h: float, name: str) -> dict:
        return {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 200,
                "original_height": 100, "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": [name]}}

    problems = Problems()
    d = _regions_to_detections([region(90, 10, 15, 20, "cat"), region(10, -5, 20, 30, "dog"),
                                region(101, 10, 5, 5, "cat")], item, lc, ["cat", "dog"], "task 1", problems)
    np.testing.assert_allclose(d.xyxy, [[180, 10, 200, 30], [20, 0, 60, 25]], atol=1e-4)
    assert d.class_id.tolist() == [0, 1]
    assert any("1 box(es) lie wholly outside the image; left out" in p.reason for p in problems)
