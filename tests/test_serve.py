"""`boxloop serve` against a real Label Studio: a real uvicorn process (started here, stopped
by PID), registered on a project through the Label Studio API, asked by Label Studio for
predictions, and retrained in the background (real Ultralytics, tiny, 1 epoch) when
annotations made through the API reach the threshold.

One backend process serves the module: starting it (torch, the model) and the first
training are the slow parts.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from _ls_server import LabelStudioServer, free_port
from _tiny_data import CLASSES, TRAIN_ARGS, draw_image, ultralytics_offline
from boxloop.formats.labelstudio import box_regions, label_config
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace

pytestmark = pytest.mark.slow

SIZE = (96, 72)
TRAIN_EVERY = 4
N_TASKS = 6


@dataclass
class Backend:
    """A running `boxloop serve` process."""

    url: str
    auth: tuple[str, str]
    proc: subprocess.Popen
    log_path: Path

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, auth=kw.pop("auth", self.auth), timeout=30, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.url + path, auth=kw.pop("auth", self.auth), timeout=120, **kw)

    def stop(self, timeout: float = 30) -> None:
        """Stop the server and its training job (one process group) by PID."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def basic(auth: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


class Elsewhere:
    """An HTTP server on another port that counts every request it gets (it must get none)."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"not for you")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_images(folder: Path, n: int, seed: int) -> list[tuple[Path, list]]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img, boxes = draw_image(rng, size=SIZE)
        path = folder / f"{folder.name}_{i:02d}.png"
        cv2.imwrite(str(path), img[:, :, ::-1])
        out.append((path, boxes))
    return out


def set_toml(root: Path, **keys: object) -> None:
    """Edit boxloop.toml as a user would: the first ``key = ...`` line (batch: [train]'s)."""
    toml = root / "boxloop.toml"
    text = toml.read_text()
    for key, value in keys.items():
        value = f'"{value}"' if isinstance(value, str) else value
        text, n = re.subn(rf"^{key} = \S+", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    toml.write_text(text)


def start_backend(ws: Workspace, ls: LabelStudioServer, project: int, tmp: Path) -> Backend:
    port = free_port()
    auth = ("ml", secrets.token_hex(8))
    log_path = tmp / "serve.log"
    env = {
        **os.environ, "LABEL_STUDIO_API_KEY": ls.token, "BOXLOOP_BASIC_AUTH": f"{auth[0]}:{auth[1]}",
        "BOXLOOP_WORKSPACE": str(ws.root), "BOXLOOP_NO_PROGRESS": "1", "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(tmp / "ultralytics-config"), "YOLO_VERBOSE": "False",
    }
    env.pop("BOXLOOP_LOG", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from boxloop.cli import main; main()", "serve", "--port", str(port),
             "--connect", str(project)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True,
        )
    backend = Backend(f"http://127.0.0.1:{port}", auth, proc, log_path)
    deadline = time.monotonic() + 180
    try:
        while "registered as ML backend" not in backend.log_tail(200):
            if proc.poll() is not None:
                pytest.fail(f"boxloop serve exited with {proc.returncode}:\n{backend.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"boxloop serve not registered after 180 s:\n{backend.log_tail()}", pytrace=False)
            time.sleep(0.3)
    except BaseException:
        backend.stop()
        raise
    return backend


def retrieve_predictions(ls: LabelStudioServer, project: int) -> None:
    r = httpx.post(
        f"{ls.url}/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": True, "excluded": []}}, headers={"Authorization": f"Token {ls.token}"},
        timeout=300,
    )
    assert r.status_code == 200, r.text


def project_tasks(client, project: int) -> dict[int, dict]:
    return {t.id: t.dict() for t in client.tasks.list(project=project, fields="all", page_size=100)}


@pytest.fixture(scope="module")
def served(tmp_path_factory, ls_server, ls_media):
    """A workspace with a first model (m001, trained here on 6 labeled images), a Label Studio
    project of 6 more images imported directly (local files, not pushed by boxloop), and
    `boxloop serve --connect` running on it with basic auth."""
    from label_studio_sdk import LabelStudio

    from boxloop import modeling

    tmp = tmp_path_factory.mktemp("serve")
    ultralytics_offline(tmp / "ultralytics-config")
    name = f"serve-{tmp.name}"
    labeled = write_images(ls_media / "made" / f"{name}-labeled", 6, seed=1)
    pool = write_images(ls_media / "made" / name, N_TASKS, seed=2)

    ws = Workspace.init(tmp / "ws", classes=CLASSES)
    set_toml(ws.root, epochs=1, imgsz=64, batch=4, conf=0.001, prelabel_conf=0.001, train_every=TRAIN_EVERY,
             url=ls_server.url)
    ws = Workspace.open(ws.root)
    for path, boxes in labeled:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        ws.store.add_item(Item(digest[:16], str(path), *SIZE, digest))
        ws.store.add_label(digest[:16], Detections(np.array([b[1:] for b in boxes]), [b[0] for b in boxes]),
                           source="test")
    first = modeling.train(ws, extra=TRAIN_ARGS, allow_missing_classes=True)
    assert first.version == "m001"
    ws.close()

    client = LabelStudio(base_url=ls_server.url, api_key=ls_server.token)
    project = client.projects.create(title=name, label_config=label_config(CLASSES, with_why=False)).id
    client.import_storage.local.create(project=project, path=str(ls_media / "made" / name), use_blob_urls=True)
    images = {f"/data/local-files/?d=made/{name}/{p.name}": (p, boxes) for p, boxes in pool}
    client.projects.import_tasks(id=project, request=[{"data": {"image": ref}} for ref in images],
                                 return_task_ids=True)
    backend = start_backend(ws, ls_server, project, tmp)
    elsewhere = Elsewhere()
    state = {"ws_root": ws.root, "project": project, "backend": backend, "client": client, "images": images,
             "elsewhere": elsewhere, "job_pids": []}
    try:
        yield state
    finally:
        elsewhere.close()
        backend.stop()
        assert backend.proc.poll() is not None
        # stopped, it says Label Studio still lists it, and how it answers again
        assert " ".join(f"still lists this ML backend ({backend.url})".split()) in " ".join(backend.log_tail(40).split())
        for pid in state["job_pids"]:
            assert not alive(pid), f"training job {pid} outlived the server"


def in_process_entry(ws_root: Path, version: str, path: Path) -> dict:
    """What the model predicts for an image in this process, as a /predict entry."""
    from boxloop.backends.ultralytics import load_backend
    from boxloop.formats.labelstudio import parse_label_config
    from boxloop.modeling import decode_file
    from boxloop.server.protocol import prediction_entry

    with Workspace.open(ws_root) as ws:
        v = ws.store.model_version(version)
        backend = load_backend(v["path"], classes=CLASSES)
        d = backend.predict([decode_file(str(path))], conf=ws.config.predict.conf, iou=ws.config.predict.iou)[0]
        return prediction_entry(
            d.detections, classes=CLASSES, config=parse_label_config(label_config(CLASSES)), width=SIZE[0],
            height=SIZE[1], model_version=version,
            prelabel_conf=ws.prelabel_conf(version),
        )


def test_label_studio_gets_predictions_and_retrains_the_model_as_people_annotate(served, ls_server):
    client, project, backend = served["client"], served["project"], served["backend"]

    # registered through the Label Studio API: interactive, connected, with boxloop's model version
    (ml,) = [m for m in client.ml.list(project=project) if m.url.rstrip("/") == backend.url]
    assert ml.is_interactive and ml.readable_state == "Connected" and ml.model_version == "m001"
    p = client.projects.get(id=project)
    assert p.show_collab_predictions and p.evaluate_predictions_automatically and p.model_version == "boxloop"

    # Label Studio retrieves predictions for every task: they are boxloop's, under its version
    retrieve_predictions(ls_server, project)
    tasks = project_tasks(client, project)
    assert len(tasks) == N_TASKS
    regions = 0
    for t in tasks.values():
        (pred,) = [q for q in t["predictions"] if q["model_version"] == "m001"]
        path, _ = served["images"][t["data"]["image"]]
        expected = in_process_entry(served["ws_root"], "m001", path)
        assert pred["score"] == pytest.approx(expected["score"], abs=1e-3)
        regions += len(pred["result"])
        if pred["result"] and expected["result"]:
            # a 1-epoch model's boxes sit near the threshold; the strongest one is stable
            got, want = pred["result"][0], expected["result"][0]
            assert got["value"]["rectanglelabels"] == want["value"]["rectanglelabels"]
            assert got["score"] == pytest.approx(want["score"], abs=1e-3)
            for k in ("x", "y", "width", "height"):
                assert got["value"][k] == pytest.approx(want["value"][k], abs=0.05)
            assert (got["original_width"], got["original_height"]) == SIZE
    assert regions > 0

    # people annotate through the API until the threshold: each one is a webhook
    ids = sorted(tasks)
    annotated: dict[int, tuple[Path, list]] = {}
    for tid in ids[:TRAIN_EVERY]:
        path, boxes = served["images"][tasks[tid]["data"]["image"]]
        result = box_regions(np.array([b[1:] for b in boxes]), [CLASSES[b[0]] for b in boxes],
                             width=SIZE[0], height=SIZE[1])
        client.annotations.create(id=tid, result=result)
        annotated[tid] = (path, boxes)
        deadline = time.monotonic() + 60  # generous: CI machines can be loaded
        while backend.get("/status").json()["events"].get("ANNOTATION_CREATED") != len(annotated):
            assert time.monotonic() < deadline, f"no webhook for annotation {len(annotated)}:\n{backend.log_tail()}"
            time.sleep(0.2)
    status = backend.get("/status").json()
    assert status["annotations_since_training"] == 0  # the 4th started a training (its thread picks it up)
    assert status["job"]["runs"] == 1 or status["job"]["queued"]

    # the training runs in the background, in its own process, and reports a new version
    deadline = time.monotonic() + 400
    while True:
        status = backend.get("/status").json()
        job = status["job"]["current"] or status["job"]["last"]
        if job and job.get("pid") and job["pid"] not in served["job_pids"]:
            served["job_pids"].append(job["pid"])
        if status["job"]["last"] is not None and status["job"]["state"] == "idle":
            break
        assert backend.get("/health").status_code == 200  # the server answers during training
        assert time.monotonic() < deadline, f"training did not finish:\n{backend.log_tail()}"
        time.sleep(1)
    last = status["job"]["last"]
    assert last["state"] == "done", f"{last['error']}\n{backend.log_tail()}"
    # the job's process told the server how far it was, last the evaluation after its epochs
    (written,) = (Path(served["ws_root"]) / "runs" / "serve").glob("job-*.progress.json")
    assert json.loads(written.read_text())["step"] == "evaluating"
    assert last["pid"] != backend.proc.pid and not alive(last["pid"])
    result = last["result"]
    assert result["model_version"] == "m002" and result["warm_start_from"] == "m001"
    assert result["adopted"] == TRAIN_EVERY and result["pulled"]["labeled"] == TRAIN_EVERY
    assert status["model_version"] == "m002"
    assert status["last_evaluation"]["split"] == "test" and 0.0 <= status["last_evaluation"]["map50"] <= 1.0
    assert status["announced"]["model_version"] == "m002" and "error" not in status["announced"]

    # the annotations became human label versions of new workspace items, box for box
    with Workspace.open(served["ws_root"]) as ws:
        rows = {r["task_id"]: r for r in ws.store.tasks("labelstudio", str(project))}
        assert sorted(int(k) for k in rows) == sorted(annotated)
        for tid, (path, boxes) in annotated.items():
            item = ws.store.get_item(rows[str(tid)]["item_id"])
            assert Path(item.uri).read_bytes() == path.read_bytes()  # fetched from Label Studio
            (v,) = ws.store.label_versions(item.id)
            assert v["source"].startswith(f"labelstudio:{project}:")
            np.testing.assert_allclose(v["labels"].xyxy, [b[1:] for b in boxes], atol=0.05)
            assert v["labels"].class_id.tolist() == [b[0] for b in boxes]
        assert [m["id"] for m in ws.store.model_versions()] == ["m001", "m002"]
        # what people did with m001's boxes is counted at the threshold serve cut them at
        accepted = {r["item_id"]: r for r in ws.store.acceptance_rows(tool="labelstudio")}
        assert {accepted[r["item_id"]]["prelabel_conf"] for r in rows.values()} == {ws.prelabel_conf("m001")}
        assert {accepted[r["item_id"]]["model_version"] for r in rows.values()} == {"m001"}

    # Label Studio knows the new version, and the next predictions carry it
    (ml,) = [m for m in client.ml.list(project=project) if m.url.rstrip("/") == backend.url]
    assert ml.model_version == "m002"
    retrieve_predictions(ls_server, project)
    tasks = project_tasks(client, project)
    for t in tasks.values():
        (pred,) = [q for q in t["predictions"] if q["model_version"] == "m002"]
        path, _ = served["images"][t["data"]["image"]]
        assert pred["score"] == pytest.approx(in_process_entry(served["ws_root"], "m002", path)["score"], abs=1e-3)

    # a task whose image points elsewhere is refused: no prediction, and nothing is fetched there
    elsewhere = served["elsewhere"]
    client.projects.import_tasks(id=project, request=[{"data": {"image": f"{elsewhere.url}/secret.png"}}])
    retrieve_predictions(ls_server, project)
    odd = [t for t in project_tasks(client, project).values() if t["data"]["image"].startswith(elsewhere.url)]
    assert len(odd) == 1 and odd[0]["predictions"] == []
    assert elsewhere.hits == []
    assert backend.get("/status").json()["failed_tasks"] >= 1


def test_basic_auth_is_enforced_and_foreign_or_climbing_image_urls_are_refused(served):
    backend, elsewhere = served["backend"], served["elsewhere"]
    assert httpx.get(backend.url + "/health").json() == {"status": "UP"}
    before = backend.get("/status").json()
    task = {"id": 1, "data": {"image": f"{elsewhere.url}/secret.png"}}
    body = {"tasks": [task], "project": f"{served['project']}.1", "label_config": label_config(CLASSES)}
    for auth in (None, ("ml", "wrong"), (backend.auth[0], backend.auth[1] + "x")):
        for method, path, kw in [("get", "/status", {}), ("post", "/predict", {"json": body}),
                                 ("post", "/webhook", {"json": {"action": "START_TRAINING"}}),
                                 ("post", "/setup", {"json": {}})]:
            r = getattr(backend, method)(path, auth=auth, **kw)
            assert r.status_code == 401, (auth, path, r.text)
            assert r.json() == {"error": "authentication required (HTTP basic auth)"}
    after = backend.get("/status").json()  # nothing got through
    assert after["events"].get("START_TRAINING", 0) == before["events"].get("START_TRAINING", 0)
    assert after["job"]["runs"] == before["job"]["runs"] and after["predicted_tasks"] == before["predicted_tasks"]

    r = backend.post("/predict", json=body)
    assert r.status_code == 403 and "refused" in r.json()["error"] and elsewhere.url in r.json()["error"]
    climbing = dict(body, tasks=[{"id": 2, "data": {"image": "/data/local-files/?d=../../../etc/passwd"}}])
    r = backend.post("/predict", json=climbing)
    assert r.status_code == 403 and "document root" in r.json()["error"]
    assert elsewhere.hits == []
    r = backend.post("/predict", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and set(r.json()) == {"error"} and "Traceback" not in r.text
    # a body announced over [serve] max_body_bytes is refused before a byte of it is read
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(backend.auth)}\r\n"
            "Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n")
    with socket.create_connection(("127.0.0.1", int(backend.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"max_body_bytes" not in answer and len(answer) < 65536:
            chunk = sock.recv(4096)  # the status line and the JSON body may come in separate packets
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"max_body_bytes" in answer, answer
    log = backend.log_tail(10_000)
    assert backend.auth[1] not in log and "LABEL_STUDIO_API_KEY=" not in log
    status = backend.get("/status").text
    assert backend.auth[1] not in status


def test_the_command_fails_clearly_when_label_studio_refuses_the_registration(tmp_path, ls_server):
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_API_KEY": ls_server.token, "BOXLOOP_WORKSPACE": str(ws.root),
           "YOLO_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from boxloop.cli import main; main()", "serve", "--url", ls_server.url,
         "--port", str(port), "--connect", "no-such-project-anywhere"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 1, out
    assert "no Label Studio project titled 'no-such-project-anywhere'" in out and ls_server.token not in out
    assert "Traceback" not in out


def test_a_wrong_token_fails_before_the_server_says_it_listens(tmp_path, ls_server):
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    env = {**os.environ, "LABEL_STUDIO_API_KEY": "0" * 40, "BOXLOOP_WORKSPACE": str(ws.root), "YOLO_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from boxloop.cli import main; main()", "serve", "--url", ls_server.url,
         "--port", str(free_port()), "--connect", "anything"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "401" in out and "ML backend on" not in out and "Traceback" not in out
