"""Detections, the store (versions never overwritten, idempotent writes), config, splits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import boxloop
from boxloop.config import load_config
from boxloop.errors import ConfigError, InputError
from boxloop.split import assign_splits
from boxloop.store import Store, decode_detections, encode_detections
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace, find_workspace


def test_public_api_is_explicit() -> None:
    assert set(boxloop.__all__) <= set(dir(boxloop))
    assert "Detections" in boxloop.__all__ and "Workspace" in boxloop.__all__


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xyxy": np.zeros((2, 4)), "class_id": [1]}, "class_id has 1 entries for 2 boxes"),
        ({"xyxy": np.zeros((1, 4)), "class_id": [1], "confidence": [0.1, 0.2]}, "confidence has 2"),
        ({"xyxy": np.zeros((1, 4)), "class_id": [1], "data": {"p": np.zeros((2, 3))}}, "data['p']"),
    ],
)
def test_detections_check_shapes(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        Detections(**kwargs)


def test_detections_are_frozen_and_mask_indexing_returns_new_ones() -> None:
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 8, 9]], np.float32)
    d = Detections(xyxy, [0, 1], [0.9, 0.2], {"class_probs": np.array([[0.9, 0.1], [0.4, 0.6]])})
    xyxy[0, 0] = 99  # the caller's array is copied
    assert d.xyxy[0, 0] == 0
    with pytest.raises(ValueError):
        d.xyxy[0, 0] = 1
    low = d[d.confidence < 0.5]
    assert len(low) == 1 and low.class_id.tolist() == [1] and low.data["class_probs"].shape == (1, 2)
    assert len(Detections.empty()) == 0 and Detections.empty().confidence is None
    assert len(Detections.concat([d, Detections.empty(with_confidence=True)])) == 2


def test_detections_survive_the_store_encoding() -> None:
    d = Detections([[1, 2, 3, 4]], [3], [0.5], {"class_probs": np.eye(4, dtype=np.float32)[3:], "imputed": np.array([True])})
    back = decode_detections(encode_detections(d))
    assert back.equals(d) and back.confidence.tolist() == [0.5]
    assert back.data["imputed"].tolist() == [True] and back.data["class_probs"].shape == (1, 4)


def test_label_versions_are_added_never_overwritten() -> None:
    store = Store.memory()
    store.set_classes(["a", "b"])
    store.add_item(Item("i1", "/x.jpg", 10, 10, "s1"))
    assert store.add_label("i1", Detections([[0, 0, 5, 5]], [0]), source="first") == 1
    assert store.add_label("i1", Detections([[0, 0, 5, 5]], [0]), source="again") is None
    assert store.add_label("i1", Detections([[0, 0, 6, 5]], [1]), source="fix", round=2) == 2
    versions = store.label_versions("i1")
    assert [v["source"] for v in versions] == ["first", "fix"]
    assert store.latest_labels()["i1"].class_id.tolist() == [1]
    assert store.items()[0].labeled_round is None  # the first version was round None


def test_predictions_are_replaced_not_duplicated() -> None:
    store = Store.memory()
    store.add_item(Item("i1", "/x.jpg", 10, 10, "s1"))
    p = Detections([[0, 0, 5, 5]], [0], [0.3])
    store.put_predictions("mv1", {"i1": p})
    store.put_predictions("mv1", {"i1": p})
    n = store.conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert n == 1 and store.count_by_state()["prelabeled"] == 1


def test_classes_can_only_be_extended() -> None:
    store = Store.memory()
    store.set_classes(["a", "b"])
    store.set_classes(["a", "b", "c"])
    with pytest.raises(InputError, match="can only be added"):
        store.set_classes(["b", "a"])


def test_store_from_a_newer_boxloop_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        store.set_meta("schema", "999")
    with pytest.raises(Exception, match="newer than this boxloop"):
        Store.open(tmp_path / "db")


def test_an_items_state_is_looked_up_not_scanned_for(tmp_path: Path) -> None:
    """Whether an item has predictions of any model version decides pool vs prelabeled: an
    index answers it (without, status and the report scanned the predictions table once per
    item: 15 s for 20 000 predicted items). A workspace made before the index gets it."""
    with Store.open(tmp_path / "db") as store:
        plan = " ".join(str(r[-1]) for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM items i WHERE " + store._state_sql("pool", None)))
        assert "predictions_item" in plan, plan
        for i in range(3):
            store.add_item(Item(f"i{i}", f"/x/{i}.jpg", 10, 10, f"s{i}"))
        store.put_predictions("m1", {"i0": Detections(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))})
        assert store.count_by_state() == {"pool": 2, "prelabeled": 1, "in_review": 0, "labeled": 0}
    # a workspace made before the index (and what came after it): its store at that schema
    from boxloop.store import MIGRATIONS

    before = next(i for i, m in enumerate(MIGRATIONS) if "CREATE INDEX predictions_item" in m)
    old = sqlite3.connect(tmp_path / "old.db")
    for script in MIGRATIONS[:before]:
        for stmt in script.split(";"):
            if stmt.strip():
                old.execute(stmt)
    old.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(before),))
    old.execute("INSERT INTO items (id, uri, width, height, sha256, added_at) VALUES ('i0', '/x/0.jpg', 10, 10, 's0', 1)")
    old.execute("INSERT INTO tasks (tool, project, item_id, task_id, status, pushed_at) "
                "VALUES ('files', 'batch.zip', 'i0', '0.jpg', 'open', 2)")
    old.execute("INSERT INTO acceptance (tool, project, item_id, annotation, created_at, accepted, adjusted, deleted, "
                "added, seconds_saved) VALUES ('files', 'p', 'i0', 'a', 3, 1, 0, 0, 0, 6)")
    old.commit()
    old.close()
    with Store.open(tmp_path / "old.db") as store:
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"predictions_item", "tasks_item"} <= names
        assert store.get_meta("schema") == str(len(MIGRATIONS))
        # what the old store held is all there: the open task (its item in review), the acceptance
        assert [t["status"] for t in store.tasks("files")] == ["open"]
        assert store.count_by_state()["in_review"] == 1
        assert store.acceptance_by_round()[None]["accepted"] == 1  # no threshold recorded then
        store.put_task("files", "pool.zip", "i0", "0.jpg", status="offered")  # a status the new table allows
        assert len(store.tasks("files", status=("open", "offered"))) == 2


def test_config_unknown_key_and_env_override(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    cfg = load_config(ws.root / "boxloop.toml", env={"BOXLOOP_TRAIN_EPOCHS": "3"})
    assert cfg.train.epochs == 3 and cfg.train.steps == 0 and cfg.predict.conf == 0.01
    assert load_config(ws.root / "boxloop.toml", env={"BOXLOOP_TRAIN_STEPS": "800"}).train.steps == 800
    with pytest.raises(ConfigError, match=r"boxloop.toml: \[train\] steps must be 0 .*, got -1 "
                       r"\(set by environment variable BOXLOOP_TRAIN_STEPS\)"):
        load_config(ws.root / "boxloop.toml", env={"BOXLOOP_TRAIN_STEPS": "-1"})
    # a bad value from the environment is named as the environment's, not the file's
    with pytest.raises(ConfigError, match=r"^environment variable BOXLOOP_TRAIN_EPOCHS \(it overrides \S+boxloop.toml "
                       r"\[train\] epochs\): expected int, got 'abc'$"):
        load_config(ws.root / "boxloop.toml", env={"BOXLOOP_TRAIN_EPOCHS": "abc"})
    for section, key, value, least in (("train", "imgsz", 16, 32), ("train", "epochs", 0, 1), ("predict", "batch", 0, 1)):
        (tmp_path / "zero.toml").write_text(f"[{section}]\n{key} = {value}\n")
        with pytest.raises(ConfigError, match=rf"zero.toml: \[{section}\] {key} must be at least {least}, got {value}"):
            load_config(tmp_path / "zero.toml", env={})
    (tmp_path / "bad.toml").write_text("[train]\nepochs = 1\nepoch = 2\n")
    with pytest.raises(ConfigError, match="unknown key.*epoch"):
        load_config(tmp_path / "bad.toml", env={})
    with pytest.raises(ConfigError, match="not a boxloop workspace|no boxloop workspace"):
        find_workspace(tmp_path / "elsewhere")
    # a variable naming no setting is an error too (it was ignored: a CI job trained 30 epochs, not 1)
    with pytest.raises(ConfigError, match=r"^environment variable BOXLOOP_TRAIN_EPOCH names no setting of \[train\]; "
                       r"known: BOXLOOP_TRAIN_MODEL, BOXLOOP_TRAIN_EPOCHS"):
        load_config(ws.root / "boxloop.toml", env={"BOXLOOP_TRAIN_EPOCH": "1"})
    with pytest.raises(ConfigError, match=r"^environment variable BOXLOOP_TRIAN_EPOCHS names no setting: "
                       r"BOXLOOP_<SECTION>_<KEY> with a section of TRAIN, "):
        load_config(ws.root / "boxloop.toml", env={"BOXLOOP_TRIAN_EPOCHS": "1"})
    assert load_config(ws.root / "boxloop.toml", env={"BOXLOOP_LOG": "INFO", "BOXLOOP_WORKSPACE": "x"}).train.epochs == 30


def test_config_select_aggregation_defaults_to_max_and_names_the_known_ones(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    assert load_config(ws.root / "boxloop.toml", env={}).select.aggregation == "max"
    assert load_config(ws.root / "boxloop.toml", env={"BOXLOOP_SELECT_AGGREGATION": "sum"}).select.aggregation == "sum"
    (tmp_path / "bad.toml").write_text('[select]\naggregation = "median"\n')
    with pytest.raises(ConfigError, match="aggregation must be one of max, mean, sum, got 'median'"):
        load_config(tmp_path / "bad.toml", env={})


def _labeled_store(n_stills: int, videos: dict[str, int]) -> Store:
    store = Store.memory()
    store.set_classes(["a"])
    items = [Item(f"s{i}", f"/s{i}.jpg", 10, 10, f"h{i}") for i in range(n_stills)]
    for vid, frames in videos.items():
        items += [Item(f"{vid}-{f}", f"/{vid}/{f}.jpg", 10, 10, f"h{vid}{f}", video_id=vid, frame_index=f) for f in range(frames)]
    for it in items:
        store.add_item(it)
        store.add_label(it.id, Detections.empty(), source="t")
    return store


def test_split_is_seeded_and_test_is_frozen() -> None:
    a, b = _labeled_store(50, {}), _labeled_store(50, {})
    assign_splits(a, val=0.2, test=0.1, seed=3)
    assign_splits(b, val=0.2, test=0.1, seed=3)
    assert [it.split for it in a.items()] == [it.split for it in b.items()]
    test_before = {it.id for it in a.items(split="test")}
    assert len(test_before) == 5
    for i in range(50, 80):
        a.add_item(Item(f"s{i}", f"/s{i}.jpg", 10, 10, f"h{i}"))
        a.add_label(f"s{i}", Detections.empty(), source="t")
    report = assign_splits(a, val=0.2, test=0.5, seed=0)
    assert report.test_frozen and {it.id for it in a.items(split="test")} == test_before
    a.set_split({next(iter(test_before)): "train"})  # set_split refuses to move test items too
    assert {it.id for it in a.items(split="test")} == test_before


def test_frames_of_one_video_never_straddle_test_and_train() -> None:
    store = _labeled_store(10, {f"v{i}": 8 for i in range(6)})
    assign_splits(store, val=0.2, test=0.3, seed=1)
    sides: dict[str, set] = {}
    for it in store.items():
        if it.video_id:
            sides.setdefault(it.video_id, set()).add(it.split)
    assert all(len(s) == 1 for s in sides.values()), sides
    assert any(s == {"test"} for s in sides.values())
    # new frames of a test video go to test
    vid = next(v for v, s in sides.items() if s == {"test"})
    store.add_item(Item("late", "/late.jpg", 10, 10, "hl", video_id=vid, frame_index=99))
    store.add_label("late", Detections.empty(), source="t")
    assign_splits(store, seed=0)
    assert store.get_item("late").split == "test"


def test_a_round_of_frames_from_one_video_is_not_all_held_out_in_val() -> None:
    """A batch of 8 labeled frames of one video, dealt with --val 0.2: the video is one group,
    and all 8 going to val (wanting 2) would keep every label of the round out of training, and
    every later frame of that video with them. They train; and a later batch of a video that
    is in val is dealt afresh, never to test."""
    store = _labeled_store(20, {})
    assign_splits(store, val=0.2, test=0.1, seed=0)
    for f in range(8):
        store.add_item(Item(f"clip-{f}", f"/clip/{f}.jpg", 10, 10, f"hc{f}", video_id="clip", frame_index=f))
        store.add_label(f"clip-{f}", Detections.empty(), source="t")
    report = assign_splits(store, val=0.2, test=0.1, seed=0)
    assert report.assigned == {"train": 8, "val": 0, "test": 0}
    # a video that sits in val (an earlier split made it so): its new frames are not kept out of training
    store.set_split({f"clip-{f}": "val" for f in range(8)})
    for f in range(8, 16):
        store.add_item(Item(f"clip-{f}", f"/clip/{f}.jpg", 10, 10, f"hc{f}", video_id="clip", frame_index=f))
        store.add_label(f"clip-{f}", Detections.empty(), source="t")
    again = assign_splits(store, val=0.2, test=0.1, seed=0)
    assert again.assigned == {"train": 8, "val": 0, "test": 0}
    # frames of a few videos alongside: a small group still goes to val where it fits
    mixed = _labeled_store(0, {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "long": 12})
    assign_splits(mixed, val=0.2, test=0.0, seed=0)
    assert {it.split for it in mixed.items() if it.video_id == "long"} == {"train"}
    assert sum(1 for it in mixed.items() if it.split == "val") >= 1


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(InputError, match="leaves nothing to train on"):
        assign_splits(Store.memory(), val=0.6, test=0.5)


def test_disk_use_counts_each_folder_once_and_follows_no_link(tmp_path: Path) -> None:
    """A run's dataset view links the images it trains on: they are not counted again."""
    from boxloop.status import disk_usage

    ws = Workspace.init(tmp_path / "ws", classes=["a"])
    (ws.root / "shrunk").mkdir()
    (ws.root / "shrunk" / "copy.jpg").write_bytes(b"x" * 3000)
    view = ws.runs_dir / "m001" / "dataset" / "images"
    view.mkdir(parents=True)
    (view / "linked.jpg").symlink_to(ws.root / "shrunk" / "copy.jpg")
    (ws.runs_dir / "m001" / "best.pt").write_bytes(b"w" * 500)
    used = disk_usage(ws)
    assert used["shrunk"] == 3000 and used["runs"] == 500 and used["boxloop.db"] > 0
    assert "exports" not in used or used["exports"] == 0
