"""The local engine: the pass runs in this process (decoding in threads, the model in
batches), as ``boxloop predict`` always has."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import PredictJob, Source

__all__ = ["LocalEngine", "run_predict_job", "score_chunk"]


def run_predict_job(
    job: PredictJob, sources: Sequence[Source], backend: Any, *, times: dict[str, float] | None = None,
) -> Iterator[tuple[int, Any, str | None]]:
    """``(index, Prediction, None)`` or ``(index, None, reason)`` per source, in order."""
    from ..modeling import iter_predictions

    yield from iter_predictions(
        backend, sources, conf=job.conf, iou=job.iou, batch=job.batch, workers=job.workers, times=times,
        hflip=job.hflip, copies=Path(job.copies) if job.copies else None,
    )


def score_chunk(pool: Any, names: Sequence[str], options: Any, start: int, stop: int) -> dict[str, np.ndarray]:
    """Raw scores of items ``start:stop`` of the pool for scorers that read one item at a time."""
    from ..scoring import SCORERS

    chunk = pool.slice(start, stop)
    rng = np.random.default_rng(0)  # unused: random is never scored in chunks
    return {name: np.asarray(SCORERS[name].fn(chunk, options, rng), np.float64) for name in names}


class LocalEngine:
    """Runs the pass here, with a backend loaded once (or the one given)."""

    name = "local"

    def predict(
        self, job: PredictJob, sources: Sequence[Source], *, backend: Any = None, times: dict[str, float] | None = None,
    ) -> Iterator[tuple[int, Any, str | None]]:
        yield from run_predict_job(job, sources, backend if backend is not None else job.load(), times=times)

    def score(self, pool: Any, names: Sequence[str], options: Any) -> Mapping[str, np.ndarray]:
        return score_chunk(pool, names, options, 0, len(pool)) if names else {}
