"""Find image files, index them from their headers, and load them as displayed.

Local paths and URIs (``s3://``, ``gs://``, ``az://``, ``http(s)://``, read through
:mod:`.remote`) are accepted alike; a URI stays a ``str``, a local path is a ``Path``."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from . import absolute_path

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "JPEG_SUFFIXES",
    "NOT_READ_SUFFIXES",
    "ImageInfo",
    "as_shown",
    "expand_paths",
    "file_sha256",
    "hidden",
    "image_info_from_bytes",
    "load_image",
    "natural_key",
    "not_read_reason",
    "opened",
    "read_image_info",
    "rgb8",
    "shown_size",
    "suffix_of",
]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# JPEG under each name it is saved with (Windows saves web pictures as .jfif)
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".jpe"})
# a phone's photos: HEIC/HEIF through pi-heif (a dependency; pillow-heif serves as well)
_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
_HEIF_READ = _installed("pi_heif") or _installed("pillow_heif")
_AVIF_READ = _installed("PIL._avif")  # Pillow 11.3 and newer decode AVIF themselves
IMAGE_SUFFIXES = frozenset(
    JPEG_SUFFIXES | {".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2"}
    | (_HEIF_SUFFIXES if _HEIF_READ else set())
    | ({".avif"} if _AVIF_READ else set())
)
# pictures boxloop does not read (a GIF, a camera's raw file; HEIC or AVIF where their decoder
# is missing): a folder's files of these kinds are named as left out, never passed over in silence
NOT_READ_SUFFIXES = frozenset(
    {".gif", ".heic", ".heif", ".avif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2"}
) - IMAGE_SUFFIXES
# EXIF orientations 5-8 turn the picture by 90 degrees: displayed width and height swap.
_TRANSPOSED = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What indexing an image learns without decoding its pixels."""

    path: Path | str  # a str for a URI
    sha256: str
    width: int  # as displayed, after EXIF orientation
    height: int
    orientation: int = 1


def natural_key(s: str) -> list[object]:
    """Sort key where digit runs compare as numbers: ``2.jpg`` before ``10.jpg``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def suffix_of(uri: str | Path) -> str:
    """The lower-case suffix of a file path or a URI's path (``.jpg``), its query left out."""
    text = str(uri)
    if "://" in text:
        from urllib.parse import urlparse

        text = urlparse(text).path
    return PurePosixPath(text.replace("\\", "/")).suffix.lower()


def hidden(rel: PurePath) -> bool:
    """Whether a path (relative to the folder given) is hidden: in or at a dot file or folder
    (``.DS_Store``, macOS's ``._IMG_1.jpg`` resource forks, ``.ipynb_checkpoints/``) or a
    zip's ``__MACOSX/``."""
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.parts)


def not_read_reason(f: Path | str) -> str:
    """Why a picture in one of :data:`NOT_READ_SUFFIXES` was left out, and what to do."""
    suffix = PurePosixPath(str(f)).suffix.lower()
    kind = suffix.lstrip(".").upper()
    if suffix in _HEIF_SUFFIXES:
        how = "install pi-heif (pip install pi-heif), or convert it to JPEG"
    elif suffix == ".avif":
        how = "install Pillow 11.3 or newer (pip install -U pillow), or convert it to JPEG or PNG"
    elif suffix == ".gif":
        how = "convert it (or the frames you want labeled) to PNG"
    else:
        how = "a camera's raw file: export it as JPEG (or TIFF)"
    return f"not read: boxloop does not read {kind} pictures here; {how}"


def expand_paths(
    paths: Iterable[str | Path],
    suffixes: frozenset[str] = IMAGE_SUFFIXES,
    *,
    not_read: list[Path] | None = None,
) -> Iterator[Path | str]:
    """Files under ``paths`` (folders recursively, globs, plain files) with one of
    ``suffixes``, each once, in natural order per argument; hidden files under a folder are
    skipped. A path that matches nothing is an InputError naming it. URIs
    (``s3://bucket/prefix``, globs, objects) are listed through fsspec and come back as
    ``str``. Local pictures in a format boxloop does not read (:data:`NOT_READ_SUFFIXES`)
    are appended to ``not_read`` when it is given."""
    from .remote import expand_uri, is_remote

    seen: set[Path | str] = set()
    for p in paths:
        if is_remote(str(p)):
            for uri in expand_uri(str(p), suffixes):
                if uri not in seen:
                    seen.add(uri)
                    yield uri
            continue
        p = Path(p)
        if p.is_dir():
            # a broken link is listed: reading it names it (it was skipped without a word)
            listed = [f for f in p.rglob("*") if not hidden(f.relative_to(p)) and (f.is_file() or _broken_link(f))]
        elif p.is_file():
            listed = [p]
        else:
            listed = [f for f in map(Path, glob.glob(str(p), recursive=True)) if f.is_file()]
        found = [f for f in listed if f.suffix.lower() in suffixes or (f == p and f.suffix.lower() not in NOT_READ_SUFFIXES)]
        others = [f for f in listed if f.suffix.lower() in NOT_READ_SUFFIXES - suffixes]
        if not found and not others and not p.is_dir():
            raise InputError(f"{p}: no such file, folder or matching glob")
        if not_read is not None:
            not_read.extend(absolute_path(f) for f in sorted(others, key=lambda f: natural_key(str(f))))
        for f in sorted(found, key=lambda f: natural_key(str(f))):
            f = absolute_path(f)
            if f not in seen:
                seen.add(f)
                yield f


def read_image_info(path: str | Path, sha256: str | None = None) -> ImageInfo:
    """Index an image from its header: size as displayed and EXIF orientation.
    Raises InputError (with the path) for an empty, truncated or non-image file.

    The file is read once: the bytes feed the content hash, the header parse and the
    truncation check (pixels are never decoded). A URI is read through the image cache."""
    from .remote import fetch, is_remote

    if is_remote(str(path)):
        return image_info_from_bytes(str(path), fetch(str(path)), sha256)
    path = Path(path)
    if _broken_link(path):
        raise InputError(f"{path}: a link to {os.readlink(path)}, which is not there")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from e
    return image_info_from_bytes(path, data, sha256)


def _broken_link(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def image_info_from_bytes(path: Path | str, data: bytes, sha256: str | None = None) -> ImageInfo:
    """:func:`read_image_info` over bytes already read (``path`` names them in errors)."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with opened(io.BytesIO(data)) as im:
            w, h = im.size
            fmt = im.format
            orientation = _orientation(im)
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: {_too_large(e)}") from e
    except (UnidentifiedImageError, ImportError) as e:
        # ImportError: once ultralytics is imported, its patched Image.open tries an optional
        # HEIF plugin (pi_heif) on any file Pillow cannot identify
        raise InputError(f"{path}: not an image (cannot identify the format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable image: {e}") from e
    tail = data[-16:]
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        raise InputError(f"{path}: truncated JPEG (no end-of-image marker)")
    if fmt == "PNG" and b"IEND" not in tail:
        raise InputError(f"{path}: truncated PNG (no IEND chunk)")
    if orientation in _TRANSPOSED:
        w, h = h, w
    return ImageInfo(path, sha256 or hashlib.sha256(data).hexdigest(), w, h, orientation)


@contextmanager
def opened(source: object) -> Iterator[Image.Image]:
    """``Image.open`` that also reads a phone's HEIC/HEIF (teaching Pillow the format the first
    time one is met), without Pillow's warning past 89 megapixels (such an image is read all
    the same; past 179 Pillow raises, and the caller says why it is not read)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(source)  # type: ignore[arg-type]
        except Image.UnidentifiedImageError:
            if not _add_heif_opener():
                raise
            if hasattr(source, "seek"):
                source.seek(0)
            im = Image.open(source)  # type: ignore[arg-type]
        with im:
            yield im


_heif_opener = False
_heif_lock = threading.Lock()


def _add_heif_opener() -> bool:
    """Register a HEIF decoder with Pillow, once (a 50 ms import, paid only when an image is
    not otherwise identified): whether one is registered, by this call or an earlier one (a
    thread whose photo failed just before another thread registered it tries again too)."""
    global _heif_opener
    with _heif_lock:
        if not _heif_opener:
            for module in ("pi_heif", "pillow_heif"):
                try:
                    register = importlib.import_module(module).register_heif_opener
                except ImportError:
                    continue
                register()
                _heif_opener = True
                break
        return _heif_opener


def _too_large(e: Exception) -> str:
    """Why an image past Pillow's pixel limit is not read, and what to do."""
    found = re.search(r"\((\d+) pixels\)", str(e))
    size = f" ({int(found.group(1)) / 1e6:.3g} megapixels)" if found else ""
    return (f"too large to decode safely{size}: cut it into tiles (an orthomosaic, a scan) "
            "and add those")


def shown_size(im: Image.Image) -> tuple[int, int]:
    """An opened image's size as displayed (w, h): EXIF orientations 5-8 swap its sides."""
    w, h = im.size
    return (h, w) if _orientation(im) in _TRANSPOSED else (w, h)


def _orientation(im: object) -> int:
    """The EXIF orientation tag (1 when absent); a broken EXIF block never hides a good image."""
    info = getattr(im, "info", {})
    if "exif" not in info and getattr(im, "format", None) in ("JPEG", "PNG", "WEBP"):
        return 1  # no EXIF block: skip parsing one
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)  # type: ignore[attr-defined]
    except Exception:
        return 1


def load_image(
    uri: str | Path, *, data: bytes | None = None, sha256: str | None = None, at_least: int | None = None
) -> np.ndarray:
    """Decode an image as displayed (EXIF orientation applied): RGB uint8, HxWx3. A URI
    (or ``data`` already read) is decoded from memory; ``sha256`` lets the cache answer. With
    ``at_least`` (pixels), a JPEG may come out at 1/2, 1/4 or 1/8 of its size, both sides still
    at least that (libjpeg scales while decoding: a thumbnail of a 12-MP photo in a fifth of
    the time)."""
    import io

    from PIL import Image

    from .remote import fetch, is_remote

    if data is None and is_remote(str(uri)):
        data = fetch(str(uri), sha256=sha256)
    try:
        with opened(io.BytesIO(data) if data is not None else uri) as im:
            return as_shown(im, at_least=at_least)
    except Image.DecompressionBombError as e:
        raise InputError(f"{uri}: {_too_large(e)}") from e
    except (OSError, SyntaxError, ValueError, ImportError) as e:
        raise InputError(f"{uri}: cannot decode image: {e}") from e


def as_shown(im: Image.Image, *, at_least: int | None = None) -> np.ndarray:
    """An opened image's pixels as displayed (EXIF orientation applied), RGB uint8 (:func:`rgb8`).
    With ``at_least`` (pixels), a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size, both
    sides still at least that (libjpeg scales while decoding)."""
    from PIL import ImageOps

    if at_least and im.format == "JPEG":
        im.draft("RGB", (at_least, at_least))
    return rgb8(ImageOps.exif_transpose(im))


_WIDE_GREY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def rgb8(im: Image.Image) -> np.ndarray:
    """RGB uint8 pixels of a decoded image. A 16-bit grey image (an industrial or thermal
    camera's PNG or TIFF) keeps its high byte, as OpenCV reads it for Ultralytics' training:
    Pillow's own conversion clips it to white."""
    if getattr(im, "mode", None) in _WIDE_GREY:
        grey = (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))
