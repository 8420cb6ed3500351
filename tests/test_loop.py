"""Rounds with the fake backend: every step recorded, resume after an interruption, the lock,
and a simulation with the oracle that is reproducible for a seed."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from boxloop import ledger
from boxloop.backends.fake import FakeBackend
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.ingest import add_images, add_labels
from boxloop.loop import Oracle, RoundPlan, round_lock, run_round
from boxloop.selection import load_pool
from boxloop.simulate import labels_to_reach, run_folder, simulate
from boxloop.synth import CLASSES, generate_images
from boxloop.types import Detections
from boxloop.workspace import Workspace


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    generate_images(root / "labeled", n=24, seed=0, size=(96, 64))
    generate_images(root / "pool", n=30, seed=1, size=(96, 64))
    return root


def make_ws(tmp_path: Path, digits: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    add_labels(ws, digits / "labeled", format="yolo")
    add_images(ws, [digits / "pool" / "images"])
    return ws


def test_a_full_round_with_the_fake_backend_records_every_step(tmp_path: Path, digits: Path) -> None:
    ws = make_ws(tmp_path, digits)
    rec = run_round(ws, RoundPlan(budget=5, strategy="least_confidence", backend=FakeBackend(CLASSES)))
    assert rec.round == 1 and rec.model_version == "fake-r1" and rec.labeled_images == 24
    assert rec.map50 is not None and set(rec.seconds) == {"train", "evaluate", "predict", "select"}
    steps = ledger.step_results(ws.store, 1)
    assert all(s["status"] == "done" for s in steps.values())
    sel = ws.store.selection()
    assert len(sel.item_ids) == 5 and sel.model_version == "fake-r1"
    assert len(ws.store.items(split="test")) >= 1  # a test split was made, and said so
    with open(ws.runs_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["round"] for r in rows] == ["1"] and rows[0]["model_version"] == "fake-r1"
    umask = os.umask(0)
    os.umask(umask)
    assert (ws.runs_dir / "history.csv").stat().st_mode & 0o777 == 0o666 & ~umask  # as any file, not 0600
    rec2 = run_round(ws, RoundPlan(budget=5, backend=FakeBackend(CLASSES)))
    assert rec2.round == 2


def test_a_round_that_cannot_make_a_test_split_says_so_before_training(tmp_path: Path, digits: Path) -> None:
    """Every labeled image already in train/val (`boxloop split --test 0`): nothing is left to
    hold out, so the round stops before it trains, saying what to do; the next labels make one."""
    from boxloop.split import assign_splits

    ws = make_ws(tmp_path, digits)
    assign_splits(ws.store, val=0.2, test=0.0)
    with pytest.raises(InputError, match="no test split to evaluate on.*label more images"):
        run_round(ws, RoundPlan(budget=5, backend=FakeBackend(CLASSES)))
    assert ws.store.model_versions() == [] and not ws.store.items(split="test")
    add_labels(ws, digits / "pool", format="yolo")  # new labels, not yet split
    rec = run_round(ws, RoundPlan(budget=0, backend=FakeBackend(CLASSES)))
    assert rec.map50 is not None and ws.store.items(split="test")


def test_an_interrupted_round_resumes_at_the_step_that_did_not_finish(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boxloop.selection as selection

    ws = make_ws(tmp_path, digits)
    real = selection.select
    calls = {"n": 0}

    def interrupted(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(selection, "select", interrupted)
    plan = RoundPlan(budget=4, strategy="random", backend=FakeBackend(CLASSES))
    with pytest.raises(KeyboardInterrupt):
        run_round(ws, plan)
    steps = ledger.step_results(ws.store, 1)
    assert steps["select"]["status"] == "failed" and steps["predict"]["status"] == "done"
    said = "round 1 is unfinished; done: train, evaluate, predict; select was interrupted; `boxloop round` resumes it"
    assert ledger.unfinished_round(ws.store) == 1 and ledger.where_it_stopped(ws.store, 1) == said
    shown = CliRunner().invoke(app, ["-w", str(ws.root), "history"])
    assert shown.exit_code == 0 and said in " ".join(shown.output.split())
    shown = CliRunner().invoke(app, ["-w", str(ws.root), "status"])
    assert "next: boxloop round (round 1 is unfinished: it resumes where it stopped)" in " ".join(shown.output.split())
    rec = run_round(ws, plan)
    assert rec.round == 1  # the same round, finished
    assert ledger.unfinished_round(ws.store) is None
    steps = ledger.step_results(ws.store, 1)
    assert all(s["status"] == "done" for s in steps.values()) and calls["n"] == 2
    assert [v["id"] for v in ws.store.model_versions()] == ["fake-r1"]  # train did not run again


def test_a_round_with_nothing_left_to_select_ends_instead_of_sticking(tmp_path: Path, digits: Path) -> None:
    """Every image labeled: the round says so before it starts, trains and evaluates, predicts
    and selects nothing, sends no batch and finishes, so the next round is a new one (before,
    it failed at select and every re-run resumed into the same failure; then it predicted the
    empty pool first)."""
    from boxloop.loop import annotator_for

    ws = make_ws(tmp_path, digits)
    add_labels(ws, digits / "pool", format="yolo")  # the pool is labeled too
    said: list[str] = []
    rec = run_round(ws, RoundPlan(budget=5, backend=FakeBackend(CLASSES)), annotator=annotator_for("files"),
                    say=said.append)
    assert rec.round == 1 and rec.map50 is not None
    steps = ledger.step_results(ws.store, 1)
    assert list(steps) == ["train", "evaluate"] and not ledger.selected(ws.store, 1)
    assert not list(ws.exports_dir.glob("*.zip"))
    assert said[0].startswith("round 1: no unlabeled image left to pick") and "trains and evaluates only" in said[0]
    assert ledger.unfinished_round(ws.store) is None
    assert run_round(ws, RoundPlan(budget=5, backend=FakeBackend(CLASSES))).round == 2


def test_a_second_round_on_the_same_workspace_is_refused(tmp_path: Path, digits: Path) -> None:
    ws = make_ws(tmp_path, digits)
    with round_lock(ws), pytest.raises(InputError, match=r"a round \(boxloop round\) is already running on .* \(pid \d+\)"):
        run_round(ws, RoundPlan(budget=1, backend=FakeBackend(CLASSES)))
    # `boxloop train` beside a round (or another train) is refused as well, naming what runs
    with round_lock(ws, doing="a training (boxloop train)"):
        result = CliRunner().invoke(app, ["-w", str(ws.root), "train", "--epochs", "1"])
        assert result.exit_code == 1
        assert flat(f"a training (boxloop train) is already running on {ws.root} (pid {os.getpid()})") in flat(result.output)


def test_oracle_rounds_label_the_selection_and_count_acceptance(tmp_path: Path, digits: Path) -> None:
    truth_ws = Workspace.init(tmp_path / "truth", classes=CLASSES)
    add_labels(truth_ws, digits / "pool", format="yolo")
    ws = make_ws(tmp_path, digits)
    oracle = Oracle(truth_ws.store.latest_labels())
    rec = run_round(ws, RoundPlan(budget=6, strategy="random", seed=1, backend=FakeBackend(CLASSES)), annotator=oracle)
    assert ws.store.count_by_state()["labeled"] == 24 + 6
    assert {"accepted", "adjusted", "deleted", "added", "seconds_saved"} <= set(rec.acceptance)
    assert rec.acceptance["items"] == 6
    labeled_round = {v["round"] for i in ws.store.selection().item_ids for v in ws.store.label_versions(i)}
    assert labeled_round == {1}


def test_simulation_with_the_oracle_is_reproducible_for_a_seed(tmp_path: Path, digits: Path) -> None:
    def run(out: Path) -> list[dict]:
        result = simulate(
            digits / "pool", strategies=["random", "least_confidence"], initial=8, budget=5, rounds=2, seeds=[0],
            out=out, backend_factory=lambda classes: FakeBackend(classes),
        )
        assert [p.name for p in result.plots] == ["simulation_map50_95.svg", "simulation_map50.svg"]
        assert all(p.parent == result.csv.parent for p in result.plots)
        chart = ElementTree.parse(result.plots[0]).getroot()
        lines = chart.findall(".//{http://www.w3.org/2000/svg}polyline")
        assert len(lines) == 2  # random and least_confidence
        assert len(chart.findall(".//{http://www.w3.org/2000/svg}line[@class='guide']")) == (1 if result.full_map50_95[0] else 0)
        with open(result.csv) as f:
            return list(csv.DictReader(f))

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a == b
    assert [(r["strategy"], r["round"], r["labeled_images"]) for r in a] == [
        ("random", "1", "8"), ("random", "2", "13"), ("random", "3", "18"),
        ("least_confidence", "1", "8"), ("least_confidence", "2", "13"), ("least_confidence", "3", "18"),
    ]  # labels outside the 6-image test split: 8 initial, then +5 per round; one ledger row per round run
    ws = Workspace.open(tmp_path / "a" / "random-s0")
    assert [r.round for r in ledger.history(ws.store)] == [1, 2, 3]
    test_split = {it.id for it in ws.store.items() if it.split == "test"}
    drawn = sum(len(d) for i, d in ws.store.latest_labels().items() if i not in test_split)
    assert drawn > 0 and int(a[2]["labeled_boxes"]) == drawn  # the boxes of the 18 labels, the test split's not counted
    with pytest.raises(InputError, match="larger than"):
        simulate(digits / "pool", strategies=["random"], initial=100, out=tmp_path / "c", backend_factory=FakeBackend)


def test_a_round_and_a_simulation_score_with_the_aggregation_asked_for(tmp_path: Path, digits: Path) -> None:
    ws = make_ws(tmp_path, digits)
    run_round(ws, RoundPlan(budget=5, strategy="least_confidence", backend=FakeBackend(CLASSES)))
    assert ws.store.selection().config["aggregation"] == "max"  # [select] aggregation's default
    run_round(ws, RoundPlan(budget=5, strategy="least_confidence", aggregation="sum", backend=FakeBackend(CLASSES)))
    assert ws.store.selection().config["aggregation"] == "sum"
    out = tmp_path / "sim"
    simulate(digits / "pool", strategies=["random", "least_confidence"], initial=8, budget=5, rounds=1, seeds=[0],
             out=out, aggregation="sum", full_data=False, backend_factory=lambda classes: FakeBackend(classes))
    with Workspace.open(out / "least-confidence-sum-s0") as scored:
        assert scored.store.selection().config["aggregation"] == "sum"
    assert (out / "random-s0").is_dir()  # the baseline scores no boxes: its run is the one without aggregation
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "truth") == sorted(
        run_folder(s, 0, "sum") for s in ("random", "least_confidence"))  # the name others find a run by
    assert run_folder("full-data", 2, "sum") == "full-data-s2"
    with pytest.raises(InputError, match="unknown aggregation 'median'"):
        simulate(digits / "pool", strategies=["least_confidence"], initial=8, out=tmp_path / "x", aggregation="median",
                 backend_factory=FakeBackend)


def test_labels_to_reach_the_first_round_or_where_the_curve_crosses() -> None:
    rows = [
        {"strategy": "a", "seed": 0, "round": r, "labeled_images": n, "map50_95": m}
        for r, (n, m) in enumerate([(20, 0.0), (60, 0.2), (100, 0.5), (140, 0.7)], 1)
    ] + [
        {"strategy": "a", "seed": 1, "round": r, "labeled_images": n, "map50_95": m}
        for r, (n, m) in enumerate([(20, 0.0), (60, 0.55), (100, 0.6)], 1)
    ]
    targets = {0: 0.6, 1: 0.5}
    assert labels_to_reach(rows, targets) == {"a": (140 + 60) / 2}
    # seed 0 crosses 0.6 halfway from 100 (0.5) to 140 (0.7); seed 1 at 11/12 of 20 -> 60
    crossed = labels_to_reach(rows, targets, interpolate=True)["a"]
    assert crossed == pytest.approx((120 + 20 + 40 * 0.5 / 0.55) / 2)
    assert labels_to_reach(rows, {0: 0.8, 1: 0.5}, interpolate=True) == {"a": None}  # seed 0 never reaches it
    first = [{"strategy": "b", "seed": 0, "round": 1, "labeled_images": 20, "map50_95": 0.9}]
    assert labels_to_reach(first, {0: 0.6}, interpolate=True) == {"b": 20.0}  # nothing before the first round
    boxed = [{**r, "labeled_boxes": 3 * r["labeled_images"]} for r in rows]
    assert labels_to_reach(boxed, targets, count="labeled_boxes") == {"a": 3 * (140 + 60) / 2}
    assert labels_to_reach(boxed, targets, interpolate=True, count="labeled_boxes")["a"] == pytest.approx(3 * crossed)
    assert labels_to_reach(rows, targets, count="labeled_boxes") == {"a": None}  # rows from a CSV without the column
    # a reference that learned nothing (mAP 0) sets no level: no round "reaches" 90% of it
    assert labels_to_reach(rows, {0: 0.0, 1: 0.5}) == {"a": None}


def test_a_full_data_reference_that_learned_nothing_sets_no_level(tmp_path: Path) -> None:
    from boxloop.simulate import _write_outputs, reference_untrained

    rows = [{"strategy": "random", "seed": 0, "round": r, "labeled_images": n, "labeled_boxes": n, "map50_95": 0.0}
            for r, n in ((1, 20), (2, 40))]
    (note,) = reference_untrained({0: 0.0}, {0: 0.0})
    assert note.startswith("seed 0: the full-data model scored mAP50-95 0.000: it learned next to nothing nor did any "
                           "round, so there is no level to reach; train longer (--epochs, --full-epochs)")
    assert reference_untrained({0: 0.3}, {0: 0.3}) == []
    result = _write_outputs(tmp_path, rows, {0: 0.0})
    assert result.labels_needed == {"random": None} and result.boxes_needed == {"random": None}
    assert result.notes == (note,)
    with open(result.summary_csv) as f:
        (row,) = csv.DictReader(f)
    assert row["labels_to_90pct_full_map50_95"] == "" and row["labels_to_90pct_best_map50_95"] == ""


def test_a_full_data_reference_below_a_strategy_is_called_no_ceiling(tmp_path: Path) -> None:
    from boxloop.simulate import _write_outputs, reference_below

    rows = [
        {"strategy": s, "seed": seed, "round": r, "labeled_images": n, "map50_95": m}
        for s, seed, curve in [("random", 0, [0.1, 0.4]), ("lc", 0, [0.1, 0.55]), ("lc", 1, [0.2, 0.5])]
        for r, (n, m) in enumerate(zip((20, 60), curve), 1)
    ]
    notes = reference_below(rows, {0: 0.5, 1: 0.7})
    assert len(notes) == 1  # seed 1's reference (0.7) is above every round of it
    assert notes[0].startswith("seed 0: the full-data reference (mAP50-95 0.500) is below lc at 60 labels (0.550)")
    assert "--full-epochs" in notes[0]
    assert reference_below(rows, {0: 0.55, 1: 0.5}) == []  # level is no overtaking
    result = _write_outputs(tmp_path, rows, {0: 0.5, 1: 0.7})
    assert result.notes == tuple(notes)
    # the best model of each seed stands in: seed 0's lc round (0.55), seed 1's reference (0.7)
    assert result.best_map50_95 == {0: 0.55, 1: 0.7}
    assert result.labels_needed_best == {"random": None, "lc": None}  # lc's seed 1 peaks at 0.5 < 0.63
    with open(result.summary_csv) as f:
        summary = {r["strategy"]: r for r in csv.DictReader(f)}
    assert (float(summary["lc"]["best_map50_95_seed0"]), float(summary["lc"]["best_map50_95_seed1"])) == (0.55, 0.7)
    assert float(summary["lc"]["best_map50_95"]) == pytest.approx(0.625)  # one number a cell: the mean
    assert summary["lc"]["labels_to_90pct_best_map50_95"] == "" and summary["lc"]["labels_to_90pct_full_map50_95"] == ""
    assert _write_outputs(tmp_path, rows, {0: 0.5}).labels_needed_best == {"random": None, "lc": 60.0}
    # trained alike (--steps): training the reference longer is no fix, more steps for everything is
    (alike,) = reference_below(rows, {0: 0.5, 1: 0.7}, alike=True)
    assert alike.startswith(notes[0].split(";")[0]) and "--steps" in alike and "--full-epochs" not in alike


def test_the_reference_trains_alike_only_for_a_fixed_number_of_steps_from_one_start() -> None:
    from boxloop.simulate import _trained_alike

    steps = {"model": "w.pt", "steps": 600}
    assert _trained_alike(steps, None) and _trained_alike(steps, dict(steps))
    assert not _trained_alike({"model": "w.pt", "epochs": 5}, None)  # epochs: more labels, more training
    assert not _trained_alike({**steps, "model": "previous"}, None)  # rounds fine-tune their history
    assert not _trained_alike(steps, {**steps, "steps": 2000})


def test_an_interrupted_simulation_resumes_where_it_stopped(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boxloop.simulate as sim_mod

    def run(out: Path) -> list[dict]:
        result = simulate(
            digits / "pool", strategies=["random", "least_confidence"], initial=8, budget=5, rounds=2, seeds=[0],
            out=out, backend_factory=lambda classes: FakeBackend(classes),
        )
        with open(result.csv) as f:
            return list(csv.DictReader(f))

    whole = run(tmp_path / "whole")
    real, calls = sim_mod.run_round, []

    def cut(ws, plan, **k):  # type: ignore[no-untyped-def]
        calls.append((ws.root.name, plan.strategy))
        if len(calls) == 5:  # least_confidence's second round: killed mid-simulation
            raise KeyboardInterrupt
        return real(ws, plan, **k)

    monkeypatch.setattr(sim_mod, "run_round", cut)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut")
    with open(tmp_path / "cut" / "simulation.csv") as f:  # what finished is already on disk
        assert [r["strategy"] for r in csv.DictReader(f)] == ["random"] * 3
    calls.clear()
    assert run(tmp_path / "cut") == whole  # the same curves as the uninterrupted run
    # random's 3 rounds and least_confidence's first are not run again
    assert calls == [("least-confidence-s0", "least_confidence")] * 2 + [("full-data-s0", "full-data")]
    ws = Workspace.open(tmp_path / "cut" / "least-confidence-s0")
    assert [r.round for r in ledger.history(ws.store)] == [1, 2, 3]
    ws.close()
    monkeypatch.setattr(sim_mod, "run_round", real)
    with pytest.raises(InputError, match=r"other settings \(budget: 5 then, 4 now\)"):
        simulate(digits / "pool", strategies=["random"], initial=8, budget=4, rounds=2, seeds=[0],
                 out=tmp_path / "cut", backend_factory=FakeBackend)


def test_a_finished_simulation_runs_further_when_asked_for_more_rounds(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boxloop.simulate as sim_mod

    def run(out: Path, rounds: int) -> list[dict]:
        result = simulate(
            digits / "pool", strategies=["random", "least_confidence"], initial=8, budget=5, rounds=rounds, seeds=[0],
            out=out, backend_factory=lambda classes: FakeBackend(classes),
        )
        with open(result.csv) as f:
            return list(csv.DictReader(f))

    whole = run(tmp_path / "whole", 3)
    short = run(tmp_path / "grown", 1)
    assert [(r["strategy"], r["labeled_images"]) for r in short] == [
        ("random", "8"), ("random", "13"), ("least_confidence", "8"), ("least_confidence", "13"),
    ]
    ws = Workspace.open(tmp_path / "grown" / "random-s0")
    assert not ledger.selected(ws.store, 2)  # the last round trained and evaluated only
    ws.close()
    real, calls = sim_mod.run_round, []

    def counted(ws, plan, **k):  # type: ignore[no-untyped-def]
        calls.append((ws.root.name, plan.budget))
        return real(ws, plan, **k)

    monkeypatch.setattr(sim_mod, "run_round", counted)
    assert run(tmp_path / "grown", 3) == whole  # the same curves as a run made with 3 rounds from the start
    # per strategy: round 2 selects now (its training is kept), rounds 3 and 4 run; the reference is kept
    assert calls == [(name, b) for name in ("random-s0", "least-confidence-s0") for b in (5, 5, 0)]
    ws = Workspace.open(tmp_path / "grown" / "least-confidence-s0")
    history = ledger.history(ws.store)
    assert [r.round for r in history] == [1, 2, 3, 4]
    assert history[1].seconds.keys() >= {"train", "evaluate", "select", "pull"}
    ws.close()
    calls.clear()
    assert run(tmp_path / "grown", 1) == short  # fewer rounds read the first ones, and train nothing
    assert calls == []


def test_a_real_ultralytics_round_resumes_after_an_interruption(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boxloop.modeling as modeling

    ws = make_ws(tmp_path, digits)
    real = modeling.predict
    calls = {"n": 0}

    def interrupted(*a, **k):  # type: ignore[no-untyped-def]
        if k.get("ids") is None:  # the pool pass, not the evaluation's test-split pass
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt  # the first pool prediction is cut off
        return real(*a, **k)

    monkeypatch.setattr(modeling, "predict", interrupted)
    plan = RoundPlan(budget=4, strategy="least_confidence", train={"model": "yolov8n.yaml", "epochs": 1, "imgsz": 64, "batch": 8})
    with pytest.raises(KeyboardInterrupt):
        run_round(ws, plan)
    steps = ledger.step_results(ws.store, 1)
    assert steps["train"]["status"] == "done" and steps["evaluate"]["status"] == "done"
    assert steps["predict"]["status"] == "failed"
    rec = run_round(ws, plan)
    assert rec.round == 1 and rec.model_version == "m001"
    assert [v["id"] for v in ws.store.model_versions()] == ["m001"]  # trained once
    assert any((ws.runs_dir / "m001").rglob("best.pt"))
    assert len(ws.store.selection().item_ids) == 4
    assert len(ws.store.predictions("m001")) >= 30  # the pool (and the test split) predicted


def test_a_warm_started_round_fine_tunes_the_last_rounds_model(tmp_path: Path, digits: Path) -> None:
    import yaml

    ws = make_ws(tmp_path, digits)
    train = {"model": "previous", "scratch": "yolov8n.yaml", "epochs": 1, "imgsz": 64, "batch": 8}
    first = run_round(ws, RoundPlan(budget=2, strategy="least_confidence", train=train))
    second = run_round(ws, RoundPlan(budget=2, strategy="least_confidence", train=train))
    assert (first.model_version, second.model_version) == ("m001", "m002")
    started = {}
    for version in ("m001", "m002"):
        args = next((ws.runs_dir / version).rglob("args.yaml"))
        started[version] = str(yaml.safe_load(args.read_text())["model"])
    assert started["m001"] == "yolov8n.yaml"  # nothing trained yet: from scratch
    weights = {v["id"]: v["path"] for v in ws.store.model_versions()}
    assert Path(started["m002"]) == Path(weights["m001"])  # round 2 starts from round 1's weights


def test_the_full_data_reference_can_train_longer_than_a_round(tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boxloop.simulate as sim_mod

    real, plans = sim_mod.run_round, []

    def spy(ws, plan, **k):  # type: ignore[no-untyped-def]
        plans.append((plan.strategy, dict(plan.train)))
        return real(ws, plan, **k)

    monkeypatch.setattr(sim_mod, "run_round", spy)
    simulate(
        digits / "pool", strategies=["random"], initial=8, budget=5, rounds=1, seeds=[0], out=tmp_path / "sim",
        train={"model": "previous", "epochs": 3}, full_data_train={"epochs": 9}, backend_factory=FakeBackend,
    )
    m = {"allow_missing_classes": True}  # a seeded start of 8 images may miss a digit
    assert plans == [("random", {"model": "previous", "epochs": 3, **m})] * 2 + [("full-data", {"epochs": 9, **m})]


def test_a_consistency_round_predicts_the_mirrored_pool_too(tmp_path: Path, digits: Path) -> None:
    ws = make_ws(tmp_path, digits)
    run_round(ws, RoundPlan(budget=3, strategy="consistency", backend=FakeBackend(CLASSES)))
    pool = ws.store.items(state="unlabeled")
    assert len(ws.store.predictions("fake-r1@hflip")) == len(ws.store.predictions("fake-r1", [i.id for i in pool]))
    sel = ws.store.selection()
    assert len(sel.item_ids) == 3 and all("consistency" in str(sel.why[i]) for i in sel.item_ids)


def test_work_done_before_the_first_round_is_round_0_of_the_ledger(tmp_path: Path, digits: Path) -> None:
    """Step by step (train, evaluate, predict, a pre-labeled zip out and back) before any
    `boxloop round`: history shows it as round 0, and round 1 says what it bought since."""
    from boxloop.export import export
    from boxloop.modeling import evaluate_model, predict
    from boxloop.report.html import render_report
    from boxloop.split import assign_splits

    ws = make_ws(tmp_path, digits)
    assert ledger.history(ws.store) == []
    backend = FakeBackend(CLASSES)
    assign_splits(ws.store, val=0.2, test=0.2, seed=0)
    ws.store.add_model_version("fake-by-hand", backend="fake", classes=ws.classes, round=0)
    _, metrics = evaluate_model(ws, model="fake-by-hand", backend=backend)
    predict(ws, model="fake-by-hand", scope="unlabeled", backend=backend)
    export(ws, format="yolo", what="prelabeled", zip=True, out=tmp_path / "batch.zip")
    add_labels(ws, tmp_path / "batch.zip", format="yolo")  # corrected elsewhere: here, kept as drawn

    [zero] = ledger.history(ws.store)
    assert (zero.round, zero.model_version, zero.labeled_images) == (0, "fake-by-hand", 24)
    assert zero.map50_95 == metrics["map50_95"] and zero.per_class_ap == metrics["per_class_ap"]
    assert zero.acceptance["items"] == 30 and zero.acceptance["adjusted"] == zero.acceptance["deleted"] == 0
    shown = flat(CliRunner().invoke(app, ["-w", str(ws.root), "history"]).output)
    assert flat("round 0: before the first `boxloop round`") in shown and flat("next: `boxloop round`") in shown
    page = render_report(ws)
    assert '<tr data-round="0"><td>0</td><td>24</td>' in page and "round 0 is what was done before" in page
    assert "no evaluated rounds yet" not in page and "no corrected batch back yet" not in page

    rec = run_round(ws, RoundPlan(budget=5, backend=backend))
    assert [r.round for r in ledger.history(ws.store)] == [0, 1] and rec.labeled_images == 54
    assert "54 labeled images (+30)" in ledger.describe_round(ws.store, rec)
    assert "since round 0" in ledger.describe_round(ws.store, rec)
    with open(ws.runs_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["round"], r["model_version"], r["accepted"]) for r in rows] == [
        ("0", "fake-by-hand", str(zero.acceptance["accepted"])), ("1", "fake-r1", "")
    ]
    ws.store.add_model_version("fake-later", backend="fake", classes=ws.classes)  # made after round 1 began
    evaluate_model(ws, model="fake-later", backend=backend)
    assert [r.model_version for r in ledger.history(ws.store)] == ["fake-by-hand", "fake-r1"]
    assert ledger.models_outside_rounds(ws.store) == []  # weights of no file: imported predictions, no model

    # `boxloop serve` retrains (or `boxloop train` by hand) after round 1: not a round, listed apart with its labels
    picked = ws.store.items(split="train")[0].id  # a person adds a box on a labeled image
    old = ws.store.latest_labels([picked])[picked]
    ws.store.add_label(picked, Detections(np.vstack([old.xyxy, [[1, 1, 9, 9]]]).astype(np.float32),
                                          np.append(old.class_id, 0)), source="person")
    ws.store.add_model_version("m-served", backend="fake", classes=ws.classes, path=str(tmp_path / "served.pt"),
                               meta={"seconds": 12.0})
    _, served = evaluate_model(ws, model="m-served", backend=backend)
    [outside] = ledger.models_outside_rounds(ws.store)
    assert (outside.round, outside.model_version, outside.labeled_images) == (1, "m-served", 54)
    assert outside.labeled_boxes == rec.labeled_boxes + 1
    assert outside.map50_95 == served["map50_95"] and outside.seconds == {"train": 12.0}
    assert [r.model_version for r in ledger.history(ws.store)] == ["fake-by-hand", "fake-r1"]
    shown = CliRunner().invoke(app, ["-w", str(ws.root), "history"], terminal_width=200).output
    assert flat("models trained outside the rounds (`boxloop serve`, `boxloop train`)") in flat(shown)
    row = next(line for line in shown.splitlines() if "m-served" in line)
    assert row.split("│")[1:-1] and [c.strip() for c in row.split("│")[1:4]] == ["1", "54", str(outside.labeled_boxes)]
    lines = CliRunner().invoke(app, ["-w", str(ws.root), "history", "--csv"]).output.splitlines()
    assert lines[0].startswith("round,labeled_images,labeled_boxes,model_version,map50,map50_95")
    assert [line.split(",")[:2] for line in lines[1:]] == [["0", "24"], ["1", "54"]]
    import json

    status = json.loads(CliRunner().invoke(app, ["-w", str(ws.root), "status", "--json"]).output)
    assert status["by_state"]["labeled"] == 54 and status["unfinished_round"] is None
    assert {"id": "m-served", "map50": served["map50"], "map50_95": served["map50_95"]} in status["model_versions"]
    assert status["next"].startswith("every image is labeled") or status["next"].startswith("boxloop round")
    page = render_report(ws)
    assert "Models trained outside the rounds" in page
    assert f'<tr data-model="m-served"><td>1</td><td>54</td><td>{outside.labeled_boxes}</td>' in page


def test_round_0_is_the_model_trained_by_hand_even_when_it_was_not_evaluated(tmp_path: Path, digits: Path) -> None:
    """`boxloop train` alone before the first round (no `evaluate`): round 0 is that model and
    the labels it trained on, its mAP not measured, so round 1 still says what it added."""
    from boxloop.split import assign_splits

    ws = make_ws(tmp_path, digits)
    assign_splits(ws.store, val=0.2, test=0.2, seed=0)
    ws.store.add_model_version("fake-by-hand", backend="fake", classes=ws.classes, round=0, path=str(tmp_path / "best.pt"))
    [zero] = ledger.history(ws.store)
    assert (zero.model_version, zero.labeled_images, zero.map50_95) == ("fake-by-hand", 24, None)
    rec = run_round(ws, RoundPlan(budget=5, backend=FakeBackend(CLASSES)))
    assert [r.model_version for r in ledger.history(ws.store)] == ["fake-by-hand", "fake-r1"]
    said = ledger.describe_round(ws.store, rec)
    assert "24 labeled images (+0)" in said and "since round" not in said  # round 0 has no mAP to compare
    # another detector's predictions brought in later are no round-0 model until evaluated
    ws2 = make_ws(tmp_path / "two", digits)
    ws2.store.add_model_version("trained", backend="fake", classes=ws2.classes, path=str(tmp_path / "best.pt"))
    ws2.store.add_model_version("ext-1", backend="imported", classes=ws2.classes)
    assert [r.model_version for r in ledger.history(ws2.store)] == ["trained"]


def test_a_simulation_scores_every_strategy_on_the_datasets_own_test_folder(tmp_path: Path) -> None:
    """A YOLO dataset laid out train/ + test/ (Roboflow, Ultralytics): its test images are the
    frozen test split of every strategy, not a seeded draw."""
    data = tmp_path / "data"
    generate_images(data / "train", n=20, seed=0, size=(96, 64))
    generate_images(data / "test", n=4, seed=9, size=(96, 64))
    simulate(data, strategies=["random"], initial=6, budget=4, rounds=1, seeds=[0], out=tmp_path / "sim",
             backend_factory=lambda classes: FakeBackend(classes))
    own = {p.name for p in (data / "test" / "images").iterdir()}
    ws = Workspace.open(tmp_path / "sim" / "random-s0")
    assert {Path(it.uri).name for it in ws.store.items(split="test")} == own


def test_a_round_keeps_its_picks_apart_from_the_labeled_images(tmp_path: Path, digits: Path) -> None:
    """Diversity and novelty compare the pool with the labeled training images, embedded by
    the round's own model (each new model sees them anew); the test split's images, which
    teach no model, are left out. Here the pool holds re-encoded copies of labeled images
    beside new ones: novelty picks only new ones."""
    from PIL import Image

    ws = make_ws(tmp_path, digits)
    copies = tmp_path / "copies"
    copies.mkdir()
    for i, src in enumerate(sorted((digits / "labeled" / "images").iterdir())[:15]):
        Image.open(src).save(copies / f"copy_{i}.jpg", quality=70)
    add_images(ws, [copies])
    copy_ids = {it.id for it in ws.store.items() if Path(it.uri).parent == copies}
    assert len(copy_ids) == 15
    rec = run_round(ws, RoundPlan(budget=5, strategy="novelty", backend=FakeBackend(CLASSES)))
    labeled = set(ws.store.latest_labels())
    tested = {it.id for it in ws.store.items(split="test")}
    embedded, _ = ws.store.embeddings(rec.model_version, sorted(labeled))
    assert labeled - tested <= set(embedded) and tested
    pool, _ = load_pool(ws.store, rec.model_version, need={"embeddings"})
    assert set(pool.labeled_ids) == labeled - tested  # evaluate embedded the test split: it covers nothing
    sel = ws.store.selection()
    assert len(sel.item_ids) == 5 and not set(sel.item_ids) & copy_ids
    # the default strategy's diverse batches embed them too, with the next model
    rec2 = run_round(ws, RoundPlan(budget=5, backend=FakeBackend(CLASSES)))
    assert ledger.step_results(ws.store, 2)["predict"]["result"]["labeled_embedded"] >= len(labeled - tested)
    # the random baseline compares nothing: no labeled image is embedded for it
    rec3 = run_round(ws, RoundPlan(budget=5, strategy="random", backend=FakeBackend(CLASSES)))
    assert rec2.model_version != rec3.model_version
    tested = {it.id for it in ws.store.items(split="test")}
    assert set(ws.store.embeddings(rec3.model_version, sorted(ws.store.latest_labels()))[0]) <= tested


def test_a_waiting_round_says_how_the_wait_ends_once_not_every_poll(tmp_path: Path, digits: Path) -> None:
    from boxloop.loop import _pull

    class Slow:
        name = "slow"

        def __init__(self) -> None:
            self.left = [3, 3, 3, 1, 0]

        def pull(self, ws, selection):  # type: ignore[no-untyped-def]
            n = self.left.pop(0)
            return {"done": n == 0, "waiting_for": n}

    ws = make_ws(tmp_path, digits)
    rec = run_round(ws, RoundPlan(budget=3, backend=FakeBackend(CLASSES)))
    results = {"select": ledger.step_results(ws.store, rec.round)["select"]["result"],
               "push": {"path": "/ws/exports/round-1-prelabeled.zip"}}
    said: list[str] = []
    out = _pull(ws, RoundPlan(budget=3, poll_seconds=0), Slow(), results, said.append, lambda s: None)
    assert out["done"]
    assert len(said) == 2  # 3 left (said once over three polls), then 1 left
    assert said[0] == ("waiting for 3 image(s) to be labeled: bring /ws/exports/round-1-prelabeled.zip back corrected "
                       "with `boxloop add labels` (from another shell); Ctrl-C stops, and the same command goes on waiting")
    assert said[1].startswith("waiting for 1 image(s)")
