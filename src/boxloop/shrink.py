"""Training copies of large photos: a picture at least twice the training size on its long
side goes to the trainer as a copy at 1/2, 1/4 or 1/8 of its size, still no smaller than the
training size (Ultralytics resizes every image to it anyway), made once and kept by content
and size under the workspace's ``shrunk/``. A phone's 12-megapixel JPEG, decoded every epoch,
costs the trainer ~0.1 s; its copy ~5 ms, and a JPEG is reduced while it is decoded
(:func:`boxloop.modeling.decode_reduced`), as `predict` decodes it: training and prediction
see a photo alike. YOLO labels are relative to the picture, so they do not change. A large
picture of a kind that cannot be decoded reduced (a phone's HEIC, a PNG, a TIFF) is also read by
`predict` from such a copy from the second time on (:func:`kept_copy`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from .atomic import write_bytes_atomic
from .errors import InputError
from .types import Item
from .workspace import Workspace

__all__ = ["KEPT_KINDS", "SHRUNK_DIR", "copy_path", "encode_picture", "kept_copy", "shrunk_copies"]

log = logging.getLogger(__name__)
SHRUNK_DIR = "shrunk"
# kinds that cannot be decoded at a fraction of their size (12 MP: a PNG 0.3 s, a TIFF 0.2 s, a
# JPEG 2000 1.3 s, a HEIC 0.7 s, against 0.04 s for a JPEG reduced while decoded): `predict`
# keeps a copy of a large one under shrunk/, in the kind training names it (a HEIC or AVIF as
# a JPEG, the others as they are), so the two share it
KEPT_KINDS = {".png": ".png", ".tif": ".tif", ".tiff": ".tiff", ".webp": ".webp", ".jp2": ".jp2",
              ".heic": ".jpg", ".heif": ".jpg", ".avif": ".jpg"}


def shrunk_copies(
    ws: Workspace, items: Sequence[Item], names: Mapping[str, str], imgsz: int, *, workers: int | None = None,
    stretch: bool = False,
) -> dict[str, Path]:
    """item id → a copy of its picture for training at ``imgsz``, in the kind its name in the
    training view says (``names``: ``.jpg`` a JPEG, ``.png`` a PNG, ...), for each item at
    least twice ``imgsz`` on its long side (with ``stretch``, for a model trained on pictures
    stretched to a square (RT-DETR), on its short side). Copies made for an earlier round are
    reused; one that cannot be made leaves its item to the trainer as it is."""
    from .modeling import reduction

    factor = {it.id: reduction((it.width, it.height), (imgsz, imgsz), stretch=stretch) for it in items}
    wanted = [it for it in items if factor[it.id] > 1]
    if not wanted:
        return {}
    folder = ws.root / SHRUNK_DIR
    folder.mkdir(exist_ok=True)

    def copy(it: Item) -> tuple[str, Path | None]:
        f = factor[it.id]
        path = copy_path(folder, it.sha256, (it.width, it.height), f, PurePosixPath(names[it.id]).suffix.lower())
        if path.is_file():
            return it.id, path
        try:
            _write(it, imgsz, f, path, stretch=stretch)
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


def copy_path(folder: Path, sha256: str, size: tuple[int, int], f: int, suffix: str) -> Path:
    """Where the copy at 1/``f`` of a picture (content ``sha256``, ``size`` (w, h) as shown)
    is kept, in the kind ``suffix`` names: training and prediction share it."""
    return folder / f"{sha256[:24]}-{-(-size[0] // f)}x{-(-size[1] // f)}{suffix}"


def kept_copy(folder: Path, uri: str, size: tuple[int, int], sha256: str, f: int) -> np.ndarray:
    """A picture of one of :data:`KEPT_KINDS` at 1/``f``, as RGB: read from its copy under
    ``folder``, or decoded whole, shrunk by area and kept there for the next round (a copy that
    cannot be written is only not kept). The first time gives the pixels of the copy as well."""
    import cv2

    from .sources.images import load_image, suffix_of

    kind = KEPT_KINDS[suffix_of(uri)]
    path = copy_path(folder, sha256, size, f, kind)
    want = (-(-size[0] // f), -(-size[1] // f))
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if bgr is not None and (bgr.shape[1], bgr.shape[0]) == want:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    small = cv2.resize(load_image(uri, sha256=sha256), want, interpolation=cv2.INTER_AREA)
    try:
        data = encode_picture(small, kind)
    except ValueError as e:  # an OpenCV built without that writer
        log.debug("%s: copy not kept (%s)", uri, e)
        return small
    try:
        folder.mkdir(exist_ok=True)
        write_bytes_atomic(path, data)
    except OSError as e:
        log.debug("%s: copy not kept (%s)", uri, e)
    # the copy as it will be read next time: this round's predictions are the next round's
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _write(it: Item, imgsz: int, f: int, path: Path, *, stretch: bool = False) -> None:
    """Decode ``it`` at 1/``f`` (a JPEG while decoding, any other picture whole, then shrunk
    by area) and write it, in the kind ``path`` names."""
    import cv2

    from .modeling import decode_reduced

    size = (-(-it.width // f), -(-it.height // f))
    rgb, _ = decode_reduced(it.uri, size=(it.width, it.height), sha256=it.sha256, fit=(imgsz, imgsz), stretch=stretch)
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    write_bytes_atomic(path, encode_picture(rgb, path.suffix))


def encode_picture(rgb: np.ndarray, suffix: str) -> bytes:
    """An RGB picture as the bytes of the kind ``suffix`` names (a JPEG at quality 95)."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV cannot write {suffix}")
    return buf.tobytes()
