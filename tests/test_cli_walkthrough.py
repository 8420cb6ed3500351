"""README's "Using it on your data", command by command through the CLI: init from a
data.yaml, add labels and a pool, split, status, export, a round with real training whose
selection goes out as a pre-labeled zip, the ledger (`history`) and the report."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _console import flat
from _tiny_data import ultralytics_offline
from boxloop.cli import app
from boxloop.synth import CLASSES, generate_images

runner = CliRunner()


@pytest.mark.slow
def test_readme_walkthrough_from_init_to_history(tmp_path: Path) -> None:
    ultralytics_offline(tmp_path / "ultralytics")
    generate_images(tmp_path / "lcd", n=16, seed=0, size=(96, 64))
    generate_images(tmp_path / "unlabeled", n=10, seed=1, size=(96, 64))
    ws = tmp_path / "project"

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, [*args, "-w", str(ws)] if args[0] != "init" else list(args))
        assert result.exit_code == code, result.output
        return result.output

    out = run("init", str(ws), "--classes-from", str(tmp_path / "lcd" / "data.yaml"))
    assert f"with {len(CLASSES)} classes: {', '.join(CLASSES)}" in " ".join(out.split())
    out = run("init", str(ws), "--classes", "cat,dog", code=1)  # an existing project keeps its classes
    assert "classes can only be added" in out
    assert "next:boxloopaddlabelsPATH--formatyolo" in flat(run("status"))  # status says what to run next
    assert "16 new image(s)" in run("add", "labels", str(tmp_path / "lcd"), "--format", "yolo")
    assert "10 new image(s)" in run("add", "images", str(tmp_path / "unlabeled" / "images"))
    assert "totals:train10,val3,test3" in flat(run("split", "--val", "0.2", "--test", "0.2", "--seed", "0"))
    assert "next:boxloopround--budget50:train,evaluate,pre-labelthepool" in flat(run("status"))
    exported = tmp_path / "exported"
    run("export", "--format", "yolo", "--out", str(exported))
    per_split = {d.name: len(list(d.glob("*.txt"))) for d in (exported / "labels").iterdir()}
    assert per_split == {"train": 10, "val": 3, "test": 3} and (exported / "data.yaml").is_file()

    assert "no rounds yet" in run("history")
    out = run("round", "--budget", "4", "--push", "files", "--model", "yolov8n.yaml", "--epochs", "1",
              "--imgsz", "64", "--batch", "4")
    assert "round 1: model m001, 16 labeled images" in " ".join(out.split())
    (archive,) = (ws / "exports").rglob("*.zip")
    assert (f"batchtolabel:{archive}(4images,pre-labeled);correctitinanytool,then:boxloopaddlabelsZIP(thetool's"
            "exportasitis,orafolder)") in flat(out)
    with zipfile.ZipFile(archive) as z:
        assert len([n for n in z.namelist() if n.startswith("images/")]) == 4  # the selection, pre-drawn

    # the notebook's zip: the batch pre-labeled, the class map and the training run behind it
    run("export", "--selection", "latest", "--zip", "--with-model", "--out", str(tmp_path / "handoff"))
    with zipfile.ZipFile(tmp_path / "handoff.zip") as z:
        names = set(z.namelist())
    assert {"model/best.pt", "model/args.yaml", "model/results.csv", "classmap.yaml", "data.yaml"} <= names
    assert len([n for n in names if n.startswith("labels/")]) == 4
    assert "nomodelversion'm009'" in flat(run("export", "--with-model", "--model-version", "m009", code=1))

    assert "next:4image(s)areoutforlabeling:boxlooppull" in flat(run("status"))
    out = run("history")
    assert "m001" in out and flat(out).endswith(f"csv:{ws / 'runs' / 'history.csv'}")
    with open(ws / "runs" / "history.csv") as f:
        (row,) = csv.DictReader(f)
    assert row["round"] == "1" and row["labeled_images"] == "16" and row["model_version"] == "m001"
    assert row["accepted"] == ""  # nothing came back yet

    # the batch comes back corrected (here: as it went out, the zip as it is) and the ledger counts it for round 1
    assert "4 image(s) came back unchanged, as pre-labeled" in " ".join(run("add", "labels", str(archive)).split())
    run("history")
    with open(ws / "runs" / "history.csv") as f:
        (row,) = csv.DictReader(f)
    assert row["deleted"] == "0" and row["added"] == "0" and row["accepted"] != ""
    assert f"{ws / 'report.html'}" in flat(run("report"))
