"""CVAT for images 1.1 XML: parse tables with line numbers, rotated boxes, non-box shapes, round trip."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.formats import ImageLabels
from boxloop.formats.cvat import parse_cvat_images, to_cvat_images

SRC = "task_1/annotations.xml"
META = (
    "<meta><task><name>t</name><labels>"
    "<label><name>cat</name><type>rectangle</type></label>"
    "<label><name>dog</name><type>any</type></label>"
    "</labels></task></meta>"
)


def _xml(
    *shapes: str, meta: str = META, image: str = 'id="0" name="a.jpg" width="100" height="50"'
) -> str:
    """A CVAT file: line 3 holds the meta, line 4 the first <image>, its n-th shape line 5 + n."""
    body = "\n".join(shapes)
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n<version>1.1</version>{meta}\n'
        f"<image {image}>\n{body}\n</image>\n"
        '<image id="1" name="b.jpg" width="100" height="50">\n'
        '<box label="dog" xtl="1" ytl="1" xbr="2" ybr="2" occluded="1"/>\n</image>\n</annotations>\n'
    )


def _box(
    label: str = "cat",
    xtl: str = "10",
    ytl: str = "5",
    xbr: str = "30",
    ybr: str = "15",
    extra: str = "",
) -> str:
    return f'<box label="{label}" occluded="0" xtl="{xtl}" ytl="{ytl}" xbr="{xbr}" ybr="{ybr}" z_order="0"{extra}/>'


GOOD = _box()
GOOD_BOX = ("cat", 10.0, 5.0, 30.0, 15.0)
B = [("dog", 1.0, 1.0, 2.0, 2.0)]  # b.jpg's box, always there
POLYGON = '<polygon label="cat" occluded="0" points="1,1;5,1;3,4" z_order="0"/>'
POINTS = '<points label="dog" occluded="0" points="7,7" z_order="0"/>'

PARSE_CASES = [
    # (id, xml, expected boxes of a.jpg, expected (line, problem fragment))
    ("one box", _xml(GOOD), [GOOD_BOX], []),
    ("no shapes: labeled empty", _xml(), [], []),
    ("fractional, edge half a pixel out clipped", _xml(_box("dog", "-0.4", "0.25", "100.5", "49.75")), [("dog", 0.0, 0.25, 100.0, 49.75)], []),
    ("rotation 0 is a plain box", _xml(_box(extra=' rotation="0.0"')), [GOOD_BOX], []),
    (
        "rotated 90 degrees: axis-aligned box, reported",
        _xml(_box(extra=' rotation="90"')),
        [("cat", 15.0, 0.0, 25.0, 20.0)],
        [(5, "<box> in a.jpg: rotated by 90°, converted to its axis-aligned bounding box")],
    ),
    (
        "rotated 45 degrees near the edge: clipped",
        _xml(_box(xtl="0", ytl="0", xbr="10", ybr="10", extra=' rotation="45"')),
        [("cat", 0.0, 0.0, 5 + 5 * math.sqrt(2), 5 + 5 * math.sqrt(2))],
        [(5, "rotated by 45°")],
    ),
    ("polygon and points: one problem counting them", _xml(GOOD, POLYGON, POINTS), [GOOD_BOX], [(4, "<image name='a.jpg'>: 2 shape(s) that are not boxes")]),
    ("label not in meta", _xml(_box("horse"), GOOD), [GOOD_BOX], [(5, "<box> in a.jpg: label 'horse' is not among the labels in <meta> ['cat', 'dog']")]),
    ("box without label", _xml(GOOD, _box("")), [GOOD_BOX], [(6, "<box> in a.jpg has no label")]),
    ("coordinate not a number", _xml(GOOD, _box(xbr="wide")), [GOOD_BOX], [(6, "<box> in a.jpg: xtl, ytl, xbr, ybr must be numbers")]),
    ("negative size", _xml(GOOD, _box(xtl="40", xbr="20")), [GOOD_BOX], [(6, "<box> in a.jpg: zero or negative size")]),
    ("reaching past the image: clipped, as Ultralytics does", _xml(_box(ybr="80"), GOOD), [("cat", 10.0, 5.0, 30.0, 50.0), GOOD_BOX], []),
    ("wholly outside the image", _xml(_box(ytl="60", ybr="80"), GOOD), [GOOD_BOX], [(5, "<box> in a.jpg: box [10, 60, 30, 80] lies outside the 100x50 image; left out")]),
    ("rotation not a number", _xml(GOOD, _box(extra=' rotation="lots"')), [GOOD_BOX], [(6, "rotation 'lots' is not a number")]),
]  # fmt: skip


def _boxes(record: ImageLabels) -> list[tuple]:
    return [
        (n, *np.round(b, 4).tolist()) for n, b in zip(record.class_names, record.xyxy, strict=True)
    ]


@pytest.mark.parametrize(
    ("text", "expected", "problems"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_cvat_keeps_good_boxes_and_reports_the_rest_at_their_line(
    text: str, expected: list[tuple], problems: list[tuple[int, str]]
) -> None:
    records, names, found = parse_cvat_images(text, source=SRC)
    assert [r.file_name for r in records] == ["a.jpg", "b.jpg"]
    a = records[0]
    assert list(a.class_names) == [n for n, *_ in expected]
    np.testing.assert_allclose(
        a.xyxy, np.array([b for _, *b in expected]).reshape(-1, 4), atol=1e-4
    )
    assert _boxes(records[1]) == B
    assert names == ["cat", "dog"]
    assert len(found) == len(problems)
    for problem, (line, fragment) in zip(found, problems, strict=True):
        assert (problem.path, problem.line) == (SRC, line)
        assert fragment in problem.reason
        assert str(problem).startswith(f"{SRC}:{line}: ")


def test_parse_cvat_skips_a_bad_image_and_keeps_the_next() -> None:
    records, _, problems = parse_cvat_images(
        _xml(GOOD, image='id="0" name="a.jpg" width="?" height="50"'), source=SRC
    )
    assert [r.file_name for r in records] == ["b.jpg"]
    (problem,) = problems
    assert (problem.line, problem.reason) == (
        4,
        "<image name='a.jpg'>: width/height must be positive integers, got '?'x'50'",
    )


def test_parse_cvat_without_meta_takes_names_from_the_boxes_in_order() -> None:
    records, names, problems = parse_cvat_images(_xml(_box("zebra"), GOOD, meta=""), source=SRC)
    assert names == ["zebra", "cat", "dog"]
    assert records[0].class_names == ("zebra", "cat")
    assert not problems


def test_parse_cvat_reads_project_labels_sizes_ids_and_flags() -> None:
    meta = "<meta><project><labels><label><name>dog</name></label><label><name>cat</name></label></labels></project></meta>"
    image = 'id="7" name="sub/a.jpg" width="100" height="50" subset="Train"'
    records, names, _ = parse_cvat_images(_xml(GOOD, meta=meta, image=image), source=SRC)
    a, b = records
    assert names == ["dog", "cat"]
    assert (a.file_name, a.width, a.height, a.line) == ("sub/a.jpg", 100, 50, 4)
    assert a.extra == {"image_id": "7", "occluded": [False], "subset": "Train"}
    assert b.extra["occluded"] == [True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "<annotations>\n<image name='a'>\n</annotations>",
            f"^{re.escape(SRC)}:3: not valid XML: mismatched tag",
        ),
        ("<annotation><object/></annotation>", f"^{re.escape(SRC)}: not CVAT XML .*<annotation>"),
        (
            '<annotations><version>1.1</version><track id="0" label="cat"><box frame="0" xtl="1" ytl="1" xbr="2" ybr="2"/></track></annotations>',
            f"^{re.escape(SRC)}: this is CVAT for video",
        ),
    ],
    ids=["mismatched tag", "wrong root", "CVAT for video"],
)
def test_parse_cvat_refuses_a_file_it_cannot_read(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_cvat_images(text, source=SRC)


def _records(rng: np.random.Generator) -> list[ImageLabels]:
    records = []
    for i, n in enumerate([4, 0, 2]):
        w, h = 640 + i, 480 - i
        xy = rng.uniform(0, [w / 2, h / 2], size=(n, 2))
        wh = rng.uniform(0.3, [w / 2, h / 2], size=(n, 2))
        records.append(
            ImageLabels(
                f"frames/img_{i}.jpg",
                w,
                h,
                np.hstack([xy, xy + wh]),
                tuple(rng.choice(["person", "car"], size=n)),
                extra={"occluded": rng.uniform(size=n) > 0.5},
            )
        )
    return records


def test_to_cvat_then_parse_cvat_gives_the_same_records() -> None:
    records = _records(np.random.default_rng(0))
    back, names, problems = parse_cvat_images(
        to_cvat_images(records, ["person", "car", "bike"]), source="export.xml"
    )
    assert not problems
    assert names == ["person", "car", "bike"]
    for r, b in zip(records, back, strict=True):
        assert (b.file_name, b.width, b.height, b.class_names) == (
            r.file_name,
            r.width,
            r.height,
            r.class_names,
        )
        np.testing.assert_allclose(b.xyxy, r.xyxy, atol=1e-6, rtol=0)
        assert b.extra["occluded"] == list(r.extra["occluded"])


def test_to_cvat_writes_the_1_1_layout() -> None:
    rec = ImageLabels("a.jpg", 100, 50, np.array([[10, 5, 30.5, 15]]), ("car",))
    root = ET.fromstring(to_cvat_images([rec], ["person", "car"]))
    assert root.tag == "annotations"
    assert root.findtext("version") == "1.1"
    assert [n.text for n in root.findall("meta/task/labels/label/name")] == ["person", "car"]
    (image,) = root.findall("image")
    assert image.attrib == {"id": "0", "name": "a.jpg", "width": "100", "height": "50"}
    (box,) = image.findall("box")
    assert box.attrib == {
        "label": "car", "source": "manual", "occluded": "0", "xtl": "10", "ytl": "5", "xbr": "30.5", "ybr": "15", "z_order": "0",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            ImageLabels("a.jpg", 10, 10, np.array([[0, 0, 1, 1]]), ("horse",)),
            "class 'horse' is not in the class list",
        ),
        (
            ImageLabels("a.jpg", None, None, np.zeros((0, 4)), ()),
            "a.jpg: CVAT needs the image width and height",
        ),
    ],
    ids=["unknown class", "no size"],
)
def test_to_cvat_refuses_what_the_task_cannot_hold(record: ImageLabels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_cvat_images([record], ["cat"])


def test_parse_cvat_names_the_boxes_it_clipped_by_line() -> None:
    records, _, problems = parse_cvat_images(_xml(GOOD, _box(xtl="-30")), source=SRC)
    assert not problems
    assert records[0].extra["clipped"] == [f"{SRC}:6"]
    assert "clipped" not in records[1].extra
