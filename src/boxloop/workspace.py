"""A workspace: one project folder holding boxloop.toml, the SQLite store, runs/ and exports/."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .config import Config, default_toml, load_config
from .errors import ConfigError, InputError, StoreError
from .sources import absolute_path
from .store import Store

__all__ = ["CONFIG_NAME", "STORE_NAME", "Workspace", "find_workspace"]

CONFIG_NAME = "boxloop.toml"
STORE_NAME = "boxloop.db"
ROOT_KEY = "workspace_root"  # where the workspace was when its paths were last written
log = logging.getLogger(__name__)


@dataclass
class Workspace:
    """A boxloop project folder.

    >>> ws = Workspace.init("lcd", classes=["0", "1"])  # doctest: +SKIP
    >>> ws.store.classes()                               # doctest: +SKIP
    ['0', '1']
    """

    root: Path

    @classmethod
    def init(cls, root: str | Path, classes: Sequence[str], *, name: str | None = None) -> Workspace:
        """Create a workspace (or reopen one with the same classes)."""
        root = absolute_path(root)
        if not classes:
            raise InputError("a project needs at least one class (--classes a,b,c)")
        dupes = sorted({c for c in classes if list(classes).count(c) > 1})
        if dupes:
            raise InputError(f"duplicate class name(s): {', '.join(dupes)}")
        root.mkdir(parents=True, exist_ok=True)
        cfg = root / CONFIG_NAME
        if not cfg.exists():
            tmp = cfg.with_suffix(".toml.tmp")
            tmp.write_text(default_toml(name or root.name), encoding="utf-8")
            os.replace(tmp, cfg)
        for sub in ("runs", "exports", "frames"):
            (root / sub).mkdir(exist_ok=True)
        ws = cls(root)
        ws.store.set_classes(list(classes))
        return ws

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        root = absolute_path(root)
        if not (root / CONFIG_NAME).is_file():
            raise ConfigError(f"{root}: not a boxloop workspace (no {CONFIG_NAME}); run `boxloop init`")
        return cls(root)

    @cached_property
    def config(self) -> Config:
        return load_config(self.root / CONFIG_NAME)

    @cached_property
    def store(self) -> Store:
        store = Store.open(self.root / STORE_NAME)
        self._follow_a_move(store)
        return store

    def _follow_a_move(self, store: Store) -> None:
        """A workspace moved or copied elsewhere: the paths it keeps of its own files (pictures
        unpacked under imports/, video frames, Label Studio media, model weights) and of files
        inside its folder name the old place. Rewrite them to this one, once."""
        here = str(self.root)
        was = store.get_meta(ROOT_KEY)
        if was is None:
            was = store.former_root()  # a store from before the key
        if was is not None and was != here and os.path.realpath(was) != os.path.realpath(here):
            # (the same folder reached by another path, through a link, keeps every stored path valid)
            moved = store.relocate(was, here)
            if moved:
                log.warning("the workspace was at %s: %d path(s) of its own files now point here (%s)", was, moved, here)
        if was != here:
            try:
                store.set_meta(ROOT_KEY, here)
            except (sqlite3.Error, StoreError):  # a workspace on a read-only disk is still read
                log.debug("could not record the workspace's place in %s", here)

    @property
    def classes(self) -> list[str]:
        return self.store.classes()

    def prelabel_conf(self, model_version: str | None) -> float:
        """The lowest confidence of a box shown as a pre-label of ``model_version``: [labelstudio]
        prelabel_conf, or with "auto" the threshold the version's evaluation chose
        (:func:`boxloop.annotation.acceptance.prelabel_threshold`)."""
        from .annotation.acceptance import prelabel_threshold

        evaluation = self.store.evaluation(model_version) if model_version else None
        return prelabel_threshold(self.config.labelstudio.prelabel_conf, evaluation)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
            del self.__dict__["store"]

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_workspace(start: str | Path | None = None) -> Workspace:
    """The workspace at ``start`` or its nearest parent holding boxloop.toml
    (``BOXLOOP_WORKSPACE`` when ``start`` is None and it is set)."""
    if start is None:
        start = os.environ.get("BOXLOOP_WORKSPACE") or Path.cwd()
    here = absolute_path(start)
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return Workspace(d)
    raise ConfigError(
        f"{here}: no boxloop workspace here or above; create one with `boxloop init DIR --classes a,b`"
    )
