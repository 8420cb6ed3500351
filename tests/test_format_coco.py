"""COCO detection JSON and COCO results: parse tables, bad records, round trip, pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.formats import ImageLabels
from boxloop.formats.coco import parse_coco, parse_coco_results, to_coco

SRC = "labels/instances.json"


def _doc(*annotations: dict, **changes: object) -> dict:
    """Two 100x50 images (a.jpg id 1, b.jpg id 2), categories cat (1) and dog (2)."""
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
            {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50},
        ],
        "annotations": [
            {"id": i + 1, "iscrowd": 0, **a} if isinstance(a, dict) else a
            for i, a in enumerate(annotations)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    doc.update(changes)
    return doc


def _ann(image_id: object = 1, category_id: object = 1, bbox: object = (10, 5, 20, 10)) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox)}  # type: ignore[call-overload]


def _boxes(records: list[ImageLabels]) -> dict[str, list[tuple]]:
    return {
        r.file_name: [
            (n, *np.round(b, 4).tolist()) for n, b in zip(r.class_names, r.xyxy, strict=True)
        ]
        for r in records
    }


GOOD = _ann()  # cat at x 10..30, y 5..15 on a.jpg
GOOD_BOX = ("cat", 10.0, 5.0, 30.0, 15.0)

PARSE_CASES = [
    # (id, document, expected boxes per file, expected problem fragments)
    ("one box; b.jpg labeled empty", _doc(GOOD), {"a.jpg": [GOOD_BOX], "b.jpg": []}, []),
    (
        "two images, two classes, float bbox",
        _doc(GOOD, _ann(2, 2, (0.5, 1.25, 99.5, 48.75))),
        {"a.jpg": [GOOD_BOX], "b.jpg": [("dog", 0.5, 1.25, 100.0, 50.0)]},
        [],
    ),
    (
        "edge half a pixel outside is clipped, not refused",
        _doc(_ann(bbox=(-0.5, 0, 100.5, 50))),
        {"a.jpg": [("cat", 0.0, 0.0, 100.0, 50.0)], "b.jpg": []},
        [],
    ),
    ("unknown image", _doc(GOOD, _ann(image_id=99)), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): refers to unknown image_id 99"]),
    ("unknown category", _doc(GOOD, _ann(category_id=7)), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): refers to unknown category_id 7"]),
    ("bbox with a string", _doc(_ann(bbox=(1, "2", 3, 4)), GOOD), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[0] (id 1): bbox has a value that is not a finite number"]),
    ("bbox with null", _doc(GOOD, _ann(bbox=(1, None, 3, 4))), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): bbox has a value that is not a finite number"]),
    ("bbox of 3 numbers", _doc(GOOD, _ann(bbox=(1, 2, 3))), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): bbox must be a list of 4 numbers"]),
    ("negative width", _doc(GOOD, _ann(bbox=(40, 5, -3, 4))), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): bbox has zero or negative size"]),
    ("zero height", _doc(GOOD, _ann(bbox=(40, 5, 3, 0))), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): bbox has zero or negative size"]),
    ("box reaching past the image is clipped, as Ultralytics does", _doc(GOOD, _ann(bbox=(90, 40, 30, 30))), {"a.jpg": [GOOD_BOX, ("cat", 90.0, 40.0, 100.0, 50.0)], "b.jpg": []}, []),
    ("box wholly outside the image", _doc(GOOD, _ann(bbox=(120, 10, 30, 30))), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): box [120, 10, 150, 40] (xyxy) lies outside the 100x50 image; left out"]),
    ("box touching the image only at its edge", _doc(GOOD, _ann(bbox=(100, 10, 5, 5))), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1] (id 2): box [100, 10, 105, 15] (xyxy) lies outside the 100x50 image; left out"]),
    ("annotation not an object", _doc(GOOD, "oops"), {"a.jpg": [GOOD_BOX], "b.jpg": []}, ["annotations[1]: expected an object"]),  # type: ignore[arg-type]
    (
        "image without file_name, and its annotation",
        _doc(GOOD, _ann(image_id=3), images=[*_doc()["images"], {"id": 3, "width": 10, "height": 10}]),
        {"a.jpg": [GOOD_BOX], "b.jpg": []},
        ["images[2] (id 3): image has no file_name", "annotations[1] (id 2): refers to unknown image_id 3"],
    ),
    (
        "duplicate image id",
        _doc(GOOD, images=[*_doc()["images"], {"id": 1, "file_name": "c.jpg", "width": 9, "height": 9}]),
        {"a.jpg": [GOOD_BOX], "b.jpg": []},
        ["images[2] (id 1): duplicate image id (first: 'a.jpg')"],
    ),
    (
        "image with a negative size",
        _doc(GOOD, images=[*_doc()["images"], {"id": 3, "file_name": "c.jpg", "width": -4, "height": 9}]),
        {"a.jpg": [GOOD_BOX], "b.jpg": []},
        ["images[2] (id 3): width/height must be positive integers, got -4x9"],
    ),
    (
        "category without a name, and its annotation",
        _doc(GOOD, _ann(category_id=3), categories=[*_doc()["categories"], {"id": 3}]),
        {"a.jpg": [GOOD_BOX], "b.jpg": []},
        ["categories[2] (id 3): category has no name", "annotations[1] (id 2): refers to unknown category_id 3"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "expected", "problems"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_coco_keeps_good_records_and_reports_bad_ones(
    doc: dict, expected: dict, problems: list[str]
) -> None:
    records, names, found = parse_coco(doc, source=SRC)
    assert _boxes(records) == expected
    assert [r.file_name for r in records] == list(expected)
    assert names == ["cat", "dog"]
    assert len(found) == len(problems)
    for problem, fragment in zip(found, problems, strict=True):
        assert problem.path == SRC
        assert fragment in problem.reason
        assert str(problem).startswith(f"{SRC}: ")


def test_parse_coco_keeps_width_height_and_file_name_as_in_the_file() -> None:
    doc = _doc(GOOD, images=[{"id": 7, "file_name": "sub/dir/a.jpg", "width": 640, "height": 480}])
    doc["annotations"][0]["image_id"] = 7
    (record,), _, _ = parse_coco(doc, source=SRC)
    assert (record.file_name, record.width, record.height) == ("sub/dir/a.jpg", 640, 480)
    assert record.extra["image_id"] == 7
    assert record.scores is None


def test_parse_coco_orders_class_names_by_category_id() -> None:
    doc = _doc(
        categories=[{"id": 9, "name": "zebra"}, {"id": 2, "name": "ant"}, {"id": 5, "name": "bee"}]
    )
    _, names, problems = parse_coco(doc, source=SRC)
    assert names == ["ant", "bee", "zebra"]
    assert not problems


def test_parse_coco_keeps_crowd_regions_apart_without_a_problem() -> None:
    crowd = {**_ann(bbox=(0, 0, 50, 40)), "iscrowd": 1}
    records, _, problems = parse_coco(_doc(GOOD, crowd), source=SRC)
    a = records[0]
    assert a.class_names == ("cat",)
    assert a.extra["crowd_xyxy"].tolist() == [[0.0, 0.0, 50.0, 40.0]]
    assert a.extra["crowd_class_names"] == ("cat",)
    assert "crowd_xyxy" not in records[1].extra
    assert not problems


def test_parse_coco_reads_scores_as_predictions_and_reports_a_missing_one() -> None:
    scored = {**_ann(2, 2), "score": 0.25}
    records, _, problems = parse_coco(_doc({**GOOD, "score": 0.0}, scored, _ann(2, 1)), source=SRC)
    assert records[0].scores.tolist() == [0.0]  # a legitimate 0.0 is kept
    assert records[1].scores.tolist() == [0.25]
    assert records[1].class_names == ("dog",)
    (problem,) = problems
    assert "annotations[2] (id 3): score must be a finite number" in problem.reason


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "the top level is a list"),
        ({"images": [], "categories": []}, "'annotations' is missing"),
        ({"images": {}, "annotations": [], "categories": []}, "'images' is a dict"),
        ({"images": [], "annotations": []}, "'categories' is missing"),
    ],
    ids=["a list", "an image list without annotations", "images not a list", "no categories"],
)
def test_parse_coco_refuses_a_file_that_is_not_coco_labels(doc: object, message: str) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(SRC)}: .*{message}"):
        parse_coco(doc, source=SRC)  # type: ignore[arg-type]


def _records(rng: np.random.Generator, *, scored: bool) -> list[ImageLabels]:
    records = []
    for i, n in enumerate([3, 0, 5]):
        w, h = 640 + i, 480 - i
        xy = rng.uniform(0, [w / 2, h / 2], size=(n, 2))
        wh = rng.uniform(0.3, [w / 2, h / 2], size=(n, 2))
        records.append(
            ImageLabels(
                file_name=f"img_{i}.jpg",
                width=w,
                height=h,
                xyxy=np.hstack([xy, xy + wh]),
                class_names=tuple(rng.choice(["person", "car", "dog"], size=n)),
                scores=rng.uniform(0, 1, size=n).astype(np.float32) if scored else None,
            )
        )
    return records


@pytest.mark.parametrize("scored", [False, True], ids=["labels", "predictions"])
def test_to_coco_then_parse_coco_gives_the_same_records(scored: bool) -> None:
    records = _records(np.random.default_rng(0), scored=scored)
    classes = ["person", "car", "dog"]
    text = json.dumps(to_coco(records, classes))
    back, names, problems = parse_coco(json.loads(text), source="export.json")
    assert not problems
    assert names == classes
    assert len(back) == len(records)
    for r, b in zip(records, back, strict=True):
        assert (b.file_name, b.width, b.height, b.class_names) == (
            r.file_name,
            r.width,
            r.height,
            r.class_names,
        )
        np.testing.assert_allclose(b.xyxy, r.xyxy, atol=1e-6, rtol=0)
        if scored:
            np.testing.assert_allclose(b.scores, r.scores, atol=1e-6, rtol=0)
        else:
            assert b.scores is None


def test_to_coco_writes_ids_xywh_area_and_crowd_flag() -> None:
    rec = ImageLabels("a.jpg", 100, 50, np.array([[10, 5, 30, 15]]), ("dog",))
    doc = to_coco(
        [ImageLabels("z.jpg", 8, 8, np.zeros((0, 4)), ()), rec], ["cat", "dog"], info={"year": 2024}
    )
    assert doc["info"] == {"year": 2024}
    assert doc["categories"] == [
        {"id": 1, "name": "cat", "supercategory": ""},
        {"id": 2, "name": "dog", "supercategory": ""},
    ]
    assert [(i["id"], i["file_name"]) for i in doc["images"]] == [(1, "z.jpg"), (2, "a.jpg")]
    (ann,) = doc["annotations"]
    assert {k: ann[k] for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd")} == {
        "id": 1, "image_id": 2, "category_id": 2, "bbox": [10.0, 5.0, 20.0, 10.0], "area": 200.0, "iscrowd": 0,
    }  # fmt: skip
    assert "score" not in ann


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            ImageLabels("a.jpg", 10, 10, np.array([[0, 0, 1, 1]]), ("horse",)),
            "class 'horse' is not in the class list",
        ),
        (
            ImageLabels("a.jpg", None, None, np.zeros((0, 4)), ()),
            "a.jpg: COCO needs the image width and height",
        ),
    ],
    ids=["unknown class", "no size"],
)
def test_to_coco_refuses_what_coco_cannot_hold(record: ImageLabels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_coco([record], ["cat"])


def test_pycocotools_loads_and_scores_the_export(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    records = _records(np.random.default_rng(1), scored=False)
    doc = to_coco(records, ["person", "car", "dog"])
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        assert len(gt.getAnnIds()) == sum(len(r.xyxy) for r in records) == 8
        assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["person", "car", "dog"]
        # the labels scored as perfect predictions of themselves: valid ids, bbox, area, iscrowd
        results = [{**a, "score": 1.0} for a in copy.deepcopy(doc["annotations"])]
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


RESULT_CASES = [
    # (id, entries, expected {image_id: [(xyxy, category_id, score)]}, expected problem fragments)
    (
        "good entries, int and string image ids",
        [
            {"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5},
            {"image_id": "b", "category_id": 1, "bbox": [0.5, 0, 1, 1], "score": 0.0},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.9},
        ],
        {
            1: [([1.0, 2.0, 4.0, 6.0], 3, 0.5), ([0.0, 0.0, 2.0, 2.0], 1, 0.9)],
            "b": [([0.5, 0.0, 1.5, 1.0], 1, 0.0)],
        },
        [],
    ),
    (
        "each bad entry reported at its index",
        [
            {"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5},
            "nope",
            {"image_id": None, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
            {"image_id": 1, "category_id": "cat", "bbox": [1, 2, 3, 4], "score": 0.5},
            {"image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.5},
            {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
        ],
        {1: [([1.0, 2.0, 4.0, 6.0], 3, 0.5)]},
        [
            "[1]: expected an object",
            "[2]: image_id must be an integer or a string",
            "[3]: category_id must be an integer",
            "[4]: bbox has zero or negative size",
            "[5]: score must be a finite number",
        ],
    ),
]


@pytest.mark.parametrize(
    ("entries", "expected", "problems"),
    [c[1:] for c in RESULT_CASES],
    ids=[c[0] for c in RESULT_CASES],
)
def test_parse_coco_results_converts_to_xyxy_and_reports_bad_entries(
    entries: list, expected: dict, problems: list[str]
) -> None:
    results, found = parse_coco_results(entries, source="preds.json")
    assert results == expected
    assert [p.path for p in found] == ["preds.json"] * len(problems)
    assert [p.reason[: len(f)] for p, f in zip(found, problems, strict=True)] == problems


def test_parse_coco_results_refuses_a_labels_file() -> None:
    with pytest.raises(InputError, match=r"^preds\.json: not COCO results"):
        parse_coco_results(_doc(GOOD), source="preds.json")  # type: ignore[arg-type]


def test_parse_coco_names_the_boxes_it_clipped() -> None:
    """A box reaching past its image is clipped and named (for the import's note); one whose
    edge is half a pixel out is rounding, clipped without a word."""
    doc = _doc(_ann(bbox=(90, 40, 30, 30)), _ann(bbox=(-0.5, 0, 10, 10)), _ann(2, bbox=(-20, 0, 30, 10)))
    records, _, problems = parse_coco(doc, source=SRC)
    assert not problems
    assert records[0].extra["clipped"] == [f"{SRC}: annotations[0] (id 1)"]
    assert records[1].extra["clipped"] == [f"{SRC}: annotations[2] (id 3)"]
    assert _boxes(records)["b.jpg"] == [("cat", 0.0, 0.0, 10.0, 10.0)]
