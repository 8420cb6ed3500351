"""Shared fixtures. Tests never write outside tmp_path; background processes are stopped by PID."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("BOXLOOP_NO_PROGRESS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
COCO128 = SHARED / "data" / "coco128"


@pytest.fixture(scope="session")
def coco128() -> Path:
    """The read-only coco128 folder (images/, labels/, data.yaml) beside the repository."""
    if not (COCO128 / "images").is_dir():
        pytest.fail(f"{COCO128} is missing: CI runs with ../shared beside the repository")
    return COCO128
