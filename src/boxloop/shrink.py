"""Training copies of large photos: a picture at least twice the training size on its long
side goes to the trainer as a copy at 1/2, 1/4 or 1/8 of its size, still no smaller than the
training size (Ultralytics resizes every image to it anyway), made once and kept by content
and size under the workspace's ``shrunk/``. A phone's 12-megapixel JPEG, decoded every epoch,
costs the trainer ~0.1 s; its copy ~5 ms, and a JPEG is reduced while it is decoded
(:func:`boxloop.modeling.decode_reduced`), as `predict` decodes it: training and prediction
see a photo alike. YOLO labels are relative to the picture, so they do not change."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from .atomic import temporary_beside
from .errors import InputError
from .types import Item
from .workspace import Workspace

__all__ = ["SHRUNK_DIR", "shrunk_copies"]

log = logging.getLogger(__name__)
SHRUNK_DIR = "shrunk"


def shrunk_copies(
    ws: Workspace, items: Sequence[Item], names: Mapping[str, str], imgsz: int, *, workers: int | None = None,
) -> dict[str, Path]:
    """item id → a copy of its picture for training at ``imgsz``, in the kind its name in the
    training view says (``names``: ``.jpg`` a JPEG, ``.png`` a PNG, ...), for each item at
    least twice ``imgsz`` on its long side. Copies made for an earlier round are reused; one
    that cannot be made leaves its item to the trainer as it is."""
    from .modeling import reduction

    wanted = [it for it in items if reduction((it.width, it.height), (imgsz, imgsz)) > 1]
    if not wanted:
        return {}
    folder = ws.root / SHRUNK_DIR
    folder.mkdir(exist_ok=True)

    def copy(it: Item) -> tuple[str, Path | None]:
        f = reduction((it.width, it.height), (imgsz, imgsz))
        suffix = PurePosixPath(names[it.id]).suffix.lower()
        path = folder / f"{it.sha256[:24]}-{-(-it.width // f)}x{-(-it.height // f)}{suffix}"
        if path.is_file():
            return it.id, path
        try:
            _write(it, imgsz, f, path)
        except (InputError, OSError, ValueError) as e:
            log.warning("%s: no training copy (%s); the trainer reads it whole", it.uri, e)
            return it.id, None
        return it.id, path

    from .backends.ultralytics import usable_cores

    with ThreadPoolExecutor(max_workers=workers or usable_cores(), thread_name_prefix="boxloop-shrink") as pool:
        made = dict(pool.map(copy, wanted))
    out = {i: p for i, p in made.items() if p is not None}
    log.info("training copies of %d large picture(s) under %s", len(out), folder)
    return out


def _write(it: Item, imgsz: int, f: int, path: Path) -> None:
    """Decode ``it`` at 1/``f`` (a JPEG while decoding, any other picture whole, then shrunk
    by area) and write it, in the kind ``path`` names, through a temporary file."""
    import cv2

    from .modeling import decode_reduced

    size = (-(-it.width // f), -(-it.height // f))
    rgb, _ = decode_reduced(it.uri, size=(it.width, it.height), sha256=it.sha256, fit=(imgsz, imgsz))
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV cannot write {path.suffix}")
    tmp = temporary_beside(path)
    try:
        with open(tmp, "xb") as out:
            out.write(buf.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
