"""Rough edges a user test found in selecting: predictions imported from another detector
(no embeddings) and embeddings stored by `boxloop embed` under the newest trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from _images import write_image
from boxloop.backends.fake import FakeBackend
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.modeling import predict
from boxloop.selection import select
from boxloop.store import Store
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace

runner = CliRunner()
CLASSES = ["cat", "dog"]


def cli(ws: Workspace, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["-w", str(ws.root), *args])


@pytest.fixture
def imported(tmp_path: Path) -> Workspace:
    """30 pool images with predictions imported as ext-1 (YOLO txt with confidences, no
    embeddings), 4 labeled images, and m001, a trained model registered but not yet embedding."""
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    src = tmp_path / "photos"
    for k in range(34):
        write_image(src / f"img{k:02d}.jpg", size=(80, 60), seed=k)
    result = cli(ws, "add", "images", str(src))
    assert result.exit_code == 0, result.output
    items = sorted(ws.store.items(), key=lambda it: it.name)
    for it in items[:4]:
        ws.store.add_label(it.id, Detections(np.array([[10, 10, 40, 40]], np.float32), np.array([0])), source="test")
    preds = tmp_path / "ext"
    preds.mkdir()
    for k, it in enumerate(items[4:]):
        (preds / f"{Path(it.name).stem}.txt").write_text(f"{k % 2} 0.5 0.5 0.3 0.3 {0.1 + 0.025 * k:.3f}\n")
    result = cli(ws, "add", "predictions", str(preds), "--model-version", "ext-1")
    assert result.exit_code == 0, result.output
    assert len(ws.store.predictions("ext-1")) == 30
    ws.store.add_model_version("m001", backend="ultralytics", classes=CLASSES, path=str(tmp_path / "best.pt"))
    return ws


def embed_with_m001(ws: Workspace) -> None:
    """What `boxloop embed` does: every image's embedding from the newest trained model, kept
    under its version, no boxes (the fake backend stands in for m001's network)."""
    report = predict(ws, backend=FakeBackend(CLASSES), model="m001", scope="all", keep="embeddings")
    assert report.items == 34 and not report.problems
    assert not ws.store.predictions("m001")


def test_diversity_on_imported_predictions_uses_the_embeddings_embed_stored(imported: Workspace) -> None:
    # before `boxloop embed`: the error names a command that exists and stores them
    result = cli(imported, "select", "--diverse", "--budget", "5", "--seed", "1")
    assert result.exit_code == 1
    out = flat(result.output)
    assert flat("30 of the 30 pool items have none from model version 'ext-1'") in out
    assert flat("run `boxloop embed`") in out and flat("with a backend that returns embeddings") not in out
    embed_with_m001(imported)

    result = cli(imported, "select", "--diverse", "--budget", "5", "--seed", "1")
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert flat("embeddings (diversity, novelty, near-duplicates) from model version 'm001'") in out
    assert flat("model version 'ext-1', whose predictions are scored, has none for 30 of the 30") in out
    sel = imported.store.selection()
    assert sel.model_version == "ext-1" and len(sel.item_ids) == 5
    assert sel.config["selector"] == "diverse" and sel.config["embeddings_model_version"] == "m001"
    assert any("from model version 'm001'" in n for n in sel.config["notes"])
    assert all(sel.why[i]["selector"] == "diverse" for i in sel.item_ids)
    explained = cli(imported, "select", "--explain", sel.item_ids[0])
    assert "model version ext-1 (embeddings from m001), strategy" in " ".join(explained.output.split())

    # [select] diverse = true (the default boxloop.toml) keeps diversity too, no longer dropped
    result = cli(imported, "select", "--budget", "5", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert flat("ranking without diversity") not in flat(result.output)
    sel = imported.store.selection()
    assert sel.config["selector"] == "diverse" and sel.config["embeddings_model_version"] == "m001"

    # novelty measures against the labeled images' embeddings from the same model version
    result = cli(imported, "select", "--strategy", "least_confidence:1,novelty:1", "--no-diverse", "--budget", "3",
                 "--seed", "3")
    assert result.exit_code == 0, result.output
    sel = imported.store.selection()
    nearest = {sel.why[i]["components"]["novelty"]["details"]["nearest_labeled"] for i in sel.item_ids}
    labeled = set(imported.store.latest_labels())
    assert nearest <= labeled and sel.config["embeddings_model_version"] == "m001"


def test_with_config_diversity_and_no_embeddings_anywhere_the_note_names_embed(imported: Workspace) -> None:
    result = cli(imported, "select", "--budget", "5", "--seed", "1")
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert flat("ranking without diversity; run `boxloop embed`") in out
    assert imported.store.selection().config["embeddings_model_version"] is None


def test_the_newest_model_version_covering_the_pool_lends_its_embeddings() -> None:
    s = Store.memory()
    s.set_classes(CLASSES)
    ids = [f"img-{k}" for k in range(4)]
    for i in ids:
        s.add_item(Item(i, f"/p/{i}.jpg", 64, 48, f"sha-{i}"))
    s.put_predictions("ext-1", {i: Detections(np.array([[1, 1, 9, 9]], np.float32), [0], [0.3]) for i in ids})
    rng = np.random.default_rng(0)
    for v in ("m001", "m002", "m003"):
        s.add_model_version(v, backend="ultralytics", classes=CLASSES, path=f"/runs/{v}/best.pt")
    s.put_embeddings("m001", {i: rng.normal(size=8).astype(np.float32) for i in ids})
    s.put_embeddings("m002", {i: rng.normal(size=8).astype(np.float32) for i in ids})
    s.put_embeddings("m003", {i: rng.normal(size=8).astype(np.float32) for i in ids[:2]})  # newest, but half
    report = select(s, budget=2, strategy="least_confidence", diverse=True, seed=0, model_version="ext-1")
    assert report.selection.config["embeddings_model_version"] == "m002"
    assert report.selection.config["selector"] == "diverse"
    # the scored version's own embeddings win when it has them all
    s.put_embeddings("ext-1", {i: rng.normal(size=8).astype(np.float32) for i in ids})
    report = select(s, budget=2, strategy="least_confidence", diverse=True, seed=0, model_version="ext-1")
    assert report.selection.config["embeddings_model_version"] == "ext-1"
    assert not any("embeddings (diversity" in n for n in report.notes)


def test_no_trained_model_the_error_says_embed_with_a_weights_file() -> None:
    s = Store.memory()
    s.set_classes(CLASSES)
    s.add_item(Item("a", "/p/a.jpg", 64, 48, "sha-a"))
    s.add_item(Item("b", "/p/b.jpg", 64, 48, "sha-b"))
    s.put_predictions("ext-1", {i: Detections(np.zeros((0, 4), np.float32), [], []) for i in "ab"})
    with pytest.raises(InputError, match=r"2 of the 2 pool items have none from model version 'ext-1', and no other "
                       r"model version has them for the whole pool; run `boxloop embed --model WEIGHTS.pt`"):
        select(s, budget=1, strategy="least_confidence", diverse=True)
