"""Images where fsspec reaches them: ``s3://``, ``gs://``, ``az://``, ``http(s)://``.

Objects are only read, never written. Every read goes through a local cache keyed by the
content hash (the item's sha256), bounded in bytes: the least recently used objects are
evicted first. A cached object is checked against its hash before use, so a damaged cache
file is fetched again, never trusted. Credentials are found the normal way for each store
(AWS_* variables, profiles and instance roles for S3; GOOGLE_APPLICATION_CREDENTIALS for
GCS; AZURE_STORAGE_* for Azure); errors name the URI.

Settings come from the environment (the cache is per machine, shared by workspaces):
``BOXLOOP_CACHE_DIR`` (default ``~/.cache/boxloop/images``) and ``BOXLOOP_CACHE_SIZE``
(``20GB``, ``500MB``, ``0`` turns the cache off; default 10GB).

fsspec and the store's package (s3fs, gcsfs, adlfs) are imported only when a URI is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = [
    "REMOTE_SCHEMES",
    "ImageCache",
    "default_cache",
    "expand_uri",
    "fetch",
    "is_remote",
    "list_folder",
    "parse_size",
    "read_bytes",
]

log = logging.getLogger(__name__)

#: URI schemes read through fsspec, and the package each one needs.
REMOTE_SCHEMES: dict[str, str] = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}
_GLOB = re.compile(r"[*?\[]")
_CREDENTIAL_ERRORS = frozenset({
    "NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
    "DefaultCredentialsError", "ClientAuthenticationError", "CredentialUnavailableError",
})
_CREDENTIAL_HELP = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run on a machine with an instance role",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`",
    "az": "set AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_CONNECTION_STRING or a service principal",
}


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def is_remote(uri: object) -> bool:
    """Whether ``uri`` names an object fsspec reads (not a local path)."""
    return isinstance(uri, str) and _scheme(uri) in REMOTE_SCHEMES


def _family(uri: str) -> str:
    s = _scheme(uri)
    return {"s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az"}.get(s, s)


def _is_credential_error(e: BaseException) -> bool:
    """Whether a store's exception means no usable credentials (botocore, google-auth, adlfs)."""
    return type(e).__name__ in _CREDENTIAL_ERRORS or "credential" in str(e).lower()


def _error(uri: str, e: BaseException, what: str = "object") -> InputError:
    """An InputError naming the URI, in words a user can act on."""
    name = type(e).__name__
    text = str(e) or name
    family = _family(uri)
    if _is_credential_error(e):
        hint = _CREDENTIAL_HELP.get(family, "check the credentials for this store")
        return InputError(f"{uri}: no usable credentials for {family}:// ({text}); {hint}")
    if isinstance(e, FileNotFoundError):
        if "bucket" in text.lower() or "container" in text.lower():
            return InputError(f"{uri}: no such bucket ({text})")
        return InputError(f"{uri}: no such {what}")
    if isinstance(e, PermissionError):
        hint = _CREDENTIAL_HELP.get(family, "check the credentials for this store")
        return InputError(f"{uri}: access denied ({text}); {hint}")
    return InputError(f"{uri}: cannot read: {text}")


_FS_LOCK = threading.Lock()


def _filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URI; a missing package is an error naming it."""
    scheme = _scheme(uri)
    try:
        import fsspec
    except ImportError as e:
        raise InputError(f"{uri}: reading {scheme}:// URIs needs fsspec: pip install 'boxloop[cloud]'") from e
    try:
        with _FS_LOCK:  # fsspec's instance cache is not built for concurrent first use
            return fsspec.core.url_to_fs(uri)
    except ImportError as e:
        pkg = REMOTE_SCHEMES.get(scheme, "the fsspec implementation")
        raise InputError(f"{uri}: reading {scheme}:// URIs needs the {pkg} package: pip install {pkg}") from e
    except ValueError as e:
        if _is_credential_error(e):  # adlfs raises ValueError when no account is set at all
            raise _error(uri, e) from e
        raise InputError(f"{uri}: not a URI fsspec can read: {e}") from e
    except Exception as e:  # constructing a client can already fail on credentials or config
        raise _error(uri, e) from e


def read_bytes(uri: str, *, known: bool = False) -> bytes:
    """The whole object (InputError naming the URI if missing, unreadable or forbidden).
    ``known``: the object was there before (a missing one is reported as gone)."""
    fs, path = _filesystem(uri)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError as e:
        if known and "bucket" not in str(e).lower():
            raise InputError(f"{uri}: the object is gone (deleted or moved after it was added)") from e
        raise _error(uri, e) from e
    except Exception as e:  # botocore / google-auth / azure raise their own trees
        raise _error(uri, e) from e


def _uri(fs: Any, path: str, like: str) -> str:
    """The URI of a path an fsspec listing returned, with the scheme the user wrote."""
    if _scheme(like) in ("http", "https"):
        return path
    return f"{_scheme(like)}://{path.lstrip('/')}"


def expand_uri(uri: str, suffixes: Iterable[str]) -> list[str]:
    """Objects a URI names: one object, everything under a prefix (recursively) or a glob,
    keeping those with one of ``suffixes``, in natural order. Nothing matching is an
    InputError naming the URI."""
    suffixes = {s.lower() for s in suffixes}
    fs, path = _filesystem(uri)

    def keep(p: str) -> bool:
        return os.path.splitext(p)[1].lower() in suffixes

    try:
        return _expand(fs, path, uri, keep, suffixes)
    finally:
        _forget_listings(fs)


def _forget_listings(fs: Any) -> None:
    """Drop fsspec's cached listings: a later read must see objects added since (s3fs
    answers a read from a stale listing with "no such object")."""
    fs.invalidate_cache()


def _expand(fs: Any, path: str, uri: str, keep: Any, suffixes: set[str]) -> list[str]:
    from .images import natural_key

    try:
        if _GLOB.search(path) and _scheme(uri) not in ("http", "https"):
            found = [p for p, info in fs.glob(path, detail=True).items() if info.get("type") != "directory" and keep(p)]
        else:
            info = fs.info(path)
            if info.get("type") == "directory":
                found = [p for p in fs.find(path) if keep(p)]
            else:
                return [uri]
    except Exception as e:  # botocore / google-auth / azure raise their own trees
        raise _error(uri, e, what="object, prefix or matching glob") from e
    if not found:
        raise InputError(f"{uri}: no such object, prefix or matching glob (nothing with {', '.join(sorted(suffixes))})")
    return sorted((_uri(fs, p, uri) for p in found), key=natural_key)


def list_folder(uri: str, suffixes: Iterable[str]) -> list[str]:
    """Objects directly under a prefix (not recursive), with one of ``suffixes``."""
    from .images import natural_key

    suffixes = {s.lower() for s in suffixes}
    fs, path = _filesystem(uri)
    try:
        entries = fs.ls(path.rstrip("/"), detail=True)
    except Exception as e:
        raise _error(uri, e, what="prefix") from e
    finally:
        _forget_listings(fs)
    files = [e["name"] for e in entries if e.get("type") != "directory"
             and os.path.splitext(e["name"])[1].lower() in suffixes]
    if not entries:
        raise InputError(f"{uri}: no such prefix (nothing listed under it)")
    return sorted((_uri(fs, p, uri) for p in files), key=natural_key)


# -- the cache --------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"20GB"`` → bytes (decimal units; KiB/MiB/GiB binary); InputError naming the text."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise InputError(f"BOXLOOP_CACHE_SIZE: expected a size such as 20GB or 500MB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


class ImageCache:
    """Object bytes by content hash under ``root``, at most ``max_bytes`` in all.

    Writes are atomic (temp file + rename), so processes sharing the folder (several Ray
    actors on one machine) never read half a file; the least recently used files go first
    when the total passes the bound.

    >>> cache = ImageCache(tmp_path, max_bytes=10**9)   # doctest: +SKIP
    >>> cache.put(sha, data); cache.get(sha) == data     # doctest: +SKIP
    True
    """

    def __init__(self, root: str | Path, *, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._size: int | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def get(self, sha256: str) -> bytes | None:
        """The cached bytes of this content, or None (also for a damaged entry, which is dropped)."""
        p = self._path(sha256)
        try:
            data = p.read_bytes()
        except OSError:
            self.misses += 1
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            log.warning("cache entry %s is damaged; fetching it again", p)
            p.unlink(missing_ok=True)
            self.misses += 1
            return None
        with contextlib.suppress(OSError):
            os.utime(p)  # recency for the eviction order
        self.hits += 1
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` (whose hash is ``sha256``), evicting old entries past the bound."""
        if self.max_bytes <= 0 or len(data) > self.max_bytes:
            return
        p = self._path(sha256)
        if p.is_file():
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=p.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, p)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:  # a full or read-only cache disk slows reads down, nothing more
            log.warning("cannot write to the image cache %s: %s", self.root, e)
            return
        with self._lock:
            if self._size is None:
                self._size = self.size()
            else:
                self._size += len(data)
            if self._size > self.max_bytes:
                self._size = self._evict(int(self.max_bytes * 0.9))

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        if not self.root.is_dir():
            return out
        for sub in os.scandir(self.root):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                if e.name.startswith(".tmp-"):
                    continue
                try:
                    st = e.stat()
                except OSError:
                    continue
                out.append((st.st_mtime, st.st_size, Path(e.path)))
        return out

    def size(self) -> int:
        """Bytes in the cache now."""
        return sum(s for _, s, _ in self._entries())

    def _evict(self, target: int) -> int:
        entries = sorted(self._entries(), key=lambda e: e[0])
        total = sum(s for _, s, _ in entries)
        for _, s, p in entries:
            if total <= target:
                break
            p.unlink(missing_ok=True)
            total -= s
        log.debug("image cache %s evicted down to %d bytes", self.root, total)
        return total


_CACHES: dict[tuple[str, int], ImageCache] = {}


def default_cache() -> ImageCache | None:
    """The machine's image cache from BOXLOOP_CACHE_DIR / BOXLOOP_CACHE_SIZE (None when off)."""
    root = os.environ.get("BOXLOOP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "boxloop", "images"
    )
    max_bytes = parse_size(os.environ.get("BOXLOOP_CACHE_SIZE", "10GB"))
    if max_bytes <= 0:
        return None
    key = (root, max_bytes)
    with _FS_LOCK:
        if key not in _CACHES:
            _CACHES[key] = ImageCache(root, max_bytes=max_bytes)
        return _CACHES[key]


def fetch(uri: str, *, sha256: str | None = None) -> bytes:
    """An object's bytes: from the cache when its content hash is known and cached, else
    read (and cached). With ``sha256``, bytes with another hash are an InputError: the
    object changed after it was added."""
    cache = default_cache()
    if sha256 and cache is not None:
        data = cache.get(sha256)
        if data is not None:
            return data
    data = read_bytes(uri, known=sha256 is not None)
    actual = hashlib.sha256(data).hexdigest()
    if sha256 and actual != sha256:
        raise InputError(
            f"{uri}: the object changed after it was added (content hash {actual[:12]}, expected {sha256[:12]}): "
            "its labels were drawn on the picture it was; put that back (a new picture there: `boxloop add images` "
            "adds it as a new image)"
        )
    if cache is not None:
        cache.put(actual, data)
    return data
