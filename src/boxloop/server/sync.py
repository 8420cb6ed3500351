"""Adopt the Label Studio tasks boxloop did not push, so that ``pull`` brings their
annotations back like any other.

A task someone imported into Label Studio directly has no ``data.boxloop_item``. When it
has an annotation, its image is fetched (under the server's allow-list), kept once per
content in ``<workspace>/media/labelstudio/``, added as an item, and the task is recorded
in the store's tasks table with the predictions it carries (what the annotator was shown),
so pre-label acceptance is counted as for pushed tasks. Running it again adopts nothing
twice.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, Problems
from ..workspace import Workspace
from .images import ImageFetcher, ImageRefused, ImageUnavailable

__all__ = ["MEDIA_DIR", "AdoptReport", "adopt_tasks"]

log = logging.getLogger(__name__)
MEDIA_DIR = Path("media") / "labelstudio"
_SUFFIX = {
    "JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif",
    "GIF": ".gif", "HEIF": ".heic", "AVIF": ".avif", "JPEG2000": ".jp2",
}


@dataclass
class AdoptReport:
    """What an adoption did."""

    adopted: int = 0
    problems: Problems = field(default_factory=Problems)


def _keep(ws: Workspace, raw: bytes) -> Path:
    """The image bytes as a file in the workspace's media folder, named by content."""
    from ..sources.images import opened

    digest = hashlib.sha256(raw).hexdigest()
    try:
        with opened(io.BytesIO(raw)) as im:
            suffix = _SUFFIX.get(str(im.format), ".img")
    except (OSError, ImportError, SyntaxError, ValueError):  # ImportError: Ultralytics' patched open
        raise ImageUnavailable("Label Studio's answer is not an image") from None
    folder = ws.root / MEDIA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest[:16]}{suffix}"
    if not path.is_file():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)
    return path


def adopt_tasks(ws: Workspace, *, project: int, url: str, token: str, fetcher: ImageFetcher) -> AdoptReport:
    """Record every annotated task of ``project`` that the store does not know yet."""
    from ..annotation.labelstudio import (
        ITEM_KEY,
        TOOL,
        api_client,
        find_project,
        list_tasks,
        predictions_meta,
        project_config,
    )
    from ..ingest import index_image

    store = ws.store
    report = AdoptReport()
    client = api_client(url, token)
    proj = find_project(client, url, str(project), create_with=None)
    classes = store.classes()
    lc = project_config(proj, classes, url)
    rows = store.tasks(TOOL, str(project))
    task_ids = {str(r["task_id"]) for r in rows}
    item_task = {r["item_id"]: str(r["task_id"]) for r in rows}
    versions = {str(v["id"]) for v in store.model_versions()}
    for t in list_tasks(client, url, project, fields="all"):
        tid = str(t.get("id"))
        data: dict[str, Any] = t.get("data") or {}
        if tid in task_ids or not int(t.get("total_annotations") or 0):
            continue
        pushed = data.get(ITEM_KEY)
        if pushed:
            try:
                store.get_item(str(pushed))
                continue  # pushed by boxloop: pull adopts it itself
            except InputError:
                pass
        ref = data.get(lc.image_key)
        where = f"task {tid}"
        try:
            raw = fetcher.fetch(str(ref or ""), task_id=int(tid))
            path = _keep(ws, raw)
            item = index_image(path)
        except (ImageRefused, ImageUnavailable, InputError) as e:
            report.problems.add(where, f"{e}; its annotations are not pulled")
            continue
        except OSError as e:
            report.problems.add(where, f"cannot keep its image: {e}; its annotations are not pulled")
            continue
        stored, _ = store.add_item(item, str(path))
        if stored.id in item_task:
            report.problems.add(
                where, f"the same image as task {item_task[stored.id]}, which boxloop already follows; left out"
            )
            continue
        shown = predictions_meta(t, stored, lc, classes)
        # serve cut a version's pre-labels where the workspace cuts them (Workspace.prelabel_conf)
        confs = {mv: ws.prelabel_conf(mv) for mv in shown if mv in versions}
        meta = {"image": str(ref), "adopted": "serve", "predictions": shown, "prelabel_confs": confs}
        store.put_task(TOOL, str(project), stored.id, tid, status="open", meta=meta)
        item_task[stored.id] = tid
        task_ids.add(tid)
        report.adopted += 1
    log.info("adopted %d task(s) of project %d at %s", report.adopted, project, url)
    return report
