"""Shared fixtures. Tests never write outside tmp_path; background processes are stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _ls_server import LabelStudioServer, start_server

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("BOXLOOP_NO_PROGRESS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
COCO128 = SHARED / "data" / "coco128"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="session")
def coco128() -> Path:
    """The read-only coco128 folder (images/, labels/, data.yaml) beside the repository."""
    if not (COCO128 / "images").is_dir():
        pytest.fail(f"{COCO128} is missing: CI runs with ../shared beside the repository")
    return COCO128


# -- a real Label Studio, one per test session (shared by test_labelstudio, test_serve, ...) --
@pytest.fixture(scope="session")
def ls_media(tmp_path_factory: pytest.TempPathFactory, coco128: Path) -> Path:
    """The server's local-files document root: coco128 images (linked, read-only) and a
    writable folder for generated images."""
    root = tmp_path_factory.mktemp("ls-media")
    (root / "coco128").symlink_to(coco128 / "images", target_is_directory=True)
    (root / "made").mkdir()
    return root


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory: pytest.TempPathFactory, ls_media: Path):
    """A real Label Studio, started once; the test run fails (never skips) if it cannot start."""
    try:
        server = start_server(data_dir=tmp_path_factory.mktemp("ls-data"), document_root=ls_media)
    except Exception as e:  # any failure to start is a test failure with the reason
        pytest.fail(f"Label Studio could not start: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(ls_server: LabelStudioServer):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=ls_server.url, api_key=ls_server.token)


@pytest.fixture
def token_env(ls_server: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.token)
    return ls_server.token




# -- a real headless Chromium (Debian's), for the report and Label Studio's own pages ---------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One real headless Chromium for the module, closed at the end."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
