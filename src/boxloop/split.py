"""Train/val/test splits over labeled items. The test split is frozen once made; frames of
one video (or frame sequence) always share a split side, so test never leaks into train.
An import can keep the split a dataset came with (:class:`SplitRequest`)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import InputError
from .store import Store
from .types import SPLITS, Detections

__all__ = ["FEW_TEST_BOXES", "SPLIT_CHOICES", "SplitReport", "SplitRequest", "assign_splits", "split_named",
           "thin_test_warning"]


# Under this many boxes a test split's mAP moves a lot with a box or two found or missed.
FEW_TEST_BOXES = 50


@dataclass(frozen=True)
class SplitReport:
    """What a split did (or, in a dry run, would do); ``warning``: the test split it made is
    too small to measure mAP on well, and what to do about it."""

    assigned: dict[str, int]
    totals: dict[str, int]
    test_frozen: bool
    warning: str | None = None
    assignments: dict[str, str] = field(default_factory=dict)  # item id → the split it got (or would get)


def assign_splits(
    store: Store, *, val: float = 0.2, test: float = 0.1, seed: int = 0, dry_run: bool = False, redo: bool = False
) -> SplitReport:
    """Give every labeled item without a split one. Groups (a video, or a single image) are
    shuffled with ``seed`` and dealt to test (only while no test split exists yet), val and
    train; new frames of a video already in test go to test too. A test split made now that
    holds few boxes, or misses many of the labeled classes, comes with a warning. With
    ``dry_run`` nothing is written: the report says what would be. ``redo`` deals every
    labeled item afresh, the test split too: only while no model version exists (one trained
    on the old train split would be scored on images it learned from)."""
    for name, frac in (("val", val), ("test", test)):
        if not 0.0 <= frac < 1.0:
            raise InputError(f"--{name} must be in [0, 1), got {frac}")
    if val + test >= 1.0:
        raise InputError(f"--val {val} + --test {test} leaves nothing to train on")
    labeled = store.items(state="labeled")
    if redo:
        _may_redo(store)
        labeled = [replace(it, split=None) for it in labeled]
    test_exists = any(it.split == "test" for it in labeled)
    groups: dict[str, list[str]] = defaultdict(list)
    group_split: dict[str, str] = {}
    for it in labeled:
        key = it.video_id or it.id
        if it.split is None:
            groups[key].append(it.id)
        elif it.video_id is not None:
            # a video already split keeps its side towards test: test stays test, train/val stay out of it
            prev = group_split.get(key)
            group_split[key] = "test" if "test" in (prev, it.split) else (prev or it.split)
    assignments: dict[str, str] = {}
    fresh = []
    kept_from_test: set[str] = set()  # videos on the train/val side: their new frames never go to test
    for key in sorted(groups):
        side = group_split.get(key)
        if side == "test":
            assignments.update(dict.fromkeys(groups[key], "test"))
        else:
            # new frames of a video in train or val are dealt afresh between the two: a video
            # once dealt to val must not keep every later label of it out of training
            fresh.append(key)
            if side is not None:
                kept_from_test.add(key)
    rng = np.random.default_rng(seed)
    order = [fresh[i] for i in rng.permutation(len(fresh))]
    n_items = sum(len(groups[k]) for k in order)
    want_test = 0 if test_exists else round(test * (n_items + sum(1 for it in labeled if it.split)))
    want_val = round(val * n_items)
    counts = {"train": 0, "val": 0, "test": 0}
    for key in order:
        size = len(groups[key])
        if counts["test"] < want_test and key not in kept_from_test:
            side = "test"
        elif counts["val"] < want_val and counts["val"] + size <= want_val + max(1, want_val // 2):
            side = "val"  # a video's frames go to val only where they do not swamp it (they would never train)
        else:
            side = "train"
        counts[side] += size
        assignments.update(dict.fromkeys(groups[key], side))
    fresh_only = [k for k in order if k not in kept_from_test]
    if not test_exists and test > 0 and counts["test"] == 0 and len(fresh_only) >= 3:
        # too few items for the fraction to round to one: still make a test split of one group
        key = fresh_only[-1]
        assignments.update(dict.fromkeys(groups[key], "test"))
    if not dry_run:
        if redo:
            store.clear_splits()
        store.set_split(assignments)
    assigned = {s: sum(1 for v in assignments.values() if v == s) for s in ("train", "val", "test")}
    if redo and dry_run:
        totals = dict(assigned)
    else:
        totals = {s: len(store.items(split=s)) + (assigned[s] if dry_run else 0) for s in ("train", "val", "test")}
    made = [] if test_exists else [i for i, side in assignments.items() if side == "test"]
    warning = thin_test_warning(store, made, test=test, dry_run=dry_run) if made else None
    return SplitReport(assigned, totals, test_frozen=test_exists, warning=warning, assignments=assignments)


def trained_here(store: Store) -> list[str]:
    """Model versions trained on this workspace's train split (not weights brought from a
    file, nor another detector's imported predictions: they learned from none of its images)."""
    return [
        str(v["id"]) for v in store.model_versions()
        if (v.get("meta") or {}).get("source") != "file" and not str(v.get("backend") or "").startswith("import")
    ]


def _may_redo(store: Store) -> None:
    """Refuse to deal the splits afresh once a model was trained on them."""
    versions = trained_here(store)
    if versions:
        shown = ", ".join(versions[:3]) + (" ..." if len(versions) > 3 else "")
        measured = " and measured on the current test split" if store.items(split="test") else ""
        raise InputError(
            f"the splits cannot be made again: model version(s) {shown} trained on the current train "
            f"split{measured}; a new split would score them on images they learned from. Labels added from now "
            "on are dealt as they come (a test split, while there is none, comes from them); for a bigger test "
            "split now, start a new workspace (boxloop init) and add the labels again"
        )


def thin_test_warning(store: Store, test_ids: list[str], *, test: float = 0.0, dry_run: bool = False) -> str | None:
    """A warning for a new test split of ``test_ids`` that holds under FEW_TEST_BOXES boxes,
    or no box of more than half the classes labeled: the mAP measured on it will be noisy, it
    is frozen once made, and how to get a bigger one (a --test above ``test``, the fraction
    that made it); None for a test split big enough."""
    labels = store.latest_labels()
    boxes = sum(len(labels[i]) for i in test_ids if i in labels)
    labeled = {int(c) for d in labels.values() for c in d.class_id}
    in_test = {int(c) for i in test_ids if i in labels for c in labels[i].class_id}
    unseen = len(labeled - in_test)
    if boxes >= FEW_TEST_BOXES and unseen <= len(labeled) / 2:
        return None
    held = f"holds only {len(test_ids)} image(s) with {boxes} box(es)"
    if unseen:
        held += f", and {unseen} of the {len(labeled)} classes labeled have no box in it"
    said = f"the test split {held.replace('holds', 'would hold', 1) if dry_run else held}"
    noisy = (f"{said}: mAP measured on it will be noisy (a box or two found or missed moves it a lot)"
             + (", and those classes go unmeasured" if unseen else ""))
    bigger = _bigger_test(labels, boxes_wanted=FEW_TEST_BOXES, classes_short=unseen > len(labeled) / 2, above=test)
    if dry_run:
        return f"{noisy}. It is frozen once made: {bigger}, and check again with --dry-run."
    if trained_here(store):
        return (f"{noisy}. It is frozen: boxloop keeps it as it is (new labels go to train/val), and a model "
                f"was trained on these splits, so it cannot be made again in this workspace. For a bigger one, start a new "
                f"workspace (boxloop init, add the labels again) and, before splitting, {bigger}.")
    return (f"{noisy}. It is frozen from now on, but until a model is trained it can be dealt again: {bigger}, "
            "with `boxloop split --redo` (add --dry-run to see it first).")


def _bigger_test(labels: Mapping[str, Detections], *, boxes_wanted: int, classes_short: bool, above: float) -> str:
    """What gives a test split of about ``boxes_wanted`` boxes (and, where ``classes_short``,
    a box of most classes): a --test fraction above ``above``, or more labels."""
    n_boxes = sum(len(d) for d in labels.values())
    if not n_boxes:
        return "label more images"
    fraction = boxes_wanted / n_boxes  # the share of labeled images that holds that many boxes, on average
    if classes_short:
        fraction = max(fraction, 0.2)
    fraction = max(math.ceil(fraction * 20) / 20, math.floor(above * 20 + 1) / 20)
    if fraction > 0.5:
        return f"label more images (the {len(labels)} labeled hold {n_boxes} boxes in all)"
    return f"give a larger --test (e.g. --test {fraction:.2f})"


SPLIT_CHOICES = ("train", "val", "test", "folders")
# folder names that say a split, as Ultralytics (images/train/, coco's train2017/), Roboflow
# (train/images/, valid/) and others lay datasets out
_SPLIT_FOLDER = re.compile(r"^(?:(?P<train>train(?:ing)?)|(?P<val>val(?:id(?:ation)?)?)|(?P<test>test(?:ing)?))(?:[-_]?\d+)?$")


class SplitRequest:
    """The split ``add labels --split`` gives each image it labels: ``train``, ``val`` or
    ``test`` for all, or ``folders``: the innermost ``train/``, ``val/`` (``valid/``) or
    ``test/`` folder in the image's path under the import's root (Ultralytics'
    ``images/test/``, Roboflow's ``test/images/``), else the subset its label file names
    (CVAT's ``subset="Test"``, VOC's ``ImageSets/Main/test.txt``, COCO's
    ``instances_val2017.json``), so a dataset keeps the test split its earlier numbers were
    measured on. A dataset without a test folder leaves its train images unsplit, so a test
    split can still be drawn from them. The workspace's test split stays frozen: an import
    that would add to an existing one is refused whole; an image already in it stays."""

    def __init__(self, split: str | None, root: Path | str) -> None:
        self.split = split
        self.root = str(root).rstrip("/")
        self.wanted: dict[str, str] = {}
        self.without: set[str] = set()
        self.in_folders: dict[str, str] = {}  # without --split: the split folders images sit in, to suggest it

    def _from_folders(self, path: Path | str) -> str | None:
        text = str(path)
        rel = text[len(self.root) + 1:] if text.startswith(self.root + "/") else text
        if PurePosixPath(rel).is_absolute() or "://" in rel:
            return None  # not under the import's root: its folders say nothing
        return next(filter(None, map(_side, reversed(PurePosixPath(rel.replace("\\", "/")).parts[:-1]))), None)

    def take(self, item_id: str, path: Path | str, *, named: str | None = None) -> None:
        """Note the split of an image labeled from ``path``; ``named``: a subset name or a
        label file's stem that may say one."""
        if self.split is None:
            found = self._from_folders(path)
            if found:
                self.in_folders[item_id] = found
            return
        side = (self._from_folders(path) or split_named(named)) if self.split == "folders" else self.split
        if side is None:
            self.without.add(item_id)
        else:
            self.wanted[item_id] = side

    def apply(self, store: Store) -> list[str]:
        """Set the splits (inside the import's transaction: a refusal keeps nothing); the note
        that says what was set."""
        if self.split is None:
            return self._suggestion(store)
        in_test = {it.id for it in store.items(split="test")}
        adding = [i for i, side in self.wanted.items() if side == "test" and i not in in_test]
        if adding and in_test:
            raise InputError(
                f"--split {self.split}: this import would add {len(adding)} image(s) to the workspace's test split, "
                f"which is frozen ({len(in_test)} images; earlier mAP was measured on it). Nothing was imported: "
                "bring the dataset with its test images into a new workspace, or import without --split "
                "(its test images then join train/val)"
            )
        held_back = 0
        if self.split == "folders" and not in_test and "test" not in self.wanted.values():
            # a dataset without a test/ folder: its train images stay free, so that a test split
            # can still be drawn from them (`boxloop split`, or the next round)
            held_back = sum(1 for side in self.wanted.values() if side == "train")
            self.wanted = {i: side for i, side in self.wanted.items() if side != "train"}
        kept = sum(1 for i, side in self.wanted.items() if i in in_test and side != "test")
        store.set_split(self.wanted)
        counts = {side: sum(1 for v in self.wanted.values() if v == side) for side in SPLITS}
        said = ", ".join(f"{n} {side}" for side, n in counts.items() if n) or "none"
        note = f"splits (--split {self.split}): {said}"
        if held_back:
            note += (f"; no test folder, so the {held_back} train image(s) are left for `boxloop split` "
                     "(or the next round) to draw the test split from")
        if kept:
            note += f"; {kept} already in the frozen test split stay there"
        without = self.without - set(self.wanted)  # an image read twice (a file per split and the whole) has one
        if without:
            note += (f"; {len(without)} labeled image(s) had no train/val/test folder in their path "
                     "(`boxloop split` or the next round gives them one)")
        made = [i for i, side in self.wanted.items() if side == "test"] if not in_test else []
        thin = thin_test_warning(store, made) if made else None  # the dataset's own test split, frozen now
        return [note, *([f"warning: {thin}"] if thin else [])]

    def _suggestion(self, store: Store) -> list[str]:
        """A hint to keep the dataset's split, where its test folder could still be the test split."""
        sides = list(self.in_folders.values())
        if "test" not in sides or store.items(split="test"):
            return []
        said = ", ".join(f"{sides.count(side)} in {side}" for side in SPLITS if side in sides)
        return [f"these labels sit in split folders ({said}): `--split folders` keeps that split, so the dataset's "
                "test images stay its test split (run the import again with it; nothing is added twice)"]


def split_named(name: str | None) -> str | None:
    """The split a name says, by its last word that is one: ``Train``, ``Validation``,
    ``instances_val2017`` -> train, val, val."""
    return next(filter(None, map(_side, reversed(re.split(r"[_\-.\s]+", name or "")))), None)


def _side(word: str) -> str | None:
    """train, val or test for a word that names one (``valid``, ``train2017``, ``Test``)."""
    m = _SPLIT_FOLDER.match(word.lower())
    return next(side for side, found in m.groupdict().items() if found) if m else None
