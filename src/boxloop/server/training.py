"""Retraining while people label: a background worker that runs one training job at a
time (triggers during a job coalesce into one next run), and the job itself.

The job runs in its own process (``python -m boxloop.server.training``) so that torch
training never starves the server's request handling; the server loads the new model
version when the job reports it. A job: adopt the Label Studio tasks boxloop did not push
(their images are fetched under the same allow-list as /predict and kept in the workspace's
``media/labelstudio/``), pull the annotations as human label versions, give new labels a
split, train (warm-started from the newest model by default), evaluate on the frozen test
split, and write its result as JSON. The API token reaches the job in its environment,
never on its command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BoxloopError

__all__ = ["Job", "SubprocessJob", "TrainingWorker", "main", "run_job"]

log = logging.getLogger(__name__)
TOKEN_ENV = "LABEL_STUDIO_API_KEY"


@dataclass
class Job:
    """One training run: why it was asked for, and how it went."""

    number: int
    reasons: list[str]
    state: str = "running"  # running, done, failed
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    pid: int | None = None
    progress_file: str | None = None  # where the job's process writes how far its training is

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("progress_file")
        if self.finished_at is not None:
            d["seconds"] = round(self.finished_at - self.started_at, 2)
        elif self.progress_file:  # running: the step it is at (pulling, training epoch e of n), as written last
            with contextlib.suppress(OSError, json.JSONDecodeError):  # not written yet
                d["progress"] = json.loads(Path(self.progress_file).read_text(encoding="utf-8"))
            d["elapsed_seconds"] = round(time.time() - self.started_at, 1)
        return d


class TrainingWorker:
    """Runs ``run(job)`` in one background thread, one job at a time.

    ``trigger`` never blocks: with no job running it starts one; during a job it queues
    exactly one next run, however many triggers arrive (they are coalesced, their reasons
    kept). ``run`` returns the job's result or raises a BoxloopError (the job failed, with
    that message); ``on_done`` is called with every finished job, in the worker thread.

    >>> w = TrainingWorker(lambda job: {"model_version": "m002"})  # doctest: +SKIP
    >>> w.trigger("20 new annotations")                            # doctest: +SKIP
    'started'
    """

    def __init__(
        self, run: Callable[[Job], dict[str, Any]], *, on_done: Callable[[Job], None] | None = None
    ) -> None:
        self._run = run
        self._on_done = on_done
        self._cond = threading.Condition()
        self._queued: list[str] = []
        self._current: Job | None = None
        self._last: Job | None = None
        self._runs = 0
        self._closing = False
        self._thread: threading.Thread | None = None

    def trigger(self, reason: str) -> str:
        """Ask for a training: 'started' (none was running), 'queued' (it runs after the
        current job) or 'closed' (the worker is shutting down)."""
        with self._cond:
            if self._closing:
                return "closed"
            busy = self._current is not None or bool(self._queued)
            self._queued.append(reason)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="boxloop-training", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return "queued" if busy else "started"

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queued and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                self._runs += 1
                job = Job(self._runs, self._queued)
                self._queued = []
                self._current = job
            try:
                job.result = dict(self._run(job) or {})
                job.state = "done"
            except BoxloopError as e:
                job.state, job.error = "failed", str(e)
            except Exception as e:  # the worker outlives a broken job; the failure is in /status
                log.exception("training job %d failed", job.number)
                job.state, job.error = "failed", f"internal error ({type(e).__name__}); see the server log"
            job.finished_at = time.time()
            log.info("training job %d %s in %.0fs", job.number, job.state, job.finished_at - job.started_at)
            if self._on_done is not None:
                try:
                    self._on_done(job)
                except Exception:  # loading the new model failed; keep serving the old one
                    log.exception("after training job %d", job.number)
            with self._cond:
                self._current = None
                self._last = job
                self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        """The job state for /status: idle or running, whether a next run is queued, the
        current and the last finished job."""
        with self._cond:
            return {
                "state": "running" if self._current is not None else "idle",
                "queued": bool(self._queued),
                "queued_reasons": list(self._queued),
                "runs": self._runs,
                "current": self._current.as_dict() if self._current else None,
                "last": self._last.as_dict() if self._last else None,
            }

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job runs and none is queued (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._current is not None or (self._queued and not self._closing):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; a queued run is dropped, the current one is let finish (its
        runner is stopped by whoever owns it)."""
        with self._cond:
            self._closing = True
            self._queued = []
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


class SubprocessJob:
    """Runs a training job as ``python -m boxloop.server.training`` in the server's process
    group (stopping the server's group stops it too); ``stop`` ends a running one by PID.

    Its output goes to ``runs/serve/job-<n>.log``, its result to ``runs/serve/job-<n>.json``."""

    def __init__(
        self, workspace: Path, *, url: str, project: Callable[[], int | None], token: Callable[[], str | None],
        python: str = sys.executable,
    ) -> None:
        self.workspace = Path(workspace)
        self.url = url
        self.project = project
        self.token = token
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def __call__(self, job: Job) -> dict[str, Any]:
        from ..errors import SyncError

        project = self.project()
        if project is None:
            raise SyncError(
                "no Label Studio project to train from: start with --connect PROJECT, set [labelstudio] "
                "project, or let Label Studio call /setup first"
            )
        token = self.token()
        if not token:
            raise SyncError(f"no Label Studio API token to pull annotations with: set {TOKEN_ENV}")
        out = self.workspace / "runs" / "serve"
        out.mkdir(parents=True, exist_ok=True)
        result_path = out / f"job-{int(time.time())}-{job.number}.json"
        log_path = result_path.with_suffix(".log")
        job.progress_file = str(result_path.with_suffix(".progress.json"))
        cmd = [
            self.python, "-m", "boxloop.server.training", "--workspace", str(self.workspace),
            "--project", str(project), "--url", self.url, "--result", str(result_path),
            "--progress", job.progress_file,
        ]
        env = {**os.environ, TOKEN_ENV: token, "YOLO_OFFLINE": os.environ.get("YOLO_OFFLINE", "1")}
        with self._lock:
            if self._stopped:
                raise SyncError("the server is shutting down; training not started")
            with open(log_path, "ab") as logf:
                self._proc = subprocess.Popen(
                    cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    cwd=self.workspace,
                )
            job.pid = self._proc.pid
        log.info("training job %d started (pid %d), log %s", job.number, job.pid, log_path)
        rc = self._proc.wait()
        with self._lock:
            self._proc = None
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            result = {"ok": False, "error": f"the training process exited with {rc} and left no result; see {log_path}"}
        result["log"] = str(log_path)
        if not result.get("ok"):
            from ..errors import BackendError

            raise BackendError(f"{result.get('error') or f'training process exited with {rc}'} (log: {log_path})")
        return result

    def stop(self, timeout: float = 15.0) -> None:
        """End a running job (SIGTERM, then SIGKILL) and refuse new ones."""
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        log.info("stopping training job (pid %d)", proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- the job ------------------------------------------------------------------------------
def run_job(
    ws: Any, *, project: int, url: str, token: str, progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Adopt, pull, split, train, evaluate; returns what the server shows in /status.
    ``progress`` is told each step as it begins, and each training epoch."""
    said = progress or (lambda _: None)
    from ..annotation.labelstudio import pull
    from ..loop import round_lock
    from ..modeling import evaluate_model, train
    from ..split import assign_splits
    from .images import FetchPolicy, ImageFetcher, parse_allowed
    from .sync import adopt_tasks

    cfg = ws.config.serve
    result: dict[str, Any] = {"project": project}
    with round_lock(ws, doing="a retraining of boxloop serve"):
        said({"step": "pulling the annotations"})
        fetcher = ImageFetcher(
            FetchPolicy(url, parse_allowed(cfg.allowed_storage), cfg.max_image_bytes, cfg.fetch_timeout),
            token=lambda: token,
        )
        try:
            adopted = adopt_tasks(ws, project=project, url=url, token=token, fetcher=fetcher)
        finally:
            fetcher.close()
        result["adopted"] = adopted.adopted
        result["problems"] = [str(p) for p in adopted.problems][:20]
        pulled = pull(ws, project=str(project), url=url, token=token)
        result["pulled"] = {"labeled": pulled.labeled, "updated": pulled.updated, "open": pulled.open,
                            "reopened": pulled.reopened}
        result["problems"] += [str(p) for p in pulled.problems][:20]
        store = ws.store
        has_test = bool(store.items(split="test"))
        assign_splits(store, val=cfg.val, test=0.0 if has_test else cfg.test, seed=0)
        model = None
        if cfg.warm_start:
            trained = [v for v in store.model_versions() if v["path"] and str(v["path"]).endswith(".pt")]
            if trained and Path(trained[-1]["path"]).is_file():
                model = trained[-1]["path"]
                result["warm_start_from"] = trained[-1]["id"]
        said({"step": "training"})
        outcome = train(ws, model=model, allow_missing_classes=True,
                        on_epoch=lambda e, n: said({"step": "training", "epoch": e, "epochs": n}))
        said({"step": "evaluating"})
        result.update(
            model_version=outcome.version, weights=str(outcome.weights), train_images=outcome.train_images,
            val_images=outcome.val_images, metrics=outcome.metrics,
        )
        test_ids = [it.id for it in store.items(split="test")]
        if store.latest_labels(test_ids):
            _, metrics = evaluate_model(ws, model=outcome.version)
            result["evaluation"] = {k: metrics[k] for k in ("split", "images", "map50", "map50_95") if k in metrics}
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m boxloop.server.training``: one job; its result JSON goes to --result."""
    from ..workspace import Workspace

    parser = argparse.ArgumentParser(prog="python -m boxloop.server.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--project", required=True, type=int)
    parser.add_argument("--url", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--progress", help="a JSON file rewritten with the step (and epoch) the job is at")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.basicConfig(level=os.environ.get("BOXLOOP_LOG", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = os.environ.get(TOKEN_ENV, "")
    out: dict[str, Any]
    t0 = time.perf_counter()
    try:
        with Workspace.open(args.workspace) as ws:
            out = {"ok": True, **run_job(ws, project=args.project, url=args.url, token=token,
                                         progress=_progress_writer(args.progress))}
    except BoxloopError as e:
        out = {"ok": False, "error": str(e).replace(token, "***") if token else str(e)}
    except KeyboardInterrupt:
        out = {"ok": False, "error": "training was interrupted"}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    tmp = Path(args.result + ".tmp")
    tmp.write_text(json.dumps(out, default=str), encoding="utf-8")
    os.replace(tmp, args.result)
    return 0 if out["ok"] else 1


def _progress_writer(path: str | None) -> Callable[[dict[str, Any]], None] | None:
    """Writes the job's step to ``path`` (aside, then renamed: the server never reads half a file)."""
    if not path:
        return None
    from ..atomic import write_text_atomic

    def write(step: dict[str, Any]) -> None:
        write_text_atomic(Path(path), json.dumps({**step, "at": round(time.time(), 1)}))

    return write


def _interrupted(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)  # a stopped server ends its job with a result
    sys.exit(main())
