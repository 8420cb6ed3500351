"""Label Studio round trip through label-studio-sdk: push a selection as pre-labeled tasks
(in active-learning order, with the why), pull corrections back as new human label versions,
and record what the person did with each pre-label.

State lives in the store's ``tasks`` table (tool ``labelstudio``, project = the Label Studio
project id). Every task also carries ``data.boxloop_item`` = the item id, so an interrupted
push or pull is finished by running it again: nothing is imported twice, nothing is lost.
The API token comes from ``--token`` or ``LABEL_STUDIO_API_KEY`` and is never logged or stored.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import numpy as np

from ..errors import InputError, Problems, SyncError
from ..formats import ImageLabels
from ..formats.labelstudio import (
    IMPUTED_NOTE,
    ITEM_KEY,
    LabelConfig,
    box_regions,
    build_task,
    label_config,
    newest_annotation,
    parse_label_config,
    parse_regions,
    why_text,
)
from ..sources.images import JPEG_SUFFIXES, suffix_of
from ..store import OFFERED, Store
from ..types import Detections, Item, Selection
from ..workspace import Workspace
from .acceptance import acceptance, seconds_saved, sum_acceptance

__all__ = [
    "ITEM_KEY",
    "REVIEW_KEY",
    "STORAGES",
    "TOOL",
    "LabelStudioProject",
    "PullReport",
    "PushReport",
    "api_client",
    "call_api",
    "check_title",
    "connect",
    "default_project_title",
    "find_project",
    "image_urls",
    "import_tasks",
    "labeling_projects",
    "list_tasks",
    "note_missing_classes",
    "open_project",
    "plain_json",
    "predictions_meta",
    "project_config",
    "project_title",
    "pull",
    "push",
    "resolve_token",
    "resolve_url",
    "task_images",
    "tasks_by_item",
    "upload_images",
    "uploaded_names",
]

log = logging.getLogger(__name__)

TOOL = "labelstudio"
META_URL = "labelstudio.url"
META_PROJECT = "labelstudio.project"
REVIEW_KEY = "boxloop_review"  # task data of a review task: the label version under review
META_UPLOAD = "labelstudio.upload"  # .<project id>.<item id> → the uploaded file's /data/upload/... reference
STORAGES = ("local-files", "upload", "cloud")
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
TITLE_MIN, TITLE_MAX = 3, 50  # the lengths of a project title Label Studio takes
_BATCH = 500
# pictures Label Studio takes as uploads; a browser shows those, AVIF and JPEGs named .jfif
# too, but neither TIFF, a phone's HEIC nor JPEG 2000 (Safari aside)
_UPLOADS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"})
_BROWSER_SHOWS = _UPLOADS | JPEG_SUFFIXES | {".avif"}
T = TypeVar("T")


@dataclass
class PushReport:
    """What a push did."""

    url: str
    project_id: int
    project_title: str
    created: int = 0
    reused: int = 0
    predictions_added: int = 0
    boxes: int = 0
    below_threshold: int = 0
    not_in_config: int = 0
    prelabel_conf: float | None = None  # the threshold the pre-labels were cut at
    labeled_already: int = 0  # images of the selection labeled since it was made: left out
    default_project: str | None = None  # set when this push went elsewhere: the project plain push/pull/round use
    problems: Problems = field(default_factory=Problems)

    def summary(self) -> str:
        parts = [f"{self.created} new task(s)", f"{self.reused} already there"]
        if self.labeled_already:
            parts.append(f"{self.labeled_already} image(s) of the selection left out: labeled already "
                         "(pulled or added since it was made)")
        if self.predictions_added:
            parts.append(f"new pre-labels added to {self.predictions_added} existing task(s)")
        at = f" at confidence >= {self.prelabel_conf:g}" if self.prelabel_conf is not None else ""
        parts.append(f"{self.boxes} pre-label box(es){at}")
        if self.below_threshold:
            parts.append(f"{self.below_threshold} box(es) under the pre-label threshold left out")
        if self.not_in_config:
            parts.append(f"{self.not_in_config} box(es) of classes the project does not label left out")
        text = f"Label Studio project {self.project_title!r} (id {self.project_id}) at {self.url}: " + ", ".join(parts)
        if self.default_project is not None:
            text += (
                f"\nthe default project stays {self.default_project!r}: plain push and round send batches there "
                f"([labelstudio] project in boxloop.toml changes it); a plain pull reads {self.project_title!r} "
                "too while it has tasks open"
            )
        return text


@dataclass
class PullReport:
    """What a pull did, and the pre-label acceptance of the items it labeled."""

    url: str
    project_id: int
    labeled: int = 0
    updated: int = 0
    unchanged: int = 0
    open: int = 0
    skipped: int = 0
    back_to_pool: int = 0
    reopened: int = 0
    corrected: int = 0  # review tasks whose labels a person changed (a new version)
    confirmed: int = 0  # review tasks submitted as they were
    acceptance: dict[str, float] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)
    project_title: str = ""
    parts: list[PullReport] = field(default_factory=list)  # a plain pull of several projects: one each

    def summary(self) -> str:
        if self.parts:
            return "\n".join(p.summary() for p in self.parts)
        parts = [f"{self.labeled} newly labeled", f"{self.updated} updated", f"{self.unchanged} unchanged",
                 f"{self.open} still open"]
        if self.corrected or self.confirmed:
            parts[:2] = [f"{self.corrected} corrected on review", f"{self.confirmed} confirmed as they were"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.back_to_pool:
            parts.append(f"{self.back_to_pool} back to the pool")
        if self.reopened:
            parts.append(f"{self.reopened} reopened (annotation deleted)")
        title = f" ({self.project_title!r})" if self.project_title else ""
        text = f"pulled from project {self.project_id}{title} at {self.url}: " + ", ".join(parts)
        a = self.acceptance
        if a.get("items"):
            text += (
                f"\npre-labels: {a['accepted']:.0f} accepted, {a['adjusted']:.0f} adjusted, "
                f"{a['deleted']:.0f} deleted, {a['added']:.0f} added by hand; "
                f"about {a['seconds_saved'] / 60:.1f} min of drawing saved"
            )
        return text


# -- connection --------------------------------------------------------------------------
def resolve_token(token: str | None = None, *, option: str | None = None) -> str:
    """The API token: ``token`` or the ``LABEL_STUDIO_API_KEY`` environment variable.
    ``option``: the command-line option the command at hand takes a token with (``--token``),
    named in the error; None where the command has none (serve, round)."""
    token = token or os.environ.get(TOKEN_ENV, "")
    if not token.strip():
        raise SyncError(
            f"no Label Studio API token: set {TOKEN_ENV}" + (f" (or give {option})" if option else "")
            + " to the token under Account & Settings > Legacy Token in Label Studio"
        )
    return token.strip()


def _check_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"{url!r} is not a Label Studio URL; expected e.g. http://127.0.0.1:8080")
    return url


def resolve_url(ws: Workspace, url: str | None = None) -> str:
    """The server URL: ``url``, else ``[labelstudio] url`` in boxloop.toml, else the one
    saved by ``boxloop labelstudio connect``."""
    url = url or ws.config.labelstudio.url or ws.store.get_meta(META_URL) or ""
    if not url:
        raise SyncError(
            "no Label Studio URL: run `boxloop labelstudio connect --url URL`, or set [labelstudio] url in "
            "boxloop.toml (push and pull also take --url)"
        )
    return _check_url(url)


def call_api(url: str, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one SDK call (or plain httpx requests that ``raise_for_status``), turning transport
    and HTTP failures into a SyncError that names the server and says what to do (never the
    token)."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        return fn(*args, **kwargs)
    except httpx.TransportError as e:
        raise SyncError(
            f"cannot reach Label Studio at {url} while trying to {what} ({type(e).__name__}: {e}); "
            "is the server running, and is the URL right?"
        ) from None
    except (ApiError, httpx.HTTPStatusError) as e:
        status, body = (
            (e.status_code, e.body) if isinstance(e, ApiError) else (e.response.status_code, e.response.text)
        )
        if status == 401:
            raise SyncError(
                f"Label Studio at {url} refused the API token (401 Unauthorized) while trying to {what}. "
                f"Use the token shown under Account & Settings > Legacy Token (in {TOKEN_ENV}); boxloop "
                "sends it as a legacy token ('Authorization: Token ...'), so legacy tokens must be "
                "enabled for the organisation (LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the server)."
            ) from None
        if status == 403:
            raise SyncError(
                f"Label Studio at {url} does not allow this user to {what} (403 Forbidden)"
            ) from None
        body = body if isinstance(body, (str, dict, list)) else ""
        raise SyncError(
            f"Label Studio at {url} answered {status} while trying to {what}: {str(body)[:500]}"
        ) from None


def api_client(url: str, token: str) -> Any:
    """A label-studio-sdk client for ``url`` (a long timeout: exports and imports are slow)."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=url, api_key=token, timeout=120)


def plain_json(obj: Any) -> Any:
    """An SDK model (or a plain value) as JSON-like dicts, datetimes as ISO strings."""
    if hasattr(obj, "dict") and not isinstance(obj, dict):
        obj = obj.dict()
    if isinstance(obj, dict):
        return {k: plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    return obj


def connect(ws: Workspace, *, url: str, token: str | None = None) -> dict[str, str]:
    """Check that the server answers and accepts the token, then save its URL (never the
    token) in the workspace; returns the user and server version."""
    url = _check_url(url)
    client = api_client(url, resolve_token(token))
    me = plain_json(call_api(url, "read the current user", client.users.whoami))
    try:
        version = str(plain_json(client.versions.get()).get("release", "?"))
    except Exception as e:  # the version is informative only; whoami already proved access
        log.debug("no version from %s: %s", url, type(e).__name__)
        version = "?"
    ws.store.set_meta(META_URL, url)
    log.info("connected to Label Studio %s at %s as %s", version, url, me.get("email"))
    return {"url": url, "user": str(me.get("email") or me.get("username") or me.get("id")), "version": version}


# -- projects ----------------------------------------------------------------------------
def project_title(ws: Workspace, project: str | None) -> str:
    """The project a push or pull goes to: ``project``, else the default one: ``[labelstudio]
    project``, else the one a plain push went to, else one named after the workspace."""
    return project or default_project_title(ws)


def default_project_title(ws: Workspace) -> str:
    """The project plain `push`, `pull` and `round` use: ``[labelstudio] project``, else the
    one a plain push went to (an explicit ``--project`` never replaces it), else the workspace's
    name, made a title Label Studio takes (``ws (boxloop)`` for a name under 3 characters)."""
    title = ws.config.labelstudio.project or ws.store.get_meta(META_PROJECT)
    if title:
        return title
    name = " ".join(ws.config.name.split()) or "boxloop"
    if len(name) < TITLE_MIN:
        return f"{name} (boxloop)"
    return name[:TITLE_MAX].rstrip()


def check_title(title: str) -> str:
    """``title`` when Label Studio takes it as a project title (3 to 50 characters), else a
    one-line InputError, so a push never meets the server's raw 400."""
    if not TITLE_MIN <= len(title) <= TITLE_MAX:
        raise InputError(
            f"{title!r} cannot be a Label Studio project title: Label Studio takes {TITLE_MIN} to {TITLE_MAX} "
            f"characters, and it has {len(title)}; choose another title"
        )
    return title


def find_project(
    client: Any, url: str, title: str, *, create_with: str | None, description: str | None = None
) -> dict[str, Any]:
    """The project titled ``title`` (or with that id); created with ``create_with`` as its
    labeling config when missing and ``create_with`` is given."""
    if create_with is not None and not title.isdigit():
        check_title(title)  # before any call: a title Label Studio refuses is never there
    if title.isdigit():
        try:
            return plain_json(call_api(url, f"read project {title}", client.projects.get, id=int(title)))
        except SyncError as e:
            if " 404 " not in str(e):
                raise
    found = [
        plain_json(p)
        for p in call_api(url, "list projects", lambda: list(client.projects.list(title=title, page_size=100)))
    ]
    exact = [p for p in found if p.get("title") == title]
    if len(exact) > 1:
        ids = ", ".join(str(p["id"]) for p in exact)
        raise SyncError(f"several Label Studio projects at {url} are titled {title!r} (ids {ids}); "
                        "give the id: --project ID (push, pull) or [labelstudio] project in boxloop.toml")
    if exact:
        return exact[0]
    if create_with is None:
        raise SyncError(
            f"no Label Studio project titled {title!r} at {url}; push to it first, or name another: --project "
            "(push, pull) or [labelstudio] project in boxloop.toml"
        )
    check_title(title)
    log.info("creating Label Studio project %r at %s", title, url)
    return plain_json(
        call_api(
            url,
            f"create project {title!r}",
            client.projects.create,
            title=title,
            label_config=create_with,
            description=description or "Created by boxloop: images picked by active learning, pre-labeled. "
            "Sort by prediction score to label in the order that teaches the model most.",
        )
    )


def note_missing_classes(
    problems: Problems, *, title: str, project_id: int, lc: LabelConfig, classes: Sequence[str]
) -> list[str]:
    """Name the workspace classes the project's labeling config has no label for (a problem,
    not an error: a project may be meant for some classes only); returns them."""
    missing = [c for c in classes if c not in lc.labels]
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        problems.add(
            f"Label Studio project {title!r} (id {project_id})",
            f"its labeling config has no label for {len(missing)} of the workspace's {len(classes)} classes: "
            f"{shown}. Nobody can draw such a box there, so the labels pulled from it never hold one and "
            "training takes those objects for background. Meant for the other classes only? Then nothing is "
            "wrong; else add them as labels in the project's Settings > Labeling Interface",
        )
    return missing


def project_config(project: Mapping[str, Any], classes: Sequence[str], url: str) -> LabelConfig:
    """The project's RectangleLabels control; names boxloop does not know are an error listing them."""
    lc = parse_label_config(project.get("label_config") or "")
    unknown = [n for n in lc.labels if n not in classes]
    if unknown:
        raise SyncError(
            f"Label Studio project {project.get('title')!r} (id {project.get('id')}) at {url} labels "
            f"{len(unknown)} name(s) boxloop does not know: {', '.join(unknown)}. boxloop's classes: "
            f"{', '.join(classes)}. Rename them in the project's labeling config, or add them as "
            "classes (`boxloop pull --add-classes`)."
        )
    return lc


# -- image references --------------------------------------------------------------------
def _is_url(uri: str) -> bool:
    return "://" in uri


def image_urls(
    items: Sequence[Item], *, storage: str = "local-files", document_root: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """Each item's image reference for Label Studio, and the folders a local-files storage
    must cover.

    ``local-files``: ``/data/local-files/?d=<path relative to the document root>``; the
    document root defaults to the folder above the images' common folder and must be the
    server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``. ``upload``: local files get no
    reference here; ``push`` uploads them (:func:`upload_images`). ``cloud``: the item's own URL
    (``s3://``, ``gs://``, ``https://``; Label Studio resolves it through its storages).
    Under ``local-files`` too, an image in a bucket keeps its cloud URL (Label Studio
    presigns it through the project's cloud storage); only local files need the root."""
    urls: dict[str, str] = {}
    if storage == "cloud":
        for it in items:
            if not _is_url(it.uri):
                raise InputError(f"{it.uri}: storage 'cloud' needs images at URLs (s3://, gs://, https://)")
            urls[it.id] = it.uri
        return urls, []
    if storage == "upload":  # push sends the local files to Label Studio's own storage
        return {it.id: it.uri for it in items if _is_url(it.uri)}, []
    if storage not in STORAGES:
        raise InputError(f"unknown [labelstudio] storage {storage!r}; known: {', '.join(STORAGES)}")
    urls = {it.id: it.uri for it in items if _is_url(it.uri)}
    paths = {it.id: os.path.normpath(os.path.abspath(it.uri)) for it in items if not _is_url(it.uri)}
    if not paths:
        return urls, []
    if document_root:
        root = os.path.normpath(os.path.abspath(os.path.expanduser(document_root)))
    else:
        common = os.path.commonpath([os.path.dirname(p) for p in paths.values()])
        root = os.path.dirname(common)
    dirs: set[str] = set()
    for item_id, p in paths.items():
        rel = os.path.relpath(p, root)
        if rel.startswith(".."):
            raise InputError(
                f"{p} is not under the local-files document root {root}; set [labelstudio] "
                "document_root to a folder above every image, and start Label Studio with "
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to the same folder"
            )
        parts = rel.split(os.sep)
        if len(parts) < 2:
            raise InputError(
                f"{p} lies directly in the document root {root}; Label Studio serves only files in "
                "sub-folders of it: choose a document_root one level higher"
            )
        dirs.add(os.path.join(root, parts[0]))
        urls[item_id] = "/data/local-files/?d=" + quote(posixpath.join(*parts))
    return urls, sorted(dirs)


def _browser_shows(uri: str) -> bool:
    return suffix_of(uri) in _BROWSER_SHOWS


def _upload_body(it: Item) -> tuple[str, bytes]:
    """The file name and bytes an image is uploaded as: the file itself (a JPEG named .jfif
    as .jpg), or, for a kind Label Studio refuses (TIFF, HEIC, AVIF, JPEG 2000), a PNG of the
    picture as displayed (same size)."""
    name = Path(it.uri).name
    suffix = suffix_of(it.uri)
    if suffix in _UPLOADS | JPEG_SUFFIXES:
        return name if suffix in _UPLOADS else Path(name).stem + ".jpg", Path(it.uri).read_bytes()
    import io

    from PIL import Image

    from ..sources.images import load_image

    buf = io.BytesIO()
    Image.fromarray(load_image(it.uri)).save(buf, format="PNG")
    return Path(name).stem + ".png", buf.getvalue()


def upload_images(
    ws: Workspace, *, url: str, token: str, project_id: int, items: Sequence[Item], problems: Problems
) -> dict[str, str]:
    """Upload local image files into the project's own Label Studio storage, once each:
    item id → the ``/data/upload/...`` reference a task points at. The reference is kept in
    the store as soon as the file is up, so an interrupted push uploads nothing twice. An
    unreadable file is a problem; the rest go on."""
    import httpx

    store = ws.store
    out: dict[str, str] = {}
    todo = []
    for it in items:
        ref = store.get_meta(f"{META_UPLOAD}.{project_id}.{it.id}")
        if ref:
            out[it.id] = ref
        else:
            todo.append(it)
    if not todo:
        return out
    headers = {"Authorization": f"Token {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for it in todo:
            try:
                name, body = _upload_body(it)
            except OSError as e:
                problems.add(it.uri, f"cannot read the image to upload it: {e.strerror or e}")
                continue
            except InputError as e:
                problems.add(it.uri, f"cannot upload it: {str(e).removeprefix(f'{it.uri}: ')}")
                continue

            def send(name: str = name, body: bytes = body) -> str:
                r = http.post(
                    f"/api/projects/{project_id}/import", params={"commit_to_project": "false"},
                    files={"file": (name, body)},
                )
                r.raise_for_status()
                ids = r.json().get("file_upload_ids") or []
                if len(ids) != 1:
                    raise SyncError(
                        f"Label Studio at {url} did not return the uploaded file (its import is asynchronous "
                        "in this edition); use [labelstudio] storage = \"local-files\" or \"cloud\""
                    )
                r = http.get(f"/api/import/file-upload/{int(ids[0])}")
                r.raise_for_status()
                return "/data/" + str(r.json()["file"]).lstrip("/")

            ref = call_api(url, f"upload {it.uri}", send)
            store.set_meta(f"{META_UPLOAD}.{project_id}.{it.id}", ref)
            out[it.id] = ref
    return out


def uploaded_names(store: Store) -> list[tuple[str, str]]:
    """(file name, item) of every image `push` uploaded: the name Label Studio gave it
    (``1a2b3c4d-p1.jpg``), as its YOLO and COCO exports name it."""
    return [(ref.rsplit("/", 1)[-1], key.rsplit(".", 1)[-1]) for key, ref in store.meta_items(f"{META_UPLOAD}.").items()]


def _ensure_local_storage(client: Any, url: str, project_id: int, dirs: Sequence[str]) -> None:
    """A local-files storage for each folder (Label Studio serves a file only from a folder
    some storage of the project covers)."""
    if not dirs:
        return
    have = [
        os.path.normpath(str(plain_json(s).get("path") or ""))
        for s in call_api(url, "list local storages", client.import_storage.local.list, project=project_id)
    ]
    for d in dirs:
        if any(d == h or d.startswith(h + os.sep) for h in have):
            continue
        try:
            call_api(
                url,
                f"add local-files storage {d}",
                client.import_storage.local.create,
                project=project_id,
                path=d,
                use_blob_urls=True,
                title=f"boxloop: {os.path.basename(d)}",
            )
        except SyncError as e:
            raise SyncError(
                f"{e}. Label Studio must run with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={os.path.dirname(d)} (or set [labelstudio] "
                "document_root to the server's document root)"
            ) from None
        have.append(d)


# -- boxes in task meta ------------------------------------------------------------------
def _boxes_json(d: Detections) -> dict[str, list]:
    return {
        "xyxy": np.round(d.xyxy.astype(np.float64), 3).tolist(),
        "class_id": d.class_id.tolist(),
        "confidence": None if d.confidence is None else np.round(d.confidence.astype(np.float64), 4).tolist(),
    }


def _boxes_from_json(obj: Mapping[str, Any] | None) -> Detections:
    if not obj or not obj.get("xyxy"):
        return Detections.empty()
    return Detections(np.asarray(obj["xyxy"], np.float32), np.asarray(obj["class_id"], np.int64), obj.get("confidence"))


def _regions_to_detections(
    result: Sequence[Mapping[str, Any]], item: Item, lc: LabelConfig, classes: Sequence[str], where: str, problems: Problems
) -> Detections:
    xyxy, names, _ = parse_regions(
        result, width=item.width, height=item.height, from_name=lc.from_name, known=classes,
        where=where, problems=problems,
    )
    index = {n: i for i, n in enumerate(classes)}
    scores = [r.get("score") for r in result if r.get("type") in ("rectanglelabels", "rectangle")]
    conf = np.asarray(scores, np.float32) if len(scores) == len(names) and all(s is not None for s in scores) else None
    d = Detections(xyxy, np.asarray([index[n] for n in names], np.int64), conf)
    # a box dragged past the image's edge is clipped to it, as every import clips it
    clipped = np.asarray(d.xyxy, np.float32).copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, item.width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, item.height)
    inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    if not inside.all():
        problems.add(where, f"{int((~inside).sum())} box(es) lie wholly outside the image; left out")
    return Detections(clipped[inside], d.class_id[inside], None if d.confidence is None else d.confidence[inside])


def predictions_meta(
    task: Mapping[str, Any], item: Item, lc: LabelConfig, classes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """model version → the Label Studio prediction id and its boxes (pixels), for every
    prediction the task carries: what the annotator was shown."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(task.get("predictions") or [], key=lambda p: (str(p.get("created_at")), p.get("id") or 0)):
        mv = str(p.get("model_version") or "")
        d = _regions_to_detections(p.get("result") or [], item, lc, classes, f"prediction {p.get('id')}", Problems())
        out[mv] = {"id": p.get("id"), "boxes": _boxes_json(d)}
    return out


def list_tasks(client: Any, url: str, project_id: int, *, fields: str | None = None) -> list[dict[str, Any]]:
    """Every task of the project as plain dicts (the SDK pages through them)."""
    kwargs: dict[str, Any] = {"project": project_id, "page_size": 100}
    if fields:
        kwargs["fields"] = fields
    return [plain_json(t) for t in call_api(url, "list tasks", lambda: list(client.tasks.list(**kwargs)))]


@dataclass(frozen=True)
class LabelStudioProject:
    """A Label Studio project opened for a push: the client, the project and its labeling
    config (``allowed``: the class ids it labels)."""

    url: str
    token: str = field(repr=False)  # never shown
    client: Any = field(repr=False)
    id: int
    title: str
    lc: LabelConfig
    allowed: frozenset[int]


def open_project(
    ws: Workspace, *, title: str, url: str | None, token: str | None, classes: Sequence[str], create: bool,
    description: str | None = None,
) -> LabelStudioProject:
    """Connect and find the project titled ``title`` (created with boxloop's labeling config
    when ``create`` and missing); its labels must be classes boxloop knows."""
    url = resolve_url(ws, url)
    token = resolve_token(token)
    client = api_client(url, token)
    proj = find_project(client, url, title, create_with=label_config(classes) if create else None,
                        description=description)
    lc = project_config(proj, classes, url)
    return LabelStudioProject(
        url=url, token=token, client=client, id=int(proj["id"]), title=str(proj.get("title") or title), lc=lc,
        allowed=frozenset(classes.index(n) for n in lc.labels),
    )


def tasks_by_item(lp: LabelStudioProject) -> dict[str, dict[str, Any]]:
    """The project's tasks boxloop made (all fields), by the item each names."""
    return {
        str((t.get("data") or {}).get(ITEM_KEY)): t
        for t in list_tasks(lp.client, lp.url, lp.id, fields="all")
        if (t.get("data") or {}).get(ITEM_KEY)
    }


def task_images(
    ws: Workspace,
    lp: LabelStudioProject,
    items: Sequence[Item],
    urls: Mapping[str, str],
    dirs: Sequence[str],
    *,
    remote: Mapping[str, Mapping[str, Any]],
    storage: str,
    problems: Problems,
) -> dict[str, str]:
    """Each item's image reference for a task (``urls`` and ``dirs`` from :func:`image_urls`):
    the local-files storages added, local files uploaded under ``upload`` (a task already
    there keeps the image it was made with), pictures a browser cannot show named."""
    out = dict(urls)
    _ensure_local_storage(lp.client, lp.url, lp.id, dirs)
    if storage != "upload":
        for it in items:
            if not _browser_shows(it.uri):
                problems.add(
                    it.uri, "browsers other than Safari do not show this format in Label Studio: "
                    "convert it to PNG or JPEG, or push with [labelstudio] storage = \"upload\" "
                    "(boxloop uploads a PNG of it)",
                )
        return out
    local = [it for it in items if it.id not in out and it.id not in remote]
    out.update(upload_images(ws, url=lp.url, token=lp.token, project_id=lp.id, items=local, problems=problems))
    for it in items:
        if it.id in remote:
            out.setdefault(it.id, str((remote[it.id].get("data") or {}).get(lp.lc.image_key) or ""))
    return out


def import_tasks(lp: LabelStudioProject, tasks: Sequence[Mapping[str, Any]]) -> int:
    """Import tasks into the project in batches; returns how many."""
    for start in range(0, len(tasks), _BATCH):
        batch = list(tasks[start : start + _BATCH])
        call_api(lp.url, f"import {len(batch)} task(s)", lp.client.projects.import_tasks, id=lp.id, request=batch,
                 return_task_ids=True)
    return len(tasks)


# -- push --------------------------------------------------------------------------------
def _prelabels(
    item: Item,
    preds: Mapping[str, Detections],
    imputed: Mapping[str, Detections],
    *,
    conf: float,
    allowed: set[int],
    report: PushReport,
) -> tuple[Detections, list[str | None]]:
    """The boxes shown to the annotator for one item: predictions at or above ``conf``,
    plus imputed boxes (flagged), of classes the project labels."""
    d = preds.get(item.id, Detections.empty(with_confidence=True))
    if d.confidence is not None:
        keep = d.confidence >= conf
        report.below_threshold += int((~keep).sum())
        d = d[keep]
    d = Detections(d.xyxy, d.class_id, d.confidence)
    notes: list[str | None] = [None] * len(d)
    extra = imputed.get(item.id)
    if extra is not None and len(extra):
        conf_e = extra.confidence if extra.confidence is not None else np.full(len(extra), conf, np.float32)
        base_conf = d.confidence if d.confidence is not None else np.ones(len(d), np.float32)
        d = Detections(
            np.concatenate([d.xyxy, extra.xyxy]),
            np.concatenate([d.class_id, extra.class_id]),
            np.concatenate([base_conf, conf_e]),
        )
        notes += [IMPUTED_NOTE] * len(extra)
    in_config = np.array([int(c) in allowed for c in d.class_id], bool)
    report.not_in_config += int((~in_config).sum())
    notes = [n for n, k in zip(notes, in_config, strict=True) if k]
    return d[in_config], notes


def push(
    ws: Workspace,
    *,
    selection: str | None = "latest",
    project: str | None = None,
    url: str | None = None,
    token: str | None = None,
    with_imputed: bool = True,
    prelabel_conf: float | None = None,
    storage: str | None = None,
    document_root: str | None = None,
) -> PushReport:
    """Send a selection to Label Studio as tasks pre-labeled by the selection's model version,
    each with its why and the selection score as the prediction score. Pushing again adds no
    task twice; a newer model version adds its predictions to the tasks already there. Images
    labeled since the selection was made are left out (counted); a push to the default project
    remembers it, an explicit ``project`` leaves the default as it was."""
    cfg = ws.config.labelstudio
    store = ws.store
    sel = store.selection(selection)
    mv = sel.model_version
    conf = float(prelabel_conf) if prelabel_conf is not None else ws.prelabel_conf(mv)
    if not 0.0 <= conf <= 1.0:
        raise InputError(f"the pre-label threshold must be within 0..1, got {conf}")
    if not sel.item_ids:
        raise InputError(f"selection {sel.id!r} is empty: nothing to push")
    # an image labeled since (pulled, reviewed or added) needs no task: sent again, a person
    # would label it twice and its acceptance would count twice
    labeled = [i for i in sel.item_ids if store.label_version(i) is not None]
    if len(labeled) == len(sel.item_ids):
        raise InputError(
            f"selection {sel.id!r} is labeled already: its {len(labeled)} image(s) have labels (pulled or added "
            "since it was made), so there is nothing to push; run `boxloop select` for a new batch"
        )
    todo = [i for i in sel.item_ids if i not in set(labeled)]
    ranks = {item_id: k for k, item_id in enumerate(sel.item_ids)}  # the place in the batch, labeled ones too
    items = store.items(todo)
    classes = store.classes()
    preds = store.predictions(mv, todo) if mv else {}
    imputed: Mapping[str, Detections] = {}
    if with_imputed and mv:
        imputed = store.imputed(mv, todo)
    storage = storage or cfg.storage
    urls, dirs = image_urls(items, storage=storage, document_root=document_root or cfg.document_root or None)

    default = default_project_title(ws)
    lp = open_project(ws, title=project_title(ws, project), url=url, token=token, classes=classes, create=True)
    url, client, pid, lc, allowed = lp.url, lp.client, lp.id, lp.lc, lp.allowed
    report = PushReport(url=url, project_id=pid, project_title=lp.title, prelabel_conf=conf,
                        labeled_already=len(labeled))
    if project is None or project == default or lp.title == default:
        store.set_meta(META_PROJECT, lp.title)
    else:  # a one-off push elsewhere: plain push, pull and round keep to the default project
        report.default_project = default
    note_missing_classes(report.problems, title=lp.title, project_id=pid, lc=lc, classes=classes)
    remote = tasks_by_item(lp)
    ours = {t["item_id"]: t for t in store.tasks(TOOL, str(pid))}
    urls = task_images(ws, lp, items, urls, dirs, remote=remote, storage=storage, problems=report.problems)
    whys = _whys(store, sel, [it.id for it in items if it.id not in remote], classes)
    new_tasks: list[dict[str, Any]] = []
    for it in items:
        boxes, notes = _prelabels(it, preds, imputed, conf=conf, allowed=allowed, report=report)
        score = float(sel.scores.get(it.id, 0.0))
        rt = remote.get(it.id)
        if rt is not None:
            report.reused += 1
            have = {str(p.get("model_version") or "") for p in rt.get("predictions") or []}
            status = ours.get(it.id, {}).get("status", "open")
            if mv and mv not in have and status == "open":
                regions = box_regions(
                    boxes.xyxy, [classes[c] for c in boxes.class_id], width=it.width, height=it.height,
                    scores=boxes.confidence, from_name=lc.from_name, to_name=lc.to_name, notes=notes,
                )
                call_api(url, f"add predictions to task {rt['id']}", client.predictions.create,
                      task=int(rt["id"]), result=regions, score=score, model_version=mv)
                report.predictions_added += 1
                report.boxes += len(boxes)
            continue
        if it.id not in urls:  # its upload failed: a problem already says why
            continue
        rec = ImageLabels(
            file_name=urls[it.id], width=it.width, height=it.height, xyxy=boxes.xyxy,
            class_names=tuple(classes[c] for c in boxes.class_id), scores=boxes.confidence,
        )
        task = build_task(
            rec, model_version=mv, score=score, image_key=lc.image_key, from_name=lc.from_name,
            to_name=lc.to_name, notes=notes, why=whys[it.id],
            data={ITEM_KEY: it.id, "boxloop_rank": ranks[it.id] + 1, "boxloop_selection": sel.id},
        )
        if not mv:
            task.pop("predictions", None)
        new_tasks.append(task)
        report.boxes += len(boxes)
    report.created += import_tasks(lp, new_tasks)
    if mv:
        call_api(url, "set the project's model version", client.projects.update, id=pid, model_version=mv)

    # record what Label Studio now holds, read back, so the store matches the server exactly
    remote = tasks_by_item(lp)
    by_id = {it.id: it for it in items}
    with store.transaction():
        for it in items:
            rt = remote.get(it.id)
            if rt is None:
                if it.id in urls:
                    report.problems.add(urls[it.id], "imported but not found in the project afterwards")
                continue
            old = ours.get(it.id)
            meta = dict(old["meta"]) if old else {}
            meta.update(
                selection=sel.id, rank=ranks[it.id] + 1, score=float(sel.scores.get(it.id, 0.0)), image=urls[it.id],
                model_version=mv or meta.get("model_version"),
                predictions=predictions_meta(rt, by_id[it.id], lc, classes),
            )
            if mv:  # the threshold each version's pre-labels went out at, for the acceptance
                meta["prelabel_confs"] = {**(meta.get("prelabel_confs") or {}), mv: conf}
            if old and str(old["task_id"]) == str(rt["id"]):
                store.update_task(TOOL, str(pid), it.id, meta=meta)
            else:
                store.put_task(TOOL, str(pid), it.id, str(rt["id"]), status="open", meta=meta)
    log.info("%s", report.summary())
    return report


def _whys(store: Store, sel: Selection, item_ids: Sequence[str], classes: Sequence[str]) -> dict[str, str]:
    """The why shown beside each image: its place in the batch and what put it there, in words."""
    from ..selection import item_names

    ranks = {item_id: k for k, item_id in enumerate(sel.item_ids)}
    dups = [d for i in item_ids for d in (sel.why.get(i) or {}).get("suppressed_duplicates", ())]
    file_names = item_names(store, dups)
    return {
        i: why_text(sel.why.get(i), score=float(sel.scores.get(i, 0.0)), rank=ranks[i], names=classes,
                    alpha=sel.config.get("alpha"), file_names=file_names)
        for i in item_ids
    }


# -- pull --------------------------------------------------------------------------------
def _prelabels_shown(meta: Mapping[str, Any], annotation: Mapping[str, Any]) -> tuple[str | None, Detections]:
    """The pre-labels the person started from: the prediction the annotation was made from
    (``parent_prediction``), else the newest pushed; none when nothing was pushed."""
    preds: Mapping[str, Any] = meta.get("predictions") or {}
    parent = annotation.get("parent_prediction")
    if parent is not None:
        for mv, p in preds.items():
            if p.get("id") == parent:
                return mv, _boxes_from_json(p.get("boxes"))
    if meta.get("model_version") in preds:
        mv = meta["model_version"]
        return mv, _boxes_from_json(preds[mv].get("boxes"))
    if preds:
        mv = list(preds)[-1]
        return mv, _boxes_from_json(preds[mv].get("boxes"))
    return None, Detections.empty()


def pull(
    ws: Workspace,
    *,
    project: str | None = None,
    url: str | None = None,
    token: str | None = None,
    skipped: str | None = None,
    add_classes: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PullReport:
    """Bring submitted annotations back as new human label versions (newest annotation per
    task), with the round they were labeled in and the pre-label acceptance of each item.

    ``project``: that project alone. Without it: the default project (when a plain push went
    there or it is set) and every other project boxloop has tasks open or offered in (a
    one-off ``push --project``), one report adding them up, with a part per project; with no
    default project, every project boxloop has tasks in. The review project is pulled on its
    own (``review.projects_to_pull``).

    Each task is stored in one transaction: a killed pull, run again, finishes the job with
    no label version lost or repeated. Skipped tasks go back to the pool (kept, offered: an
    annotation made later still comes back) or stay skipped (``[labelstudio] skipped``); a
    deleted annotation reopens its task (its labels stay)."""
    store = ws.store
    skipped = skipped or ws.config.labelstudio.skipped
    if skipped not in ("pool", "skipped"):
        raise InputError(f"[labelstudio] skipped must be 'pool' or 'skipped', got {skipped!r}")
    url = resolve_url(ws, url)
    client = api_client(url, resolve_token(token))

    def one(proj: dict[str, Any]) -> PullReport:
        return _pull_project(ws, client, url, proj, skipped=skipped, add_classes=add_classes, progress=progress)

    if project is not None:
        return one(find_project(client, url, project, create_with=None))
    has_default = bool(store.get_meta(META_PROJECT) or ws.config.labelstudio.project)
    # with no default project, the projects one-off pushes went to, done ones too (an annotation
    # updated there comes back), rather than a default project nobody made
    others = labeling_projects(store, out_only=has_default)
    parts: list[PullReport] = []
    if has_default or not others:
        parts.append(one(find_project(client, url, default_project_title(ws), create_with=None)))
    for pid in others:
        if any(str(r.project_id) == pid for r in parts):
            continue
        try:
            proj = plain_json(call_api(url, f"read project {pid}", client.projects.get, id=int(pid)))
        except SyncError as e:
            if " 404 " not in str(e):
                raise
            parts.append(_project_gone(ws, url, pid))
            continue
        parts.append(one(proj))
    if len(parts) == 1:
        return parts[0]
    total = PullReport(url=url, project_id=parts[0].project_id, project_title=parts[0].project_title, parts=parts)
    for r in parts:
        for k in ("labeled", "updated", "unchanged", "open", "skipped", "back_to_pool", "reopened", "corrected",
                  "confirmed"):
            setattr(total, k, getattr(total, k) + getattr(r, k))
        total.problems.extend(r.problems)
    total.acceptance = sum_acceptance(r.acceptance for r in parts if r.acceptance.get("items"))
    return total


def labeling_projects(store: Store, *, out_only: bool = True) -> list[str]:
    """The projects (ids) boxloop has labeling tasks open or offered in (with ``out_only``;
    else any task Label Studio still holds), oldest first: what a plain pull reads besides
    the default project."""
    rows = store.tasks(TOOL, status=("open", OFFERED) if out_only else None)
    return list(dict.fromkeys(str(r["project"]) for r in rows
                              if not r["meta"].get("review") and not r["meta"].get("deleted_in_labelstudio")))


def _project_gone(ws: Workspace, url: str, pid: str) -> PullReport:
    """A project deleted in Label Studio: its tasks are gone with it (as each deleted task)."""
    report = PullReport(url=url, project_id=int(pid))
    for row in ws.store.tasks(TOOL, pid):
        _task_deleted(ws.store, pid, row, report, project_gone=True)
    return report


def _task_deleted(store: Store, pid: str, row: Mapping[str, Any], report: PullReport, *, project_gone: bool = False) -> None:
    """A task deleted in Label Studio (its project too, with ``project_gone``), said once: an
    open one's image keeps its labels where it has some, else it is back in the pool; a done
    one's labels stay (the task is kept, marked, for the record); an offered one is forgotten
    (its image is in the pool already)."""
    item_id, status, meta = row["item_id"], row["status"], dict(row["meta"])
    where = meta.get("image") or store.get_item(item_id).uri
    what = f"task {row['task_id']} was deleted in Label Studio" + (f" with its project {pid}" if project_gone else "")
    if meta.get("review"):
        store.delete_task(TOOL, pid, item_id)
        if status == "open":
            report.problems.add(where, f"review {what}; the labels stay as they were")
        return
    if status == "offered":
        store.delete_task(TOOL, pid, item_id)
        return
    if status == "done":
        if not meta.get("deleted_in_labelstudio"):
            store.update_task(TOOL, pid, item_id, meta={**meta, "deleted_in_labelstudio": True})
            report.problems.add(where, f"{what}; the image keeps its labels (version {store.label_version(item_id)})")
        return
    if status != "open":  # skipped: kept out of selections as before
        return
    store.delete_task(TOOL, pid, item_id)
    version = store.label_version(item_id)
    if version is not None:  # labeled elsewhere (another project, an import) or in an earlier round
        report.problems.add(where, f"{what}; the image keeps its labels (version {version})")
    else:
        report.back_to_pool += 1
        report.problems.add(where, f"{what}; the image is back in the pool")


def _pull_project(
    ws: Workspace,
    client: Any,
    url: str,
    proj: Mapping[str, Any],
    *,
    skipped: str,
    add_classes: bool,
    progress: Callable[[int], None] | None,
) -> PullReport:
    """:func:`pull` of one project."""
    store = ws.store
    pid = int(proj["id"])
    report = PullReport(url=url, project_id=pid, project_title=str(proj.get("title") or ""))
    if add_classes:
        names = parse_label_config(proj.get("label_config") or "").labels
        store.add_classes(n for n in names if n not in store.classes())
    classes = store.classes()
    lc = project_config(proj, classes, url)
    note_missing_classes(report.problems, title=report.project_title, project_id=pid, lc=lc, classes=classes)

    remote = list_tasks(client, url, pid)
    remote_by_id = {str(t["id"]): t for t in remote}
    ours = {t["item_id"]: t for t in store.tasks(TOOL, str(pid))}
    # tasks pushed by a run that was killed before it recorded them
    known_ids = {it.id for it in store.items()}
    for t in remote:
        item_id = str((t.get("data") or {}).get(ITEM_KEY) or "")
        if item_id and item_id in known_ids and item_id not in ours:
            full = plain_json(call_api(url, f"read task {t['id']}", client.tasks.get, id=str(t["id"])))
            item = store.get_item(item_id)
            meta = {"predictions": predictions_meta(full, item, lc, classes), "adopted": True}
            if (t.get("data") or {}).get(REVIEW_KEY) is not None:
                meta["review"] = True
            store.put_task(TOOL, str(pid), item_id, str(t["id"]), status="open", meta=meta)
            ours[item_id] = {"item_id": item_id, "task_id": str(t["id"]), "status": "open", "meta": meta}
    items = {it.id: it for it in store.items(list(ours))} if ours else {}
    rnd = int(store.get_meta("round", "0") or 0)
    pulled_rows: list[dict[str, Any]] = []

    for item_id, row in ours.items():
        task_id = str(row["task_id"])
        meta = dict(row["meta"])
        item = items[item_id]
        where = f"task {task_id} ({meta.get('image') or item.uri})"
        review = bool(meta.get("review"))
        rt = remote_by_id.get(task_id)
        if rt is None:
            _task_deleted(store, str(pid), row, report)
            continue
        # one call per annotated task: the task list shows an annotator only their own annotations
        anns: list[dict[str, Any]] = []
        if rt.get("total_annotations") is None or int(rt["total_annotations"]) > 0:
            anns = [plain_json(a) for a in call_api(url, f"read annotations of task {task_id}",
                                             client.annotations.list, id=int(task_id))]
        ann = newest_annotation({"annotations": anns})
        if ann is None:
            if row["status"] == "skipped":
                report.skipped += 1
            elif row["status"] == OFFERED:
                pass  # skipped and back in the pool, said when it happened; an annotation made later comes back
            elif int(rt.get("cancelled_annotations") or 0) > 0 and row["status"] == "open":
                if skipped == "skipped" or review:  # a skipped review leaves the labels as they are
                    store.update_task(TOOL, str(pid), item_id, status="skipped", meta={**meta, "skipped": True})
                    report.skipped += 1
                else:  # kept, offered: the image is in the pool, and the task is not adopted and sent back again
                    store.update_task(TOOL, str(pid), item_id, status=OFFERED, meta={**meta, "skipped": True})
                    report.back_to_pool += 1
            elif row["status"] == "done":
                store.update_task(
                    TOOL, str(pid), item_id, status="open",
                    meta={**meta, "annotation": None, "deleted_annotation": meta.get("annotation")},
                )
                report.reopened += 1
                report.problems.add(
                    where, f"annotation {meta.get('annotation_id')} was deleted in Label Studio; the task is open "
                    "again and the labels pulled from it stay in the store as a version",
                )
            else:
                report.open += 1
            if progress:
                progress(1)
            continue
        key = f"{ann.get('id')}@{ann.get('updated_at')}"
        if row["status"] == "done" and meta.get("annotation") == key:
            report.unchanged += 1
            if progress:
                progress(1)
            continue
        result = ann.get("result") or []
        names_found: list[str] = []
        for r in result:
            names_found += list((r.get("value") or {}).get("rectanglelabels") or [])
        unknown = sorted({n for n in names_found if n not in classes})
        if unknown and add_classes:
            classes = store.add_classes(unknown)
            report.problems.add(where, f"new class(es) added from the annotation: {', '.join(unknown)}")
            unknown = []
        if unknown:
            report.problems.add(
                where,
                f"annotation {ann.get('id')} uses label(s) boxloop does not know: {', '.join(unknown)}; "
                "not pulled (the task stays open; `boxloop pull --add-classes` adds them as classes)",
            )
            report.open += 1
            continue
        labels = _regions_to_detections(result, item, lc, classes, where, report.problems)
        labels = Detections(labels.xyxy, labels.class_id)
        mv, shown = _prelabels_shown(meta, ann)
        if review:  # the labels a person re-checked: a new version when changed, no pre-label acceptance
            with store.transaction():
                version = store.add_label(item_id, labels, source=f"{TOOL}:{pid}:{ann.get('id')}", round=rnd)
                store.update_task(
                    TOOL, str(pid), item_id, status="done",
                    meta={**meta, "annotation": key, "annotation_id": ann.get("id"),
                          "label_version": version or store.label_version(item_id)},
                )
            if version is None:
                report.confirmed += 1
                store.mark_checked(item_id, store.label_version(item_id) or 0)
            else:
                report.corrected += 1
            if progress:
                progress(1)
            continue
        counts = acceptance(shown, labels)
        secs = seconds_saved(counts)
        was_done = row["status"] == "done"
        with store.transaction():
            version = store.add_label(item_id, labels, source=f"{TOOL}:{pid}:{ann.get('id')}", round=rnd)
            store.put_acceptance(
                TOOL, str(pid), item_id, counts, annotation=str(ann.get("id")), seconds_saved=secs,
                model_version=mv, round=rnd, prelabel_conf=(meta.get("prelabel_confs") or {}).get(mv),
            )
            store.update_task(
                TOOL, str(pid), item_id, status="done",
                meta={**meta, "annotation": key, "annotation_id": ann.get("id"), "label_version": version,
                      "acceptance": counts},
            )
        pulled_rows.append({**counts, "seconds_saved": secs})
        if was_done:
            report.updated += 1
        else:
            report.labeled += 1
        if progress:
            progress(1)
    report.acceptance = sum_acceptance(pulled_rows)
    log.info("%s", report.summary())
    return report

