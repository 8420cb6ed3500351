"""Pascal VOC XML: parse tables with line numbers, bad objects, 1-based coordinates, round trip."""

from __future__ import annotations

import re

import numpy as np
import pytest

from boxloop.errors import InputError
from boxloop.formats import ImageLabels
from boxloop.formats.voc import parse_voc, to_voc

SRC = "Annotations/a.xml"


def _xml(
    *objects: str, size: str = "<size><width>100</width><height>50</height><depth>3</depth></size>"
) -> str:
    """A VOC file whose n-th object (0-based) starts on line 5 + n; objects are one line each."""
    body = "\n".join(objects)
    return f'<?xml version="1.0"?>\n<annotation>\n<filename>a.jpg</filename>\n{size}\n{body}\n</annotation>\n'


def _obj(
    name: str = "cat",
    xmin: str = "11",
    ymin: str = "6",
    xmax: str = "30",
    ymax: str = "15",
    extra: str = "",
) -> str:
    return (
        f"<object><name>{name}</name>{extra}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


GOOD = _obj()  # 1-based inclusive 11..30 → pixel edges 10..30
GOOD_BOX = ("cat", 10.0, 5.0, 30.0, 15.0)

PARSE_CASES = [
    # (id, xml, expected boxes, expected (line, problem fragment))
    ("one box, 1-based to pixel edges", _xml(GOOD), [GOOD_BOX], []),
    ("no objects", _xml(), [], []),
    ("whole image is 1..W", _xml(_obj(xmin="1", ymin="1", xmax="100", ymax="50")), [("cat", 0.0, 0.0, 100.0, 50.0)], []),
    ("fractional coordinates", _xml(_obj("dog", "10.5", "3.25", "20.75", "9.5")), [("dog", 9.5, 2.25, 20.75, 9.5)], []),
    ("0-based file is clipped, not refused", _xml(_obj(xmin="0", ymin="0", xmax="100", ymax="50")), [("cat", 0.0, 0.0, 100.0, 50.0)], []),
    ("no size: boxes kept unchecked", _xml(_obj(xmax="300"), size=""), [("cat", 10.0, 5.0, 300.0, 15.0)], []),
    ("size written as 0 means unknown", _xml(GOOD, size="<size><width>0</width><height>0</height></size>"), [GOOD_BOX], []),
    ("object without a name", _xml(GOOD, _obj(name="")), [GOOD_BOX], [(6, "<object> #2 has no <name>")]),
    ("object without a bndbox", _xml("<object><name>dog</name></object>", GOOD), [GOOD_BOX], [(5, "<object> #1 (dog) has no <bndbox>")]),
    ("coordinate not a number", _xml(GOOD, _obj(xmin="ten")), [GOOD_BOX], [(6, "<object> #2 (cat): <bndbox> needs four numbers, got xmin='ten'")]),
    ("coordinate missing", _xml(GOOD, _obj(ymax="")), [GOOD_BOX], [(6, "<object> #2 (cat): <bndbox> needs four numbers")]),
    ("negative size", _xml(GOOD, _obj(xmin="40", xmax="20")), [GOOD_BOX], [(6, "<object> #2 (cat): box has zero or negative size")]),
    ("reaching past the image: clipped, as Ultralytics does", _xml(_obj(xmax="140"), GOOD), [("cat", 10.0, 5.0, 100.0, 15.0), GOOD_BOX], []),
    ("wholly outside the image", _xml(_obj(xmin="120", xmax="140"), GOOD), [GOOD_BOX], [(5, "<object> #1 (cat): box xmin=120 ymin=6 xmax=140 ymax=15 lies outside the 100x50 image; left out")]),
    (
        "bad size: reported once, boxes still read",
        _xml(GOOD, size="<size><width>wide</width><height>50</height></size>"),
        [GOOD_BOX],
        [(4, "<size> is not two integers")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected", "problems"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_voc_keeps_good_objects_and_reports_bad_ones_at_their_line(
    text: str, expected: list[tuple], problems: list[tuple[int, str]]
) -> None:
    record, found = parse_voc(text, source=SRC)
    boxes = [
        (n, *np.round(b, 4).tolist()) for n, b in zip(record.class_names, record.xyxy, strict=True)
    ]
    assert boxes == expected
    assert record.file_name == "a.jpg"
    assert len(found) == len(problems)
    for problem, (line, fragment) in zip(found, problems, strict=True):
        assert (problem.path, problem.line) == (SRC, line)
        assert fragment in problem.reason
        assert str(problem).startswith(f"{SRC}:{line}: ")


def test_parse_voc_reads_size_flags_and_the_record_line() -> None:
    text = _xml(
        _obj(extra="<difficult>1</difficult><truncated>0</truncated>"),
        _obj("dog", extra="<truncated>1</truncated>"),
    )
    record, problems = parse_voc(text, source=SRC)
    assert (record.width, record.height, record.line) == (100, 50, 2)
    assert record.extra["difficult"] == [True, False]
    assert record.extra["truncated"] == [False, True]
    assert record.scores is None
    assert not problems


def test_parse_voc_takes_the_name_from_path_when_filename_is_missing() -> None:
    text = "<annotation><path>C:\\data\\imgs\\b.png</path></annotation>"
    record, _ = parse_voc(text, source=SRC)
    assert record.file_name == "b.png"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "<annotation>\n<filename>a.jpg</filename>\n<object>\n</annotation>",
            f"^{re.escape(SRC)}:4: not valid XML: mismatched tag",
        ),
        ("", f"^{re.escape(SRC)}:1: not valid XML"),
        (
            "<annotations><image/></annotations>",
            f"^{re.escape(SRC)}: not a Pascal VOC annotation .*<annotations>",
        ),
        (
            "<annotation><object/></annotation>",
            f"^{re.escape(SRC)}: Pascal VOC annotation has no <filename>",
        ),
    ],
    ids=["mismatched tag", "empty", "wrong root", "no file name"],
)
def test_parse_voc_refuses_a_file_it_cannot_read(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_voc(text, source=SRC)


def test_to_voc_writes_whole_pixels_as_1_based_integers() -> None:
    record = ImageLabels("a.jpg", 100, 50, np.array([[0, 0, 100, 50]]), ("cat",))
    text = to_voc(record, folder="JPEGImages")
    assert "<folder>JPEGImages</folder>" in text
    assert "<width>100</width>" in text and "<height>50</height>" in text
    assert "<xmin>1</xmin>" in text and "<ymin>1</ymin>" in text
    assert "<xmax>100</xmax>" in text and "<ymax>50</ymax>" in text


def test_to_voc_then_parse_voc_gives_the_same_boxes_and_flags() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [320, 240], size=(6, 2))
    wh = rng.uniform(0.3, [320, 240], size=(6, 2))
    record = ImageLabels(
        "dir/img_1.jpg",
        640,
        480,
        np.hstack([xy, xy + wh]),
        ("person", "car", "person", "dog", "car", "person"),
        extra={
            "difficult": [False, True, False, False, True, False],
            "truncated": [True, False, False, False, False, True],
        },
    )
    back, problems = parse_voc(to_voc(record), source="export.xml")
    assert not problems
    assert (back.file_name, back.width, back.height, back.class_names) == (
        record.file_name,
        640,
        480,
        record.class_names,
    )
    np.testing.assert_allclose(back.xyxy, record.xyxy, atol=0.01, rtol=0)
    assert back.extra["difficult"] == record.extra["difficult"]
    assert back.extra["truncated"] == record.extra["truncated"]


def test_to_voc_of_no_boxes_reads_back_as_a_labeled_empty_image() -> None:
    back, problems = parse_voc(
        to_voc(ImageLabels("e.jpg", 8, 6, np.zeros((0, 4)), ())), source="e.xml"
    )
    assert (back.file_name, back.width, back.height, len(back.xyxy)) == ("e.jpg", 8, 6, 0)
    assert not problems


def test_to_voc_refuses_a_record_without_size() -> None:
    with pytest.raises(ValueError, match=r"a\.jpg: Pascal VOC needs the image width and height"):
        to_voc(ImageLabels("a.jpg", None, None, np.zeros((0, 4)), ()))


def test_parse_voc_names_the_boxes_it_clipped_by_line() -> None:
    record, problems = parse_voc(_xml(GOOD, _obj(ymin="-9", ymax="15"), _obj(xmin="0", xmax="100")), source=SRC)
    assert not problems
    assert record.extra["clipped"] == [f"{SRC}:6"]  # the 0-based edge on line 7 is rounding: no word
    assert record.xyxy[1].tolist() == [10.0, 0.0, 30.0, 15.0]
