"""`boxloop round --push labelstudio --wait --rounds 2` as a user runs it: the real CLI in its
own process, a real Label Studio, real Ultralytics training (tiny). The test plays the
annotator through Label Studio's API: it labels each batch the round pushed, the waiting
round pulls the labels, and the next round trains on them and pushes the next batch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _processes import stop_process
from boxloop.annotation.labelstudio import ITEM_KEY
from boxloop.ledger import history
from boxloop.synth import CLASSES, generate_images
from boxloop.workspace import Workspace

pytestmark = pytest.mark.slow

BOXLOOP = Path(sys.executable).with_name("boxloop")


def truth_regions(labels_dir: Path, image: Path, width: int, height: int) -> list[dict]:
    """The generated image's true boxes as Label Studio rectangle regions (percent)."""
    rows = np.loadtxt(labels_dir / f"{image.stem}.txt", ndmin=2).reshape(-1, 5)
    return [{
        "from_name": "label", "to_name": "image", "type": "rectanglelabels",
        "original_width": width, "original_height": height,
        "value": {"x": 100 * (cx - w / 2), "y": 100 * (cy - h / 2), "width": 100 * w, "height": 100 * h,
                  "rotation": 0, "rectanglelabels": [CLASSES[int(c)]]},
    } for c, cx, cy, w, h in rows]


def label_open_tasks(
    client, title: str, ws_root: Path, labels_dir: Path, *, want: int, timeout: float, only: int | None = None
) -> int:
    """Wait for ``want`` unlabeled tasks in the project, then annotate each (or the first
    ``only``) with its truth."""
    deadline = time.monotonic() + timeout
    while True:
        projects = [p for p in client.projects.list() if p.title == title]
        tasks = [t.dict() for t in client.tasks.list(project=projects[0].id, fields="all", page_size=100)] if projects else []
        todo = [t for t in tasks if not t.get("total_annotations")]
        if len(todo) >= want:
            break
        assert time.monotonic() < deadline, f"no batch of {want} tasks came (tasks: {len(tasks)})"
        time.sleep(0.5)
    with Workspace.open(ws_root) as ws:
        for t in todo[:only]:
            item = ws.store.get_item(t["data"][ITEM_KEY])
            regions = truth_regions(labels_dir, Path(item.uri), item.width, item.height)
            client.annotations.create(id=t["id"], result=regions)
    return len(todo[:only])


def test_round_waits_for_label_studio_then_trains_on_the_labels(tmp_path, ls_media, ls_server, client):
    data = ls_media / "made" / f"wait-{tmp_path.name}"  # under the server's document root
    generate_images(data / "seed", n=14, seed=0, size=(96, 64))
    generate_images(data / "pool", n=12, seed=1, size=(96, 64))
    ws = Workspace.init(tmp_path / "ws", classes=list(CLASSES))
    ws.close()
    title = f"wait-{tmp_path.name}"
    env = {
        **os.environ, "LABEL_STUDIO_API_KEY": ls_server.token, "BOXLOOP_LABELSTUDIO_URL": ls_server.url,
        "BOXLOOP_LABELSTUDIO_PROJECT": title, "BOXLOOP_LABELSTUDIO_DOCUMENT_ROOT": str(ls_media),
        "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"), "BOXLOOP_WORKSPACE": str(ws.root),
    }
    for args in (["add", "labels", str(data / "seed")], ["add", "images", str(data / "pool" / "images")]):
        subprocess.run([str(BOXLOOP), *args], env=env, check=True, capture_output=True, timeout=120)

    log = tmp_path / "round.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BOXLOOP), "round", "--budget", "3", "--push", "labelstudio", "--wait", "--rounds", "2", "--poll", "0.5",
             "--model", "yolov8n.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4", "--allow-missing-classes"],
            env={**env, "COLUMNS": "200"}, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        for rnd in (1, 2):  # each round pushes 3 tasks and waits until they are labeled
            labeled = label_open_tasks(client, title, ws.root, data / "pool" / "labels", want=3, timeout=240)
            assert labeled == 3, f"round {rnd}"
        assert proc.wait(timeout=240) == 0, log.read_text()
    finally:
        stop_process(proc)
    said = " ".join(log.read_text().split())
    assert "round 1: model m001, 14 labeled images" in said
    assert "round 2: model m002, 17 labeled images (+3), mAP50" in said  # trained on round 1's batch
    assert "since round 1)" in said  # and says what the batch bought
    assert f"its batch went to Label Studio project '{title}'" in said and "(3 new task(s)), was labeled and pulled" in said
    assert "when they are labeled, the next boxloop round" not in said  # --wait pulled them itself

    with Workspace.open(ws.root) as done:
        assert done.store.count_by_state()["labeled"] == 14 + 6
        records = history(done.store)
        assert [r.round for r in records] == [1, 2] and [r.model_version for r in records] == ["m001", "m002"]
        # the pull step counted what the annotator did with the pre-labels of each batch
        for r in records:
            assert sum(r.acceptance.get(k, 0) for k in ("accepted", "adjusted", "added")) > 0, r
        assert {v["source"].split(":")[0] for i in done.store.latest_labels() for v in done.store.label_versions(i)} \
            >= {"labelstudio"}

    # without --wait: round 3 pushes its batch and ends; two of the three get labeled; the next
    # round pulls them before it trains (no `boxloop pull` needed)
    round_args = [str(BOXLOOP), "round", "--budget", "3", "--push", "labelstudio", "--model", "yolov8n.yaml",
                  "--epochs", "1", "--imgsz", "64", "--batch", "4", "--allow-missing-classes"]
    third = subprocess.run(round_args, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=240)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "when they are labeled, the next boxloop round pulls them first" in " ".join(third.stdout.split())
    assert label_open_tasks(client, title, ws.root, data / "pool" / "labels", want=3, timeout=30, only=2) == 2
    fourth = subprocess.run([*round_args[:3], "0", *round_args[4:]], env={**env, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=240)
    assert fourth.returncode == 0, fourth.stdout + fourth.stderr
    said = " ".join(fourth.stdout.split())
    assert "before the round, from Label Studio: pulled from project" in said and "2 newly labeled" in said
    assert "round 4: model m004, 22 labeled images (+2)" in said
