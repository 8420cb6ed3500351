"""The one exception tree of boxloop, and the record of a bad input that did not stop a batch.

    BoxloopError
    ├── InputError        bad user input: a file, a line, an option
    │   └── NothingToSelect   no unlabeled image a selection could pick
    ├── ConfigError       boxloop.toml or a missing workspace
    ├── StoreError        the SQLite store (schema, locks)
    ├── BackendError      a detector backend (weights, training, inference)
    └── SyncError         an annotation tool (Label Studio, files)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BackendError",
    "BoxloopError",
    "ConfigError",
    "InputError",
    "NothingToSelect",
    "Problem",
    "Problems",
    "StoreError",
    "SyncError",
]


class BoxloopError(Exception):
    """Base of every error boxloop raises on purpose; the CLI prints its message, not a trace."""


class InputError(BoxloopError):
    """A file, line or option the user gave cannot be used."""


class NothingToSelect(InputError):
    """No unlabeled image can be picked: every one is labeled, out for labeling, skipped, in
    the test split or not yet predicted by the model version."""


class ConfigError(BoxloopError):
    """The workspace or its configuration is missing or invalid."""


class StoreError(BoxloopError):
    """The store cannot be read or written."""


class BackendError(BoxloopError):
    """A detector backend failed (weights, training, inference)."""


class SyncError(BoxloopError):
    """An annotation tool could not be reached or returned something unusable."""


@dataclass(frozen=True)
class Problem:
    """One bad input that was skipped: where it is and why."""

    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


@dataclass
class Problems:
    """Problems collected over a batch; the batch goes on and reports them at the end."""

    items: list[Problem] = field(default_factory=list)

    def add(self, path: object, reason: str, line: int | None = None) -> None:
        self.items.append(Problem(str(path), reason, line))

    def extend(self, other: Problems | list[Problem]) -> None:
        self.items.extend(other.items if isinstance(other, Problems) else other)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if(self, strict: bool) -> None:
        """With ``strict``, any collected problem becomes an :class:`InputError`."""
        if strict and self.items:
            lines = "\n".join(str(p) for p in self.items)
            raise InputError(f"{len(self.items)} problem(s) with --strict:\n{lines}")
