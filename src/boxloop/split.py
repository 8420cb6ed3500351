"""Train/val/test splits over labeled items. The test split is frozen once made; frames of
one video (or frame sequence) always share a split side, so test never leaks into train."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .store import Store

__all__ = ["SplitReport", "assign_splits"]


@dataclass(frozen=True)
class SplitReport:
    assigned: dict[str, int]
    totals: dict[str, int]
    test_frozen: bool


def assign_splits(store: Store, *, val: float = 0.2, test: float = 0.1, seed: int = 0) -> SplitReport:
    """Give every labeled item without a split one. Groups (a video, or a single image) are
    shuffled with ``seed`` and dealt to test (only while no test split exists yet), val and
    train; new frames of a video already in test go to test too."""
    for name, frac in (("val", val), ("test", test)):
        if not 0.0 <= frac < 1.0:
            raise InputError(f"--{name} must be in [0, 1), got {frac}")
    if val + test >= 1.0:
        raise InputError(f"--val {val} + --test {test} leaves nothing to train on")
    labeled = store.items(state="labeled")
    test_exists = any(it.split == "test" for it in labeled)
    groups: dict[str, list[str]] = defaultdict(list)
    group_split: dict[str, str] = {}
    for it in labeled:
        key = it.video_id or it.id
        if it.split is None:
            groups[key].append(it.id)
        elif it.video_id is not None:
            # a video already split keeps its side: test stays test, train/val stay out of test
            prev = group_split.get(key)
            group_split[key] = "test" if "test" in (prev, it.split) else (prev or it.split)
    assignments: dict[str, str] = {}
    fresh = []
    for key in sorted(groups):
        side = group_split.get(key)
        if side == "test":
            assignments.update(dict.fromkeys(groups[key], "test"))
        elif side is not None:
            assignments.update(dict.fromkeys(groups[key], side))
        else:
            fresh.append(key)
    rng = np.random.default_rng(seed)
    order = [fresh[i] for i in rng.permutation(len(fresh))]
    n_items = sum(len(groups[k]) for k in order)
    want_test = 0 if test_exists else round(test * (n_items + sum(1 for it in labeled if it.split)))
    want_val = round(val * n_items)
    counts = {"train": 0, "val": 0, "test": 0}
    for key in order:
        size = len(groups[key])
        if counts["test"] < want_test:
            side = "test"
        elif counts["val"] < want_val:
            side = "val"
        else:
            side = "train"
        counts[side] += size
        assignments.update(dict.fromkeys(groups[key], side))
    if not test_exists and test > 0 and counts["test"] == 0 and len(order) >= 3:
        # too few items for the fraction to round to one: still make a test split of one group
        key = order[-1]
        assignments.update(dict.fromkeys(groups[key], "test"))
    store.set_split(assignments)
    assigned = {s: sum(1 for v in assignments.values() if v == s) for s in ("train", "val", "test")}
    totals = {s: len(store.items(split=s)) for s in ("train", "val", "test")}
    return SplitReport(assigned, totals, test_frozen=test_exists)
