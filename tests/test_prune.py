"""`boxloop prune`: a workspace with a really trained model version, a run cut off and an
out-of-fold audit's held-out model gives back what nothing needs, lists it before, and never
touches a model version's weights or a picture."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from _console import flat
from _tiny_data import CLASSES, TRAIN_ARGS, fill_workspace, make_yolo_dataset, ultralytics_offline
from boxloop.cli import app
from boxloop.workspace import Workspace

runner = CliRunner()


def test_prune_lists_first_then_gives_back_what_nothing_needs(tmp_path: Path) -> None:
    from boxloop import modeling

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=8, n_val=4, n_test=0, seed=4)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data", splits=("train", "val"))
    done = modeling.train(ws, model="yolov8n.yaml", epochs=1, imgsz=64, batch=4, extra=TRAIN_ARGS)
    weights = Path(ws.store.model_version(done.version)["path"])
    last = ws.runs_dir / done.version / "weights" / "last.pt"
    assert weights.is_file() and last.is_file() and weights != last
    cut = ws.runs_dir / "m002"  # a run cut off before it saved anything but its inputs
    cut.mkdir()
    (cut / "run_inputs.json").write_text('{"fingerprint": "x", "settings": {}}')
    fold = ws.runs_dir / "audit-folds" / "fold-1-of-2" / "weights"
    fold.mkdir(parents=True)
    (fold / "best.pt").write_bytes(b"0" * 1000)
    pictures = sorted(p.name for p in (tmp_path / "data").rglob("*.png"))
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not Path(f"/proc/{pid}").exists())
    killed = ws.root / "exports" / f".yolo-all-20261207-225340.{dead}.52340837.tmp"  # an export killed (kill -9)
    (killed / "images").mkdir(parents=True)
    (killed / "images" / "a.jpg").write_bytes(b"0" * 100)
    writing = ws.root / "exports" / f".batch.{os.getpid()}.ab12cd34.tmp"  # one being written now
    writing.write_bytes(b"0")
    status = flat(runner.invoke(app, ["status", "-w", str(ws.root)]).output)
    assert flat("training runs stopped before saving an epoch: m002 (nothing to go on from") in status
    assert "trainingrunscutoff" not in status

    listed = runner.invoke(app, ["prune", "-w", str(ws.root)])
    assert listed.exit_code == 0, listed.output
    out = flat(listed.output)
    assert flat(f"runs/{done.version}/weights/last.pt") in out and flat("checkpoint of a finished run") in out
    assert flat("runs/m002") in out and flat("runs/audit-folds/fold-1-of-2") in out
    assert flat(killed.name) in out and flat("left half-written by a command killed while writing it") in out
    assert writing.name not in out
    assert flat("nothing removed: boxloop prune --yes removes them") in out
    assert last.is_file() and cut.is_dir() and fold.is_dir()

    removed = runner.invoke(app, ["prune", "--yes", "-w", str(ws.root)])
    assert removed.exit_code == 0, removed.output
    assert flat("removed 4,") in flat(removed.output)
    assert not last.exists() and not cut.exists() and not fold.parent.exists() and not killed.exists()
    assert writing.is_file()
    assert weights.is_file()  # the model version's own weights stay, and it still predicts
    assert modeling.predict(ws, scope="labeled", imgsz=64).items == 12
    assert sorted(p.name for p in (tmp_path / "data").rglob("*.png")) == pictures
    again = runner.invoke(app, ["prune", "-w", str(ws.root)])
    assert "nothing to prune" in again.output
    assert any((ws.root / "shrunk").iterdir())  # the training copies of the 160x120 pictures at 64
    copies = runner.invoke(app, ["prune", "--shrunk", "--yes", "-w", str(ws.root)])
    assert flat("removed 1,") in flat(copies.output) and not (ws.root / "shrunk").exists()
