"""The state behind the ML backend's routes: the loaded model, the Label Studio connection,
the annotation counter and the training worker. No web framework here (app.py is the
outside); every method takes and returns plain JSON-like values and raises BoxloopErrors.

The model is loaded once per process and replaced, whole, when a training job reports a new
version; a /predict that is running keeps the model it started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InputError, SyncError
from ..formats.labelstudio import ITEM_KEY, LabelConfig, parse_label_config
from ..workspace import Workspace
from .images import FetchPolicy, ImageFetcher, ImageRefused, ImageUnavailable, Shown, parse_allowed
from .protocol import prediction_entry, project_id, task_image_ref, webhook_event
from .training import Job, SubprocessJob, TrainingWorker

__all__ = ["LoadedModel", "NoModelError", "Service", "load_newest"]

log = logging.getLogger(__name__)
_FETCH_WORKERS = 4


class NoModelError(BackendError):
    """There is no trained model to predict with yet."""


@dataclass(frozen=True)
class LoadedModel:
    """A model version loaded for prediction."""

    version: str
    backend: Any
    loaded_at: float


Loader = Callable[[Workspace, "str | None"], "LoadedModel | None"]


def load_newest(ws: Workspace, version: str | None = None) -> LoadedModel | None:
    """Load ``version`` (None: the newest trained one; None back when there is none).

    Reads the store through a connection of its own, so it may run beside requests."""
    from ..modeling import load_model_backend, resolve_model

    with Workspace(ws.root) as own:
        try:
            resolved = resolve_model(own, version)
        except InputError:
            if version is None:
                return None
            raise
        backend = load_model_backend(own, resolved)
    log.info("loaded model %s (%s)", resolved.version, resolved.path)
    return LoadedModel(resolved.version, backend, time.time())


def _announce_to_ls(url: str, token: str | None, project: int, version: str) -> None:
    """Make Label Studio ask /setup again now, so it records the new model version (it
    also does so before each batch of predictions it asks for)."""
    from ..annotation.labelstudio import api_client, call_api

    if not token:
        raise SyncError("no Label Studio API token to announce the new model version with")
    client = api_client(url, token)
    call_api(url, f"refresh the ML backends of project {project}", lambda: list(client.ml.list(project=project)))


class Service:
    """The ML backend over one workspace and one Label Studio server.

    ``loader``, ``runner`` (the training job), ``transport`` (httpx, for image fetches) and
    ``announce`` are swappable so the logic can be tested with the fake backend and no
    processes."""

    def __init__(
        self,
        ws: Workspace,
        *,
        url: str,
        token: str | None = None,
        project: int | None = None,
        loader: Loader = load_newest,
        runner: Callable[[Job], dict[str, Any]] | None = None,
        transport: Any = None,
        announce: Callable[[int, str], None] | None = None,
    ) -> None:
        self.ws = ws
        cfg = ws.config.serve
        self.cfg = cfg
        if cfg.train_every < 1:
            raise InputError(f"[serve] train_every must be at least 1, got {cfg.train_every}")
        if cfg.max_body_bytes < 1024:
            raise InputError(f"[serve] max_body_bytes must be at least 1024, got {cfg.max_body_bytes}")
        self.url = url.rstrip("/")
        self._env_token = token or None
        self._setup_token: str | None = None
        self.project = project
        self._lock = threading.RLock()
        self._loader = loader
        self._model: LoadedModel | None = None
        self.fetcher = ImageFetcher(
            FetchPolicy(self.url, parse_allowed(cfg.allowed_storage), cfg.max_image_bytes, cfg.fetch_timeout),
            token=self.token, transport=transport,
        )
        if runner is None:
            self._job: SubprocessJob | None = SubprocessJob(
                ws.root, url=self.url, project=lambda: self.project, token=self.token
            )
            runner = self._job
        else:
            self._job = None
        self.worker = TrainingWorker(runner, on_done=self._job_done)
        self._announce = announce or (lambda p, v: _announce_to_ls(self.url, self.token(), p, v))
        self._since = 0
        self._events: Counter[str] = Counter()
        self._configs: dict[int, LabelConfig] = {}
        self._pool = ThreadPoolExecutor(_FETCH_WORKERS, thread_name_prefix="boxloop-fetch")
        self.predicted = 0
        self.failed = 0
        self.announced: dict[str, Any] | None = None
        self.started_at = time.time()

    # -- secrets -----------------------------------------------------------------------------
    def token(self) -> str | None:
        """The Label Studio API token: LABEL_STUDIO_API_KEY, else the one /setup brought."""
        return self._env_token or self._setup_token

    def redact(self, text: str) -> str:
        """``text`` with every token this process knows replaced by ***."""
        for secret in (self._env_token, self._setup_token):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- the model -----------------------------------------------------------------------------
    def load_model(self, version: str | None = None) -> str | None:
        """Load ``version`` (None: the newest) and make it the one /predict uses."""
        loaded = self._loader(self.ws, version)
        if loaded is not None:
            classes = list(loaded.backend.classes)
            with self._lock:
                known = self.ws.classes
                if classes != known:
                    raise BackendError(f"model {loaded.version} predicts {classes}, the workspace has {known}")
                self._model = loaded
        return self.model_version

    @property
    def model_version(self) -> str | None:
        m = self._model
        return m.version if m is not None else None

    def _job_done(self, job: Job) -> None:
        version = job.result.get("model_version") if job.state == "done" else None
        if not version:
            return
        self.load_model(str(version))
        with self._lock:
            project = self.project
        if project is None:
            return
        try:
            self._announce(project, str(version))
            self.announced = {"model_version": version, "at": time.time()}
            log.info("announced model %s to Label Studio project %d", version, project)
        except SyncError as e:  # Label Studio learns it at its next /setup anyway
            self.announced = {"model_version": version, "error": self.redact(str(e))}
            log.warning("could not announce model %s: %s", version, self.redact(str(e)))

    # -- labeling configs -------------------------------------------------------------------------
    def _config(self, xml: Any, *, where: str) -> LabelConfig:
        if not isinstance(xml, str) or not xml.strip():
            raise InputError(f"{where}: no labeling config")
        lc = parse_label_config(xml)
        with self._lock:
            classes = self.ws.classes
        unknown = [n for n in lc.labels if n not in classes]
        if unknown:
            raise InputError(
                f"{where}: the project labels {len(unknown)} name(s) boxloop does not know: "
                f"{', '.join(unknown)}; boxloop's classes: {', '.join(classes)}"
            )
        return lc

    # -- routes ---------------------------------------------------------------------------------
    def setup(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """/setup: check the project's labeling config, remember the project and its token."""
        pid = project_id(body.get("project"))
        lc = self._config(body.get("schema"), where=f"project {pid}")
        token = body.get("access_token")
        with self._lock:
            if pid is not None:
                self._configs[pid] = lc
                if self.project is None:
                    self.project = pid
                    log.info("serving Label Studio project %d", pid)
            if isinstance(token, str) and token.strip() and not self._env_token:
                self._setup_token = token.strip()
        return {"model_version": self.model_version}

    def predict(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """/predict: exactly one entry per task, in order. A task whose image cannot be read
        gets an empty list (no prediction) and its reason under ``errors``; when no task
        could be read, the first reason is the error."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise InputError("a /predict body needs 'tasks': a list of tasks")
        pid = project_id(body.get("project"))
        if body.get("label_config"):
            lc = self._config(body["label_config"], where=f"project {pid}")
        else:
            with self._lock:
                known = self._configs.get(pid) if pid is not None else None
            if known is None:
                raise InputError("a /predict body needs 'label_config' (or a /setup for its project first)")
            lc = known
        model = self._model
        if model is None:
            raise NoModelError(
                "no trained model yet: annotate some tasks (training starts after "
                f"{self.cfg.train_every} annotations, or on Start training), or run `boxloop train`"
            )
        results: list[Any] = [[] for _ in tasks]
        errors: list[dict[str, Any]] = []
        first_error: Exception | None = None
        batch = max(1, int(self.ws.config.predict.batch))
        # a JPEG many times the network input is decoded at a fraction of its size (a phone's
        # 12-MP photo in a fifth of the time); its boxes are given in its own pixels. A model
        # predicting by tiles gets the whole picture at full resolution.
        fit = None if getattr(model.backend, "tile", None) else getattr(model.backend, "imgsz", None)
        stretch = bool(getattr(model.backend, "stretch", False))  # an RT-DETR's input: each side at least fit's
        with self._lock:  # the store is shared with the request threads
            shown = self.ws.prelabel_conf(model.version)
        for start in range(0, len(tasks), batch):
            chunk = tasks[start : start + batch]
            images = list(self._pool.map(lambda t: self._read(t, lc, fit, stretch), chunk))
            good = [(start + i, img) for i, img in enumerate(images) if isinstance(img, Shown)]
            for i, img in enumerate(images):
                if isinstance(img, Exception):
                    task = chunk[i]
                    errors.append({"task": task.get("id") if isinstance(task, Mapping) else None,
                                   "error": self.redact(str(img))})
                    first_error = first_error or img
            if not good:
                continue
            preds = model.backend.predict(
                [img.image for _, img in good], conf=self.ws.config.predict.conf, iou=self.ws.config.predict.iou
            )
            for (index, img), p in zip(good, preds, strict=True):
                sx, sy = img.scale
                d = p.detections
                if (sx, sy) != (1.0, 1.0):
                    d = replace(d, xyxy=(d.xyxy * np.array([sx, sy, sx, sy])).astype(np.float32))
                results[index] = prediction_entry(
                    d, classes=model.backend.classes, config=lc, width=img.size[0], height=img.size[1],
                    model_version=model.version, prelabel_conf=shown,
                )
        with self._lock:
            self.predicted += len(tasks) - len(errors)
            self.failed += len(errors)
        if errors:
            log.warning("%d of %d task(s) not predicted; first: %s", len(errors), len(tasks), errors[0]["error"])
        if tasks and len(errors) == len(tasks) and first_error is not None:
            raise first_error
        out: dict[str, Any] = {"results": results, "model_version": model.version}
        if errors:
            out["errors"] = errors
        return out

    def _read(
        self, task: Any, lc: LabelConfig, fit: tuple[int, int] | None = None, stretch: bool = False,
    ) -> Shown | Exception:
        """A task's image as displayed (for a network input ``fit`` (h, w), a large JPEG
        decoded at a fraction of its size), or the error that kept it from being read."""
        try:
            if not isinstance(task, Mapping):
                raise InputError("a task is a JSON object")
            data = task.get("data")
            item_id = data.get(ITEM_KEY) if isinstance(data, Mapping) else None
            if isinstance(item_id, str) and item_id:
                try:
                    local = self._local_image(item_id, fit, stretch)
                except InputError as e:  # unreadable where the workspace has it: ask Label Studio
                    log.debug("item %s: %s", item_id, e)
                    local = None
                if local is not None:
                    return local
            ref = task_image_ref(task, lc.image_key)
            tid = task.get("id")
            return self.fetcher.load(ref, task_id=tid if isinstance(tid, int) else None, at_least=max(fit) if fit else None)
        except (ImageRefused, ImageUnavailable, InputError) as e:
            return e

    def _local_image(self, item_id: str, fit: tuple[int, int] | None = None, stretch: bool = False) -> Shown | None:
        """The image of a workspace item (a task boxloop pushed), read where the workspace
        reads it (its file, or its bucket through boxloop's image cache): an item id names
        only images the workspace already holds, never a URL from the task."""
        from ..modeling import decode_reduced
        from ..shrink import SHRUNK_DIR

        try:
            with self._lock:
                item = self.ws.store.get_item(item_id)
        except InputError:
            return None
        if "://" not in item.uri and not Path(item.uri).is_file():
            return None
        image, _ = decode_reduced(item.uri, size=(item.width, item.height), sha256=item.sha256, fit=fit,
                                  copies=self.ws.root / SHRUNK_DIR, stretch=stretch)
        return Shown(image, (item.width, item.height))

    def webhook(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """/webhook: count annotation events; start (or queue) a training after
        ``train_every`` of them, or at once on START_TRAINING."""
        event = webhook_event(body)
        with self._lock:
            if event.project is not None and self.project is not None and event.project != self.project:
                return {"status": "ignored", "action": event.action,
                        "reason": f"this backend trains for project {self.project}, not {event.project}"}
            if self.project is None and event.project is not None:
                self.project = event.project
            self._events[event.action] += 1
            training = None
            if event.train:
                training = self.worker.trigger("START_TRAINING")
                self._since = 0
            elif event.annotations:
                self._since += event.annotations
                if self._since >= self.cfg.train_every:
                    training = self.worker.trigger(f"{self._since} new annotation(s)")
                    self._since = 0
            return {"status": "ok", "action": event.action, "annotations_since_training": self._since,
                    "train_every": self.cfg.train_every, "training": training}

    def train(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """/train (Label Studio's Start training button without the webhook feature flag)."""
        pid = project_id(body.get("project"))
        with self._lock:
            if pid is not None and self.project is not None and pid != self.project:
                raise InputError(f"this backend trains for project {self.project}, not {pid}")
            if self.project is None:
                self.project = pid
            self._events["train"] += 1
            self._since = 0
            training = self.worker.trigger("Start training")
        return {"status": "ok", "training": training}

    def status(self) -> dict[str, Any]:
        """/status: the model, the job state, the counters and the last evaluation."""
        version = self.model_version
        with self._lock:
            evaluation = self.ws.store.evaluation(version, "test") if version else None
            model = self._model
            return {
                "status": "UP",
                "model_version": version,
                "model_loaded_at": model.loaded_at if model else None,
                "project": self.project,
                "label_studio": self.url,
                "train_every": self.cfg.train_every,
                "annotations_since_training": self._since,
                "events": dict(self._events),
                "job": self.worker.status(),
                "last_evaluation": _short_evaluation(evaluation),
                "predicted_tasks": self.predicted,
                "failed_tasks": self.failed,
                "announced": self.announced,
                "uptime_s": round(time.time() - self.started_at, 1),
            }

    def close(self) -> None:
        """Stop the training job (by PID) and the worker; close connections."""
        if self._job is not None:
            self._job.stop()
        self.worker.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()


def _short_evaluation(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    keys: Sequence[str] = ("split", "images", "labels", "map50", "map50_95", "precision", "recall")
    return {k: metrics[k] for k in keys if k in metrics}
