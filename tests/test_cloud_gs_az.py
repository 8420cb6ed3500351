"""Images in Google Cloud Storage (gs://) and Azure Blob Storage (az://), on real local
endpoints: the gcp-storage-emulator server and Azurite (Microsoft's Azure Storage emulator,
installed by `make test` with npm), each started by this module on a free 127.0.0.1 port and
stopped by its PID. The same paths as S3 (test_cloud_s3.py): add from a prefix and a glob,
export the bytes unchanged, bad buckets and objects named in the problems, missing
credentials explained."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _processes import free_port, stop_process, wait_until_it_answers
from _tiny_data import CLASSES, png_bytes
from boxloop.cli import app
from boxloop.workspace import Workspace

pytestmark = pytest.mark.slow
runner = CliRunner()
BUCKET = "frames"
N_POOL = 6
ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Store:
    """One emulated object store: its scheme, the env that points fsspec at it, and a way to
    put objects."""

    scheme: str
    env: dict[str, str]
    put: Callable[[str, bytes], None]
    objects: dict[str, bytes]

    def uri(self, key: str, bucket: str = BUCKET) -> str:
        return f"{self.scheme}://{bucket}/{key}"


def _start(cmd: list[str], url: str, log_path: Path, what: str) -> subprocess.Popen:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_until_it_answers(url, proc, f"{what} (see {log_path})")
    return proc


def _gcs(tmp: Path) -> tuple[subprocess.Popen, dict[str, str], Callable[[str, bytes], None]]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = _start(
        [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory"],
        endpoint + "/storage/v1/b", tmp / "gcs.log", "gcp-storage-emulator",
    )
    # the emulator speaks the JSON API only, not the gRPC control plane gcsfs's experimental
    # bucket-layout lookup asks first (it would wait a minute per bucket for nothing)
    env = {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    import gcsfs

    fs = gcsfs.core.GCSFileSystem(endpoint_url=endpoint, token="anon", project="test")
    fs.mkdir(BUCKET)
    return proc, env, lambda key, body: fs.pipe(f"{BUCKET}/{key}", body)


def _azure(tmp: Path) -> tuple[subprocess.Popen, dict[str, str], Callable[[str, bytes], None]]:
    if not AZURITE.is_file():
        pytest.fail(f"{AZURITE} is missing: run `make test` (it installs Azurite with npm)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/{AZ_ACCOUNT}"
    proc = _start(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
         "--disableTelemetry", "--skipApiVersionCheck"],
        endpoint + "?comp=list", tmp / "azurite.log", "Azurite",
    )
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};"
            f"BlobEndpoint={endpoint};")
    env = {"AZURE_STORAGE_CONNECTION_STRING": conn}
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(conn).create_container(BUCKET)
    return proc, env, lambda key, body: container.upload_blob(key, body, overwrite=True)


@pytest.fixture(scope="module", params=["gs", "az"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp(f"store-{request.param}")
    proc, env, put = (_gcs if request.param == "gs" else _azure)(tmp)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            rng = np.random.default_rng(5)
            objects = {}
            for i in range(N_POOL):
                key = f"pool/cam1/frame_{i:03d}.png"
                objects[key] = png_bytes(rng)
                put(key, objects[key])
            put("pool/readme.txt", b"not an image")
            put("broken/bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
            yield Store(request.param, env, put, objects)
            import fsspec

            fsspec.filesystem(request.param).clear_instance_cache()  # the next module must not get ours
    finally:
        stop_process(proc)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "image-cache"
    monkeypatch.setenv("BOXLOOP_CACHE_DIR", str(d))
    return d


def cli(ws: Workspace, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "-w", str(ws.root)])


def test_add_images_from_a_prefix_and_a_glob_then_export_the_same_bytes(
    store: Store, cache_dir: Path, tmp_path: Path
) -> None:
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    result = cli(ws, "add", "images", store.uri("pool/"))
    assert result.exit_code == 0, result.output
    assert f"{N_POOL} new image(s)" in result.output  # readme.txt is not an image: not listed
    items = ws.store.items()
    assert sorted(it.uri for it in items) == sorted(store.uri(k) for k in store.objects)
    for it in items:
        body = store.objects[it.uri.removeprefix(f"{store.scheme}://{BUCKET}/")]
        assert it.sha256 == hashlib.sha256(body).hexdigest() and (it.width, it.height) == (160, 120)
    again = cli(ws, "add", "images", store.uri("pool/cam1/*.png"))
    assert again.exit_code == 0 and f"0 new image(s), {N_POOL} already known" in again.output

    out = tmp_path / "export"
    result = cli(ws, "export", "--format", "yolo", "--what", "all", "--out", str(out))
    assert result.exit_code == 0, result.output
    exported = sorted(p.read_bytes() for p in (out / "images").rglob("*.png"))
    assert exported == sorted(store.objects.values())
    assert any(cache_dir.rglob("*"))  # read once into the content-hash cache


def test_a_missing_bucket_object_and_a_broken_image_are_problems_naming_the_uri(
    store: Store, cache_dir: Path, tmp_path: Path
) -> None:
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    missing_bucket = store.uri("pool/", bucket="no-such-bucket")
    result = cli(ws, "add", "images", missing_bucket, store.uri("nothing-here/"),
                 store.uri("broken/bad.png"), store.uri("pool/cam1/frame_000.png"))
    assert result.exit_code == 1, result.output  # paths that name nothing fail the command once the others are in
    assert "1 new image(s)" in result.output and "the other paths given were read" in " ".join(result.output.split())
    text = " ".join(result.output.split())
    assert f"{missing_bucket}: no such" in text
    assert f"{store.uri('nothing-here/')}: no such object, prefix or matching glob" in text
    assert f"{store.uri('broken/bad.png')}: not an image" in text
    assert "Traceback" not in text
    assert cli(ws, "add", "images", store.uri("x.png", bucket="no-such-bucket"), "--strict").exit_code == 1


@pytest.mark.parametrize("store", ["az"], indirect=True)  # the emulated Google store is anonymous
def test_azure_without_credentials_is_a_clear_message_naming_the_uri(store: Store, tmp_path: Path) -> None:
    """A fresh process (as a user runs it) with no Azure account settings anywhere."""
    ws = Workspace.init(tmp_path / "ws", CLASSES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["BOXLOOP_CACHE_DIR"] = str(tmp_path / "cache")
    uri = store.uri("pool/")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "boxloop"), "-w", str(ws.root), "add", "images", uri, "--strict"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, text
    assert uri in text and "AZURE_STORAGE_CONNECTION_STRING" in text, text
    assert "Traceback" not in text
