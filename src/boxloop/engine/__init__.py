"""Where the heavy passes run: in this process (``local``, the default) or over Ray Data on
a Ray cluster (``ray``). Both take the same picklable job and give the same results; the
store is written only here, by the caller, from the results streaming back.

A pass over images is a :class:`PredictJob` (how to load the model, the thresholds) and a
list of :data:`Source` tuples; an engine yields ``(index, Prediction, None)`` or
``(index, None, reason)`` once per source, in any order. Scoring ships the pool and runs
the scorers that read one item at a time (:func:`chunkable`) on the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import InputError

__all__ = [
    "ENGINES",
    "Engine",
    "PredictJob",
    "Source",
    "chunkable",
    "get_engine",
]

ENGINES = ("local", "ray")

#: One image to predict: (uri, (width, height) as displayed or None, sha256 or None).
Source = tuple[str, "tuple[int, int] | None", "str | None"]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class PredictJob:
    """A prediction pass in picklable values. ``load`` builds the backend (called once per
    process or actor); the rest are the settings of :func:`boxloop.modeling.iter_predictions`."""

    load: Callable[[], Any]
    conf: float
    iou: float
    batch: int = 8
    hflip: bool = False
    workers: int = 2
    copies: str | None = None  # a workspace's shrunk/: large HEICs' and PNGs' copies kept between rounds


class Engine(Protocol):
    """What runs a pass: predictions per source, and chunk-by-chunk scores of a pool."""

    name: str

    def predict(
        self, job: PredictJob, sources: Sequence[Source], *, backend: Any = None, times: dict[str, float] | None = None,
    ) -> Iterator[tuple[int, Any, str | None]]: ...

    def score(self, pool: Any, names: Sequence[str], options: Any) -> Mapping[str, np.ndarray]: ...


def chunkable(name: str) -> bool:
    """Whether a scorer's value for an item depends on that item alone (plus the labeled
    statistics every chunk carries): then the pool can be scored in chunks anywhere.
    Flicker reads neighbouring frames and random draws from one generator: they stay local."""
    from ..scoring import SCORERS

    return SCORERS[name].context == 0 and name != "random"


def get_engine(name: str = "local", *, address: str | None = None, actors: int | None = None) -> Engine:
    """The engine called ``name``; ``address`` (``auto``, ``ray://host:10001``) and
    ``actors`` apply to Ray."""
    if name == "local":
        from .local import LocalEngine

        if address is not None:
            raise InputError("--ray-address needs --engine ray")
        return LocalEngine()
    if name == "ray":
        from .ray import RayEngine

        return RayEngine(address=address, actors=actors)
    raise InputError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
