"""The HTML report, opened in real headless Chromium: it renders, its images load, boxes sit
where the predictions say, nothing is fetched, the console stays clean."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from _images import write_image
from boxloop import ledger
from boxloop.cli import app
from boxloop.report import build_report
from boxloop.report.embeddings import pca_2d
from boxloop.report.gallery import format_value
from boxloop.report.simulation import labels_to_reach, read_simulation, summarize, write_plots
from boxloop.report.svg import Series, line_chart, nice_ticks, standalone
from boxloop.sources.images import file_sha256
from boxloop.types import Detections, Item, Selection
from boxloop.workspace import Workspace

XSS = "<script>window.__pwned = 1</script>"


# -- fixtures --------------------------------------------------------------------------------
class Opened:
    """A page with what it logged and requested while loading."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.external: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on(
            "request",
            lambda r: None if r.url.startswith(("file:", "data:")) else self.external.append(r.url),
        )
        self.page.goto(path.as_uri())

    def images(self) -> list[dict[str, Any]]:
        return self.page.evaluate(
            "Array.from(document.images).map(i => ({complete: i.complete, w: i.naturalWidth, "
            "h: i.naturalHeight, alt: i.alt}))"
        )

    def text(self) -> str:
        return self.page.inner_text("body")


def _write_simulation(path: Path) -> Path:
    curves = {"random": [0.10, 0.20, 0.30, 0.42], "least_confidence": [0.10, 0.35, 0.44, 0.45]}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["strategy", "seed", "round", "labeled_images", "map50", "map50_95"])
        for strategy, values in curves.items():
            for seed in (0, 1):
                for rnd, v in enumerate(values):
                    w.writerow([strategy, seed, rnd, 10 * (rnd + 1), f"{v * 1.6 + seed * 0.02:.4f}", f"{v + seed * 0.02:.4f}"])
        w.writerow(["random", "x", 9, 10, 0.1, 0.1])  # a bad seed: skipped, noted on the page
    return path


@pytest.fixture
def full_ws(tmp_path: Path) -> Workspace:
    """Items (one EXIF-rotated, one whose file is gone), labels, predictions, embeddings,
    a selection and two ledger rounds."""
    ws = Workspace.init(tmp_path / "ws", classes=["0", "1", "2"])
    store = ws.store
    images = tmp_path / "images"
    sizes = {"a": (64, 48), "b": (80, 60), "c": (96, 64), "d": (64, 64), "e": (64, 48), "f": (40, 30)}
    for k, (i, size) in enumerate(sizes.items()):
        path = write_image(images / f"{i}.jpg", size, seed=k, orientation=6 if i == "e" else None)
        w, h = (size[1], size[0]) if i == "e" else size  # orientation 6 turns it: displayed 48×64
        store.add_item(Item(i, str(path), w, h, file_sha256(path)))
    store.add_item(Item("gone", str(images / "gone.jpg"), 50, 50, "0" * 64))
    store.add_label("a", Detections([[4, 4, 30, 30], [32, 10, 60, 40]], [0, 1]), source="test")
    store.add_label("b", Detections([[10, 10, 50, 40]], [2]), source="test")
    store.put_predictions("mv1", {
        "c": Detections([[0, 0, 48, 32], [50, 20, 90, 60]], [1, 2], [0.9, 0.2]),  # 0.2 is not drawn
        "d": Detections([[8, 8, 40, 40]], [0], [0.55]),
        "e": Detections([[0, 0, 24, 32]], [2], [0.8]),  # the top-left quarter as displayed
        "f": Detections.empty(with_confidence=True),
    })
    rng = np.random.default_rng(0)
    store.put_embeddings("mv1", {i: rng.normal(size=8).astype(np.float32) for i in (*sizes, "gone")})
    store.save_selection(Selection(
        id="s1", model_version="mv1", strategy="least_confidence:1", seed=0,
        item_ids=("e", "c", "d", "gone"),
        scores={"e": 0.91, "c": 0.7, "d": 0.456789, "gone": 0.1},
        why={
            "e": {"least_confidence": 0.7, "detail": {"boxes": 3, "min_conf": 0.3141592}, "note": XSS},
            "c": {"least_confidence": 0.61234, "rank_terms": [0.1, 0.25, True]},
            "d": {"rank": 2, "score": 0.456789, "selector": "diverse", "components": {  # as select saves it
                "least_confidence": {"weight": 1.0, "score": 0.45, "percentile": 0.5, "details": {
                    "top_box": {"class_id": 0, "confidence": 0.55, "uncertainty": 0.45},
                    "boxes": 1, "aggregation": "max"}}},
                  "suppressed_duplicates": ["f", "removed-since"], "suppressed_count": 2},
        },
        config={"alpha": 0.3},
    ))
    rounds = [
        ("mv0", 2, 3, 0.41, 0.21, {"0": 0.3, "1": 0.1, "2": 0.05}, None),
        ("mv1", 4, 6, 0.62, 0.38, {"0": 0.5, "1": 0.25, "2": None}, {"accepted": 5, "adjusted": 2, "deleted": 1, "added": 3}),
    ]
    for mv, n_img, n_box, m50, m5095, per_class, acceptance in rounds:
        rnd = ledger.open_round(store)
        t = ledger.start_step(store, rnd, "train")
        ledger.finish_step(store, rnd, "train", t, {"model_version": mv, "labeled_images": n_img, "labeled_boxes": n_box})
        t = ledger.start_step(store, rnd, "evaluate")
        ledger.finish_step(store, rnd, "evaluate", t, {"map50": m50, "map50_95": m5095, "per_class_ap": per_class})
        if acceptance:
            t = ledger.start_step(store, rnd, "pull")
            ledger.finish_step(store, rnd, "pull", t, {"acceptance": acceptance})
        ledger.finish_round(store, rnd)
    store.put_evaluation("mv1", "test", {  # as evaluate stores it, by object size at the network input
        "map50_95": 0.38, "size_unit": "network input pixels (long side 320)",
        "by_size": {"small": {"map50_95": 0.05, "labels": 4}, "medium": {"map50_95": 0.4, "labels": 5},
                    "large": {"map50_95": None, "labels": 0}},
    })
    return ws


# -- the page in Chromium ----------------------------------------------------------------------
def test_report_renders_in_chromium_with_images_boxes_and_no_requests(full_ws: Workspace, tmp_path: Path, browser: Any) -> None:
    sim = _write_simulation(tmp_path / "simulation.csv")
    out = build_report(full_ws, simulation_csv=sim)
    assert out == full_ws.root / "report.html"
    html = out.read_text(encoding="utf-8")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    assert XSS not in html

    opened = Opened(browser, out)
    page = opened.page
    try:
        assert page.title() == "boxloop report — ws"
        rows = page.locator("table.rounds tr[data-round]")
        assert rows.count() == 2
        assert rows.nth(0).locator("td").nth(1).inner_text() == "2"
        assert rows.nth(1).locator("td").nth(3).inner_text() == "mv1"
        assert rows.nth(1).locator("td").nth(5).inner_text() == "0.380"
        assert rows.nth(1).locator("td").nth(6).inner_text() == "+0.170"  # what round 2 bought
        assert rows.nth(1).locator("td").nth(7).inner_text() == "5"
        # own curve, two simulation charts, per-class, acceptance, embedding map
        assert page.locator("#curves svg.chart").count() == 3
        assert page.locator("#curves svg.chart polygon.band").count() == 4  # 2 strategies × 2 metrics
        assert page.locator("#per-class svg.chart").first.locator("rect.bar").count() == 2  # class "2": n/a
        sizes = page.locator("#per-class .by-size")
        assert sizes.locator("rect.bar").count() == 2  # no large box: n/a
        assert "small (4 boxes)" in sizes.inner_text()
        assert "AP50-95 by object size, in network input pixels (long side 320)" in html
        assert "a larger --imgsz" in page.locator("#per-class").inner_text()  # 4 of 9 boxes small, 0.05 vs 0.4
        assert "n/a" in page.locator("#per-class").inner_text()
        assert "round 2" in page.locator("#per-class").inner_text()
        assert page.locator("#acceptance svg.chart rect.bar").count() == 4
        reach = page.locator("table.reach tbody tr")
        assert reach.count() == 2
        assert "0.75×" in reach.nth(1).inner_text()  # least confidence: 30 labels vs random's 40
        assert "1 bad line(s) skipped" in page.locator("#curves").inner_text()
        assert page.locator("#embeddings svg.chart circle.dot").count() == 7

        # images load: three thumbnails (the missing file is a placeholder, not a broken <img>)
        images = opened.images()
        assert len(images) == 3
        assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in images), images
        rotated = next(i for i in images if i["alt"] == "e.jpg")
        assert (rotated["w"], rotated["h"]) == (48, 64)  # EXIF orientation applied
        assert "image not readable" in page.locator('figure[data-item="gone"]').inner_text()

        # boxes: only confidence ≥ 0.25, scaled to the displayed thumbnail
        assert page.locator('figure[data-item="c"] svg.boxes rect.box').count() == 1
        img = page.locator('figure[data-item="e"] img').bounding_box()
        box = page.locator('figure[data-item="e"] svg.boxes rect.box').bounding_box()
        assert box["x"] == pytest.approx(img["x"], abs=2) and box["y"] == pytest.approx(img["y"], abs=2)
        assert box["width"] == pytest.approx(img["width"] / 2, abs=2)
        assert box["height"] == pytest.approx(img["height"] / 2, abs=2)
        assert "2 0.80" in page.locator('figure[data-item="e"] svg.boxes text').text_content()

        # the why, generically, and user text escaped (shown, not run)
        why_e = page.locator('figure[data-item="e"] dl.why').inner_text()
        assert "0.700" in why_e and "boxes: 3" in why_e and "min_conf: 0.314" in why_e
        assert XSS in why_e
        assert page.evaluate("window.__pwned") is None
        assert "[0.100, 0.250, yes]" in page.locator('figure[data-item="c"] dl.why').inner_text()
        assert page.locator('figure[data-item="d"] .score').inner_text() == "0.457"
        words = " ".join(page.locator('figure[data-item="d"] ul.why').inner_text().split())  # as --explain says it
        assert "most doubtful box is class 0 (0) at confidence 0.55" in words
        assert "picked by ranked batch-mode diversity (alpha 0.3)" in words
        assert "2 near-duplicate(s) left out in its favour: f.jpg, removed-since" in words  # by file name

        assert opened.errors == []
        assert opened.external == []
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    finally:
        page.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_empty_workspace_page_says_what_to_do_next(tmp_path: Path, browser: Any) -> None:
    ws = Workspace.init(tmp_path / "empty", classes=["0", "1", "2"])
    out = build_report(ws, out=tmp_path / "out" / "empty.html")
    opened = Opened(browser, out)
    try:
        text = opened.text()
        assert "boxloop add images" in text and "boxloop add labels" in text
        assert "0\nitems" in text
        assert opened.errors == [] and opened.external == []
    finally:
        opened.page.close()


def test_report_without_rounds_names_the_commands_that_fill_it(tmp_path: Path, browser: Any) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["0", "1", "2"])
    path = write_image(tmp_path / "img" / "a.png", (32, 24))
    ws.store.add_item(Item("a", str(path), 32, 24, file_sha256(path)))
    ws.store.add_label("a", Detections([[1, 1, 10, 10]], [1]), source="test")
    out = build_report(ws)
    opened = Opened(browser, out)
    try:
        page = opened.page
        assert "no rounds yet — run boxloop round" in page.locator("#rounds").inner_text()
        assert "no selection yet — run boxloop select --budget N" in page.locator("#gallery").inner_text()
        assert "no embeddings yet" in page.locator("#embeddings").inner_text()
        assert "boxloop pull" in page.locator("#acceptance").inner_text()
        assert "next: boxloop round --budget 50" in page.locator("header.top").inner_text()  # as status says
        assert page.locator("svg.chart").count() == 0
        assert opened.errors == [] and opened.external == []
    finally:
        opened.page.close()


def test_report_shows_an_audit_on_its_images(full_ws: Workspace, tmp_path: Path, browser: Any) -> None:
    """`boxloop report --audit audit.csv`: each suspect image with its labels and the suspects
    dashed in red, in the audit's order; an item removed since is left out, a bad CSV is named."""
    from boxloop.audit import AuditReport, Suspect, write_audit_csv
    from boxloop.errors import InputError

    report = AuditReport("mv1", audited=2, images=[
        ("b", 0.9, [Suspect("missed", (20.0, 5.0, 40.0, 20.0), None, 1, 0.9, None, 0.9),
                    Suspect("class", (10.0, 10.0, 50.0, 40.0), 2, 0, 0.8, 0.9, 0.72)]),
        ("a", 0.3, [Suspect("loose", (4.0, 4.0, 30.0, 30.0), 0, 0, 0.6, 0.5, 0.3)]),
    ])
    csv_path = write_audit_csv(full_ws, report, tmp_path / "audit.csv")
    out = build_report(full_ws, out=tmp_path / "with-audit.html", audit_csv=csv_path)
    opened = Opened(browser, out)
    try:
        page = opened.page
        cards = page.locator("#audit figure.card")
        assert cards.count() == 2
        assert cards.nth(0).get_attribute("data-item") == "b" and cards.nth(1).get_attribute("data-item") == "a"
        assert cards.nth(0).locator("rect.suspect").count() == 2
        assert cards.nth(0).locator("svg.boxes rect.box").count() == 1  # b's one label
        assert "the model reads 0 at 0.80" in cards.nth(0).inner_text()
        assert page.locator('nav a[href="#audit"]').count() == 1
        assert all(i["complete"] and i["w"] > 0 for i in opened.images())
        assert opened.errors == [] and opened.external == []
    finally:
        page.close()
    (tmp_path / "bad.csv").write_text("rank,item_id\n1,a\n")
    with pytest.raises(InputError, match=r"bad\.csv: not an audit CSV"):
        build_report(full_ws, audit_csv=tmp_path / "bad.csv")
    # an audit of another workspace names none of this one's images (it drew an empty section, exit 0)
    other = csv_path.read_text().replace(",b,", ",elsewhere-1,").replace(",a,", ",elsewhere-2,")
    (tmp_path / "other.csv").write_text(other)
    with pytest.raises(InputError, match=r"other\.csv: names no image of this workspace"):
        build_report(full_ws, audit_csv=tmp_path / "other.csv")


def _rounds_ws(root: Path, *, classes: list[str], rounds: int = 4) -> Workspace:
    """A workspace with ``rounds`` rounds as `boxloop round` leaves them: every step timed as a
    real round is (minutes of training, an hour waiting for the labels), acceptance counted."""
    ws = Workspace.init(root, classes=classes)
    store = ws.store
    path = write_image(root.parent / "img" / "a.png", (32, 24))
    store.add_item(Item("a", str(path), 32, 24, file_sha256(path)))
    store.add_label("a", Detections([[1, 1, 10, 10]], [0]), source="test")
    seconds = {"train": 723.0, "evaluate": 41.2, "predict": 130.0, "select": 3.4, "push": 5.1, "pull": 3720.0}
    for r in range(rounds):
        rnd = ledger.open_round(store)
        for step, secs in seconds.items():
            started = ledger.start_step(store, rnd, step)
            result: dict[str, Any] = {}
            if step == "train":
                result = {"model_version": f"m{r + 1:03d}", "labeled_images": 120 + 50 * r, "labeled_boxes": 1234 + 400 * r}
            elif step == "evaluate":
                result = {"map50": 0.0, "map50_95": 0.0, "per_class_ap": {c: None for c in classes}}
            elif step == "pull":
                result = {"acceptance": {"accepted": 1234, "adjusted": 210, "deleted": 88, "added": 345, "items": 50,
                                         "seconds_saved": 500.0, "prelabel_conf_min": 0.15, "prelabel_conf_max": 0.35}}
            ledger.finish_step(store, rnd, step, started - secs, result)
        ledger.finish_round(store, rnd)
    return ws


def test_rounds_table_fits_a_1400px_window_with_the_step_seconds_on_a_line_of_their_own(
    tmp_path: Path, browser: Any,
) -> None:
    """The seconds per step were a 15th column that pushed the table past its card (a scrollbar
    at 1400 px, cut off in a screenshot or printout): they go on a line under each round's
    numbers, across the table, and wrap there."""
    import re

    ws = _rounds_ws(tmp_path / "ws", classes=["0", "1"])
    out = build_report(ws)
    html = out.read_text(encoding="utf-8")
    table = re.search(r'<table class="rounds">(.*?)</table>', html, re.S).group(1)  # type: ignore[union-attr]
    columns = len(re.findall(r"<th[ >]", table))
    assert "seconds per step" not in re.search(r"<thead>(.*?)</thead>", table, re.S).group(1)  # type: ignore[union-attr]
    steps = re.findall(r'<tr class="steps-row" data-steps-of="(\d+)"><td class="([^"]+)" colspan="(\d+)">(.*?)</td></tr>', table)
    assert [s[0] for s in steps] == ["1", "2", "3", "4"]
    assert all(int(s[2]) == columns and "steps" in s[1].split() for s in steps)
    words = re.sub(r"<[^>]+>", "", steps[0][3])
    assert words == ("seconds per step: train 12 min 03 s · evaluate 41.2 s · predict 2 min 10 s · select 3.4 s · "
                     "push 5.1 s · pull 1 h 02 min · total 1 h 17 min")
    assert "table.rounds td.steps { white-space:normal;" in html  # the line wraps where the window is narrow

    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    try:
        page.goto(out.as_uri())
        wrap = page.locator("#rounds .table-wrap")
        scroll, client = wrap.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert scroll <= client, f"the rounds table is {scroll} px wide in a card of {client} px"
        card = page.locator("#rounds").bounding_box()
        last = page.locator("table.rounds tr[data-round] td").last.bounding_box()  # "at conf"
        assert last["x"] + last["width"] <= card["x"] + card["width"]
        assert page.locator('tr[data-steps-of="1"] td.steps').inner_text().endswith("total 1 h 17 min")
        page.screenshot(path=str(tmp_path / "rounds-1400.png"), full_page=True)
        page.set_viewport_size({"width": 718, "height": 1000})  # an A4 page's width, printed
        page.emulate_media(media="print")
        scroll, client = wrap.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert scroll <= client, f"printed, the rounds table is {scroll} px wide on a page of {client} px"
    finally:
        page.close()


def test_per_class_ap_charts_the_classes_of_the_test_split_and_folds_the_rest(tmp_path: Path) -> None:
    """An 80-class project whose test split holds 10 classes: 10 bars (one n/a: boxes in the
    test split, no AP), the 70 others one line under the chart, not 1500 px of n/a."""
    import re

    classes = [f"class_{i:02d}" for i in range(80)]
    ws = _rounds_ws(tmp_path / "ws", classes=classes, rounds=1)
    store = ws.store
    for k in range(10):
        path = write_image(tmp_path / "img" / f"t{k}.png", (32, 24), seed=k)
        store.add_item(Item(f"t{k}", str(path), 32, 24, file_sha256(path)))
        store.add_label(f"t{k}", Detections([[1, 1, 10, 10]], [k]), source="test")
    store.set_split({f"t{k}": "test" for k in range(10)})
    rnd = ledger.open_round(store)
    started = ledger.start_step(store, rnd, "evaluate")
    per_class: dict[str, float | None] = {c: None for c in classes}
    per_class.update({classes[k]: 0.05 * (k + 1) for k in range(9)})  # class_09: in the test split, no AP
    ledger.finish_step(store, rnd, "evaluate", started, {"map50": 0.4, "map50_95": 0.2, "per_class_ap": per_class})
    ledger.finish_round(store, rnd)

    html = build_report(ws).read_text(encoding="utf-8")
    section = re.search(r'<section id="per-class">(.*?)</section>', html, re.S).group(1)  # type: ignore[union-attr]
    chart = re.search(r"<svg.*?</svg>", section, re.S).group(0)  # type: ignore[union-attr]
    labels = re.findall(r'<text class="bar-label"[^>]*><title>([^<]*)</title>', chart)
    assert labels == classes[:10]
    assert chart.count("<rect class=\"bar\"") == 9 and chart.count(">n/a<") == 1
    folded = re.search(r'<p class="folded-classes[^"]*" title="([^"]*)">(.*?)</p>', section, re.S)
    assert folded, "no line for the classes not in the test split"
    assert folded.group(1) == ", ".join(classes[10:])  # every name on hover
    assert folded.group(2) == (
        "70 classes not in the test split (no box there, no AP): "
        + ", ".join(classes[10:22]) + " … and 58 more"
    )
    assert "n/a = boxes in the test split, no AP" in section
    height = int(re.search(r'viewBox="0 0 \d+ (\d+)"', chart).group(1))  # type: ignore[union-attr]
    assert height < 300  # 10 rows, not 80
    # the header's boxes per class: a chip for each class with boxes, the 70 others in one line
    header = re.search(r'<header class="top">(.*?)</header>', html, re.S).group(1)  # type: ignore[union-attr]
    from boxloop.status import workspace_status

    boxed = [c for c, n in workspace_status(ws)["boxes_per_class"].items() if n]
    assert header.count('class="chip"') == len(boxed) and len(boxed) < 80
    assert f"{80 - len(boxed)} classes with no box yet: " in header and " more</span>" in header


def test_line_chart_series_with_equal_values_stay_told_apart() -> None:
    """mAP50 and mAP50-95 both 0: the second is drawn over the first. Each series has a marker
    shape of its own, the covering line is dashed and its markers hollow, the legend says so."""
    import re

    xs = [120, 170, 220]
    svg = line_chart([Series("mAP50", xs, [0.0, 0.0, 0.0], "#0072B2"), Series("mAP50-95", xs, [0.0, 0.0, 0.0], "#E69F00"),
                      Series("other", xs, [0.1, 0.2, 0.3], "#009E73")],
                     x_label="labeled images", y_label="mAP", title="t", y_max=1.0)
    lines = re.findall(r"<polyline [^>]*>", svg)
    assert len(lines) == 3
    assert "stroke-dasharray" not in lines[0] and "stroke-dasharray" not in lines[2]
    assert 'stroke-dasharray="7 6"' in lines[1] and 'data-overlaps="mAP50"' in lines[1]
    shapes = re.findall(r'class="(marker[^"]*)" data-shape="([^"]+)"[^>]*><title>([^:]+):', svg)
    by_series = {name: {(cls, shape) for cls, shape, n in shapes if n == name} for name in ("mAP50", "mAP50-95", "other")}
    assert by_series == {"mAP50": {("marker", "circle")}, "mAP50-95": {("marker hollow", "diamond")},
                         "other": {("marker", "square")}}
    notes = re.findall(r'<text class="legend-note"[^>]*>([^<]*)</text>', svg)
    assert notes == ["same values as mAP50"]
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained

    near = line_chart([Series("a", xs, [0.5, 0.5, 0.5], "#000"), Series("b", xs, [0.501, 0.5, 0.499], "#111")],
                      x_label="x", y_label="y", title="t", y_max=1.0)
    assert re.findall(r'<text class="legend-note"[^>]*>([^<]*)</text>', near) == ["overlaps a"]


def test_equal_series_both_show_in_chromium(tmp_path: Path, browser: Any) -> None:
    """Where two series coincide, the point under the covering series' marker is still the
    first series' marker: both are visible, not one hidden whole under the other."""
    xs = [120, 170, 220]
    svg = line_chart([Series("mAP50", xs, [0.0, 0.0, 0.0], "#0072B2"), Series("mAP50-95", xs, [0.0, 0.0, 0.0], "#E69F00")],
                     x_label="labeled images", y_label="mAP", title="t", y_max=1.0)
    path = tmp_path / "equal.svg"
    path.write_text(standalone(svg), encoding="utf-8")
    page = browser.new_page(viewport={"width": 900, "height": 500})
    try:
        page.goto(path.as_uri())
        seen = page.evaluate(
            """() => Array.from(document.querySelectorAll('.marker')).filter(m => m.querySelector('title')).map(m => {
                 const r = m.getBoundingClientRect();
                 const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2 - 2.5);  // clear of the lines
                 const edge = document.elementFromPoint(r.x + r.width / 2, r.y + 0.5);
                 return [m.querySelector('title').textContent.split(':')[0],
                         hit && hit.closest('.marker') ? hit.closest('.marker').querySelector('title').textContent.split(':')[0] : null,
                         edge && edge.closest('.marker') ? edge.closest('.marker').querySelector('title').textContent.split(':')[0] : null];
               })"""
        )
        markers = seen  # the plot's markers (the legend's carry no title of their own)
        assert {s[0] for s in markers} == {"mAP50", "mAP50-95"}
        # the first series' marker is what the centre of each point shows, the second's its outline
        assert all(s[1] == "mAP50" for s in markers if s[0] == "mAP50"), seen
        assert all(s[2] == "mAP50-95" for s in markers if s[0] == "mAP50-95"), seen
        page.screenshot(path=str(tmp_path / "equal.png"))
    finally:
        page.close()


# -- writing and the command line --------------------------------------------------------------
def test_report_overwrites_atomically_leaving_no_temp_files(full_ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "r" / "report.html"
    out.parent.mkdir()
    out.write_text("old")
    build_report(full_ws, out=out)
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]
    assert build_report(full_ws, out=out.parent) == out  # a folder: report.html inside it
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # the permissions of a plain new file


def test_cli_report_writes_and_prints_the_path(full_ws: Workspace, tmp_path: Path) -> None:
    sim = _write_simulation(tmp_path / "sim.csv")
    out = tmp_path / "cli" / "report.html"
    res = CliRunner().invoke(app, ["-w", str(full_ws.root), "report", "--out", str(out), "--simulation", str(sim)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out)
    assert "table class=\"reach\"" in out.read_text(encoding="utf-8")

    res = CliRunner().invoke(app, ["-w", str(full_ws.root), "report"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(full_ws.root / "report.html")


def test_simulation_plots_beside_the_csv_render_alone_in_chromium(tmp_path: Path, browser: Any) -> None:
    sim = _write_simulation(tmp_path / "simulation.csv")
    plots = write_plots(sim, full_map50_95=0.5)
    assert [p.name for p in plots] == ["simulation_map50_95.svg", "simulation_map50.svg"]
    page = browser.new_page(viewport={"width": 900, "height": 500})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(plots[0].as_uri())
        svg = page.locator("svg.chart")
        assert svg.bounding_box()["width"] == pytest.approx(720, abs=1)  # sized, not collapsed
        assert page.locator("polyline.line").count() == 2  # a curve per strategy
        assert page.locator("polygon.band").count() == 2
        # the styles travel inside the file: curves are stroked lines, not filled shapes
        assert page.locator("polyline.line").first.evaluate("e => getComputedStyle(e).fill") == "none"
        assert page.locator("polyline.line").nth(0).get_attribute("stroke-dasharray")  # random: dashed
        guide = page.locator("line.guide")
        assert guide.count() == 1 and "90% of full-data" in page.locator("text.guide-label").text_content()
        y_guide = float(guide.get_attribute("y1"))
        y_axis_top, y_axis_bottom = 14, 320 - 46
        assert y_guide == pytest.approx(y_axis_bottom - 0.45 * (y_axis_bottom - y_axis_top), abs=0.5)
        page.screenshot(path=str(tmp_path / "simulation_map50_95.png"))
        page.goto(plots[1].as_uri())
        assert page.locator("line.guide").count() == 0  # the full-data target is a mAP50-95 one
        assert errors == []
    finally:
        page.close()
    assert (tmp_path / "simulation_map50_95.png").stat().st_size > 5_000


def test_cli_report_with_a_missing_simulation_csv_is_one_error_line(full_ws: Workspace, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["-w", str(full_ws.root), "report", "--simulation", str(tmp_path / "nope.csv")])
    assert res.exit_code == 1
    assert "nope.csv" in res.output and "Traceback" not in res.output
    assert not (full_ws.root / "report.html").exists()


# -- the pure parts ----------------------------------------------------------------------------
def test_simulation_summary_mean_std_and_labels_to_reach(tmp_path: Path) -> None:
    sim = read_simulation(_write_simulation(tmp_path / "sim.csv"))
    assert sim.strategies == ["random", "least_confidence"]
    assert len(sim.problems) == 1 and next(iter(sim.problems)).line == 18
    assert {r.labeled_boxes for r in sim.rows} == {None}  # a CSV from before the column was kept still reads
    curves = summarize(sim.rows, "map50_95")
    last = curves["random"][-1]
    assert (last.labeled_images, last.n) == (40, 2)
    assert last.mean == pytest.approx(0.43)
    assert last.std == pytest.approx(np.std([0.42, 0.44], ddof=1))
    target, reached = labels_to_reach(curves, fraction=0.9)
    assert target == pytest.approx(0.9 * 0.46)
    assert reached == {"random": 40, "least_confidence": 30}
    target, reached = labels_to_reach({"never": []}, fraction=0.9)
    assert target is None and reached == {"never": None}


def test_simulation_csv_without_required_columns_names_them(tmp_path: Path) -> None:
    from boxloop.errors import InputError

    path = tmp_path / "bad.csv"
    path.write_text("strategy,seed,round\nrandom,0,1\n")
    with pytest.raises(InputError, match="labeled_images, map50, map50_95"):
        read_simulation(path)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]), (0, 37, [0, 10, 20, 30, 40]), (0.5, 0.5, None), (0, 0.42, [0, 0.1, 0.2, 0.3, 0.4, 0.5])],
)
def test_nice_ticks_cover_the_range_with_round_steps(lo: float, hi: float, expected: list[float] | None) -> None:
    start, stop, ticks = nice_ticks(lo, hi)
    assert start <= lo and stop >= hi and stop > start
    if expected is not None:
        assert ticks == pytest.approx(expected)


def test_pca_finds_the_main_direction_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(size=200)
    x = np.outer(t, [1.0, 1.0, 0.0, 0.0]) + 0.05 * rng.normal(size=(200, 4))
    coords, share = pca_2d(x)
    assert coords.shape == (200, 2)
    assert share[0] > 0.95 and share[0] >= share[1]
    assert abs(np.corrcoef(coords[:, 0], t)[0, 1]) > 0.99
    again, _ = pca_2d(x[::-1])
    assert np.allclose(again[::-1], coords)
    one, share1 = pca_2d(np.arange(5, dtype=float).reshape(5, 1))
    assert one.shape == (5, 2) and share1[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456, "0.123"), (3, "3"), (True, "yes"), (None, "—"), ("near dup", "near dup"),
        ({"a": 0.5, "b": [1, 2.0]}, "{a: 0.500, b: [1, 2.000]}"),
        (list(range(10)), "[0, 1, 2, 3, 4, 5, 6, 7, …]"), (np.float32(0.25), "0.250"),
    ],
)
def test_why_values_render_compactly(value: Any, text: str) -> None:
    assert format_value(value) == text
