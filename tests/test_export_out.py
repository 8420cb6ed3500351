"""`boxloop export --out`: an export replaces only an earlier export. A folder of anything else
(the dataset the labels came from, the workspace, a folder holding it), a file, or a folder
named like the zip is left as it is; once, `--out ../srccopy` replaced a dataset by the export
and `--zip --out ../batch-7.zip` deleted the image folder batch-7/."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _console import flat
from _images import tree_snapshot
from _tiny_data import CLASSES, make_yolo_dataset
from boxloop.cli import app
from boxloop.workspace import Workspace

runner = CliRunner()


@pytest.fixture
def labeled(tmp_path: Path) -> tuple[Workspace, Path]:
    """A workspace whose labels (and images) were added from the YOLO folder ``data``, no split yet."""
    data = tmp_path / "data"
    make_yolo_dataset(data, n_train=10, n_val=0, seed=3)
    (data / "README_mine.txt").write_text("my notes\n")
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    result = runner.invoke(app, ["-w", str(ws.root), "add", "labels", str(data)])
    assert result.exit_code == 0, result.output
    return ws, data


def export(ws: Workspace, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["-w", str(ws.root), "export", *args], terminal_width=200)
    return result.exit_code, flat(result.output)


def test_an_export_leaves_a_folder_of_anything_else_as_it_is(labeled: tuple[Workspace, Path], tmp_path: Path) -> None:
    ws, data = labeled
    before = tree_snapshot(data)
    code, out = export(ws, "--out", str(data))  # "export back into my dataset folder"
    assert code == 1 and flat("exists and holds files of its own") in out and "Traceback" not in out
    assert tree_snapshot(data) == before
    for where, said in ((ws.root, "that is the workspace"), (tmp_path, "a folder holding the workspace")):
        code, out = export(ws, "--out", str(where))
        assert code == 1 and flat(said) in out
    assert (ws.root / "boxloop.toml").is_file() and tree_snapshot(data) == before
    code, out = export(ws, "--out", ".")  # run from elsewhere: the current folder holds files
    assert code == 1 and "Traceback" not in out
    (tmp_path / "afile").write_text("x")
    code, out = export(ws, "--out", str(tmp_path / "afile" / "x"))
    assert code == 1 and flat("is a file, not a folder") in out
    code, out = export(ws, "--out", str(tmp_path / "afile"))
    assert code == 1 and flat("afile is a file; give a folder") in out and (tmp_path / "afile").read_text() == "x"

    # a new folder, then the same again: an earlier export is replaced
    code, out = export(ws, "--out", str(tmp_path / "out"))
    assert code == 0, out
    (tmp_path / "out" / "stale.txt").write_text("from the first export's time")
    code, out = export(ws, "--out", str(tmp_path / "out"))
    assert code == 0, out
    assert (tmp_path / "out" / "data.yaml").is_file() and not (tmp_path / "out" / "stale.txt").exists()
    assert len(list((tmp_path / "out").rglob("*.png"))) == 10
    # an earlier export the workspace's images were then added from is not replaced: they would go
    ws2 = Workspace.init(tmp_path / "ws2", CLASSES)
    assert runner.invoke(app, ["-w", str(ws2.root), "add", "labels", str(tmp_path / "out")]).exit_code == 0
    code, out = export(ws2, "--out", str(tmp_path / "out"))
    assert code == 1 and flat("the workspace's image") in out and flat("is in it") in out


def test_a_zip_export_touches_only_its_zip(labeled: tuple[Workspace, Path], tmp_path: Path) -> None:
    ws, _ = labeled
    batch = tmp_path / "batch-7"  # a folder named like the zip, beside it
    batch.mkdir()
    (batch / "keep.txt").write_text("keep")
    code, out = export(ws, "--zip", "--out", str(tmp_path / "batch-7.zip"))
    assert code == 0, out
    assert (batch / "keep.txt").read_text() == "keep"
    with zipfile.ZipFile(tmp_path / "batch-7.zip") as z:
        assert "data.yaml" in z.namelist() and len([n for n in z.namelist() if n.endswith(".png")]) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch-7", "batch-7.zip", "data", "ws"]  # nothing left aside
    code, out = export(ws, "--zip", "--out", str(tmp_path / "batch-7"))  # without .zip: batch-7.zip, replaced
    assert code == 0, out
    assert (batch / "keep.txt").read_text() == "keep"

    mine = tmp_path / "important.zip"
    with zipfile.ZipFile(mine, "w") as z:
        z.writestr("notes.txt", "mine")
    code, out = export(ws, "--zip", "--out", str(mine))
    assert code == 1 and flat("is not a zip boxloop exported") in out
    with zipfile.ZipFile(mine) as z:
        assert z.namelist() == ["notes.txt"]


def test_an_export_before_any_split_keeps_no_split(labeled: tuple[Workspace, Path], tmp_path: Path) -> None:
    """An export only looks: its train/val folders are dealt as a split would deal them, but the
    store keeps none of it, so `boxloop split --test` still makes a test split (once it made none)."""
    ws, _ = labeled
    code, out = export(ws, "--out", str(tmp_path / "look"))
    assert code == 0, out
    assert len(list((tmp_path / "look" / "images" / "train").glob("*.png"))) == 8
    assert len(list((tmp_path / "look" / "images" / "val").glob("*.png"))) == 2
    assert all(it.split is None for it in ws.store.items())
    result = runner.invoke(app, ["-w", str(ws.root), "split", "--val", "0.2", "--test", "0.2"])
    assert result.exit_code == 0, result.output
    assert len(ws.store.items(split="test")) == 2


def test_an_output_that_cannot_be_written_is_refused_before_the_work(labeled: tuple[Workspace, Path], tmp_path: Path) -> None:
    """--out under a file, or in a folder no file can be made in (/proc, even for root): one
    line naming it, exit 1, and nothing done (select once saved its selection, then failed
    with a traceback)."""
    ws, _ = labeled
    (tmp_path / "afile").write_text("x")
    for args in (["score", "--out", str(tmp_path / "afile" / "s.csv")], ["select", "--budget", "2", "--out", "/proc/x.csv"],
                 ["report", "--out", "/proc/r.html"], ["export-model", "--out", str(tmp_path / "afile" / "m.onnx")],
                 ["audit", "--out", str(tmp_path / "afile" / "a.csv")]):
        result = runner.invoke(app, ["-w", str(ws.root), *args], terminal_width=200)
        out = flat(result.output)
        assert result.exit_code == 1 and "Traceback" not in out, (args, result.output)
        assert flat("is a file, not a folder") in out or flat("this user cannot write in /proc") in out, (args, out)
    assert ws.store.conn.execute("SELECT COUNT(*) FROM selections").fetchone()[0] == 0
