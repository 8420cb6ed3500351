"""`boxloop demo` (what `make demo` runs) end to end, shrunk: generated digits, a workspace,
one round with the oracle and real Ultralytics training, the ledger and the report."""

from __future__ import annotations

import csv
from html import escape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _console import flat
from _tiny_data import ultralytics_offline
from boxloop.cli import app
from boxloop.workspace import Workspace


@pytest.mark.slow
def test_demo_runs_the_loop_and_prints_where_the_results_are(tmp_path: Path) -> None:
    ultralytics_offline(tmp_path / "ultralytics")
    out = tmp_path / "demo-out"
    demo = ["demo", "--out", str(out), "--labeled", "12", "--pool", "16", "--rounds", "1", "--budget", "5",
            "--epochs", "1", "--imgsz", "64"]
    result = CliRunner().invoke(app, demo)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())

    ws_root = out / "workspace"
    report = ws_root / "report.html"
    assert f"workspace:{ws_root}" in flat(text) and f"report:{report}" in flat(text) and report.is_file()
    assert (out / "data" / "labeled" / "data.yaml").is_file()
    assert (ws_root / "exports" / "yolo-labeled" / "data.yaml").is_file()

    # the round's batch was labeled by the oracle: the seed set plus the budget, as the ledger says
    with open(ws_root / "runs" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [1, 2]
    assert int(rows[1]["labeled_images"]) == int(rows[0]["labeled_images"]) + 5
    assert rows[0]["map50_95"] != "" and rows[1]["model_version"] not in ("", rows[0]["model_version"])
    assert f"round 1: model {rows[0]['model_version']}, {rows[0]['labeled_images']} labeled images" in text
    assert f"its batch came back: {rows[0]['accepted']} accepted, {rows[0]['adjusted']} adjusted" in text
    assert (f"round 2: model {rows[1]['model_version']}, {rows[1]['labeled_images']} labeled images (+5)" in text
            and "(trained on the last batch; nothing selected)" in text)
    ws = Workspace.open(ws_root)
    try:
        assert len(ws.store.model_versions()) == 2
    finally:
        ws.close()
    html = report.read_text()
    assert 'src="http' not in html and 'href="http' not in html  # self-contained: nothing fetched
    assert '<tr data-round="1">' in html and '<tr data-round="2">' in html
    # the threshold round 1's pre-labels were cut at, and what they saved an image, in the ledger and the report
    row1 = html.split('<tr data-round="1">')[1].split("</tr>")[0]
    assert rows[0]["prelabel_conf"] and f"<td>{escape(rows[0]['prelabel_conf'])}</td>" in row1
    assert f"<td>{float(rows[0]['saved_s_per_image']):+.1f}</td>" in row1

    # run again (as `make demo` twice, or after an interruption): the workspace goes on, nothing is lost
    again = CliRunner().invoke(app, demo)
    assert again.exit_code == 0, again.output
    assert "exists: its labels and rounds are kept" in " ".join(again.output.split())
    assert "since round 2); its batch came back:" in " ".join(again.output.split())  # each round says what it bought
    with open(ws_root / "runs" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]
    assert int(rows[3]["labeled_images"]) == int(rows[1]["labeled_images"]) + 5
