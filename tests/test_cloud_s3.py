"""Images in an S3 bucket, on a real S3 endpoint: moto's standalone server, started by this
module on a free 127.0.0.1 port and stopped by its PID. Add images from s3://, predict with a
really trained model, export; bad buckets, missing credentials and an object that vanishes
mid-run; the content-hash cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _processes import free_port, stop_process, wait_until_it_answers
from _tiny_data import CLASSES, make_yolo_dataset, png_bytes, trained_tiny_model
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.sources.remote import ImageCache, fetch, is_remote, parse_size
from boxloop.types import Item
from boxloop.workspace import Workspace

pytestmark = pytest.mark.slow
runner = CliRunner()
BUCKET = "frames"
N_POOL = 12


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server process, the AWS_* settings that point boxloop at it, and a boto3
    client; the server is stopped by PID at the end."""
    import boto3

    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_it_answers(endpoint + "/moto-api/", proc, f"moto server (see {log.name})", timeout=60)
        env = {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
        }
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            mp.delenv("AWS_PROFILE", raising=False)
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            rng = np.random.default_rng(11)
            objects = {}
            for i in range(N_POOL):
                key = f"pool/cam1/frame_{i:03d}.png"
                body = png_bytes(rng)
                client.put_object(Bucket=BUCKET, Key=key, Body=body)
                objects[key] = body
            client.put_object(Bucket=BUCKET, Key="pool/readme.txt", Body=b"not an image")
            client.put_object(Bucket=BUCKET, Key="broken/bad.png", Body=b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
            yield {"endpoint": endpoint, "client": client, "objects": objects, "env": env}
            _forget_s3_clients()
    finally:
        stop_process(proc)
        log.close()


def _forget_s3_clients() -> None:
    """s3fs keeps one client per settings; the next test module must not get ours."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "image-cache"
    monkeypatch.setenv("BOXLOOP_CACHE_DIR", str(d))
    monkeypatch.setenv("BOXLOOP_CACHE_SIZE", "50MB")
    return d


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_tiny_model(tmp_path_factory)[0]


def cli(ws: Workspace, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "-w", str(ws.root)])


def _etags(client) -> dict[str, tuple[str, int]]:  # type: ignore[no-untyped-def]
    rows = client.list_objects_v2(Bucket=BUCKET)["Contents"]
    return {r["Key"]: (r["ETag"], r["Size"]) for r in rows}


def test_add_images_from_s3_then_predict_and_export(s3, cache_dir: Path, weights: Path, tmp_path: Path) -> None:
    before = _etags(s3["client"])
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    result = cli(ws, "add", "images", f"s3://{BUCKET}/pool/")
    assert result.exit_code == 0, result.output
    assert f"{N_POOL} new image(s)" in result.output
    items = ws.store.items()
    assert sorted(it.uri for it in items) == sorted(f"s3://{BUCKET}/{k}" for k in s3["objects"])
    for it in items:
        body = s3["objects"][it.uri.removeprefix(f"s3://{BUCKET}/")]
        assert it.sha256 == hashlib.sha256(body).hexdigest() and (it.width, it.height) == (160, 120)

    again = cli(ws, "add", "images", f"s3://{BUCKET}/pool/cam1/*.png")
    assert again.exit_code == 0 and f"0 new image(s), {N_POOL} already known" in again.output

    result = cli(ws, "predict", "--model", str(weights), "--imgsz", "128")
    assert result.exit_code == 0, result.output
    assert f"{N_POOL} image(s) predicted" in result.output
    version = ws.store.predicted_versions()[0]
    from_s3 = ws.store.predictions(version)
    assert len(from_s3) == N_POOL and sum(len(d) for d in from_s3.values()) > 0

    # the same images as local files give the same predictions
    local = tmp_path / "local"
    local.mkdir()
    for key, body in s3["objects"].items():
        (local / key.rsplit("/", 1)[-1]).write_bytes(body)
    ws2 = Workspace.init(tmp_path / "ws-local", CLASSES)
    assert cli(ws2, "add", "images", str(local)).exit_code == 0
    assert cli(ws2, "predict", "--model", str(weights), "--imgsz", "128").exit_code == 0
    from_disk = ws2.store.predictions(ws2.store.predicted_versions()[0])
    assert set(from_disk) == set(from_s3)
    for item_id, d in from_s3.items():
        assert d.equals(from_disk[item_id]), item_id
        np.testing.assert_array_equal(d.confidence, from_disk[item_id].confidence)

    out = tmp_path / "export"
    result = cli(ws, "export", "--format", "yolo", "--what", "prelabeled", "--conf", "0.05", "--out", str(out))
    assert result.exit_code == 0, result.output
    exported = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    assert len(exported) == N_POOL
    assert sorted(exported.values()) == sorted(s3["objects"].values())
    assert len(list((out / "labels").glob("*.txt"))) == N_POOL
    assert _etags(s3["client"]) == before  # the bucket was only read


def test_a_prefix_is_a_frame_sequence_with_sequence(s3, cache_dir: Path, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    result = cli(ws, "add", "images", "--sequence", f"s3://{BUCKET}/pool/cam1/")
    assert result.exit_code == 0, result.output
    items = ws.store.items()
    assert [it.frame_index for it in items] == list(range(N_POOL))
    assert len({it.video_id for it in items}) == 1
    assert [it.uri for it in items] == [f"s3://{BUCKET}/pool/cam1/frame_{i:03d}.png" for i in range(N_POOL)]


def test_a_second_pass_reads_from_the_content_hash_cache(s3, cache_dir: Path, tmp_path: Path) -> None:
    from boxloop.backends.fake import FakeBackend
    from boxloop.modeling import predict

    client = s3["client"]
    rng = np.random.default_rng(5)
    for i in range(3):
        client.put_object(Bucket=BUCKET, Key=f"cached/{i}.png", Body=png_bytes(rng))
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    assert cli(ws, "add", "images", f"s3://{BUCKET}/cached/").exit_code == 0
    cached = sorted(p.name for p in cache_dir.rglob("*") if p.is_file())
    assert cached == sorted(it.sha256 for it in ws.store.items())
    for i in range(3):  # gone from the bucket: the cache still has their content
        client.delete_object(Bucket=BUCKET, Key=f"cached/{i}.png")
    report = predict(ws, backend=FakeBackend(CLASSES), model="fake")
    assert report.items == 3 and not report.problems


def test_an_object_that_vanishes_mid_run_is_reported_and_the_run_goes_on(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from boxloop.backends.fake import FakeBackend
    from boxloop.modeling import predict

    monkeypatch.setenv("BOXLOOP_CACHE_SIZE", "0")  # no cache: every read goes to the bucket
    client = s3["client"]
    rng = np.random.default_rng(8)
    for i in range(40):
        client.put_object(Bucket=BUCKET, Key=f"vanish/{i:02d}.png", Body=png_bytes(rng))
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    assert cli(ws, "add", "images", f"s3://{BUCKET}/vanish/").exit_code == 0
    last = f"s3://{BUCKET}/vanish/39.png"
    put_back = client.get_object(Bucket=BUCKET, Key="vanish/39.png")["Body"].read()
    assert last in {it.uri for it in ws.store.items()}
    calls = []

    def delete_the_last_one(n: int) -> None:
        if not calls:  # the first image is done; the last one has not been read yet
            client.delete_object(Bucket=BUCKET, Key="vanish/39.png")
        calls.append(n)

    report = predict(ws, backend=FakeBackend(CLASSES), model="fake", batch=2, progress=delete_the_last_one)
    assert report.items == 39
    assert [p.path for p in report.problems] == [last]
    assert "gone" in report.problems.items[0].reason
    assert len(ws.store.predictions("fake")) == 39

    # put back, a re-run with missing=True does only what is left
    client.put_object(Bucket=BUCKET, Key="vanish/39.png", Body=put_back)
    again = predict(ws, backend=FakeBackend(CLASSES), model="fake", missing=True)
    assert (again.items, again.skipped, len(again.problems)) == (1, 39, 0)
    assert len(ws.store.predictions("fake")) == 40


def test_a_missing_bucket_and_a_missing_object_are_problems_naming_the_uri(s3, cache_dir: Path, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    result = cli(ws, "add", "images", "s3://no-such-bucket/pool/", f"s3://{BUCKET}/nothing-here/",
                 f"s3://{BUCKET}/broken/bad.png", f"s3://{BUCKET}/pool/cam1/frame_000.png")
    assert result.exit_code == 1, result.output  # paths that name nothing fail the command once the others are in
    assert "1 new image(s)" in result.output and "the other paths given were read" in " ".join(result.output.split())
    text = " ".join(result.output.split())
    assert "s3://no-such-bucket/pool/: no such bucket" in text
    assert f"s3://{BUCKET}/nothing-here/: no such object, prefix or matching glob" in text
    assert f"s3://{BUCKET}/broken/bad.png: not an image" in text
    assert cli(ws, "add", "images", "s3://no-such-bucket/x.png", "--strict").exit_code == 1


def test_missing_credentials_is_a_clear_message_naming_the_uri(s3, tmp_path: Path) -> None:
    """A fresh process (as a user runs it) with no AWS credentials anywhere."""
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ENDPOINT_URL": s3["endpoint"], "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "BOXLOOP_CACHE_DIR": str(tmp_path / "cache"),
    })
    uri = f"s3://{BUCKET}/pool/"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "boxloop"), "-w", str(ws.root), "add", "images", uri, "--strict"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, text
    assert f"{uri}: no usable credentials for s3://" in text
    assert "AWS_ACCESS_KEY_ID" in text
    assert "Traceback" not in text


def _upload_tree(client, root: Path, prefix: str) -> None:  # type: ignore[no-untyped-def]
    for f in sorted(root.rglob("*")):
        if f.is_file():
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{f.relative_to(root).as_posix()}", Body=f.read_bytes())


def test_yolo_and_coco_labels_in_a_bucket_are_imported_like_local_ones(s3, cache_dir: Path, tmp_path: Path) -> None:
    from boxloop.export import write_yolo_dataset

    data = tmp_path / "data"
    make_yolo_dataset(data, n_train=6, n_val=2, seed=2)
    (data / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    _upload_tree(s3["client"], data, "datasets/shapes")
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    result = cli(ws, "add", "labels", f"s3://{BUCKET}/datasets/shapes", "--format", "yolo")
    assert result.exit_code == 0, result.output
    assert "8 new image(s)" in result.output and "8 label version(s) added" in result.output
    text = " ".join(result.output.split())
    assert f"s3://{BUCKET}/datasets/shapes/labels/train/orphan.txt: label file with no image" in text
    ws_local = Workspace.init(tmp_path / "ws-local", CLASSES)
    assert cli(ws_local, "add", "labels", str(data), "--format", "yolo").exit_code == 0
    remote_labels, local_labels = ws.store.latest_labels(), ws_local.store.latest_labels()
    assert set(remote_labels) == set(local_labels)
    for item_id, d in remote_labels.items():
        assert d.equals(local_labels[item_id])
        assert ws.store.get_item(item_id).uri.startswith(f"s3://{BUCKET}/datasets/shapes/images/")

    # a training view of images in a bucket holds copies (a symlink cannot point into a bucket)
    yaml_path = write_yolo_dataset(ws, tmp_path / "view", link=True)
    files = [f for f in (yaml_path.parent / "images").rglob("*.png")]
    assert len(files) == 8 and not any(f.is_symlink() for f in files)
    assert sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files) == sorted(
        it.sha256 for it in ws.store.items()
    )

    # COCO: the JSON and its images in the bucket, file names relative to the JSON's prefix
    import json

    coco = {
        "images": [{"id": 1, "file_name": "images/train/train_000.png", "width": 160, "height": 120}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0}],
        "categories": [{"id": 2, "name": "bar"}],
    }
    s3["client"].put_object(Bucket=BUCKET, Key="datasets/shapes/coco.json", Body=json.dumps(coco).encode())
    ws2 = Workspace.init(tmp_path / "ws2", CLASSES)
    result = cli(ws2, "add", "labels", f"s3://{BUCKET}/datasets/shapes/coco.json", "--format", "coco")
    assert result.exit_code == 0, result.output
    (item,) = ws2.store.items()
    assert item.uri == f"s3://{BUCKET}/datasets/shapes/images/train/train_000.png"
    np.testing.assert_allclose(ws2.store.latest_labels()[item.id].xyxy, [[10, 10, 40, 30]])


def test_label_studio_tasks_point_at_the_bucket_and_local_files_at_the_document_root(tmp_path: Path) -> None:
    from boxloop.annotation.labelstudio import image_urls

    local = tmp_path / "media" / "batch" / "a.png"
    items = [
        Item("a" * 16, f"s3://{BUCKET}/pool/cam1/frame_000.png", 160, 120, "0" * 64),
        Item("b" * 16, "https://example.org/img/b.jpg", 160, 120, "1" * 64),
        Item("c" * 16, str(local), 160, 120, "2" * 64),
    ]
    urls, dirs = image_urls(items, document_root=str(tmp_path / "media"))
    assert urls["a" * 16] == f"s3://{BUCKET}/pool/cam1/frame_000.png"
    assert urls["b" * 16] == "https://example.org/img/b.jpg"
    assert urls["c" * 16] == "/data/local-files/?d=batch/a.png"
    assert dirs == [str(tmp_path / "media" / "batch")]
    urls, dirs = image_urls(items[:1], storage="cloud")
    assert urls == {"a" * 16: items[0].uri} and dirs == []


def test_images_at_https_urls_are_added_and_decoded(tmp_path: Path, cache_dir: Path) -> None:
    """A plain HTTP server (python -m http.server on 127.0.0.1, stopped by PID) stands in for a CDN."""
    from boxloop.modeling import decode_file

    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(3)
    (served / "a.png").write_bytes(png_bytes(rng))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_it_answers(base + "/a.png", proc, "http.server", timeout=30)
        ws = Workspace.init(tmp_path / "ws", CLASSES)
        result = cli(ws, "add", "images", f"{base}/a.png", f"{base}/missing.png")
        assert result.exit_code == 1, result.output  # a URL that names nothing fails the command, the other is in
        assert "1 new image(s)" in result.output
        assert f"{base}/missing.png: no such object" in " ".join(result.output.split())
        (item,) = ws.store.items()
        assert item.uri == f"{base}/a.png" and (item.width, item.height) == (160, 120)
        import cv2

        expected = cv2.cvtColor(cv2.imread(str(served / "a.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(decode_file(item.uri, size=(160, 120), sha256=item.sha256), expected)
    finally:
        stop_process(proc)


# -- the cache and URIs, without a server ----------------------------------------------------


def test_the_cache_stays_under_its_bound_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "c", max_bytes=10_000)
    blobs = [bytes([i]) * 3000 for i in range(5)]
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]
    for i, (s, b) in enumerate(zip(shas, blobs)):
        cache.put(s, b)
        if i >= 1:
            time.sleep(0.01)
            assert cache.get(shas[0]) == blobs[0]  # kept fresh by reading it
    assert cache.size() <= 10_000
    assert cache.get(shas[0]) == blobs[0]
    assert cache.get(shas[1]) is None  # the oldest unread ones went first
    assert cache.get(shas[4]) == blobs[4]


def test_a_damaged_cache_entry_is_dropped_not_trusted(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "c", max_bytes=10_000)
    data = b"image bytes"
    sha = hashlib.sha256(data).hexdigest()
    cache.put(sha, data)
    (tmp_path / "c" / sha[:2] / sha).write_bytes(b"imagE bytes")
    assert cache.get(sha) is None
    assert not (tmp_path / "c" / sha[:2] / sha).exists()


@pytest.mark.parametrize(
    ("uri", "remote"),
    [("s3://b/k.jpg", True), ("gs://b/k.jpg", True), ("az://c/k.jpg", True), ("https://h/k.jpg", True),
     ("/data/k.jpg", False), ("k.jpg", False), ("file:///data/k.jpg", False)],
)
def test_which_uris_are_remote(uri: str, remote: bool) -> None:
    assert is_remote(uri) is remote


@pytest.mark.parametrize(("text", "size"), [("20GB", 20 * 10**9), ("500MB", 500 * 10**6), ("1GiB", 2**30), ("0", 0)])
def test_cache_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_cache_size_names_the_setting() -> None:
    with pytest.raises(InputError, match="BOXLOOP_CACHE_SIZE"):
        parse_size("lots")


def test_a_store_without_its_package_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec  # noqa: F401  (loads fsspec.registry)

    registry = sys.modules["fsspec.registry"]  # the module (fsspec.registry the attribute is a read-only view)

    # as if gcsfs were not installed, even after another test imported it and fsspec keeps its class
    for name in [m for m in sys.modules if m == "gcsfs" or m.startswith("gcsfs.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # None in sys.modules: importing it fails
    for protocol in ("gs", "gcs"):
        monkeypatch.delitem(registry._registry, protocol, raising=False)
    with pytest.raises(InputError, match=r"gs://b/k\.jpg: reading gs:// URIs needs the gcsfs package"):
        fetch("gs://b/k.jpg")


def test_push_with_cloud_storage_label_studio_presigns_the_bucket_images(
    s3, cache_dir: Path, tmp_path: Path, ls_server, client, token_env
) -> None:
    """storage = "cloud" against a real Label Studio whose project has an S3 storage on the
    same (moto) endpoint: tasks keep the s3:// URIs, Label Studio resolves each one to a
    presigned URL that answers with the object's bytes, and a person's box comes back."""
    import base64

    import httpx

    from boxloop.annotation.labelstudio import ITEM_KEY, pull, push
    from boxloop.types import Detections, Selection

    ws = Workspace.init(tmp_path / "ws", CLASSES)
    assert cli(ws, "add", "images", f"s3://{BUCKET}/pool/cam1/").exit_code == 0
    items = sorted(ws.store.items(), key=lambda it: it.uri)[:3]
    ws.store.put_predictions("mv1", {items[0].id: Detections(
        np.array([[10.0, 20.0, 60.0, 80.0]]), np.array([1]), np.array([0.8]),
        {"class_probs": np.array([[0.1, 0.8, 0.1]], np.float32)},
    )})  # the other two have no detections: pushed with no boxes
    ws.store.save_selection(Selection(
        id="sel-1", model_version="mv1", strategy="random", seed=0, item_ids=tuple(it.id for it in items),
        scores={it.id: 1.0 - 0.1 * i for i, it in enumerate(items)}, why={it.id: {"random": 1.0} for it in items},
    ))
    report = push(ws, url=ls_server.url, project=f"cloud-{tmp_path.name}", storage="cloud")
    assert report.created == 3 and not report.problems
    pid = report.project_id
    auth = {"Authorization": f"Token {ls_server.token}"}
    r = httpx.post(f"{ls_server.url}/api/storages/s3", headers=auth, json={
        "project": pid, "title": "frames", "bucket": BUCKET, "prefix": "pool/", "presign": True,
        "use_blob_urls": True, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        "region_name": "us-east-1", "s3_endpoint": s3["endpoint"],
    })
    assert r.status_code == 201, r.text
    tasks = [t.dict() for t in client.tasks.list(project=pid, fields="all", page_size=100)]
    by_item = {t["data"][ITEM_KEY]: t for t in tasks}
    assert set(by_item) == {it.id for it in items}
    for it in items:
        task = httpx.get(f"{ls_server.url}/api/tasks/{by_item[it.id]['id']}", headers=auth).json()
        assert task["data"]["image"] != it.uri  # resolved through the project's storage
        fileuri = base64.urlsafe_b64encode(it.uri.encode()).decode()
        got = httpx.get(f"{ls_server.url}/tasks/{task['id']}/presign/", params={"fileuri": fileuri},
                        headers=auth, follow_redirects=True)
        assert got.status_code == 200
        assert got.content == s3["objects"][it.uri.removeprefix(f"s3://{BUCKET}/")]
        assert len(task["predictions"]) == 1
        regions = task["predictions"][0]["result"]
        assert len(regions) == (1 if it.id == items[0].id else 0)
    # a person draws a box on a bucket image: it comes back in the item's pixels
    it = items[1]
    client.annotations.create(id=int(by_item[it.id]["id"]), result=[{
        "from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": it.width,
        "original_height": it.height, "value": {"x": 25.0, "y": 50.0, "width": 50.0, "height": 25.0,
                                                "rotation": 0, "rectanglelabels": [CLASSES[2]]},
    }])
    pulled = pull(ws, url=ls_server.url, project=str(pid))
    assert not pulled.problems
    got = ws.store.latest_labels([it.id])[it.id]
    np.testing.assert_allclose(got.xyxy, [[0.25 * it.width, 0.5 * it.height, 0.75 * it.width, 0.75 * it.height]], atol=0.01)
    assert got.class_id.tolist() == [2]


def test_an_object_changed_in_the_bucket_is_left_out_of_an_export_not_failing_it(
    s3, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One object overwritten with another picture after it was added: its labels were drawn on
    the picture it was. An export leaves it out, named (it once failed whole, every time)."""
    from boxloop.types import Detections

    client = s3["client"]
    rng = np.random.default_rng(11)
    for i in range(3):
        client.put_object(Bucket=BUCKET, Key=f"changing/{i}.png", Body=png_bytes(rng))
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    assert cli(ws, "add", "images", f"s3://{BUCKET}/changing/").exit_code == 0
    for it in ws.store.items():
        ws.store.add_label(it.id, Detections(np.array([[1, 1, 9, 9]], np.float32), np.array([0])), source="test")
    client.put_object(Bucket=BUCKET, Key="changing/1.png", Body=png_bytes(rng))
    monkeypatch.setenv("BOXLOOP_CACHE_DIR", str(tmp_path / "empty-cache"))  # another machine: nothing cached
    _forget_s3_clients()
    result = cli(ws, "export", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"1 image(s) in a bucket left out: they cannot be read as they were added: s3://{BUCKET}/changing/1.png: " \
           "the object changed after it was added" in said
    assert len(list((tmp_path / "out").rglob("*.png"))) == 2
