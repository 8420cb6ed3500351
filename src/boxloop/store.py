"""The SQLite store: items, classes, versioned human labels, predictions, embeddings,
model versions, evaluations. One file per workspace, WAL mode, every write in a transaction.

Boxes are kept as one compact blob per (item, label version) or (item, model version):
a pool of a million images with a hundred low-confidence boxes each stays a million rows.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .errors import InputError, StoreError
from .types import SPLITS, Detections, Item, Selection

__all__ = ["ITEM_STATES", "Store", "decode_detections", "encode_detections"]

ITEM_STATES = ("pool", "prelabeled", "in_review", "labeled")
# a task whose item stays in the pool, though pre-labels went out with it: a zip nobody was
# asked to label whole, a batch given back (`boxloop release`), a task skipped in Label Studio
OFFERED = "offered"

CHECKED = "checked:"  # meta key prefix: item → the label version a person re-checked and kept
TO_CHECK = "to-check:"  # meta key prefix: item → the label version sent out to be re-checked

# Append-only: a new feature adds a new entry, existing entries never change.
# Statements are split on ";", so comments inside must not contain one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE classes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE items (
        id TEXT PRIMARY KEY,
        uri TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        split TEXT CHECK (split IN ('train', 'val', 'test')),
        video_id TEXT,
        frame_index INTEGER,
        added_at REAL NOT NULL
    );
    CREATE INDEX items_sha ON items (sha256);
    CREATE INDEX items_video ON items (video_id, frame_index);
    -- every path an item was seen at (exact duplicates share one item)
    CREATE TABLE item_sources (
        item_id TEXT NOT NULL REFERENCES items (id),
        path TEXT NOT NULL,
        stem TEXT NOT NULL,
        PRIMARY KEY (item_id, path)
    );
    CREATE INDEX item_sources_stem ON item_sources (stem);
    CREATE TABLE labels (
        item_id TEXT NOT NULL REFERENCES items (id),
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        round INTEGER,
        created_at REAL NOT NULL,
        n_boxes INTEGER NOT NULL,
        boxes BLOB NOT NULL,
        PRIMARY KEY (item_id, version)
    );
    CREATE TABLE model_versions (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        backend TEXT NOT NULL,
        path TEXT,
        classes TEXT NOT NULL,
        round INTEGER,
        meta TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE predictions (
        item_id TEXT NOT NULL REFERENCES items (id),
        model_version TEXT NOT NULL,
        created_at REAL NOT NULL,
        n_boxes INTEGER NOT NULL,
        boxes BLOB NOT NULL,
        PRIMARY KEY (model_version, item_id)
    );
    CREATE TABLE embeddings (
        item_id TEXT NOT NULL REFERENCES items (id),
        model_version TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model_version, item_id)
    );
    CREATE TABLE evaluations (
        model_version TEXT NOT NULL,
        split TEXT NOT NULL,
        created_at REAL NOT NULL,
        metrics TEXT NOT NULL,
        PRIMARY KEY (model_version, split)
    );
    -- a batch chosen for labeling, with its manifest (JSON: config, seed, the why)
    CREATE TABLE selections (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        model_version TEXT,
        strategy TEXT NOT NULL,
        seed INTEGER,
        manifest TEXT NOT NULL
    );
    CREATE TABLE selection_items (
        selection_id TEXT NOT NULL REFERENCES selections (id),
        rank INTEGER NOT NULL,
        item_id TEXT NOT NULL REFERENCES items (id),
        score REAL NOT NULL,
        why TEXT NOT NULL,
        PRIMARY KEY (selection_id, item_id)
    );
    -- an item sent to an annotation tool, open until its labels are pulled back
    CREATE TABLE tasks (
        tool TEXT NOT NULL,
        project TEXT NOT NULL,
        item_id TEXT NOT NULL REFERENCES items (id),
        task_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'skipped')),
        pushed_at REAL NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (tool, project, item_id)
    );
    CREATE INDEX tasks_item ON tasks (item_id, status);
    -- the round ledger: one row per round, one per step run in it (resume after a crash)
    CREATE TABLE rounds (
        round INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        finished_at REAL,
        config TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE round_steps (
        round INTEGER NOT NULL REFERENCES rounds (round),
        step TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
        started_at REAL NOT NULL,
        seconds REAL,
        result TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (round, step)
    );
    """,
    """
    -- pre-label acceptance of the labels pulled for one item from one annotation tool
    CREATE TABLE acceptance (
        tool TEXT NOT NULL,
        project TEXT NOT NULL,
        item_id TEXT NOT NULL REFERENCES items (id),
        annotation TEXT NOT NULL,
        model_version TEXT,
        round INTEGER,
        created_at REAL NOT NULL,
        accepted INTEGER NOT NULL,
        adjusted INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        added INTEGER NOT NULL,
        seconds_saved REAL NOT NULL,
        PRIMARY KEY (tool, project, item_id)
    );
    CREATE INDEX acceptance_round ON acceptance (round)
    """,
    """
    -- boxes a model assertion says should be there (flicker: the mean of the matched boxes
    -- of the frames before and after), offered as pre-labels, flagged data.imputed
    CREATE TABLE imputed_boxes (
        item_id TEXT NOT NULL REFERENCES items (id),
        model_version TEXT NOT NULL,
        created_at REAL NOT NULL,
        n_boxes INTEGER NOT NULL,
        boxes BLOB NOT NULL,
        PRIMARY KEY (model_version, item_id)
    )
    """,
    """
    -- whether an item has predictions of any model version (its state: pool or prelabeled)
    -- without a scan of the table per item
    CREATE INDEX predictions_item ON predictions (item_id)
    """,
    """
    -- the confidence threshold the pre-labels a person started from were cut at
    ALTER TABLE acceptance ADD COLUMN prelabel_conf REAL
    """,
    """
    -- a task may be 'offered': pre-labels handed out with no batch asked for (the whole pool
    -- pre-labeled), whose item stays in the pool. SQLite cannot change a CHECK: rebuild
    CREATE TABLE tasks_offered (
        tool TEXT NOT NULL,
        project TEXT NOT NULL,
        item_id TEXT NOT NULL REFERENCES items (id),
        task_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'skipped', 'offered')),
        pushed_at REAL NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (tool, project, item_id)
    );
    INSERT INTO tasks_offered (tool, project, item_id, task_id, status, pushed_at, meta)
        SELECT tool, project, item_id, task_id, status, pushed_at, meta FROM tasks ORDER BY rowid;
    DROP TABLE tasks;
    ALTER TABLE tasks_offered RENAME TO tasks;
    CREATE INDEX tasks_item ON tasks (item_id, status)
    """,
]


def encode_detections(d: Detections) -> bytes:
    """Detections → bytes (uncompressed npz: arrays keep dtype and shape)."""
    arrays: dict[str, np.ndarray] = {"xyxy": d.xyxy, "class_id": d.class_id}
    if d.confidence is not None:
        arrays["confidence"] = d.confidence
    for k, v in d.data.items():
        arrays[f"data.{k}"] = v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_detections(blob: bytes) -> Detections:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        data = {k[5:]: z[k] for k in z.files if k.startswith("data.")}
        return Detections(
            z["xyxy"], z["class_id"], z["confidence"] if "confidence" in z.files else None, data
        )


def _item(row: sqlite3.Row) -> Item:
    return Item(
        id=row["id"],
        uri=row["uri"],
        width=row["width"],
        height=row["height"],
        sha256=row["sha256"],
        split=row["split"],
        video_id=row["video_id"],
        frame_index=row["frame_index"],
        labeled_round=row["labeled_round"] if "labeled_round" in row.keys() else None,  # noqa: SIM118
    )


_ITEM_COLUMNS = (
    "i.id, i.uri, i.width, i.height, i.sha256, i.split, i.video_id, i.frame_index, "
    "(SELECT l.round FROM labels l WHERE l.item_id = i.id ORDER BY l.version LIMIT 1) AS labeled_round"
)


class Store:
    """A workspace's state in one SQLite file.

    >>> with Store.open(tmp_path / "boxloop.db") as store:  # doctest: +SKIP
    ...     store.set_classes(["digit"])
    """

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Store:
        path = Path(path)
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot open the store: {e}") from e
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        store = cls(conn, path)
        store._migrate()
        return store

    @classmethod
    def memory(cls) -> Store:
        """An in-memory store, for tests and simulations."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        store = cls(conn)
        store._migrate()
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside lands, or nothing does. Nests (savepoints)."""
        if self.conn.in_transaction:
            name = f"sp{time.perf_counter_ns()}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            self.conn.execute(f"RELEASE {name}")
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as c:
            has_meta = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            done = 0
            if has_meta:
                row = c.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                done = int(row[0]) if row else 0
            if done > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path}: store schema {done} is newer than this boxloop "
                    f"({len(MIGRATIONS)}); upgrade boxloop"
                )
            for script in MIGRATIONS[done:]:
                for stmt in script.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(len(MIGRATIONS)),),
            )

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def meta_items(self, prefix: str) -> dict[str, str]:
        """Every meta key starting with ``prefix``, with its value."""
        rows = self.conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {r[0]: r[1] for r in rows}

    def relocate(self, old_root: str, new_root: str) -> int:
        """Rewrite every stored path under ``old_root`` to the same path under ``new_root`` (a
        workspace moved or copied); returns how many were rewritten."""
        old, new = old_root.rstrip("/") + "/", new_root.rstrip("/") + "/"
        n = len(old)
        moved = 0
        with self.transaction() as c:
            for table, column in (("items", "uri"), ("item_sources", "path"), ("model_versions", "path")):
                moved += c.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                    (new, n + 1, n, old),
                ).rowcount
            for row in c.execute("SELECT id, meta FROM model_versions").fetchall():
                meta = json.loads(row["meta"] or "{}")
                run_dir = meta.get("run_dir")
                if isinstance(run_dir, str) and run_dir.startswith(old):
                    meta["run_dir"] = new + run_dir[n:]
                    c.execute("UPDATE model_versions SET meta = ? WHERE id = ?", (json.dumps(meta), row["id"]))
        return moved

    def former_root(self) -> str | None:
        """Where a workspace whose store does not say was, from its trained models' weights
        (``<root>/runs/<version>/...``): the one folder they lie under; None when no model
        was trained here, or they disagree."""
        roots = set()
        for row in self.conn.execute("SELECT id, path FROM model_versions WHERE path IS NOT NULL"):
            marker = f"/runs/{row['id']}/"
            if marker in str(row["path"]):
                roots.add(str(row["path"]).split(marker, 1)[0])
        return roots.pop() if len(roots) == 1 else None

    def mark_checked(self, item_id: str, version: int) -> None:
        """A person re-checked an image's labels at ``version`` and kept them (a review confirmed,
        a re-check zip brought back unchanged): an audit passes the image over until they change."""
        self.set_meta(f"{CHECKED}{item_id}", str(int(version)))

    def sent_to_check(self, item_ids: Iterable[str]) -> None:
        """Images sent out to have their labels re-checked (an audit's zip): labels coming back
        unchanged mark them checked (:meth:`checked_unchanged`)."""
        for item_id in item_ids:
            version = self.label_version(item_id)
            if version is not None:
                self.set_meta(f"{TO_CHECK}{item_id}", str(version))

    def checked_unchanged(self, item_id: str) -> bool:
        """Labels of ``item_id`` came back unchanged: if it was sent to be re-checked at its
        newest version, it is checked now (True)."""
        sent = self.get_meta(f"{TO_CHECK}{item_id}")
        version = self.label_version(item_id)
        if sent is None or version is None or int(sent) != version:
            return False
        self.mark_checked(item_id, version)
        return True

    def checked_versions(self) -> dict[str, int]:
        """Item → the label version a person re-checked and kept (:meth:`mark_checked`)."""
        return {k.removeprefix(CHECKED): int(v) for k, v in self.meta_items(CHECKED).items()}

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- classes --------------------------------------------------------------------------
    def classes(self) -> list[str]:
        """The project's class names; the index is the class id."""
        return [r[0] for r in self.conn.execute("SELECT name FROM classes ORDER BY id")]

    def set_classes(self, names: Sequence[str]) -> None:
        """Set the class list of a new project (an existing list can only be extended)."""
        current = self.classes()
        if current and list(names[: len(current)]) != current:
            raise InputError(
                f"cannot change the class list {current} to {list(names)}; classes can only be added"
            )
        self.add_classes(list(names)[len(current) :])

    def add_classes(self, names: Iterable[str]) -> list[str]:
        """Append new class names (existing ones are ignored); returns the full list."""
        with self.transaction() as c:
            existing = set(self.classes())
            for name in names:
                name = name.strip()
                if not name:
                    raise InputError("a class name cannot be empty")
                if name not in existing:
                    n = c.execute("SELECT COUNT(*) FROM classes").fetchone()[0]
                    c.execute("INSERT INTO classes (id, name) VALUES (?, ?)", (n, name))
                    existing.add(name)
        return self.classes()

    # -- items ----------------------------------------------------------------------------
    def add_item(self, item: Item, source_path: str | None = None) -> tuple[Item, bool]:
        """Record an item (or find it: same id = same content or same frame); returns
        (the stored item, whether it is new). The source path is remembered either way."""
        with self.transaction() as c:
            row = c.execute(f"SELECT {_ITEM_COLUMNS} FROM items i WHERE i.id=?", (item.id,)).fetchone()
            new = row is None
            if new:
                c.execute(
                    "INSERT INTO items (id, uri, width, height, sha256, split, video_id, "
                    "frame_index, added_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (item.id, item.uri, item.width, item.height, item.sha256, item.split,
                     item.video_id, item.frame_index, time.time()),
                )
            if source_path is not None:
                c.execute(
                    "INSERT OR IGNORE INTO item_sources (item_id, path, stem) VALUES (?,?,?)",
                    (item.id, source_path, Path(source_path).stem),
                )
        return (item if new else _item(row)), new

    def has_item(self, item_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone() is not None

    def get_item(self, item_id: str) -> Item:
        row = self.conn.execute(f"SELECT {_ITEM_COLUMNS} FROM items i WHERE i.id=?", (item_id,)).fetchone()
        if row is None:
            raise InputError(f"no item with id {item_id!r}")
        return _item(row)

    def items(
        self,
        ids: Iterable[str] | None = None,
        *,
        split: str | None = None,
        state: str | None = None,
        model_version: str | None = None,
    ) -> list[Item]:
        """Items in stable order (video frames in frame order), filtered by ids, split or state."""
        sql = f"SELECT {_ITEM_COLUMNS} FROM items i"
        where, args = [], []  # type: ignore[var-annotated]
        if split is not None:
            where.append("i.split = ?")
            args.append(split)
        if state is not None:
            where.append(self._state_sql(state, model_version))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY i.video_id IS NOT NULL, i.video_id, i.frame_index, i.added_at, i.id"
        rows = self.conn.execute(sql, args).fetchall()
        items = [_item(r) for r in rows]
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            by_id = {it.id: it for it in items}
            missing = [i for i in wanted if i not in by_id]
            if missing:
                raise InputError(f"unknown item id(s): {', '.join(missing[:5])}")
            items = [by_id[i] for i in wanted]
        return items

    def _state_sql(self, state: str, model_version: str | None) -> str:
        labeled = "EXISTS (SELECT 1 FROM labels l WHERE l.item_id = i.id)"
        in_review = "EXISTS (SELECT 1 FROM tasks t WHERE t.item_id = i.id AND t.status = 'open')"
        predicted = "EXISTS (SELECT 1 FROM predictions p WHERE p.item_id = i.id" + (
            f" AND p.model_version = {self._quote(model_version)})" if model_version else ")"
        )
        if state == "labeled":
            return labeled
        if state == "in_review":
            return f"NOT {labeled} AND {in_review}"
        if state == "prelabeled":
            return f"NOT {labeled} AND NOT {in_review} AND {predicted}"
        if state == "pool":
            return f"NOT {labeled} AND NOT {in_review} AND NOT {predicted}"
        if state == "unlabeled":
            return f"NOT {labeled}"
        raise InputError(f"unknown item state {state!r}; known: {', '.join(ITEM_STATES)}, unlabeled")

    @staticmethod
    def _quote(s: str) -> str:
        return "'" + s.replace("'", "''") + "'"

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` that name an item of this store."""
        want = list(dict.fromkeys(ids))
        found: set[str] = set()
        for k in range(0, len(want), 500):
            part = want[k:k + 500]
            rows = self.conn.execute(f"SELECT id FROM items WHERE id IN ({','.join('?' * len(part))})", part)
            found.update(r[0] for r in rows)
        return found

    def count_items(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def count_by_state(self) -> dict[str, int]:
        return {
            s: int(self.conn.execute(f"SELECT COUNT(*) FROM items i WHERE {self._state_sql(s, None)}").fetchone()[0])
            for s in ITEM_STATES
        }

    def items_by_stem(self, stem: str) -> list[tuple[str, str]]:
        """(item id, source path) pairs of items once seen at a path with this file stem."""
        rows = self.conn.execute(
            "SELECT item_id, path FROM item_sources WHERE stem=? ORDER BY path", (stem,)
        )
        return [(r[0], r[1]) for r in rows]

    def frame_at(self, path: str, sha256: str) -> Item | None:
        """The video frame this file is, if any: the frame once seen at ``path`` with this
        content, else the one frame with exactly these bytes (an exported copy of it, coming
        back corrected). The same file met again outside its sequence (its labels imported,
        its folder added as plain images, a zip from an annotation tool) is that frame, not a
        new item. Several frames with the same bytes (a still scene) are told apart by file
        name (an export names a frame by its video's name and its own, ``clipA_frame_000010``,
        or by its own name, or by that and its id)."""
        row = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items i JOIN item_sources s ON s.item_id = i.id "
            "WHERE i.sha256 = ? AND s.path = ? AND i.video_id IS NOT NULL LIMIT 1",
            (sha256, path),
        ).fetchone()
        if row is not None:
            return _item(row)
        frames = [_item(r) for r in self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items i WHERE i.sha256 = ? AND i.video_id IS NOT NULL "
            "ORDER BY i.video_id, i.frame_index", (sha256,))]
        if len(frames) <= 1:
            return frames[0] if frames else None
        stem = PurePosixPath(path.replace("\\", "/").split("?", 1)[0]).stem
        videos = self.video_names()

        def sent_as(f: Item) -> set[str]:
            own = PurePosixPath(f.uri).stem
            return {own, f"{PurePosixPath(videos.get(str(f.video_id), '')).stem}_{own}"}

        named = [f for f in frames if stem.endswith(f.id[:8]) or stem in sent_as(f)]
        return (named or frames)[0]

    def videos(self) -> dict[str, dict[str, Any]]:
        """video id → ``name`` (what a person knows the video by: its file's name, from the
        path its frames were decoded from, or the folder of a frame sequence), ``frames`` (how
        many the workspace holds) and ``uri`` (one frame's, where they were written)."""
        rows = self.conn.execute(
            # the video file a frame was decoded from (`path#frame=N`) names it, wherever its path sorts beside
            # the frames' own files under frames/ (a video at ~/videos beside a workspace at ~/lcd once went by a hash)
            "SELECT i.video_id, COALESCE(MIN(CASE WHEN instr(s.path, '#frame=') > 0 THEN s.path END), MIN(s.path)), "
            "COUNT(DISTINCT i.id), MIN(i.uri) FROM items i "
            "JOIN item_sources s ON s.item_id = i.id WHERE i.video_id IS NOT NULL GROUP BY i.video_id"
        )
        out: dict[str, dict[str, Any]] = {}
        for video_id, path, frames, uri in rows:
            where = str(path).replace("\\", "/")
            if "#frame=" in where:
                name = PurePosixPath(where.split("#frame=", 1)[0]).name
            else:
                name = PurePosixPath(where).parent.name or str(video_id)
            out[str(video_id)] = {"name": name, "frames": int(frames), "uri": str(uri)}
        return out

    def video_names(self) -> dict[str, str]:
        """video id → the name a person knows the video by (:meth:`videos`)."""
        return {v: d["name"] for v, d in self.videos().items()}

    def display_names(self, items: Iterable[Item]) -> dict[str, str]:
        """item id → how to name it to a person: a video frame as ``clipA.mp4 frame 10`` (every
        video's frames are ``frame_000010.jpg``), any other image by its file name."""
        items = list(items)
        videos = self.video_names() if any(it.video_id for it in items) else {}
        return {
            it.id: f"{videos[it.video_id]} frame {it.frame_index}" if it.video_id in videos else it.name
            for it in items
        }

    def sources(self, item_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT path FROM item_sources WHERE item_id=? ORDER BY path", (item_id,))]

    def clear_splits(self) -> None:
        """Take every item out of its split, the frozen test split too (``split --redo``,
        allowed only before any model version: see :func:`boxloop.split.assign_splits`)."""
        with self.transaction() as c:
            c.execute("UPDATE items SET split=NULL")

    def set_split(self, assignments: Mapping[str, str | None]) -> None:
        """Assign splits; an item already in the frozen test split never moves."""
        with self.transaction() as c:
            for item_id, split in assignments.items():
                if split is not None and split not in SPLITS:
                    raise InputError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
                c.execute(
                    "UPDATE items SET split=? WHERE id=? AND (split IS NULL OR split != 'test')",
                    (split, item_id),
                )

    # -- labels ---------------------------------------------------------------------------
    def add_label(
        self, item_id: str, labels: Detections, *, source: str, round: int | None = None
    ) -> int | None:
        """Add a human label version; returns its number, or None when it equals the newest
        version already stored (re-importing the same files adds nothing)."""
        blob = encode_detections(Detections(labels.xyxy, labels.class_id))
        with self.transaction() as c:
            row = c.execute(
                "SELECT version, boxes FROM labels WHERE item_id=? ORDER BY version DESC LIMIT 1",
                (item_id,),
            ).fetchone()
            if row is not None and decode_detections(row["boxes"]).equals(labels, atol=1e-3):
                return None
            version = 1 if row is None else row["version"] + 1
            c.execute(
                "INSERT INTO labels (item_id, version, source, round, created_at, n_boxes, boxes) "
                "VALUES (?,?,?,?,?,?,?)",
                (item_id, version, source, round, time.time(), len(labels), blob),
            )
        return version

    def older_label_version(self, item_id: str, labels: Detections, *, source: str) -> tuple[int, int] | None:
        """(the version, the newest version) when ``labels`` equal an older label version of
        the item than its newest, and the newest came from another source than ``source``:
        putting them back would undo a later correction. None otherwise (new labels, the
        newest's, or the newest's own file changed back)."""
        rows = self.conn.execute(
            "SELECT version, source, boxes FROM labels WHERE item_id=? ORDER BY version DESC", (item_id,)
        ).fetchall()
        if len(rows) < 2 or rows[0]["source"] == source:
            return None
        if decode_detections(rows[0]["boxes"]).equals(labels, atol=1e-3):
            return None
        for row in rows[1:]:
            if decode_detections(row["boxes"]).equals(labels, atol=1e-3):
                return int(row["version"]), int(rows[0]["version"])
        return None

    def latest_labels(self, ids: Iterable[str] | None = None, *, as_of: float | None = None) -> dict[str, Detections]:
        """The newest human label version of each labeled item (or of ``ids`` that have one);
        with ``as_of`` (a time.time()), the newest one made by then."""
        rows = self.conn.execute(
            "SELECT l.item_id, l.boxes FROM labels l JOIN "
            "(SELECT item_id, MAX(version) v FROM labels WHERE created_at <= ? GROUP BY item_id) m "
            "ON l.item_id = m.item_id AND l.version = m.v",
            (float("inf") if as_of is None else as_of,),
        )
        out = {r[0]: decode_detections(r[1]) for r in rows}
        if ids is not None:
            out = {i: out[i] for i in ids if i in out}
        return out

    def label_version(self, item_id: str) -> int | None:
        """The number of an item's newest human label version; None while it has none."""
        row = self.conn.execute("SELECT MAX(version) FROM labels WHERE item_id=?", (item_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def label_versions(self, item_id: str) -> list[dict[str, Any]]:
        """Every human label version of an item, oldest first."""
        rows = self.conn.execute(
            "SELECT version, source, round, created_at, boxes FROM labels WHERE item_id=? "
            "ORDER BY version", (item_id,)
        )
        return [
            {"version": r[0], "source": r[1], "round": r[2], "created_at": r[3],
             "labels": decode_detections(r[4])}
            for r in rows
        ]

    def box_counts(self) -> dict[int, int]:
        """Boxes per class id over the newest label versions."""
        counts: dict[int, int] = {}
        for d in self.latest_labels().values():
            for cid, n in zip(*np.unique(d.class_id, return_counts=True)):
                counts[int(cid)] = counts.get(int(cid), 0) + int(n)
        return counts

    # -- predictions and embeddings -------------------------------------------------------
    def put_predictions(self, model_version: str, predictions: Mapping[str, Detections]) -> None:
        """Store predictions (replacing earlier ones of the same item and model version)."""
        now = time.time()
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO predictions (item_id, model_version, created_at, n_boxes, boxes) "
                "VALUES (?,?,?,?,?)",
                [(i, model_version, now, len(d), encode_detections(d)) for i, d in predictions.items()],
            )

    def predictions(
        self, model_version: str, ids: Iterable[str] | None = None
    ) -> dict[str, Detections]:
        rows = self.conn.execute(
            "SELECT item_id, boxes FROM predictions WHERE model_version=?", (model_version,)
        )
        out = {r[0]: decode_detections(r[1]) for r in rows}
        if ids is not None:
            out = {i: out[i] for i in ids if i in out}
        return out

    def done_item_ids(self, model_version: str, *, what: str = "predictions") -> set[str]:
        """Items that have ``what`` (predictions or embeddings) from this model version."""
        if what not in ("predictions", "embeddings"):
            raise ValueError(f"what must be predictions or embeddings, got {what!r}")
        rows = self.conn.execute(f"SELECT item_id FROM {what} WHERE model_version=?", (model_version,))
        return {r[0] for r in rows}

    def predicted_versions(self) -> list[str]:
        """Model versions that have predictions, newest first."""
        rows = self.conn.execute(
            "SELECT model_version, MAX(created_at) t FROM predictions GROUP BY model_version ORDER BY t DESC"
        )
        return [r[0] for r in rows]

    def pool_coverage(self) -> tuple[int, dict[str, int]]:
        """(the selectable pool's size, model version → how many of it that version predicted):
        the pool is the unlabeled items out of the test split and not out for labeling."""
        pool = (
            "FROM items i WHERE (i.split IS NULL OR i.split != 'test') AND "
            f"{self._state_sql('unlabeled', None)} AND NOT ({self._state_sql('in_review', None)})"
        )
        size = int(self.conn.execute(f"SELECT COUNT(*) {pool}").fetchone()[0])
        rows = self.conn.execute(
            f"SELECT p.model_version, COUNT(*) FROM predictions p WHERE p.item_id IN (SELECT i.id {pool}) "
            "GROUP BY p.model_version"
        )
        return size, {r[0]: int(r[1]) for r in rows}

    def put_embeddings(self, model_version: str, embeddings: Mapping[str, np.ndarray]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO embeddings (item_id, model_version, vector) VALUES (?,?,?)",
                [(i, model_version, np.asarray(v, np.float32).tobytes()) for i, v in embeddings.items()],
            )

    def embeddings(
        self, model_version: str, ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """(item ids, float32 matrix) of the embeddings stored for a model version."""
        rows = self.conn.execute(
            "SELECT item_id, vector FROM embeddings WHERE model_version=? ORDER BY item_id",
            (model_version,),
        ).fetchall()
        by_id = {r[0]: np.frombuffer(r[1], np.float32) for r in rows}
        keep = [i for i in (ids if ids is not None else by_id) if i in by_id]
        if not keep:
            return [], np.zeros((0, 0), np.float32)
        return keep, np.stack([by_id[i] for i in keep])

    # -- model versions and evaluations ---------------------------------------------------
    def add_model_version(
        self,
        version: str,
        *,
        backend: str,
        classes: Sequence[str],
        path: str | None = None,
        round: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO model_versions (id, created_at, backend, path, classes, round, meta) "
                "VALUES (?,?,?,?,?,?,?)",
                (version, time.time(), backend, path, json.dumps(list(classes)), round,
                 json.dumps(dict(meta or {}))),
            )

    def model_versions(self) -> list[dict[str, Any]]:
        """Every model version, oldest first."""
        rows = self.conn.execute("SELECT * FROM model_versions ORDER BY created_at, id")
        return [
            {**dict(r), "classes": json.loads(r["classes"]), "meta": json.loads(r["meta"])}
            for r in rows
        ]

    def model_version(self, version: str | None = None) -> dict[str, Any]:
        """One model version (the newest when ``version`` is None)."""
        versions = self.model_versions()
        if not versions:
            raise InputError("no model version yet; run `boxloop train` (or `boxloop add predictions`)")
        if version is None:
            return versions[-1]
        for v in versions:
            if v["id"] == version:
                return v
        raise InputError(
            f"unknown model version {version!r}; known: {', '.join(v['id'] for v in versions)}"
        )

    def put_evaluation(self, model_version: str, split: str, metrics: Mapping[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO evaluations (model_version, split, created_at, metrics) "
                "VALUES (?,?,?,?)",
                (model_version, split, time.time(), json.dumps(dict(metrics))),
            )

    def evaluation(self, model_version: str, split: str = "test") -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT metrics FROM evaluations WHERE model_version=? AND split=?", (model_version, split)
        ).fetchone()
        return json.loads(row[0]) if row else None

    # -- selections -------------------------------------------------------------------------
    def save_selection(self, selection: Selection) -> None:
        """Record a selection and the why of each pick (idempotent on the selection id)."""
        manifest = {
            "id": selection.id,
            "model_version": selection.model_version,
            "strategy": selection.strategy,
            "seed": selection.seed,
            "config": dict(selection.config),
            "item_ids": list(selection.item_ids),
        }
        with self.transaction() as c:
            c.execute("DELETE FROM selection_items WHERE selection_id=?", (selection.id,))
            c.execute(
                "INSERT OR REPLACE INTO selections (id, created_at, model_version, strategy, seed, manifest) "
                "VALUES (?,?,?,?,?,?)",
                (selection.id, time.time(), selection.model_version, selection.strategy,
                 selection.seed, json.dumps(manifest)),
            )
            c.executemany(
                "INSERT INTO selection_items (selection_id, rank, item_id, score, why) VALUES (?,?,?,?,?)",
                [
                    (selection.id, rank, item_id, float(selection.scores.get(item_id, 0.0)),
                     json.dumps(dict(selection.why.get(item_id, {}))))
                    for rank, item_id in enumerate(selection.item_ids)
                ],
            )

    def selection_made_at(self, selection_id: str) -> float | None:
        """When a saved selection was made (time.time()), or None for an unknown one."""
        row = self.conn.execute("SELECT created_at FROM selections WHERE id=?", (selection_id,)).fetchone()
        return None if row is None else float(row[0])

    def frame_indices(self, video_id: str) -> set[int]:
        """The frame numbers of a video the workspace holds."""
        return {int(r[0]) for r in self.conn.execute(
            "SELECT frame_index FROM items WHERE video_id=? AND frame_index IS NOT NULL", (video_id,))}

    def selection(self, selection_id: str | None = None) -> Selection:
        """A saved selection; the newest one when ``selection_id`` is None or "latest"."""
        if selection_id in (None, "latest"):
            row = self.conn.execute(
                "SELECT * FROM selections ORDER BY created_at DESC, rowid DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise InputError("no selection yet; run `boxloop select --budget N`")
        else:
            row = self.conn.execute("SELECT * FROM selections WHERE id=?", (selection_id,)).fetchone()
            if row is None:
                raise InputError(f"no selection {selection_id!r}")
        rows = self.conn.execute(
            "SELECT item_id, score, why FROM selection_items WHERE selection_id=? ORDER BY rank",
            (row["id"],),
        ).fetchall()
        manifest = json.loads(row["manifest"])
        return Selection(
            id=row["id"],
            model_version=row["model_version"],
            strategy=row["strategy"],
            seed=row["seed"],
            item_ids=tuple(r[0] for r in rows),
            scores={r[0]: r[1] for r in rows},
            why={r[0]: json.loads(r[2]) for r in rows},
            config=manifest.get("config", {}),
        )

    # -- annotation tasks and pre-label acceptance ------------------------------------------
    def put_task(
        self,
        tool: str,
        project: str,
        item_id: str,
        task_id: str,
        *,
        status: str = "open",
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Record (or replace) the task an item has in an annotation tool's project."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO tasks (tool, project, item_id, task_id, status, pushed_at, meta) "
                "VALUES (?,?,?,?,?,?,?)",
                (tool, str(project), item_id, str(task_id), status, time.time(), json.dumps(dict(meta or {}))),
            )

    def tasks(
        self,
        tool: str,
        project: str | None = None,
        *,
        status: str | Sequence[str] | None = None,
        item_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Tasks sent to a tool (one project, one status or any of several, one item, or all),
        oldest first; ``meta`` decoded."""
        sql, args = "SELECT * FROM tasks WHERE tool=?", [tool]
        if project is not None:
            sql += " AND project=?"
            args.append(str(project))
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        if item_id is not None:
            sql += " AND item_id=?"
            args.append(item_id)
        rows = self.conn.execute(sql + " ORDER BY pushed_at, rowid", args).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]

    def update_task(
        self,
        tool: str,
        project: str,
        item_id: str,
        *,
        status: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Change a task's status and/or replace its meta."""
        with self.transaction() as c:
            if status is not None:
                c.execute(
                    "UPDATE tasks SET status=? WHERE tool=? AND project=? AND item_id=?",
                    (status, tool, str(project), item_id),
                )
            if meta is not None:
                c.execute(
                    "UPDATE tasks SET meta=? WHERE tool=? AND project=? AND item_id=?",
                    (json.dumps(dict(meta)), tool, str(project), item_id),
                )

    def delete_task(self, tool: str, project: str, item_id: str) -> None:
        """Forget a task (its item goes back to the pool unless it has labels)."""
        with self.transaction() as c:
            c.execute("DELETE FROM tasks WHERE tool=? AND project=? AND item_id=?", (tool, str(project), item_id))

    def skipped_item_ids(self) -> set[str]:
        """Items a person skipped in an annotation tool (kept out of new selections)."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT item_id FROM tasks WHERE status='skipped'")}

    def put_acceptance(
        self,
        tool: str,
        project: str,
        item_id: str,
        counts: Mapping[str, int],
        *,
        annotation: str,
        seconds_saved: float,
        model_version: str | None = None,
        round: int | None = None,
        prelabel_conf: float | None = None,
    ) -> None:
        """Record what a person did with an item's pre-labels (the newest pull replaces an
        older one), and the threshold those pre-labels were cut at, where known."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO acceptance (tool, project, item_id, annotation, model_version, "
                "round, created_at, accepted, adjusted, deleted, added, seconds_saved, prelabel_conf) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (tool, str(project), item_id, str(annotation), model_version, round, time.time(),
                 int(counts.get("accepted", 0)), int(counts.get("adjusted", 0)),
                 int(counts.get("deleted", 0)), int(counts.get("added", 0)), float(seconds_saved),
                 None if prelabel_conf is None else float(prelabel_conf)),
            )

    def acceptance_rows(self, *, tool: str | None = None, round: int | None = None) -> list[dict[str, Any]]:
        """Per-item acceptance records, oldest first."""
        sql, args = "SELECT * FROM acceptance WHERE 1=1", []  # type: ignore[var-annotated]
        if tool is not None:
            sql += " AND tool=?"
            args.append(tool)
        if round is not None:
            sql += " AND round=?"
            args.append(round)
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY created_at, rowid", args)]

    def acceptance_by_round(self) -> dict[int | None, dict[str, float]]:
        """Per round: items, accepted, adjusted, deleted, added and seconds_saved, summed over
        tools, and the lowest and highest threshold the pre-labels were cut at
        (``prelabel_conf_min``/``_max``, where recorded)."""
        rows = self.conn.execute(
            "SELECT round, COUNT(*) items, SUM(accepted) accepted, SUM(adjusted) adjusted, "
            "SUM(deleted) deleted, SUM(added) added, SUM(seconds_saved) seconds_saved, "
            "MIN(prelabel_conf) prelabel_conf_min, MAX(prelabel_conf) prelabel_conf_max "
            "FROM acceptance GROUP BY round ORDER BY round"
        )
        out: dict[int | None, dict[str, float]] = {}
        for r in rows:
            out[r["round"]] = {k: (float(r[k]) if k == "seconds_saved" else int(r[k]))
                               for k in ("items", "accepted", "adjusted", "deleted", "added", "seconds_saved")}
            if r["prelabel_conf_min"] is not None:
                out[r["round"]].update(prelabel_conf_min=float(r["prelabel_conf_min"]),
                                       prelabel_conf_max=float(r["prelabel_conf_max"]))
        return out

    def acceptance_models(self) -> dict[int | None, dict[str, int]]:
        """Per round: whose pre-labels the batches that came back held (model version → images;
        "" where unknown), so a round's acceptance can be tied to the models it judges."""
        out: dict[int | None, dict[str, int]] = {}
        rows = self.conn.execute(
            "SELECT round, COALESCE(model_version, '') mv, COUNT(*) n FROM acceptance GROUP BY round, mv ORDER BY round, mv"
        )
        for r in rows:
            out.setdefault(r["round"], {})[str(r["mv"])] = int(r["n"])
        return out

    # -- imputed boxes (model assertions) ---------------------------------------------------
    def put_imputed(self, model_version: str, imputed: Mapping[str, Detections]) -> None:
        """Store the boxes a model assertion imputes per item (replacing earlier ones of the
        same item and model version); every box is flagged ``data["imputed"] = True``."""
        now = time.time()
        rows = [
            (item_id, model_version, now, len(d),
             encode_detections(d.with_data(imputed=np.ones(len(d), bool))))
            for item_id, d in imputed.items()
        ]
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO imputed_boxes (item_id, model_version, created_at, n_boxes, boxes) "
                "VALUES (?,?,?,?,?)",
                rows,
            )

    def imputed(
        self, model_version: str, ids: Iterable[str] | None = None
    ) -> dict[str, Detections]:
        """The imputed boxes of a model version, per item that has any."""
        rows = self.conn.execute(
            "SELECT item_id, boxes FROM imputed_boxes WHERE model_version=? AND n_boxes > 0",
            (model_version,),
        )
        out = {r[0]: decode_detections(r[1]) for r in rows}
        if ids is not None:
            out = {i: out[i] for i in ids if i in out}
        return out
