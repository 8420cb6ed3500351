"""A workspace moved or copied to another folder keeps working: the paths it stored of its own
files (pictures unpacked under imports/, model weights under runs/) follow it. Once, a moved
workspace refused to export or train ("their file is no longer where it was added from"), and
a copy predicted with the original's weights."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from _images import write_image
from boxloop.ingest import add_labels
from boxloop.workspace import ROOT_KEY, Workspace


def _workspace_with_a_zip_and_a_model(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    (data / "classes.txt").write_text("cat\n")
    for i in range(3):
        write_image(data / "images" / f"p{i}.jpg", size=(64, 48), seed=i)
        (data / "labels" / f"p{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    archive = tmp_path / "labels.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in data.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(data).as_posix())
    shutil.rmtree(data)  # only the zip's unpacked copy under imports/ is left
    ws = Workspace.init(tmp_path / "ws", ["cat"])
    add_labels(ws, archive, format="yolo")
    weights = ws.runs_dir / "m001" / "weights" / "best.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    ws.store.add_model_version("m001", backend="ultralytics", classes=["cat"], path=str(weights),
                               meta={"run_dir": str(ws.runs_dir / "m001")})
    ws.store.conn.close()
    return ws.root


def _paths(ws: Workspace) -> tuple[list[str], str, str]:
    (model,) = ws.store.model_versions()
    return [it.uri for it in ws.store.items()], str(model["path"]), str(model["meta"]["run_dir"])


def test_a_moved_workspace_finds_its_own_files_where_it_now_is(tmp_path: Path) -> None:
    root = _workspace_with_a_zip_and_a_model(tmp_path)
    moved = tmp_path / "elsewhere" / "ws"
    moved.parent.mkdir()
    shutil.move(root, moved)
    ws = Workspace.open(moved)
    uris, weights, run_dir = _paths(ws)
    assert len(uris) == 3 and all(u.startswith(f"{moved}/imports/") and Path(u).is_file() for u in uris)
    assert weights == str(moved / "runs" / "m001" / "weights" / "best.pt") and Path(weights).is_file()
    assert run_dir == str(moved / "runs" / "m001")
    assert ws.store.get_meta(ROOT_KEY) == str(moved)


def test_a_copy_uses_its_own_files_and_the_original_keeps_its_own(tmp_path: Path) -> None:
    root = _workspace_with_a_zip_and_a_model(tmp_path)
    Workspace.open(root).store  # noqa: B018 (opened once where it is: the store records its place)
    copy = tmp_path / "branch"
    shutil.copytree(root, copy)
    uris, weights, _ = _paths(Workspace.open(copy))
    assert all(u.startswith(f"{copy}/") for u in uris) and weights.startswith(f"{copy}/runs/")
    uris, weights, _ = _paths(Workspace.open(root))
    assert all(u.startswith(f"{root}/") for u in uris) and weights.startswith(f"{root}/runs/")


def test_a_store_from_before_it_kept_its_place_is_found_from_its_models(tmp_path: Path) -> None:
    root = _workspace_with_a_zip_and_a_model(tmp_path)
    ws = Workspace.open(root)
    ws.store.conn.execute("DELETE FROM meta WHERE key = ?", (ROOT_KEY,))
    ws.store.conn.commit()
    ws.store.conn.close()
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    uris, weights, _ = _paths(Workspace.open(moved))
    assert all(u.startswith(f"{moved}/imports/") for u in uris) and weights.startswith(f"{moved}/runs/m001/")


def test_the_same_workspace_reached_through_a_link_rewrites_nothing(tmp_path: Path) -> None:
    root = _workspace_with_a_zip_and_a_model(tmp_path)
    Workspace.open(root).store  # noqa: B018 (opened where it is)
    link = tmp_path / "link-to-ws"
    link.symlink_to(root)
    uris, weights, _ = _paths(Workspace.open(link))
    assert all(u.startswith(f"{root}/") for u in uris) and weights.startswith(f"{root}/runs/")
