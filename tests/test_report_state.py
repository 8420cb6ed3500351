"""The report's selection gallery says what became of the newest batch: each card the
image's state now, the section what became of the batch as a whole (picked, out for
labeling, released back to the pool, labeled), as the store tells it."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from typer.testing import CliRunner

from _images import write_image
from boxloop.cli import app
from boxloop.ingest import add_images
from boxloop.report import render_report
from boxloop.types import Detections
from boxloop.workspace import Workspace


def _workspace(tmp_path: Path) -> tuple[Workspace, dict[str, str]]:
    """Six photos in the pool (one labeled), predictions for the other five."""
    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    for i in range(6):
        write_image(tmp_path / "photos" / f"p{i}.jpg", size=(120, 80), seed=i)
    add_images(ws, [tmp_path / "photos"])
    ids = {Path(it.uri).stem: it.id for it in ws.store.items()}
    ws.store.add_label(ids["p5"], Detections([[10, 10, 50, 50]], [0]), source="test")
    ws.store.put_predictions("mv1", {
        ids[f"p{k}"]: Detections([[10, 10, 50, 50]], [k % 2], [0.3 + 0.1 * k]) for k in range(5)
    })
    ws.close()
    return ws, ids


def _run(ws: Workspace, *args: str) -> str:
    result = CliRunner().invoke(app, ["-w", str(ws.root), *args])
    assert result.exit_code == 0, result.output
    return result.output


class Gallery:
    """The gallery section of a report page: its heading, summary line and each card's state."""

    def __init__(self, ws: Workspace) -> None:
        with Workspace.open(ws.root) as opened:
            page = render_report(opened)
        section = re.search(r'<section id="gallery">(.*?)</section>', page, re.S)
        assert section, "no gallery section"
        self.html = section.group(1)
        self.heading = unescape(re.search(r"<h2>(.*?)</h2>", self.html).group(1))  # type: ignore[union-attr]
        summary = re.search(r'<p class="batch-state">(.*?)</p>', self.html, re.S)
        assert summary, "no line saying what became of the batch"
        self.summary = unescape(re.sub(r"<[^>]+>", "", summary.group(1)))
        self.states = dict(re.findall(r'<figure class="card" data-item="([^"]+)" data-state="([^"]+)"', self.html))
        self.badges = [unescape(t) for t in re.findall(r'<div class="state state-[^"]+" title="[^"]*">([^<]*)</div>', self.html)]


def test_the_gallery_follows_the_batch_from_picked_to_out_released_and_labeled(tmp_path: Path) -> None:
    ws, ids = _workspace(tmp_path)
    _run(ws, "select", "--budget", "4", "--strategy", "least_confidence", "--no-diverse", "--seed", "0")

    picked = Gallery(ws)  # just picked: the batch to label, nothing sent out
    assert picked.heading == "Current selection"
    assert picked.summary.startswith("4 of 4 in the pool, not out for labeling")
    assert len(picked.states) == 4 and set(picked.states.values()) == {"pool"}

    _run(ws, "export", "--selection", "latest", "--zip", "--out", str(tmp_path / "batch"))
    out = Gallery(ws)
    assert out.heading == "Current selection"
    assert out.summary.startswith("4 of 4 out for labeling")
    assert set(out.states.values()) == {"out"} and set(out.badges) == {"out for labeling"}
    assert "in the exported batch batch.zip since" in out.html  # each card's hover text says where

    _run(ws, "release", "--all")  # nobody will label it: the images are back in the pool
    released = Gallery(ws)
    assert released.heading == "Latest selection"
    assert released.summary.startswith("4 of 4 back in the pool (released)")
    assert set(released.states.values()) == {"released"} and set(released.badges) == {"back in the pool"}
    assert "Nothing of it is left to label" in released.summary

    _run(ws, "add", "labels", str(tmp_path / "batch.zip"))  # it came back after all
    labeled = Gallery(ws)
    assert labeled.heading == "Latest selection"
    assert labeled.summary.startswith("4 of 4 came back labeled")
    assert set(labeled.states.values()) == {"labeled"}
    assert all(re.fullmatch(r"labeled since \d{4}-\d\d-\d\d \d\d:\d\d", b) for b in labeled.badges), labeled.badges
    assert ids["p5"] not in labeled.states  # labeled before, never picked


def test_a_batch_partly_back_says_so_card_by_card(tmp_path: Path) -> None:
    ws, _ = _workspace(tmp_path)
    _run(ws, "select", "--budget", "4", "--strategy", "least_confidence", "--no-diverse", "--seed", "0")
    _run(ws, "export", "--selection", "latest", "--zip", "--out", str(tmp_path / "batch"))
    with Workspace.open(ws.root) as opened:
        picked = list(opened.store.selection("latest").item_ids)
        for item_id in picked[:2]:  # two came back (as a person drew them), two are still out
            opened.store.add_label(item_id, Detections([[5, 5, 40, 40]], [1]), source="test")
    partly = Gallery(ws)
    assert partly.heading == "Latest selection"
    assert partly.summary == "2 of 4 came back labeled · 2 of 4 out for labeling"
    assert [partly.states[i] for i in picked] == ["labeled", "labeled", "out", "out"]


def test_frames_are_named_by_their_video_and_a_frame_labeled_since_is_no_longer_marked_picked(tmp_path: Path) -> None:
    """Every video has a frame_000000.jpg: a card names a frame by its sequence and number. The
    embedding map marks only the picks still to label: one labeled since is a labeled point."""
    import numpy as np

    ws = Workspace.init(tmp_path / "ws", classes=["cat", "dog"])
    for seq in ("cam-a", "cam-b"):
        for i in range(2):
            write_image(tmp_path / seq / f"f{i}.jpg", size=(120, 80), seed=10 * len(seq) + i + (seq == "cam-b") * 5)
    add_images(ws, [tmp_path / "cam-a", tmp_path / "cam-b"], sequence=True)
    frames = {f"{Path(it.uri).parent.name}/{Path(it.uri).stem}": it.id for it in ws.store.items()}
    ws.store.put_predictions("mv1", {i: Detections([[10, 10, 50, 50]], [0], [0.4]) for i in frames.values()})
    ws.store.put_embeddings("mv1", {i: np.eye(4, dtype=np.float32)[k] for k, i in enumerate(frames.values())})
    ws.close()
    _run(ws, "select", "--budget", "4", "--strategy", "least_confidence", "--no-diverse", "--seed", "0")
    with Workspace.open(ws.root) as again:
        again.store.add_label(frames["cam-b/f1"], Detections([[10, 10, 50, 50]], [1]), source="test")
        page = render_report(again)
    gallery = re.search(r'<section id="gallery">(.*?)</section>', page, re.S).group(1)  # type: ignore[union-attr]
    names = sorted(unescape(n) for n in re.findall(r'<span class="name"[^>]*>([^<]*)</span>', gallery))
    assert names == ["cam-a frame 0", "cam-a frame 1", "cam-b frame 0", "cam-b frame 1"]
    embedding = re.search(r'<section id="embeddings">(.*?)</section>', page, re.S).group(1)  # type: ignore[union-attr]
    assert embedding.count("· selected ·") == 3 and "cam-b frame 1 · labeled" in unescape(embedding)
