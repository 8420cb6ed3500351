"""The Ray engine: a pass over Ray Data on an existing Ray cluster (or a local one).

Prediction is ``map_batches`` with a callable class: each actor loads the model once (the
weights travel through Ray's object store, so workers need no shared disk), decodes its
batch with the same code as the local engine and returns boxes and embeddings as bytes.
Actors take one GPU each when the cluster has GPUs, else the cluster's CPUs are split
between them. Results stream back to the caller, which writes them into the store in
batches; nothing on the cluster touches the store.

Faults: actors restart when their process dies and the lost batch runs again
(``max_restarts=-1``, ``max_task_retries=-1``); the caller keeps one result per item, so a
retried batch is never stored twice, and reports any item the engine did not return.

ray is imported only inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InputError
from . import PredictJob, Source, chunkable

__all__ = ["RayEngine", "ShippedWeights", "ray_available"]

log = logging.getLogger(__name__)

#: Images per Ray Data batch (one task on an actor; the unit that is retried).
RAY_BATCH = 64
#: Items per scoring chunk.
SCORE_CHUNK = 4096


def ray_available() -> bool:
    """Whether ray (with Ray Data) is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("ray.data") is not None
    except ModuleNotFoundError:
        return False


class ShippedWeights:
    """A weights file that travels with the job (bytes in Ray's object store) and is
    written once per worker machine, under a name of its content, before loading."""

    def __init__(self, path: str | Path, **load_kwargs: Any) -> None:
        import ray

        path = Path(path)
        data = path.read_bytes()
        self.name = path.name
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.ref = ray.put(data)
        self.load_kwargs = load_kwargs

    def local_path(self) -> Path:
        import ray

        folder = Path(tempfile.gettempdir()) / "boxloop-weights" / self.sha256[:16]
        target = folder / self.name
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
            with os.fdopen(fd, "wb") as f:
                f.write(ray.get(self.ref))
            os.replace(tmp, target)
        return target

    def __call__(self) -> Any:
        """Load the backend on this worker (device ``0`` when Ray gave it a GPU)."""
        import ray

        from ..backends.ultralytics import load_backend

        kwargs = dict(self.load_kwargs)
        gpus = ray.get_gpu_ids() if ray.is_initialized() else []
        kwargs["device"] = "0" if gpus else "cpu"
        cpus = _assigned_cpus()
        if cpus:  # an ONNX model's own threads
            kwargs["threads"] = cpus
        backend = load_backend(self.local_path(), **kwargs)
        _fit_threads(cpus)
        return backend


def _assigned_cpus() -> int | None:
    """The CPUs Ray gave this actor or task (at least 1), None outside one (the driver). Backends take every
    core by default, which oversubscribes a machine running several actors."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # Ray's answer in the driver, to which it assigns nothing
        return None
    return max(1, int(cpus)) if cpus else None


def _fit_threads(cpus: int | None) -> None:
    """torch threads (the process's) = the CPUs Ray gave this actor."""
    try:
        import torch
    except ImportError:
        return
    if cpus:
        torch.set_num_threads(cpus)


class _PredictActor:
    """One Ray Data actor: the model, loaded once; ``__call__`` predicts one batch."""

    def __init__(self, job: PredictJob) -> None:
        self.job = job
        self.backend = job.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import time

        from ..store import encode_detections
        from .local import run_predict_job

        t0 = time.perf_counter()
        sources: list[Source] = [
            (str(u), (int(w), int(h)) if w > 0 else None, str(s) or None)
            for u, w, h, s in zip(batch["uri"], batch["width"], batch["height"], batch["sha256"])
        ]
        index = np.asarray(batch["index"], np.int64)
        problems = [""] * len(sources)
        boxes: list[bytes] = [b""] * len(sources)
        embs: list[bytes] = [b""] * len(sources)
        for i, pred, problem in run_predict_job(self.job, sources, self.backend):
            if problem is not None:
                problems[i] = problem
                continue
            boxes[i] = encode_detections(pred.detections)
            if pred.embedding is not None:
                embs[i] = np.asarray(pred.embedding, np.float32).tobytes()
        share = (time.perf_counter() - t0) / max(len(sources), 1)
        return {
            "index": index,
            "problem": np.array(problems, dtype=object),
            "boxes": np.array(boxes, dtype=object),
            "embedding": np.array(embs, dtype=object),
            "seconds": np.full(len(sources), share),  # this actor's busy time, shared per image
            "worker": np.full(len(sources), os.getpid(), np.int64),
        }


def _score_batch(batch: dict[str, np.ndarray], pool: Any, names: Sequence[str], options: Any, chunk: int) -> dict[str, np.ndarray]:
    """Ray Data task: raw scores of the pool chunks named in the batch, one row per item."""
    import ray

    from .local import score_chunk

    if isinstance(pool, ray.ObjectRef):
        pool = ray.get(pool)
    pos, cols = [], {n: [] for n in names}  # type: ignore[var-annotated]
    for c in np.asarray(batch["id"], np.int64):
        start, stop = int(c) * chunk, min(len(pool), (int(c) + 1) * chunk)
        scores = score_chunk(pool, names, options, start, stop)
        pos.append(np.arange(start, stop, dtype=np.int64))
        for n in names:
            cols[n].append(scores[n])
    return {"pos": np.concatenate(pos), **{f"score:{n}": np.concatenate(v) for n, v in cols.items()}}


class RayEngine:
    """Runs passes over Ray Data. ``address``: ``auto`` (the cluster this machine belongs
    to), ``ray://host:10001`` (Ray Client) or None (an already initialised Ray, RAY_ADDRESS,
    or a new local cluster). ``actors``: how many model replicas (default: one per GPU, or
    one per CPU without GPUs)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, actors: int | None = None, batch_size: int = RAY_BATCH) -> None:
        if actors is not None and actors < 1:
            raise InputError(f"--ray-actors must be at least 1, got {actors}")
        self.address = address
        self.actors = actors
        self.batch_size = int(batch_size)
        #: what the last prediction pass measured: actors, their busy seconds, images
        self.last_pass: dict[str, Any] = {}

    def _ray(self) -> Any:
        try:
            import ray
            import ray.data
        except ImportError as e:
            raise InputError("--engine ray needs Ray Data: pip install 'boxloop[ray]'") from e
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise BackendError(f"cannot reach the Ray cluster at {self.address or 'RAY_ADDRESS / local'}: {e}") from e
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        return ray

    def _layout(self, ray: Any) -> tuple[int, float, float]:
        """(actors, GPUs per actor, CPUs per actor): one actor per GPU when the cluster has
        GPUs, else one per CPU; the CPUs are shared out between the actors."""
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        cpus = max(1, int(res.get("CPU", 1)))
        n = self.actors or gpus or cpus
        return n, (1.0 if gpus else 0.0), float(max(1, cpus // n))

    def ship(self, weights: str | Path, **load_kwargs: Any) -> Callable[[], Any]:
        """A picklable loader of these weights for the workers (``load_backend`` kwargs)."""
        self._ray()
        return ShippedWeights(weights, **load_kwargs)

    def predict(
        self, job: PredictJob, sources: Sequence[Source], *, backend: Any = None, times: dict[str, float] | None = None,
    ) -> Iterator[tuple[int, Any, str | None]]:
        """``(index, Prediction, None)`` or ``(index, None, reason)`` per source, as batches
        finish (any order), each index once."""
        from ..backends.base import Prediction
        from ..store import decode_detections

        if not sources:
            return
        ray = self._ray()
        if backend is not None:
            import cloudpickle

            try:  # the job's loader ships this very object to the actors
                cloudpickle.dumps(backend)
            except Exception as e:  # pickling raises whatever the object raises
                raise InputError(f"a ready backend must be picklable to run on Ray ({type(backend).__name__}: {e})") from e
        n_actors, gpus, cpus = self._layout(ray)
        rows = {
            "index": np.arange(len(sources), dtype=np.int64),
            "uri": np.array([s[0] for s in sources], dtype=object),
            "width": np.array([s[1][0] if s[1] else 0 for s in sources], np.int64),
            "height": np.array([s[1][1] if s[1] else 0 for s in sources], np.int64),
            "sha256": np.array([(s[2] if len(s) > 2 else None) or "" for s in sources], dtype=object),
        }
        # small passes still spread over every actor: at least 4 batches per actor
        size = int(min(self.batch_size, max(job.batch, -(-len(sources) // (4 * n_actors)))))
        ds = _dataset(rows, size)
        # Ray Data's actors default to max_restarts=-1 and max_task_retries=-1: a killed
        # actor is restarted (its model loaded again) and its batch runs again
        out = ds.map_batches(
            _PredictActor,
            fn_constructor_args=(job,),
            batch_size=size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_gpus=gpus,
            num_cpus=cpus,
        )
        seen = np.zeros(len(sources), bool)
        duplicates = 0
        busy = 0.0
        workers: set[int] = set()
        self.last_pass = {"actors": n_actors, "gpus_per_actor": gpus, "cpus_per_actor": cpus, "batch": size}
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                busy += float(np.sum(batch["seconds"]))
                workers.update(int(w) for w in batch["worker"])
                self.last_pass.update(busy_seconds=busy, processes=len(workers), images=int(seen.sum()))
                for i, problem, blob, emb in zip(batch["index"], batch["problem"], batch["boxes"], batch["embedding"]):
                    i = int(i)
                    if seen[i]:
                        duplicates += 1
                        continue
                    seen[i] = True
                    if problem:
                        yield i, None, str(problem)
                        continue
                    vector = np.frombuffer(emb, np.float32).copy() if len(emb) else None
                    yield i, Prediction(decode_detections(bytes(blob)), vector), None
        except ray.exceptions.RayError as e:
            raise BackendError(f"the Ray pass failed: {_first_line(e)}") from e
        self.last_pass.update(images=int(seen.sum()), duplicates=duplicates)
        if duplicates:
            log.warning("Ray returned %d item(s) twice (a retried batch); each was kept once", duplicates)
        for i in np.flatnonzero(~seen):
            yield int(i), None, "not returned by the Ray pass; run the command again with --missing to predict it"

    def score(self, pool: Any, names: Sequence[str], options: Any) -> Mapping[str, np.ndarray]:
        """Raw scores of the scorers that read one item at a time, chunk by chunk on Ray."""
        names = [n for n in names if chunkable(n)]
        if not names or not len(pool):
            return {}
        ray = self._ray()
        chunk = SCORE_CHUNK
        n_chunks = -(-len(pool) // chunk)
        pool_ref = ray.put(pool)
        import pyarrow as pa

        ds = ray.data.from_arrow([pa.table({"id": pa.array([c], pa.int64())}) for c in range(n_chunks)])
        out = ds.map_batches(
            _score_batch, fn_args=(pool_ref, list(names), options, chunk), batch_size=1, batch_format="numpy",
        )
        scores = {n: np.full(len(pool), np.nan) for n in names}
        filled = np.zeros(len(pool), bool)
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                pos = np.asarray(batch["pos"], np.int64)
                filled[pos] = True
                for n in names:
                    scores[n][pos] = batch[f"score:{n}"]
        except ray.exceptions.RayError as e:
            raise BackendError(f"the Ray scoring pass failed: {_first_line(e)}") from e
        if not filled.all():
            raise BackendError(f"the Ray scoring pass returned {int(filled.sum())} of {len(pool)} items")
        return scores


def _dataset(rows: dict[str, np.ndarray], size: int) -> Any:
    """A Ray Dataset of the rows in blocks of ``size`` (the actors share the blocks out)."""
    import pyarrow as pa
    import ray.data

    n = len(rows["index"])
    tables = []
    for start in range(0, n, size):
        part = {k: v[start : start + size] for k, v in rows.items()}
        tables.append(pa.table({
            "index": pa.array(part["index"], pa.int64()),
            "uri": pa.array(list(part["uri"]), pa.string()),
            "width": pa.array(part["width"], pa.int64()),
            "height": pa.array(part["height"], pa.int64()),
            "sha256": pa.array(list(part["sha256"]), pa.string()),
        }))
    return ray.data.from_arrow(tables)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__
