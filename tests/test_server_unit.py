"""`boxloop serve` logic without a model or a Label Studio: the image allow-list, protocol
conversions, the training worker's coalescing, and the FastAPI app over the fake backend
(FastAPI's TestClient; images served by httpx.MockTransport)."""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from boxloop.backends.fake import FakeBackend
from boxloop.errors import BackendError, InputError, SyncError
from boxloop.formats.labelstudio import label_config, parse_label_config, parse_regions
from boxloop.server.images import (
    FetchPolicy,
    ImageFetcher,
    ImageRefused,
    ImageUnavailable,
    parse_allowed,
)
from boxloop.server.protocol import prediction_entry, project_id, task_score, webhook_event
from boxloop.server.service import LoadedModel, Service
from boxloop.server.training import Job, SubprocessJob, TrainingWorker
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace

LS = "http://ls.test:8080"
CDN = "https://cdn.test/img/"
TOKEN = "a" * 40
CLASSES = ["cat", "dog", "car"]


def png(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def fetcher(handler, **policy) -> ImageFetcher:
    kw = {"allowed": (CDN, "s3://bucket/"), **policy}
    return ImageFetcher(FetchPolicy(LS, **kw), token=lambda: TOKEN, transport=httpx.MockTransport(handler))


# -- where images may come from ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "kind", "url"),
    [
        ("/data/local-files/?d=coco128/a.jpg", "ls", LS + "/data/local-files/?d=coco128/a.jpg"),
        ("/data/upload/3/abc-a.png", "ls", LS + "/data/upload/3/abc-a.png"),
        ("http://ls.test:8080/data/upload/3/a.png", "ls", "http://ls.test:8080/data/upload/3/a.png"),
        (CDN + "a/b.png", "http", CDN + "a/b.png"),
        ("s3://bucket/x/a.png", "fsspec", "s3://bucket/x/a.png"),
        ("s3://other/a.png", "ls", LS + "/tasks/7/resolve/?fileuri="
         + base64.urlsafe_b64encode(b"s3://other/a.png").decode()),
    ],
)
def test_images_from_label_studio_or_allowed_storage_are_planned(ref, kind, url):
    plan = fetcher(lambda r: httpx.Response(500)).plan(ref, task_id=7)
    assert (plan.kind, plan.url) == (kind, url)


def test_localhost_and_127_are_the_same_label_studio_host():
    f = ImageFetcher(FetchPolicy("http://127.0.0.1:8080"))
    assert f.plan("http://localhost:8080/data/upload/1/a.png").kind == "ls"
    with pytest.raises(ImageRefused):
        f.plan("http://localhost:8081/data/upload/1/a.png")


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("/data/local-files/?d=../etc/passwd", "document root"),
        ("/data/local-files/?d=coco128/../../etc/passwd", "document root"),
        ("/data/local-files/?d=%2e%2e/secret.png", "document root"),
        ("/data/local-files/?d=/etc/passwd", "document root"),
        ("/data/local-files/?d=%252e%252e/secret.png", "document root"),
        ("/data/local-files/", r"needs one \?d="),
        ("/data/upload/../../etc/passwd", "climbs"),
        ("/data/upload/%2e%2e/%2e%2e/etc/passwd", "climbs"),
        ("/api/projects/", "not a Label Studio media path"),
        ("/tasks/abc/resolve/", "not a Label Studio media path"),
        ("http://ls.test:9999/data/upload/1/a.png", "neither the Label Studio server"),
        ("http://evil.test/a.png", "neither the Label Studio server"),
        ("https://cdn.test/private/a.png", "neither"),
        ("https://cdn.test.evil.test/img/a.png", "neither"),
        ("https://cdn.test@evil.test/img/a.png", "neither"),
        ("http://ls.test:8080@evil.test/data/upload/1/a.png", "neither"),
        ("https://cdn.test/img/../private/a.png", "neither"),
        ("//evil.test/a.png", "scheme-relative"),
        ("file:///etc/passwd", "not read"),
        ("images/a.png", "bare path"),
        ("", "no image"),
    ],
)
def test_images_anywhere_else_are_refused(ref, why):
    with pytest.raises(ImageRefused, match=why):
        fetcher(lambda r: httpx.Response(500)).plan(ref, task_id=7)


def test_a_cloud_uri_outside_allowed_storage_needs_the_task_to_be_resolved():
    with pytest.raises(ImageRefused, match="needs the task id"):
        fetcher(lambda r: httpx.Response(500)).plan("gs://other/a.png")


def test_allowed_storage_must_be_folder_urls():
    assert parse_allowed(" s3://b/ , https://CDN.test ") == ("s3://b/", "https://cdn.test/")
    for bad in ("cdn.test/img", "ftp://x/", "https://x/a/../b", "https://x/?q=1"):
        with pytest.raises(InputError, match="allowed_storage"):
            parse_allowed(bad)


def test_the_token_goes_to_label_studio_only():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=png())

    f = fetcher(handler)
    assert f.load("/data/local-files/?d=coco128/a.png").image.shape == (48, 64, 3)
    assert f.load(CDN + "a.png").image.shape == (48, 64, 3)
    assert seen[0].headers["authorization"] == f"Token {TOKEN}" and seen[0].url.host == "ls.test"
    assert "authorization" not in seen[1].headers and seen[1].url.host == "cdn.test"


def test_a_redirect_elsewhere_is_refused_and_never_followed():
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"location": "http://evil.test/steal.png"})

    with pytest.raises(ImageRefused, match="redirected to http://evil.test/steal.png"):
        fetcher(handler).fetch("/data/upload/1/a.png")
    assert hosts == ["ls.test"]


def test_a_redirect_to_allowed_storage_is_followed_without_the_token():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "ls.test":
            return httpx.Response(303, headers={"location": CDN + "signed.png?X-Amz-Signature=secret"})
        return httpx.Response(200, content=png())

    assert fetcher(handler).load("s3://other/a.png", task_id=3).image.shape == (48, 64, 3)
    assert [r.url.host for r in seen] == ["ls.test", "cdn.test"]
    assert "authorization" in seen[0].headers and "authorization" not in seen[1].headers


def test_images_over_the_size_limit_are_not_read():
    big = png(200, 200)
    f = fetcher(lambda r: httpx.Response(200, content=big), max_bytes=1000)
    with pytest.raises(ImageUnavailable, match="max_image_bytes"):
        f.fetch("/data/upload/1/a.png")

    def streamed(request: httpx.Request) -> httpx.Response:  # no Content-Length: counted while read
        return httpx.Response(200, content=iter([big[:600], big[600:]]))

    with pytest.raises(ImageUnavailable, match="larger than"):
        fetcher(streamed, max_bytes=1000).fetch("/data/upload/1/a.png")


@pytest.mark.parametrize("with_ultralytics", [False, True])
def test_unreadable_images_name_the_reason_without_secrets(with_ultralytics):
    if with_ultralytics:  # it patches Image.open: unknown bytes then raise ImportError (no pi_heif)
        import ultralytics.utils.patches  # noqa: F401

    f = fetcher(lambda r: httpx.Response(404))
    with pytest.raises(ImageUnavailable, match="not found"):
        f.fetch(CDN + "gone.png?X-Amz-Signature=secret")
    try:
        f.fetch(CDN + "gone.png?X-Amz-Signature=secret")
    except ImageUnavailable as e:
        assert "secret" not in str(e)
    with pytest.raises(ImageUnavailable, match="refused access"):
        fetcher(lambda r: httpx.Response(401)).fetch("/data/upload/1/a.png")
    with pytest.raises(ImageUnavailable, match="cannot decode"):
        fetcher(lambda r: httpx.Response(200, content=b"not an image")).load("/data/upload/1/a.png")


# -- the protocol ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [(12, 12), ("12", 12), ("12.1712345678", 12), ({"id": 7, "title": "x"}, 7), (None, None), ("", None)],
)
def test_project_ids_in_every_form_label_studio_sends(value, expected):
    assert project_id(value) == expected


def test_a_bad_project_id_is_an_input_error():
    with pytest.raises(InputError, match="not a Label Studio project id"):
        project_id("../etc")


def test_a_doubtful_image_scores_above_a_confident_one():
    def one(conf: float, probs: list[float]) -> Detections:
        return Detections(np.array([[0, 0, 10, 10]]), [int(np.argmax(probs))], [conf],
                          {"class_probs": np.array([probs], np.float32)})

    sure = task_score(one(0.95, [0.98, 0.01, 0.01]), 3)
    torn = task_score(one(0.9, [0.5, 0.45, 0.05]), 3)
    faint = task_score(one(0.3, [0.98, 0.01, 0.01]), 3)
    empty = task_score(Detections.empty(with_confidence=True), 3)
    assert sure < faint < torn  # background counts as a class: 1 - max(0.7 background) < 1 - 0.45
    assert 0.0 < empty <= 1.0


def test_a_prediction_entry_keeps_shown_boxes_of_labeled_classes_in_percent():
    lc = parse_label_config(label_config(["cat", "car"]))
    d = Detections(
        np.array([[10, 12, 42, 36], [0, 0, 8, 8], [5, 5, 20, 20]], np.float32), [0, 0, 1], [0.8, 0.1, 0.9],
        {"class_probs": np.eye(3, dtype=np.float32)[[0, 0, 1]]},
    )
    entry = prediction_entry(d, classes=CLASSES, config=lc, width=64, height=48, model_version="m007",
                             prelabel_conf=0.25)
    assert entry["model_version"] == "m007" and 0 <= entry["score"] <= 1
    (region,) = entry["result"]  # the 0.1 box is under the threshold; "dog" is not in the project
    assert region["value"]["rectanglelabels"] == ["cat"] and region["score"] == pytest.approx(0.8)
    assert (region["original_width"], region["original_height"]) == (64, 48)
    from boxloop.errors import Problems

    xyxy, names, _ = parse_regions(entry["result"], where="t", problems=Problems())
    assert list(names) == ["cat"]
    np.testing.assert_allclose(xyxy, [[10, 12, 42, 36]], atol=1e-3)


@pytest.mark.parametrize(
    ("body", "annotations", "train"),
    [
        ({"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "project": {"id": 3}}, 1, False),
        ({"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "was_cancelled": True}, "project": 3}, 0, False),
        ({"action": "ANNOTATION_UPDATED", "annotation": {"id": 1}, "project": {"id": 3}}, 1, False),
        ({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}, {"id": 2}], "project": {"id": 3}}, 2, False),
        ({"action": "START_TRAINING", "project": {"id": 3}}, 0, True),
        ({"action": "PROJECT_UPDATED", "project": {"id": 3}}, 0, False),
    ],
)
def test_webhook_events_count_annotations(body, annotations, train):
    event = webhook_event(body)
    assert (event.project, event.annotations, event.train) == (3, annotations, train)


# -- the training worker ------------------------------------------------------------------------
class BlockingRunner:
    """A training job that waits to be released, recording each run's reasons."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.runs: list[list[str]] = []

    def __call__(self, job: Job) -> dict:
        self.runs.append(list(job.reasons))
        self.started.set()
        assert self.release.wait(10)
        return {"model_version": f"m{len(self.runs):03d}"}


def test_triggers_during_a_training_coalesce_into_one_next_run():
    runner = BlockingRunner()
    done: list[Job] = []
    worker = TrainingWorker(runner, on_done=done.append)
    assert worker.trigger("first") == "started"
    assert runner.started.wait(5)
    assert [worker.trigger(f"more {i}") for i in range(3)] == ["queued"] * 3
    status = worker.status()
    assert status["state"] == "running" and status["queued"] and status["current"]["number"] == 1
    runner.release.set()
    assert worker.wait_idle(10)
    assert runner.runs == [["first"], ["more 0", "more 1", "more 2"]]
    assert [j.result["model_version"] for j in done] == ["m001", "m002"]
    assert worker.status()["last"]["state"] == "done" and worker.status()["runs"] == 2
    worker.close()
    assert worker.trigger("late") == "closed"


def test_a_failed_training_is_recorded_and_the_worker_goes_on():
    calls = []

    def run(job: Job) -> dict:
        calls.append(job.number)
        if job.number == 1:
            raise InputError("no labeled images to train on")
        return {"model_version": "m001"}

    worker = TrainingWorker(run)
    worker.trigger("a")
    assert worker.wait_idle(5)
    last = worker.status()["last"]
    assert last["state"] == "failed" and last["error"] == "no labeled images to train on"
    worker.trigger("b")
    assert worker.wait_idle(5)
    assert worker.status()["last"]["state"] == "done" and calls == [1, 2]
    worker.close()


def test_a_subprocess_job_needs_a_project_and_a_token(tmp_path):
    job = SubprocessJob(tmp_path, url=LS, project=lambda: None, token=lambda: TOKEN)
    with pytest.raises(SyncError, match="no Label Studio project"):
        job(Job(1, ["x"]))
    job = SubprocessJob(tmp_path, url=LS, project=lambda: 3, token=lambda: None)
    with pytest.raises(SyncError, match="LABEL_STUDIO_API_KEY"):
        job(Job(1, ["x"]))


# -- the app over the fake backend ---------------------------------------------------------------
class Harness:
    """A Service on a real workspace with the fake backend, a recording training runner, a
    recording announcer, and images served by a MockTransport."""

    def __init__(self, root: Path, *, token: str | None = TOKEN, backend=None, with_model: bool = True,
                 **serve: int) -> None:
        Workspace.init(root, classes=CLASSES).close()
        toml = root / "boxloop.toml"
        text = toml.read_text()
        for key, value in {"train_every": 3, **serve}.items():  # edit [serve] as a user would
            text = re.sub(rf"^{key} = \S+", f"{key} = {value}", text, flags=re.M)
        toml.write_text(text)
        self.ws = Workspace.open(root)
        self.backend = backend or FakeBackend(CLASSES, max_boxes=4)
        self.version = "fake-1"
        self.loads: list[str | None] = []
        self.announced: list[tuple[int, str]] = []
        self.runner = BlockingRunner()
        self.with_model = with_model
        self.requests: list[httpx.Request] = []
        self.service = Service(
            self.ws, url=LS, token=token, loader=self.loader, runner=self.runner,
            transport=httpx.MockTransport(self.serve), announce=lambda p, v: self.announced.append((p, v)),
        )
        self.service.load_model()

    def loader(self, ws, version):
        self.loads.append(version)
        if not self.with_model and version is None:
            return None
        return LoadedModel(version or self.version, self.backend, time.time())

    def serve(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        stem = Path(request.url.path).stem
        return httpx.Response(200, content=png(64, 48, int(stem) if stem.isdigit() else 0))

    def client(self, auth: tuple[str, str] | None = None):
        from fastapi.testclient import TestClient

        from boxloop.server.app import create_app

        return TestClient(create_app(self.service, basic_auth=auth), raise_server_exceptions=False)


def tasks(n: int, *, start: int = 1) -> list[dict]:
    return [{"id": i, "project": 3, "data": {"image": f"/data/upload/3/{i}.png"}} for i in range(start, start + n)]


def predict_body(task_list: list[dict], classes=CLASSES) -> dict:
    return {"tasks": task_list, "project": "3.1712345678", "label_config": label_config(classes)}


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path / "ws")
    yield h
    h.runner.release.set()
    h.service.close()


def test_health_is_open_and_everything_else_needs_basic_auth(harness):
    c = harness.client(auth=("ml", "s3cret"))
    assert c.get("/health").json() == {"status": "UP"}
    for method, path in [("get", "/status"), ("post", "/predict"), ("post", "/setup"), ("post", "/webhook"),
                         ("post", "/train"), ("get", "/nowhere")]:
        r = getattr(c, method)(path)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"].startswith("Basic") and "error" in r.json()
    wrong = c.get("/status", auth=("ml", "guess"))
    assert wrong.status_code == 401
    assert c.get("/status", headers={"Authorization": "Basic !!!"}).status_code == 401
    r = c.post("/predict", json=predict_body(tasks(1)), auth=("ml", "s3cret"))
    assert r.status_code == 200 and len(r.json()["results"]) == 1
    assert not harness.runner.runs


def test_setup_checks_the_labels_and_answers_the_model_version(harness):
    c = harness.client()
    r = c.post("/setup", json={"project": "3.171", "schema": label_config(["cat", "dog"]), "hostname": LS,
                               "access_token": "b" * 40})
    assert r.status_code == 200 and r.json() == {"model_version": "fake-1"}
    assert harness.service.project == 3
    r = c.post("/setup", json={"project": "4.1", "schema": label_config(["cat", "dragon", "unicorn"])})
    assert r.status_code == 400 and "dragon, unicorn" in r.json()["error"]
    r = c.post("/setup", json={"project": "4.1", "schema": "<View><Image name='i' value='$image'/></View>"})
    assert r.status_code == 400 and "RectangleLabels" in r.json()["error"]


def test_predict_answers_one_result_per_task_in_order_with_versions_and_scores(harness):
    c = harness.client()
    r = c.post("/predict", json=predict_body(tasks(5)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "fake-1" and len(body["results"]) == 5 and "errors" not in body
    for i, entry in enumerate(body["results"], start=1):
        assert entry["model_version"] == "fake-1" and 0.0 <= entry["score"] <= 1.0
        expected = harness.backend.predict_one(np.asarray(Image.open(io.BytesIO(png(64, 48, i))).convert("RGB")))
        keep = expected.detections.confidence >= 0.25
        assert len(entry["result"]) == int(keep.sum())
        assert [g["score"] for g in entry["result"]] == pytest.approx(expected.detections.confidence[keep], abs=1e-4)
        assert all(g["from_name"] == "label" and g["to_name"] == "image" for g in entry["result"])
    assert [str(q.url) for q in harness.requests] == [f"{LS}/data/upload/3/{i}.png" for i in range(1, 6)]
    assert all(q.headers["authorization"] == f"Token {TOKEN}" for q in harness.requests)
    assert harness.service.predicted == 5


def test_a_pushed_task_is_read_from_the_workspace_file(harness, tmp_path):
    path = tmp_path / "img.png"
    path.write_bytes(png(64, 48, 9))
    harness.ws.store.add_item(Item("item9", str(path), 64, 48, "sha9"))
    task = {"id": 1, "data": {"image": "/data/local-files/?d=x/img.png", "boxloop_item": "item9"}}
    r = harness.client().post("/predict", json=predict_body([task]))
    assert r.status_code == 200 and not harness.requests
    # an item whose file is gone, or an id the workspace does not know: the task's image from Label Studio
    harness.ws.store.add_item(Item("gone", str(tmp_path / "gone.png"), 64, 48, "shag"))
    tasks_ = [{"id": 2, "data": {"image": "/data/upload/3/2.png", "boxloop_item": "gone"}},
              {"id": 3, "data": {"image": "/data/upload/3/3.png", "boxloop_item": "../../etc/passwd"}}]
    r = harness.client().post("/predict", json=predict_body(tasks_))
    assert r.status_code == 200 and "errors" not in r.json()
    assert sorted(q.url.path for q in harness.requests) == ["/data/upload/3/2.png", "/data/upload/3/3.png"]


class SizeRecorder(FakeBackend):
    """The fake detector with a 64x64 network input, keeping the size of each picture it gets."""

    imgsz = (64, 64)

    def __init__(self, classes, **kw) -> None:
        super().__init__(classes, **kw)
        self.seen: list[tuple[int, int]] = []

    def predict(self, images, **kw):
        self.seen += [(im.shape[1], im.shape[0]) for im in images]
        return super().predict(images, **kw)


class Stretching(SizeRecorder):
    stretch = True  # an RT-DETR stretches the picture to its square input


class ByTiles(SizeRecorder):
    tile = 64  # a model trained on tiles cuts its windows from the whole picture


@pytest.mark.parametrize(
    ("backend", "seen"),
    [(SizeRecorder, (200, 63)), (Stretching, (400, 125)), (ByTiles, (1600, 500))],
)
def test_a_large_jpeg_in_the_workspace_is_decoded_as_small_as_the_model_allows(tmp_path, backend, seen):
    """A letterboxing model needs the long side at its input (1/8 of a 1600x500 photo for 64);
    one that stretches the picture needs the short side too (1/4); one predicting by tiles gets
    every pixel."""
    h = Harness(tmp_path / "ws", backend=backend(CLASSES, max_boxes=2))
    try:
        photo = tmp_path / "wide.jpg"
        Image.fromarray(np.full((500, 1600, 3), 90, np.uint8)).save(photo, quality=90)
        h.ws.store.add_item(Item("wide", str(photo), 1600, 500, "shaw"))
        task = {"id": 1, "data": {"image": "/data/local-files/?d=x/wide.jpg", "boxloop_item": "wide"}}
        r = h.client().post("/predict", json=predict_body([task]))
        assert r.status_code == 200 and not h.requests
        assert h.backend.seen == [seen]
    finally:
        h.runner.release.set()
        h.service.close()


def test_a_task_pointing_elsewhere_is_refused_and_the_others_still_answered(harness):
    c = harness.client()
    bad = {"id": 9, "data": {"image": "http://evil.test/a.png"}}
    r = c.post("/predict", json=predict_body([tasks(1)[0], bad, tasks(1, start=2)[0]]))
    assert r.status_code == 200
    body = r.json()
    assert len(body["results"]) == 3 and body["results"][1] == []
    assert body["results"][0]["model_version"] == "fake-1" and body["results"][2]["model_version"] == "fake-1"
    assert body["errors"][0]["task"] == 9 and "refused" in body["errors"][0]["error"]
    assert all(q.url.host == "ls.test" for q in harness.requests)
    r = c.post("/predict", json=predict_body([bad]))
    assert r.status_code == 403 and "evil.test" in r.json()["error"] and "refused" in r.json()["error"]
    r = c.post("/predict", json=predict_body([{"id": 4, "data": {"image": "/data/local-files/?d=../../etc/passwd"}}]))
    assert r.status_code == 403 and "document root" in r.json()["error"]
    assert all(q.url.host == "ls.test" and "passwd" not in str(q.url) for q in harness.requests)


def test_bad_requests_get_json_errors(harness):
    c = harness.client()
    r = c.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = c.post("/predict", json={"tasks": "nope", "label_config": label_config(CLASSES)})
    assert r.status_code == 400 and "'tasks'" in r.json()["error"]
    r = c.post("/predict", json={"tasks": tasks(1)})
    assert r.status_code == 400 and "label_config" in r.json()["error"]
    r = c.post("/webhook", json=["a"])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    r = c.get("/nowhere")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}


def test_request_bodies_over_the_limit_are_refused(tmp_path):
    h = Harness(tmp_path / "ws", max_body_bytes=4096)
    try:
        c = h.client()
        big = predict_body(tasks(200))
        r = c.post("/predict", json=big)
        assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]

        def chunks():  # no Content-Length: counted while it streams in
            yield b'{"tasks": ['
            for _ in range(200):
                yield b'{"id": 1, "data": {"image": "/data/upload/3/1.png"}},'
            yield b"{}]}"

        r = c.post("/predict", content=chunks())
        assert r.status_code == 413
        assert not h.requests and h.service.predicted == 0
    finally:
        h.service.close()


def test_internal_errors_come_back_without_trace_or_token(tmp_path):
    class Broken(FakeBackend):
        def predict(self, images, *, conf=0.01, iou=0.6):
            raise RuntimeError(f"exploded while holding {TOKEN}")

    h = Harness(tmp_path / "ws", backend=Broken(CLASSES))
    try:
        r = h.client().post("/predict", json=predict_body(tasks(1)))
        assert r.status_code == 500 and r.json() == {"error": "internal error; see the server log"}
        assert TOKEN not in r.text and "Traceback" not in r.text
    finally:
        h.service.close()


def test_boxloop_errors_are_redacted(harness):
    harness.service._model = LoadedModel("fake-1", FakeBackend(CLASSES), 0.0)

    def fail(*a, **k):
        raise BackendError(f"weights at /x failed with token {TOKEN}")

    harness.service._model.backend.predict = fail
    r = harness.client().post("/predict", json=predict_body(tasks(1)))
    assert r.status_code == 500 and TOKEN not in r.text and "***" in r.json()["error"]


def test_no_model_yet_is_a_clear_503(tmp_path):
    h = Harness(tmp_path / "ws", with_model=False)
    try:
        c = h.client()
        assert c.post("/setup", json={"project": "3.1", "schema": label_config(CLASSES)}).json() == {"model_version": None}
        r = c.post("/predict", json=predict_body(tasks(1)))
        assert r.status_code == 503 and "no trained model yet" in r.json()["error"]
    finally:
        h.service.close()


def test_annotations_start_a_training_then_coalesce_and_the_new_model_is_loaded_and_announced(harness):
    c = harness.client()
    c.post("/setup", json={"project": "3.1", "schema": label_config(CLASSES)})

    def event(action="ANNOTATION_CREATED", project=3):
        r = c.post("/webhook", json={"action": action, "annotation": {"id": 1}, "project": {"id": project}})
        assert r.status_code == 201, r.text
        return r.json()

    assert event()["training"] is None and event()["training"] is None
    assert event()["training"] == "started"  # the third of train_every = 3
    assert harness.runner.started.wait(5)
    status = c.get("/status").json()
    assert status["job"]["state"] == "running" and status["annotations_since_training"] == 0
    # during the training: three more annotations and a Start training coalesce into one next run
    assert [event()["training"] for _ in range(3)][-1] == "queued"
    assert event("START_TRAINING")["training"] == "queued"
    assert event(project=99)["status"] == "ignored"
    harness.runner.release.set()
    assert harness.service.worker.wait_idle(10)
    assert harness.runner.runs == [["3 new annotation(s)"], ["3 new annotation(s)", "START_TRAINING"]]
    assert harness.loads == [None, "m001", "m002"]
    assert harness.announced == [(3, "m001"), (3, "m002")]
    status = c.get("/status").json()
    assert status["model_version"] == "m002" and status["job"]["state"] == "idle"
    assert status["job"]["last"]["result"]["model_version"] == "m002" and status["job"]["runs"] == 2
    assert status["events"]["ANNOTATION_CREATED"] == 6
    r = c.post("/predict", json=predict_body(tasks(1)))
    assert r.json()["results"][0]["model_version"] == "m002"


def test_start_training_without_the_webhook_flag_comes_to_train(harness):
    r = harness.client().post("/train", json={"project": "3.171", "annotations": [], "label_config": "x"})
    assert r.status_code == 201 and r.json()["training"] == "started"
    assert harness.runner.started.wait(5) and harness.service.project == 3


def test_the_token_label_studio_sends_on_setup_is_used_without_an_env_token(tmp_path):
    h = Harness(tmp_path / "ws", token=None)
    try:
        c = h.client()
        c.post("/setup", json={"project": "3.1", "schema": label_config(CLASSES), "access_token": "c" * 40})
        c.post("/predict", json=predict_body(tasks(1)))
        assert h.requests[0].headers["authorization"] == "Token " + "c" * 40
        assert "c" * 40 not in c.get("/status").text
    finally:
        h.service.close()


def test_the_serve_section_reads_from_toml_and_env(tmp_path, monkeypatch):
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    assert ws.config.serve.train_every == 20 and ws.config.serve.host == "127.0.0.1"
    monkeypatch.setenv("BOXLOOP_SERVE_TRAIN_EVERY", "5")
    assert Workspace.open(ws.root).config.serve.train_every == 5


def test_serve_command_help_and_bad_options(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from boxloop.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["serve", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output and "--basic-auth" in res.output
    Workspace.init(tmp_path / "ws", classes=["a"])
    base = ["-w", str(tmp_path / "ws"), "serve", "--url", LS]
    res = runner.invoke(app, [*base, "--basic-auth", "nopassword"])
    assert res.exit_code == 1 and "USER:PASS" in res.output
    res = runner.invoke(app, [*base, "--host", "0.0.0.0", "--connect", "p"])
    assert res.exit_code == 1 and "--public-url" in res.output
    res = runner.invoke(app, ["-w", str(tmp_path / "ws"), "serve"])
    assert res.exit_code == 1 and "no Label Studio URL" in res.output


class PhotoHarness(Harness):
    """A Harness whose Label Studio serves one photo for every image URL."""

    def __init__(self, root: Path, *, photo: bytes, **kwargs) -> None:
        self.photo = photo
        super().__init__(root, **kwargs)

    def serve(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, content=self.photo)


class CentreBackend:
    """Finds one cat over the middle half of whatever image it gets, at a network input of
    64x64; records the images' sizes."""

    classes = CLASSES
    imgsz = (64, 64)

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def predict(self, images, *, conf: float = 0.01, iou: float = 0.6):
        from boxloop.backends.base import Prediction

        out = []
        for im in images:
            h, w = im.shape[:2]
            self.seen.append((w, h))
            probs = np.array([[0.9, 0.05, 0.05]], np.float32)
            out.append(Prediction(Detections([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], [0], [0.9], {"class_probs": probs})))
        return out


def test_a_large_jpeg_is_decoded_at_a_fraction_and_its_boxes_given_in_its_own_pixels(tmp_path):
    """A phone's photo (here 1024x768, held sideways) for a 64-pixel network input: the model
    gets it at 1/8 (libjpeg scales while decoding), whether the workspace has the file or Label
    Studio serves it; the regions are in percent of the photo as shown, its original size."""
    big = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((768, 1024, 3), 120, np.uint8)).save(big, quality=90, exif=exif.tobytes())
    backend = CentreBackend()
    h = PhotoHarness(tmp_path / "ws", backend=backend, photo=big.read_bytes())
    try:
        h.ws.store.add_item(Item("phone", str(big), 768, 1024, "shaphone"))
        pushed = {"id": 1, "data": {"image": "/data/local-files/?d=x/phone.jpg", "boxloop_item": "phone"}}
        served = {"id": 2, "data": {"image": "/data/upload/3/phone.jpg"}}
        r = h.client().post("/predict", json=predict_body([pushed, served]))
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        assert backend.seen == [(96, 128), (96, 128)]  # an eighth, upright; never 768x1024
        assert [q.url.path for q in h.requests] == ["/data/upload/3/phone.jpg"]  # the pushed one read from its file
        for entry in r.json()["results"]:
            (region,) = entry["result"]
            assert (region["original_width"], region["original_height"]) == (768, 1024)
            v = region["value"]
            assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx((25.0, 25.0, 50.0, 50.0))
    finally:
        h.runner.release.set()
        h.service.close()


def test_a_large_heic_of_the_workspace_is_decoded_once_then_read_from_its_kept_copy(tmp_path, monkeypatch):
    """A phone's HEIC cannot be decoded at a fraction of its size: the first /predict of a
    pushed one decodes it whole and keeps a copy at 1/8 under shrunk/, the next reads that."""
    import pillow_heif

    import boxloop.sources.images as images
    from boxloop.ingest import add_images

    backend = CentreBackend()
    h = Harness(tmp_path / "ws", backend=backend)
    try:
        photo = tmp_path / "IMG_0001.heic"
        pillow_heif.from_pillow(Image.new("RGB", (1024, 768), (90, 120, 150))).save(photo, quality=80)
        add_images(h.ws, [photo])
        (item,) = h.ws.store.items()
        task = {"id": 1, "data": {"image": "/data/local-files/?d=x/IMG_0001.heic", "boxloop_item": item.id}}
        first = h.client().post("/predict", json=predict_body([task]))
        assert first.status_code == 200 and "errors" not in first.json(), first.text
        assert backend.seen == [(128, 96)] and not h.requests
        (kept,) = (h.ws.root / "shrunk").iterdir()
        assert kept.name == f"{item.sha256[:24]}-128x96.jpg"

        def no_decode(*args, **kwargs):
            raise AssertionError("the HEIC was decoded again")

        monkeypatch.setattr(images, "load_image", no_decode)
        again = h.client().post("/predict", json=predict_body([task]))
        assert again.status_code == 200 and again.json()["results"] == first.json()["results"]
        assert backend.seen == [(128, 96), (128, 96)]
    finally:
        h.runner.release.set()
        h.service.close()


def test_a_running_jobs_status_shows_the_step_and_epoch_its_process_wrote(tmp_path):
    """The training runs in a process of its own: it writes its step (and epoch) to a file the
    server's /status reads, so a person sees more than "running" for minutes."""
    from boxloop.server.training import _progress_writer

    job = Job(1, ["3 new annotation(s)"], progress_file=str(tmp_path / "job.progress.json"))
    assert "progress" not in job.as_dict() and job.as_dict()["elapsed_seconds"] >= 0  # nothing written yet
    write = _progress_writer(job.progress_file)
    assert write is not None
    write({"step": "training", "epoch": 3, "epochs": 30})
    shown = job.as_dict()
    assert shown["progress"]["step"] == "training" and (shown["progress"]["epoch"], shown["progress"]["epochs"]) == (3, 30)
    assert "progress_file" not in shown
    job.finished_at, job.state = job.started_at + 5, "done"
    assert "progress" not in job.as_dict() and job.as_dict()["seconds"] == 5
