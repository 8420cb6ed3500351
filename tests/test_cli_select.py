"""`boxloop select` through the real Typer app, on a workspace with stored predictions."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from boxloop.cli import app
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace

CLASSES = ["person", "bike", "bus", "truck", "dog", "cat", "sign", "car"]
CAR = [100, 100, 200, 180]


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    predictions = {}
    for f in range(40, 46):
        ws.store.add_item(Item(f"cam-{f}", f"/v/cam/{f}.jpg", 320, 240, f"sha{f}", video_id="cam", frame_index=f))
        boxes = np.zeros((0, 4)) if f == 42 else np.array([CAR])
        predictions[f"cam-{f}"] = Detections(boxes, [7] * len(boxes), [0.9] * len(boxes))
    for j, c in enumerate([0.95, 0.4, 0.3]):
        ws.store.add_item(Item(f"still-{j}", f"/s/{j}.jpg", 320, 240, f"s{j}"))
        predictions[f"still-{j}"] = Detections(np.array([[10, 10, 50, 50]]), [0], [c])
    ws.store.put_predictions("v1", predictions)
    ws.close()
    return ws


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_select_then_explain(ws):
    out = ws.root / "batch.csv"
    result = invoke("select", "-w", str(ws.root), "--budget", "2", "--strategy", "least_confidence:1,flicker:2", "--seed", "7",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:  # the to-label list, in the order to label it
        rows = list(csv.DictReader(f))
    assert rows[0]["item_id"] == "cam-42" and len(rows) == 2
    assert rows[0]["uri"] == "/v/cam/42.jpg" and rows[0]["rank"] == "1" and float(rows[0]["flicker_percentile"]) > 0
    assert {"score", "picked_by", "least_confidence", "flicker"} <= set(rows[0])
    assert "flicker" in rows[0]["why"] and "car seen in frames 41 and 43, missing in 42" in rows[0]["why"]  # in words
    assert "cam-42" in result.output and "saved selection sel-" in result.output
    assert "42.jpg" in result.output  # the image's file name beside its id
    assert "1 imputed box(es) on 1 flickering frame(s)" in result.output
    assert "no embeddings for this model version" in result.output  # config says diverse = true
    result = invoke("select", "-w", str(ws.root), "--explain", "cam-42")
    assert result.exit_code == 0, result.output
    assert "flicker: box of class 7 (car) seen in frames 41 and 43, missing in 42" in result.output
    with Workspace.open(ws.root) as again:
        sel = again.store.selection()
        assert sel.seed == 7 and sel.item_ids[0] == "cam-42"


def test_preset_from_the_config(ws):
    # the default boxloop.toml has [select.presets] video = "least_confidence:1,flicker:2"
    result = invoke("select", "-w", str(ws.root), "--strategy", "video", "--budget", "1", "--no-diverse", "--seed", "1")
    assert result.exit_code == 0, result.output
    with Workspace.open(ws.root) as again:
        sel = again.store.selection()
        assert sel.strategy == "least_confidence:1,flicker:2" and sel.item_ids == ("cam-42",)
        assert sel.config["selector"] == "top_k"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "flickr"], "unknown scorer or selector 'flickr'"),
        (["--diverse"], "need image embeddings"),
        (["--model-version", "v2"], "no predictions from model version 'v2'"),
        (["--budget", "0"], "budget must be a positive number"),
        (["--explain", "nope"], "no selection yet; run `boxloop select --budget N`"),
        (["--aggregation", "median"], "unknown aggregation 'median'"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_1(ws, args, message):
    result = CliRunner().invoke(app, ["select", "-w", str(ws.root), *args])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_cold_start_says_so_and_marks_the_uniform_picks(tmp_path):
    ws = Workspace.init(tmp_path / "cold", classes=CLASSES)
    for k in range(12):  # an untrained model: not one box
        ws.store.add_item(Item(f"img-{k}", f"/s/{k}.jpg", 320, 240, f"sha{k}"))
    ws.store.put_predictions("v1", {f"img-{k}": Detections(np.zeros((0, 4)), [], []) for k in range(12)})
    ws.close()
    result = invoke("select", "-w", str(ws.root), "--budget", "3", "--strategy", "least_confidence", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "cold start" in result.output and "uniform sample of 3" in result.output
    assert result.output.count("uniform sample (least_confidence") == 3


def test_the_aggregation_comes_from_the_config_unless_given(ws, monkeypatch):
    monkeypatch.setenv("BOXLOOP_SELECT_AGGREGATION", "sum")
    assert invoke("select", "-w", str(ws.root), "--budget", "2", "--seed", "1").exit_code == 0
    with Workspace.open(ws.root) as again:
        assert again.store.selection().config["aggregation"] == "sum"
    assert invoke("select", "-w", str(ws.root), "--budget", "2", "--seed", "1", "--aggregation", "mean").exit_code == 0
    with Workspace.open(ws.root) as again:
        assert again.store.selection().config["aggregation"] == "mean"
