"""Disk a workspace can give back: files boxloop wrote that nothing needs any more, or that
it makes again when needed. Never a picture, a label, the store or a model version's
weights.

- ``last.pt`` (and Ultralytics' ``epochN.pt``) of finished runs: a model version loads the
  weights it names (``best.pt``); the checkpoint to resume from is of no use once the run ended;
- runs cut off: run folders no model version names and no process trains (``train`` with the
  same labels and settings would have gone on with one);
- the held-out models of out-of-fold audits (``runs/audit-folds``): `audit --folds` trains
  them again when asked;
- with ``shrunk``: the training copies of large pictures (``shrunk/``) and the tiles of
  pictures trained on by tiles (``tiles/``), made again when next needed (a decode of each
  large picture).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .audit import HELD_OUT_DIR
from .shrink import SHRUNK_DIR
from .status import bytes_under, training_runs
from .tiles import TILES_DIR
from .workspace import Workspace

__all__ = ["Prunable", "prunable", "prune"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prunable:
    """A file or folder that can go, why, and the bytes it gives back."""

    path: Path
    what: str
    bytes: int


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.(tmp|build)$")  # atomic.temporary_beside, export's zip build


def _left_by_a_dead_process(name: str) -> bool:
    """Whether ``name`` is a temporary file or folder (``.NAME.<pid>.<hex>.tmp``) whose writer
    is gone: a command killed (kill -9) before it renamed it into place."""
    found = _TEMPORARY.match(name)
    if found is None:
        return False
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False

def _size(path: Path) -> int:
    return bytes_under(path) if path.is_dir() else path.stat().st_size


def prunable(ws: Workspace, *, shrunk: bool = False) -> list[Prunable]:
    """What :func:`prune` would remove, largest kinds first as listed in the module doc."""
    from .runs import training_now

    out: list[Prunable] = []
    for v in ws.store.model_versions():
        if not v["path"]:
            continue
        weights = Path(v["path"])
        folder = weights.parent
        if folder.name != "weights" or not folder.is_dir() or ws.runs_dir not in folder.parents:
            continue  # weights from elsewhere: not boxloop's to touch
        for p in sorted(folder.glob("*.pt")):
            if p != weights and (p.name == "last.pt" or p.name.startswith("epoch")):
                out.append(Prunable(p, f"{v['id']}: checkpoint of a finished run", _size(p)))
    for name, state in training_runs(ws).items():
        if state == "cut off":
            run = ws.runs_dir / name
            out.append(Prunable(run, "a run cut off (it can no longer be resumed once removed)", _size(run)))
        elif state == "nothing saved":
            run = ws.runs_dir / name
            out.append(Prunable(run, "a run stopped before it saved an epoch (nothing to resume)", _size(run)))
    for folder in (ws.root / "exports", ws.root / "imports"):
        for left in sorted(folder.glob(".*")) if folder.is_dir() else []:
            if _left_by_a_dead_process(left.name):
                out.append(Prunable(left, "left half-written by a command killed while writing it", _size(left)))
    held = ws.runs_dir / HELD_OUT_DIR
    if held.is_dir():
        for fold in sorted(p for p in held.iterdir() if p.is_dir()):
            if not training_now(fold):
                out.append(Prunable(fold, "held-out model of an out-of-fold audit (`audit --folds` trains it again)",
                                    _size(fold)))
    if shrunk and (ws.root / SHRUNK_DIR).is_dir():
        out.append(Prunable(ws.root / SHRUNK_DIR, "training copies of large pictures (made again when next needed)",
                            _size(ws.root / SHRUNK_DIR)))
    if shrunk and (ws.root / TILES_DIR).is_dir():
        out.append(Prunable(ws.root / TILES_DIR, "tiles of pictures trained on by tiles (made again when next needed)",
                            _size(ws.root / TILES_DIR)))
    return out


def prune(ws: Workspace, found: list[Prunable]) -> int:
    """Remove what :func:`prunable` found; returns the bytes given back. One that is gone
    already is passed over."""
    freed = 0
    for p in found:
        if not p.path.exists():
            continue
        if p.path.is_dir():
            shutil.rmtree(p.path)
        else:
            p.path.unlink()
        freed += p.bytes
        log.info("removed %s (%s)", p.path, p.what)
    return freed
