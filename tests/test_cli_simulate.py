"""`boxloop simulate` through the CLI with real Ultralytics training: warm-started rounds
(--model previous) and a longer full-data reference (--full-epochs)."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from typer.testing import CliRunner

from _tiny_data import ultralytics_offline
from boxloop.cli import app
from boxloop.simulate import MIN_REFERENCE_MAP
from boxloop.synth import generate_images
from boxloop.workspace import Workspace


def test_simulate_warm_starts_rounds_and_trains_the_reference_longer(tmp_path: Path) -> None:
    ultralytics_offline(tmp_path / "ultralytics")
    generate_images(tmp_path / "digits", n=30, seed=1, size=(96, 64))
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, [
        "simulate", str(tmp_path / "digits"), "--strategies", "random", "--initial", "12", "--budget", "6",
        "--rounds", "1", "--seeds", "1", "--out", str(out), "--model", "previous", "--epochs", "1",
        "--full-epochs", "2", "--imgsz", "64", "--batch", "8",
    ])
    assert result.exit_code == 0, result.output
    with open(out / "simulation.csv") as f:
        assert [(r["round"], r["labeled_images"]) for r in csv.DictReader(f)] == [("1", "12"), ("2", "18")]
    run = Workspace.open(out / "random-s0")
    versions = {v["id"]: v for v in run.store.model_versions()}
    second = yaml.safe_load(next((run.runs_dir / "m002").rglob("args.yaml")).read_text())
    assert Path(str(second["model"])) == Path(versions["m001"]["path"])  # round 2 fine-tuned round 1's model
    assert versions["m002"]["meta"]["epochs"] == 1
    run.close()
    full = Workspace.open(out / "full-data-s0")
    (reference,) = full.store.model_versions()
    assert reference["meta"]["epochs"] == 2 and reference["meta"]["model"] == "yolov8n.yaml"
    full.close()
    text = " ".join(result.output.split())
    assert "to 90% of full-data mAP50-95" in text
    with open(out / "simulation_summary.csv") as f:
        (summary,) = csv.DictReader(f)
    # two epochs from scratch at 64 px teach nothing: no strategy is said to reach 90% of that
    assert float(summary["full_data_map50_95_seed0"]) < MIN_REFERENCE_MAP
    assert "random: no level to reach" in text and "it learned next to nothing" in text
    assert summary["labels_to_90pct_full_map50_95"] == ""


def test_simulate_with_steps_trains_every_round_and_the_reference_alike(tmp_path: Path) -> None:
    """--steps: each round and the full-data reference train from the same start for the same
    optimizer steps, the epochs following each one's label count; --full-epochs is for epochs."""
    from boxloop.modeling import epochs_for_steps

    ultralytics_offline(tmp_path / "ultralytics")
    generate_images(tmp_path / "digits", n=30, seed=1, size=(96, 64))
    out = tmp_path / "sim"
    args = ["simulate", str(tmp_path / "digits"), "--strategies", "random", "--initial", "8", "--budget", "12",
            "--rounds", "1", "--seeds", "1", "--out", str(out), "--steps", "6", "--imgsz", "64", "--batch", "4"]
    refused = CliRunner().invoke(app, [*args, "--epochs", "2"])
    assert refused.exit_code == 2 and not out.exists()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "round 1 trains on the 8 initial labels, round 2 after a batch of 12" in said
    assert "seed 0: every strategy is scored on the same test split of 6 images" in said  # 30 x 0.2
    assert "its mAP is noisy" in said
    trained = []
    for name in ("random-s0", "full-data-s0"):
        ws = Workspace.open(out / name)
        trained += [v["meta"] for v in ws.store.model_versions()]
        ws.close()
    assert len(trained) == 3 and {m["model"] for m in trained} == {"yolov8n.yaml"}  # none fine-tunes another
    assert [m["steps"] for m in trained] == [6, 6, 6]
    assert len({m["train_images"] for m in trained}) == 3  # 8, 20 and 24 labels, less their val split
    for m in trained:  # at batch 4 every batch is a step
        assert m["epochs"] == epochs_for_steps(6, m["train_images"], 4, nbs=4)


def test_simulate_says_each_strategys_labels_as_a_share_of_randoms() -> None:
    from boxloop.cli._app import console
    from boxloop.cli.loop import _say_ratios

    with console.capture() as captured:
        _say_ratios({"random": 200.0, "least_confidence": 120.0, "margin": None})  # margin never reached it
    assert captured.get().strip() == "least_confidence: 0.60x the labels random needed"
    with console.capture() as captured:
        _say_ratios({"random": None, "least_confidence": 120.0})  # random never reached it: no ratio to give
    assert captured.get() == ""
