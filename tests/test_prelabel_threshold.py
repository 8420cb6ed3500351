"""The pre-label threshold a model version earns: `evaluate` measures the drawing its pre-labels
would save on the test split at each threshold, and push, export, serve and the oracle's rounds
cut the pre-labels where that saves the most ([labelstudio] prelabel_conf = "auto")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from boxloop.annotation.acceptance import (
    DEFAULT_PRELABEL_CONF,
    MIN_PRELABEL_BOXES,
    best_prelabel_conf,
    prelabel_choice,
    prelabel_savings,
    prelabel_threshold,
)
from boxloop.backends.fake import FakeBackend
from boxloop.cli import app
from boxloop.errors import ConfigError
from boxloop.ingest import add_images, add_labels
from boxloop.loop import Oracle, RoundPlan, run_round
from boxloop.modeling import add_predictions, evaluate_model
from boxloop.synth import CLASSES, generate_images
from boxloop.types import Detections
from boxloop.workspace import Workspace

runner = CliRunner()


def _truth_and_predictions() -> tuple[dict[str, Detections], dict[str, Detections]]:
    truth = {"a": Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0, 1]))}
    predictions = {"a": Detections(
        np.array([[0, 0, 10, 10], [20, 20, 31, 31], [50, 50, 60, 60], [70, 70, 80, 80]], np.float32),
        np.array([0, 1, 0, 1]), np.array([0.8, 0.3, 0.2, 0.6], np.float32),
    )}
    return truth, predictions


def test_savings_per_threshold_follow_the_acceptance_cost_model() -> None:
    """At 0.8 only the exact box is shown (accepted: 7 - 1 s); down to 0.6 a wrong box joins
    (deleted: -1.5 s); down to 0.3 the shifted box (adjusted: 7 - 3 s); down to 0.2 a second
    wrong box. The best is 0.3; of 0.25 and 0.3, which save the same, the higher."""
    truth, predictions = _truth_and_predictions()
    saved = prelabel_savings(predictions, truth, grid=[0.1, 0.2, 0.25, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert saved == {0.1: 7.0, 0.2: 7.0, 0.25: 8.5, 0.3: 8.5, 0.5: 4.5, 0.6: 4.5, 0.7: 6.0, 0.8: 6.0, 0.9: 0.0}
    assert best_prelabel_conf(saved) == 0.3
    # an image without predictions is shown nothing: it neither saves nor costs, but counts
    saved2 = prelabel_savings(predictions, {**truth, "b": truth["a"]}, grid=[0.3])
    assert saved2 == {0.3: 8.5 / 2}


def test_a_threshold_is_chosen_only_from_enough_boxes_and_a_number_setting_wins() -> None:
    truth, predictions = _truth_and_predictions()
    few = prelabel_choice(predictions, truth)
    assert few["conf"] is None and few["boxes"] == 2 < MIN_PRELABEL_BOXES
    assert few["seconds_per_image"]["0.30"] == 8.5
    many = {f"i{k}": truth["a"] for k in range(MIN_PRELABEL_BOXES)}
    chosen = prelabel_choice({k: predictions["a"] for k in many}, many)
    assert chosen["conf"] == 0.3 and chosen["images"] == MIN_PRELABEL_BOXES
    assert prelabel_threshold("auto", {"prelabel": chosen}) == 0.3
    assert prelabel_threshold("auto", {"prelabel": few}) == DEFAULT_PRELABEL_CONF  # too few boxes to choose by
    assert prelabel_threshold("auto", None) == DEFAULT_PRELABEL_CONF  # never evaluated
    assert prelabel_threshold("0.4", {"prelabel": chosen}) == 0.4  # a number is kept


def test_prelabel_conf_in_boxloop_toml_is_auto_or_a_number_within_0_and_1(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    toml = ws.root / "boxloop.toml"
    assert '\nprelabel_conf = "auto"' in toml.read_text()  # what every new workspace says
    assert ws.config.labelstudio.prelabel_conf == "auto"
    for written, read in (("0.4", "0.4"), ('"0.35"', "0.35"), ('"AUTO"', "auto"), ("1", "1.0")):
        toml.write_text(toml.read_text().replace('\nprelabel_conf = "auto"', f"\nprelabel_conf = {written}"))
        assert Workspace.open(ws.root).config.labelstudio.prelabel_conf == read
        toml.write_text(toml.read_text().replace(f"\nprelabel_conf = {written}", '\nprelabel_conf = "auto"'))
    for bad in ('"sometimes"', "1.5", "-0.1"):
        toml.write_text(toml.read_text().replace('\nprelabel_conf = "auto"', f"\nprelabel_conf = {bad}"))
        with pytest.raises(ConfigError, match=r'prelabel_conf must be "auto" or a number within 0\.\.1'):
            Workspace.open(ws.root).config  # noqa: B018
        toml.write_text(toml.read_text().replace(f"\nprelabel_conf = {bad}", '\nprelabel_conf = "auto"'))


@pytest.fixture()
def evaluated(tmp_path: Path) -> tuple[Workspace, str, dict]:
    """A workspace of generated digits with a test split, and a detector's predictions for
    every picture (`add predictions`): each true box at confidence 0.3 and a wrong one in a
    corner at 0.2, so showing the boxes down to 0.3 saves the most; evaluated."""
    generate_images(tmp_path / "labeled", n=40, seed=0, size=(96, 64))
    generate_images(tmp_path / "pool", n=12, seed=1, size=(96, 64), start=100)  # named apart from the labeled
    found = tmp_path / "detector"
    found.mkdir()
    for labels in [*(tmp_path / "labeled" / "labels").glob("*.txt"), *(tmp_path / "pool" / "labels").glob("*.txt")]:
        rows = [f"{r} 0.3" for r in labels.read_text().splitlines() if r.strip()]
        (found / labels.name).write_text("\n".join([*rows, "0 0.96 0.95 0.06 0.08 0.2"]) + "\n")
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    add_labels(ws, tmp_path / "labeled", format="yolo")
    add_images(ws, [tmp_path / "pool" / "images"])
    runner.invoke(app, ["split", "--val", "0.2", "--test", "0.5", "--seed", "0", "-w", str(ws.root)])
    add_predictions(ws, found, format="yolo", model_version="detector")
    version, metrics = evaluate_model(ws, model="detector")
    return ws, version, metrics


def test_evaluate_records_the_threshold_and_export_cuts_the_prelabels_there(evaluated) -> None:
    from boxloop.export import export_dataset

    ws, version, metrics = evaluated
    choice = metrics["prelabel"]
    assert choice["boxes"] >= MIN_PRELABEL_BOXES and choice["conf"] == 0.3  # not the 0.25 of old
    saved = {float(t): v for t, v in choice["seconds_per_image"].items()}
    assert len(saved) == 20 and saved[0.3] == max(saved.values()) > saved[0.2] > 0 and saved[0.35] == 0
    assert ws.store.evaluation(version)["prelabel"] == choice  # stored with the evaluation
    done = export_dataset(ws, what="prelabeled", model_version=version)
    assert done.prelabel_conf == 0.3
    pool = [it.id for it in ws.store.items(state="unlabeled")]
    true_boxes = sum(len(d) for d in Workspace.open(ws.root).store.predictions(version, pool).values()) - len(pool)
    rows = [r for f in (done.path / "labels").glob("*.txt") for r in f.read_text().splitlines() if r.strip()]
    assert len(rows) == true_boxes > 0  # the corner boxes at 0.2 are left out
    fixed = export_dataset(ws, what="prelabeled", model_version=version, conf=0.05)  # --conf still wins
    assert fixed.prelabel_conf == 0.05
    toml = ws.root / "boxloop.toml"
    toml.write_text(toml.read_text().replace('\nprelabel_conf = "auto"', "\nprelabel_conf = 0.15"))
    low = export_dataset(Workspace.open(ws.root), what="prelabeled", model_version=version)
    assert low.prelabel_conf == 0.15
    assert sum(1 for f in (low.path / "labels").glob("*.txt") for r in f.read_text().splitlines() if r.strip()) == len(rows) + len(pool)


def test_evaluate_says_what_the_prelabels_would_save(evaluated) -> None:
    ws, version, metrics = evaluated
    out = runner.invoke(app, ["evaluate", "--model", version, "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    conf = metrics["prelabel"]["conf"]
    assert flat(f"pre-labels: at confidence >= {conf:g} they would save") in flat(out.output)
    assert flat('the most of any threshold: push, export and serve use it ([labelstudio] prelabel_conf = "auto")') in flat(out.output)
    toml = ws.root / "boxloop.toml"
    toml.write_text(toml.read_text().replace('\nprelabel_conf = "auto"', "\nprelabel_conf = 0.05"))
    out = runner.invoke(app, ["evaluate", "--model", version, "-w", str(ws.root)])
    saved = metrics["prelabel"]["seconds_per_image"]
    assert flat(f"at confidence >= 0.05 they would save {saved['0.05']:+.1f} s") in flat(out.output)
    if conf != 0.05:
        assert flat(f'at {conf:g} {saved[f"{conf:.2f}"]:+.1f} s, the most (prelabel_conf = "auto" uses it)') in flat(out.output)


def test_the_oracle_counts_acceptance_of_the_prelabels_push_would_show(tmp_path: Path) -> None:
    """A round evaluates before it pushes: the oracle's batch is judged at the threshold that
    evaluation chose, as push would have cut it."""
    from boxloop.annotation.acceptance import acceptance, sum_acceptance

    generate_images(tmp_path / "labeled", n=40, seed=0, size=(96, 64))
    generate_images(tmp_path / "pool", n=20, seed=1, size=(96, 64))
    truth_ws = Workspace.init(tmp_path / "truth", classes=CLASSES)
    add_labels(truth_ws, tmp_path / "pool", format="yolo")
    truth = truth_ws.store.latest_labels()
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    add_labels(ws, tmp_path / "labeled", format="yolo")
    add_images(ws, [tmp_path / "pool" / "images"])
    runner.invoke(app, ["split", "--val", "0.2", "--test", "0.5", "--seed", "0", "-w", str(ws.root)])
    rec = run_round(ws, RoundPlan(budget=6, strategy="random", seed=1, backend=FakeBackend(CLASSES, max_boxes=8)),
                    annotator=Oracle(truth))
    chosen = ws.store.evaluation(rec.model_version)["prelabel"]["conf"]
    assert chosen is not None
    preds = ws.store.predictions(rec.model_version)
    ids = ws.store.selection().item_ids
    expected = sum_acceptance(acceptance(preds[i][preds[i].confidence >= chosen], truth[i]) for i in ids)
    keys = ("accepted", "adjusted", "deleted", "added")
    assert {k: rec.acceptance[k] for k in keys} == {k: expected[k] for k in keys}
    at_default = sum_acceptance(acceptance(preds[i][preds[i].confidence >= 0.25], truth[i]) for i in ids)
    assert chosen != 0.25 and at_default["deleted"] != expected["deleted"]  # the threshold made a difference

    # the ledger keeps the threshold the batch was judged at, and the seconds it saved an image
    import csv

    from boxloop import ledger

    assert rec.acceptance["prelabel_conf_min"] == rec.acceptance["prelabel_conf_max"] == chosen
    assert f"pre-labels at confidence >= {chosen:g}" in ledger.describe_round(ws.store, rec)
    shown = flat(runner.invoke(app, ["history", "-w", str(ws.root)]).output)
    with open(ws.runs_dir / "history.csv") as f:
        (row,) = csv.DictReader(f)
    per_image = expected["seconds_saved"] / expected["items"]
    assert row["prelabel_conf"] == f"{chosen:g}" and float(row["saved_s_per_image"]) == pytest.approx(per_image, abs=0.01)
    assert row["prelabel_models"] == rec.model_version and flat(f"whose pre-labels they were: round 1: {rec.model_version}") in shown
    assert flat(f"{per_image:+.1f}│{chosen:g}│") in shown
