"""The image of a Label Studio task, fetched only from where it may come from.

A task's image reference is one of:

- a Label Studio path (``/data/local-files/?d=...``, ``/data/upload/...``,
  ``/tasks/<id>/resolve/?fileuri=...``), or the same as an absolute URL on the
  configured Label Studio host: fetched from Label Studio with the API token;
- an ``http(s)://`` URL under one of the allowed storage prefixes (``[serve]
  allowed_storage``): fetched without the token;
- a cloud URI (``s3://``, ``gs://``, ``az://``): read with fsspec when it is under an allowed
  prefix, else resolved by Label Studio through the project's cloud storage
  (``/tasks/<id>/resolve/?fileuri=...``).

Everything else is refused: other hosts, scheme-relative URLs, ``file://``, paths that climb
out with ``..`` (also percent-encoded). Redirects are followed only to places that pass the
same check, and the token goes only to Label Studio. Bodies are capped at ``max_bytes``.
"""

from __future__ import annotations

import base64
import io
import logging
import posixpath
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import numpy as np

from ..errors import InputError, SyncError

__all__ = [
    "LS_PATHS",
    "FetchPolicy",
    "ImageFetcher",
    "ImageRefused",
    "ImageUnavailable",
    "Shown",
    "decode_image",
    "parse_allowed",
]

log = logging.getLogger(__name__)

LS_PATHS = ("/data/local-files/", "/data/upload/", "/tasks/<id>/resolve/", "/projects/<id>/resolve/")
_LS_PATH = re.compile(r"/data/local-files/|/data/upload/.+|/(tasks|projects)/\d+/resolve/?")
CLOUD_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "azure-blob")
MAX_REDIRECTS = 3


class ImageRefused(InputError):
    """A task image the server will not fetch: it points outside Label Studio and the
    allowed storage, or climbs out of a folder."""


class ImageUnavailable(SyncError):
    """A task image that could not be fetched or decoded (missing, too large, unreachable)."""


def _shown(url: str) -> str:
    """A URL as it may appear in a message: query strings (presigned signatures) hidden,
    except Label Studio's local-files ``?d=`` path."""
    parts = urlsplit(url)
    if not parts.query or parts.path.endswith("/data/local-files/"):
        return url
    return parts._replace(query="...").geturl()


def _climbs(path: str) -> bool:
    """A path with a ``..`` segment, a backslash or a NUL, after percent-decoding (twice)."""
    for text in (path, unquote(path), unquote(unquote(path))):
        if "\\" in text or "\x00" in text:
            return True
        if ".." in text.split("/"):
            return True
    return False


def parse_allowed(text: str) -> tuple[str, ...]:
    """``"s3://bucket/, https://cdn.example.com/img/"`` → normalised prefixes; a prefix with
    no scheme or host is an error naming it."""
    out = []
    for raw in str(text or "").split(","):
        prefix = raw.strip()
        if not prefix:
            continue
        parts = urlsplit(prefix)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", *CLOUD_SCHEMES) or not parts.netloc:
            raise InputError(
                f"[serve] allowed_storage: {prefix!r} is not a URL prefix such as s3://bucket/ or "
                "https://cdn.example.com/images/"
            )
        if parts.query or parts.fragment or _climbs(parts.path):
            raise InputError(f"[serve] allowed_storage: {prefix!r} must be a plain folder URL")
        path = parts.path or "/"
        out.append(f"{scheme}://{parts.netloc.lower()}{path}")
    return tuple(out)


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports filled in and loopback names made one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    if parts.username or parts.password:
        host = "\x00userinfo"  # user:pass@host never matches: it hides the real host from a reader
    return scheme, "loopback" if host in _LOOPBACK else host, port


@dataclass(frozen=True)
class FetchPolicy:
    """Where images may come from, and how much of them."""

    ls_url: str
    allowed: tuple[str, ...] = ()
    max_bytes: int = 64 * 1024 * 1024
    timeout: float = 20.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.ls_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
            raise InputError(f"{self.ls_url!r} is not a Label Studio URL; expected e.g. http://127.0.0.1:8080")
        if self.max_bytes <= 0:
            raise InputError(f"[serve] max_image_bytes must be positive, got {self.max_bytes}")

    @property
    def ls_origin(self) -> tuple[str, str, int | None]:
        return _origin(self.ls_url)

    @property
    def ls_base_path(self) -> str:
        return urlsplit(self.ls_url).path.rstrip("/")

    def is_ls(self, url: str) -> bool:
        """Whether ``url`` is on the Label Studio server (localhost and 127.0.0.1 are one host)."""
        try:
            return _origin(url) == self.ls_origin
        except ValueError:
            return False

    def allowed_prefix(self, url: str) -> str | None:
        """The allowed prefix ``url`` lies under, if any (scheme, host and path folder match)."""
        parts = urlsplit(url)
        if _climbs(parts.path):
            return None
        scheme, host = parts.scheme.lower(), parts.netloc.lower()
        for prefix in self.allowed:
            p = urlsplit(prefix)
            if (scheme, host) != (p.scheme, p.netloc):
                continue
            if p.path.endswith("/") and (parts.path or "/").startswith(p.path):
                return prefix
            if not p.path.endswith("/") and (parts.path == p.path or parts.path.startswith(p.path + "/")):
                return prefix
        return None


@dataclass(frozen=True)
class Plan:
    """How one image will be fetched: ``ls`` (with the token), ``http`` (without), ``fsspec``."""

    kind: str
    url: str


def _check_ls_path(path: str, query: str, shown: str) -> None:
    if _climbs(path):
        raise ImageRefused(f"image {shown}: the path climbs out of its folder ('..'); refused")
    if not _LS_PATH.fullmatch(path):
        raise ImageRefused(
            f"image {shown}: not a Label Studio media path (expected one of {', '.join(LS_PATHS)}); refused"
        )
    if path.startswith("/data/local-files/"):
        d = parse_qs(query).get("d", [""])
        if len(d) != 1 or not d[0]:
            raise ImageRefused(f"image {shown}: a local-files URL needs one ?d=<path under the document root>")
        rel = d[0]
        if rel.startswith(("/", "~")) or _climbs(rel) or posixpath.normpath(rel).startswith(".."):
            raise ImageRefused(
                f"image {shown}: the local-files path must stay under Label Studio's document root; refused"
            )


@dataclass
class ImageFetcher:
    """Fetches task images under a :class:`FetchPolicy`; one HTTP connection pool, thread-safe.

    ``token`` is called for the Label Studio API token at each fetch (None: send none); the
    token is never put in a message or a log line."""

    policy: FetchPolicy
    token: Callable[[], str | None] = lambda: None
    transport: Any = None  # an httpx transport (tests pass httpx.MockTransport)
    _client: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -- where from ------------------------------------------------------------------------
    def plan(self, ref: str, *, task_id: int | None = None) -> Plan:
        """Decide where ``ref`` may be read from, or raise :class:`ImageRefused`."""
        if not isinstance(ref, str) or not ref.strip():
            raise ImageRefused("the task has no image reference")
        ref = ref.strip()
        shown = _shown(ref)
        parts = urlsplit(ref)
        scheme = parts.scheme.lower()
        if not scheme:
            if ref.startswith("//") or parts.netloc:
                raise ImageRefused(f"image {shown}: a scheme-relative URL names another host; refused")
            if not ref.startswith("/"):
                raise ImageRefused(
                    f"image {shown}: a bare path is not an image URL Label Studio serves; refused"
                )
            _check_ls_path(parts.path, parts.query, shown)
            return Plan("ls", self.policy.ls_url.rstrip("/") + ref)
        if scheme in ("http", "https"):
            if self.policy.is_ls(ref):
                path = parts.path
                base = self.policy.ls_base_path
                if base and path.startswith(base + "/"):
                    path = path[len(base):]
                _check_ls_path(path, parts.query, shown)
                return Plan("ls", ref)
            if self.policy.allowed_prefix(ref):
                return Plan("http", ref)
            raise ImageRefused(
                f"image {shown}: {parts.netloc or 'that host'} is neither the Label Studio server "
                f"({self.policy.ls_url}) nor allowed storage ([serve] allowed_storage); refused"
            )
        if scheme in CLOUD_SCHEMES:
            if self.policy.allowed_prefix(ref):
                return Plan("fsspec", ref)
            if task_id is None:
                raise ImageRefused(
                    f"image {shown}: a {scheme}:// image outside [serve] allowed_storage can only be read "
                    "through Label Studio, which needs the task id"
                )
            fileuri = base64.urlsafe_b64encode(ref.encode()).decode()
            return Plan("ls", f"{self.policy.ls_url.rstrip('/')}/tasks/{int(task_id)}/resolve/?fileuri={fileuri}")
        raise ImageRefused(f"image {shown}: {scheme}:// images are not read by boxloop serve; refused")

    # -- fetching ----------------------------------------------------------------------------
    def _http(self) -> Any:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.policy.timeout, follow_redirects=False, transport=self.transport,
                    limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _read_capped(self, chunks: Any, shown: str) -> bytes:
        buf = bytearray()
        for chunk in chunks:
            buf += chunk
            if len(buf) > self.policy.max_bytes:
                raise ImageUnavailable(
                    f"image {shown}: larger than [serve] max_image_bytes ({self.policy.max_bytes} bytes); not read"
                )
        return bytes(buf)

    def _fetch_http(self, plan: Plan) -> bytes:
        import httpx

        client = self._http()
        url, kind = plan.url, plan.kind
        for _hop in range(MAX_REDIRECTS + 1):
            shown = _shown(url)
            headers = {"Accept": "image/*,*/*;q=0.5"}
            if kind == "ls":
                token = self.token()
                if token:
                    headers["Authorization"] = f"Token {token}"
            try:
                with client.stream("GET", url, headers=headers) as r:
                    if r.is_redirect and r.headers.get("location"):
                        nxt = urljoin(url, r.headers["location"])
                        if self.policy.is_ls(nxt):
                            kind = "ls"
                        elif self.policy.allowed_prefix(nxt):
                            kind = "http"
                        else:
                            raise ImageRefused(
                                f"image {shown}: redirected to {_shown(nxt)}, which is neither the Label "
                                "Studio server nor allowed storage; refused"
                            )
                        url = nxt
                        continue
                    if r.status_code in (401, 403):
                        who = "Label Studio" if kind == "ls" else urlsplit(url).netloc
                        hint = (
                            " (check LABEL_STUDIO_API_KEY and that the project has a storage covering the file)"
                            if kind == "ls" else ""
                        )
                        raise ImageUnavailable(f"image {shown}: {who} refused access ({r.status_code}){hint}")
                    if r.status_code == 404:
                        raise ImageUnavailable(f"image {shown}: not found (404)")
                    if r.status_code >= 400:
                        raise ImageUnavailable(f"image {shown}: the server answered {r.status_code}")
                    length = r.headers.get("content-length")
                    if length and length.isdigit() and int(length) > self.policy.max_bytes:
                        raise ImageUnavailable(
                            f"image {shown}: {length} bytes, more than [serve] max_image_bytes "
                            f"({self.policy.max_bytes}); not read"
                        )
                    return self._read_capped(r.iter_bytes(), shown)
            except httpx.TimeoutException:
                raise ImageUnavailable(f"image {shown}: no answer within {self.policy.timeout:g} s") from None
            except httpx.TransportError as e:
                raise ImageUnavailable(f"image {shown}: cannot connect ({type(e).__name__})") from None
        raise ImageUnavailable(f"image {_shown(plan.url)}: more than {MAX_REDIRECTS} redirects")

    def _fetch_fsspec(self, plan: Plan) -> bytes:
        shown = _shown(plan.url)
        try:
            import fsspec
        except ImportError:
            raise ImageUnavailable(
                f"image {shown}: reading {urlsplit(plan.url).scheme}:// needs fsspec and its filesystem "
                "(pip install 'boxloop[cloud]')"
            ) from None
        try:
            with fsspec.open(plan.url, "rb") as f:
                data = f.read(self.policy.max_bytes + 1)
        except ImportError as e:
            raise ImageUnavailable(f"image {shown}: {e}") from None
        except FileNotFoundError:
            raise ImageUnavailable(f"image {shown}: not found") from None
        except (OSError, ValueError) as e:
            raise ImageUnavailable(f"image {shown}: cannot read it ({type(e).__name__})") from None
        if len(data) > self.policy.max_bytes:
            raise ImageUnavailable(
                f"image {shown}: larger than [serve] max_image_bytes ({self.policy.max_bytes} bytes); not read"
            )
        return bytes(data)

    def fetch(self, ref: str, *, task_id: int | None = None) -> bytes:
        """The bytes of the image ``ref`` names (ImageRefused / ImageUnavailable otherwise)."""
        plan = self.plan(ref, task_id=task_id)
        if plan.kind == "fsspec":
            return self._fetch_fsspec(plan)
        return self._fetch_http(plan)

    def load(self, ref: str, *, task_id: int | None = None, at_least: int | None = None) -> Shown:
        """The image ``ref`` names, decoded as displayed (EXIF orientation applied), RGB uint8
        (with ``at_least``, a JPEG maybe at a fraction of its size: :func:`decode_image`)."""
        return decode_image(self.fetch(ref, task_id=task_id), where=_shown(ref), at_least=at_least)


@dataclass(frozen=True)
class Shown:
    """A decoded picture and its size as displayed (w, h): ``image`` may be smaller (a JPEG
    decoded at 1/2, 1/4 or 1/8 for a small network input)."""

    image: np.ndarray
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """The picture's pixels per pixel of ``image`` (x, y)."""
        return self.size[0] / self.image.shape[1], self.size[1] / self.image.shape[0]


def decode_image(data: bytes, *, where: str, at_least: int | None = None) -> Shown:
    """Image bytes → RGB uint8 HxWx3 as displayed (EXIF orientation applied), and its size;
    with ``at_least`` (pixels), a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size, both
    sides still at least that."""
    from PIL import Image

    from ..sources.images import as_shown, opened, shown_size

    try:
        with opened(io.BytesIO(data)) as im:
            size = shown_size(im)  # before as_shown: a reduced JPEG's size is no longer the picture's
            return Shown(as_shown(im, at_least=at_least), size)
    except Image.DecompressionBombError as e:
        raise ImageUnavailable(f"image {where}: too many pixels to decode safely ({e})") from None
    except ImportError:
        # once ultralytics is imported, its patched Image.open tries an optional HEIF plugin
        # (pi_heif) on any bytes Pillow cannot identify
        raise ImageUnavailable(f"image {where}: cannot decode it as an image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageUnavailable(f"image {where}: cannot decode it as an image ({type(e).__name__}: {e})") from None
