"""Training runs on disk: what a run was started with, so an interrupted ``train`` (or a
round's train step) picks its run up where Ultralytics last saved it instead of starting again.

A run folder ``runs/mNNN`` that the store does not know as a model version is a run that did
not finish. ``run_inputs.json`` in it holds the fingerprint of what it trains on: the
settings, the classes, and the dataset view (every label file's bytes, every image's name
and where it links). The next ``train`` that would start the same run resumes it from
``weights/last.pt``; one with other labels or settings starts a new version beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .errors import InputError

__all__ = [
    "INPUTS_FILE", "LOCK_FILE", "dropped_unless_saved", "interrupted_run", "run_fingerprint", "training", "training_now", "unfinished_runs", "write_run_inputs",
]

log = logging.getLogger(__name__)
INPUTS_FILE = "run_inputs.json"
LOCK_FILE = ".training.lock"


@contextmanager
def training(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock while it trains, so a ``train`` in another process does not take
    a run that is still training for an interrupted one."""
    with open(run_dir / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{run_dir}: another process is training this run; wait for it or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def dropped_unless_saved(run_dir: Path) -> Iterator[None]:
    """A new run's folder, removed again when what runs in it fails (or is interrupted)
    before training saved an epoch (``weights/last.pt``): nothing in it could be resumed, and
    ``status`` and ``prune`` would list it as a run cut off. A folder another process trains
    in is left alone."""
    try:
        yield
    except BaseException:
        if run_dir.is_dir() and not (run_dir / "weights" / "last.pt").is_file() and not training_now(run_dir):
            try:
                shutil.rmtree(run_dir)
            except OSError as e:  # the error that stopped the run is the one to tell
                log.warning("%s: could not remove this run, which saved no epoch: %s", run_dir, e)
        raise


def training_now(run_dir: Path) -> bool:
    """Whether a process (this one included) holds the run's training lock."""
    lock = run_dir / LOCK_FILE
    if not lock.is_file():
        return False
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def run_fingerprint(dataset_dir: Path, *, classes: Sequence[str], settings: Mapping[str, Any]) -> str:
    """sha256 over the settings, the classes and the dataset view under ``dataset_dir``
    (images/ and labels/; data.yaml is left out, it names the run's own folder)."""
    h = hashlib.sha256()
    h.update(json.dumps({"classes": list(classes), "settings": dict(settings)}, sort_keys=True, default=str).encode())
    for sub in ("images", "labels"):
        root = dataset_dir / sub
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            if p.is_dir():
                continue
            h.update(p.relative_to(dataset_dir).as_posix().encode() + b"\0")
            if sub == "labels":
                h.update(hashlib.sha256(p.read_bytes()).digest())
            elif p.is_symlink():
                h.update(os.readlink(p).encode() + b"\0")
            else:
                h.update(str(p.stat().st_size).encode() + b"\0")
    return h.hexdigest()


def write_run_inputs(run_dir: Path, fingerprint: str, settings: Mapping[str, Any], *, weights: Path | None = None) -> None:
    """What a run trains on; ``weights``: where a finished run put its model (a run no model
    version registers, such as an audit's held-out model, is known as finished by it)."""
    record: dict[str, Any] = {"fingerprint": fingerprint, "settings": dict(settings)}
    if weights is not None:
        record["weights"] = str(weights)
    write_text_atomic(run_dir / INPUTS_FILE, json.dumps(record, indent=2, default=str) + "\n")


def unfinished_runs(runs_dir: Path, *, registered: Collection[str]) -> list[str]:
    """Run folders (newest first) that no model version names: cut off, or training now."""
    if not runs_dir.is_dir():
        return []
    runs = [p for p in runs_dir.iterdir() if p.is_dir() and p.name not in registered and (p / INPUTS_FILE).is_file()]
    return [p.name for p in sorted(runs, key=_number, reverse=True)]


def _number(run: Path) -> int:
    return int(run.name[1:]) if run.name[1:].isdigit() else -1


def interrupted_run(runs_dir: Path, *, registered: Collection[str], fingerprint: str) -> Path | None:
    """The newest run folder not registered as a model version that was started with this
    fingerprint, saved a checkpoint (``weights/last.pt``) and is not training in another
    process; None when there is none."""
    for run in (runs_dir / name for name in unfinished_runs(runs_dir, registered=registered)):
        try:
            saved = json.loads((run / INPUTS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            saved.get("fingerprint") == fingerprint and (run / "weights" / "last.pt").is_file()
            and not training_now(run)
        ):
            return run
    return None
