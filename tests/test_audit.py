"""The label audit: each kind of disagreement by hand, then label mistakes planted in a
workspace found by a really trained model, through the library and the CLI."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from _tiny_data import (
    CLASSES,
    fill_workspace,
    make_yolo_dataset,
    read_yolo_split,
    trained_tiny_model,
)
from boxloop.audit import audit, find_suspects
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.types import Detections
from boxloop.workspace import Workspace

runner = CliRunner()


def labels(*rows: tuple[int, float, float, float, float]) -> Detections:
    return Detections(np.array([r[1:] for r in rows], np.float32).reshape(-1, 4), np.array([r[0] for r in rows]))


def preds(*rows: tuple[int, float, float, float, float, float], probs: list[list[float]] | None = None) -> Detections:
    d = Detections(
        np.array([r[1:5] for r in rows], np.float32).reshape(-1, 4),
        np.array([r[0] for r in rows]),
        np.array([r[5] for r in rows], np.float32),
    )
    if probs is not None:
        d = Detections(d.xyxy, d.class_id, d.confidence, {"class_probs": np.array(probs, np.float32)})
    return d


def test_each_kind_of_disagreement_by_hand() -> None:
    h = labels((0, 0, 0, 10, 10), (1, 20, 0, 30, 10), (0, 40, 0, 60, 20), (2, 80, 80, 90, 90))
    p = preds(
        (0, 0, 0, 10, 10, 0.9),      # agrees
        (0, 20, 0, 30, 10, 0.8),     # labeled 1, read as 0: class
        (0, 40, 0, 54, 20, 0.7),     # same class, IoU 0.7 - 0.0: loose at 0.75
        (1, 100, 0, 110, 10, 0.95),  # no label here: missed
        (0, 1, 0, 11, 10, 0.6),      # a duplicate on a labeled object: not missed
        (2, 200, 200, 210, 210, 0.3),  # below conf: nothing
        probs=[[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]],
    )
    found = find_suspects(h, p, conf=0.5, loose_iou=0.75)
    kinds = {s.kind: s for s in found}
    assert sorted(kinds) == ["class", "loose", "missed", "unsupported"] and len(found) == 4
    assert kinds["missed"].xyxy == (100, 0, 110, 10) and kinds["missed"].score == pytest.approx(0.95)
    assert (kinds["class"].label_class, kinds["class"].model_class) == (1, 0)
    assert kinds["class"].score == pytest.approx(0.8 * 0.9)
    assert kinds["loose"].iou == pytest.approx(0.7) and kinds["loose"].score == pytest.approx(0.7 * 0.3)
    assert kinds["unsupported"].label_class == 2 and kinds["unsupported"].score == pytest.approx(0.5)
    assert [s.kind for s in found] == ["missed", "class", "unsupported", "loose"]  # most suspect first
    assert "labeled 1, the model reads 0 at 0.80" in kinds["class"].describe(["0", "1", "2"])
    # a class the model gives real probability to is not a class suspect
    unsure = preds((0, 20, 0, 30, 10, 0.8), probs=[[0.6, 0.4, 0.0]])
    assert find_suspects(labels((1, 20, 0, 30, 10)), unsure, conf=0.5) == []
    # a label the model sees weakly (below conf, above support) is neither supported against nor suspect
    assert find_suspects(labels((0, 0, 0, 10, 10)), preds((0, 0, 0, 10, 10, 0.2)), conf=0.5) == []
    assert find_suspects(labels(), preds(), conf=0.5) == []
    # a label drawn far off its object (IoU 0.33 with the model's confident box of its class):
    # one loose box, not a missed object plus a box on nothing
    off = find_suspects(labels((0, 0, 0, 20, 10)), preds((0, 10, 0, 30, 10, 0.9)), conf=0.5)
    assert [(s.kind, round(s.iou, 2)) for s in off] == [("loose", 0.33)]
    assert off[0].xyxy == (0, 0, 20, 10) and off[0].score == pytest.approx(0.9 * (1 - 1 / 3))


def _plant_mistakes(ws: Workspace, ids: list[str], root: Path) -> dict[str, str]:
    """Four label mistakes, one per image, of the kinds people make correcting pre-labels."""
    rows = {i: (xyxy, cls) for i, (_, xyxy, cls) in zip(ids, read_yolo_split(root, "val") + read_yolo_split(root, "test"), strict=True)}
    planted: dict[str, str] = {}
    for item_id, (xyxy, cls) in rows.items():
        kind = ("missed", "class", "loose", "unsupported")[len(planted)]
        xyxy, cls = xyxy.copy(), cls.copy()
        if kind == "missed":
            if len(cls) < 2:
                continue
            xyxy, cls = xyxy[1:], cls[1:]  # an object nobody drew
        elif kind == "class":
            cls[0] = (cls[0] + 1) % len(CLASSES)
        elif kind == "loose":
            w = xyxy[0, 2] - xyxy[0, 0]
            xyxy[0, 2] += 0.5 * w  # drawn past the object's right edge: IoU 0.67
        else:
            if ((xyxy[:, 0] < 30) & (xyxy[:, 2] > 2) & (xyxy[:, 1] < 25) & (xyxy[:, 3] > 2)).any():
                continue  # the corner holds an object: another image
            xyxy = np.vstack([xyxy, [[2, 2, 30, 25]]])  # a box on nothing
            cls = np.append(cls, 0)
        ws.store.add_label(item_id, Detections(xyxy.astype(np.float32), cls), source="person")
        planted[item_id] = kind
        if len(planted) == 4:
            break
    assert len(planted) == 4
    return planted


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, dict[str, str]]:
    weights, root = trained_tiny_model(tmp_path_factory, imgsz=128)
    ws = Workspace.init(tmp_path_factory.mktemp("audit") / "ws", classes=CLASSES)
    ids = fill_workspace(ws, root, splits=("val", "test"))
    return ws, weights, _plant_mistakes(ws, ids["val"] + ids["test"], root)


def test_planted_label_mistakes_rank_first_and_are_named(planted) -> None:
    """A model from elsewhere (trained on none of these labels) against 28 labeled images,
    four of them with a mistake planted: those four are the four most suspect, each named."""
    ws, weights, mistakes = planted
    report = audit(ws, model=str(weights), imgsz=128, conf=0.3)  # a tiny model is less sure than most
    assert report.audited == 28 and report.trained_on == 0
    top = report.images[:4]
    assert {item_id for item_id, _, _ in top} == set(mistakes), (mistakes, [(i, round(s, 2), [x.kind for x in xs]) for i, s, xs in report.images[:8]])
    for item_id, _, suspects in top:
        assert suspects[0].kind == mistakes[item_id]


def test_the_audit_cli_lists_writes_the_csv_and_the_zip_to_recheck(planted, tmp_path: Path) -> None:
    """As a user runs it, with weights trained elsewhere (at 128 px; the workspace trains at
    320): they predict at the size they were trained at."""
    from boxloop.backends.ultralytics import trained_imgsz

    ws, weights, mistakes = planted
    assert trained_imgsz(weights) == 128 and ws.config.train.imgsz != 128
    result = runner.invoke(app, [
        "audit", "--model", str(weights), "--conf", "0.3", "--top", "4", "--out", str(tmp_path / "audit.csv"), "--zip", "-w", str(ws.root),
    ])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert flat("audited 28 labeled image(s) against") in out and "missed" in out and flat("the model reads") in out
    assert flat("too weak") not in out
    with open(tmp_path / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["item_id"] for r in rows if r["rank"] in ("1", "2", "3", "4")} == set(mistakes)
    assert {r["kind"] for r in rows} >= {"missed", "class", "loose", "unsupported"}
    zips = sorted((ws.root / "exports").glob("*.zip"))
    assert zips, result.output
    with zipfile.ZipFile(zips[-1]) as z:
        images = [n for n in z.namelist() if n.startswith("images/") and not n.endswith("/")]
        labels_ = [n for n in z.namelist() if n.startswith("labels/") and n.endswith(".txt")]
    assert len(images) == 4 and len(labels_) == 4
    # the zip comes back as it went (each re-checked, kept): the next audit passes them over (on a copy of the
    # workspace: the module's other tests audit these labels afresh)
    import shutil

    copy = Workspace.open(shutil.copytree(ws.root, tmp_path / "copy"))
    back = runner.invoke(app, ["add", "labels", str(copy.root / "exports" / zips[-1].name), "-w", str(copy.root)])
    assert back.exit_code == 0, back.output
    assert flat("4 re-checked and kept as they were (audits pass them over)") in flat(back.output)
    again = runner.invoke(app, ["audit", "--model", str(weights), "--conf", "0.3", "--top", "4", "-w", str(copy.root)])
    assert again.exit_code == 0, again.output
    assert flat("4 image(s) a person re-checked at their current labels and kept were passed over") in flat(again.output)
    listed = {line.split("│")[2].strip() for line in again.output.splitlines() if line.count("│") > 4}
    planted_names = {Path(it.uri).name for it in copy.store.items(list(mistakes))}
    assert listed and not planted_names & listed, (listed, planted_names)


def test_labels_the_model_trained_on_are_left_out_until_they_change(tmp_path: Path, tmp_path_factory) -> None:
    """A workspace model trained on the train split agrees with those labels, mistakes and
    all: they are left out (and counted) unless asked for, and a label changed after the
    training is audited again."""
    from _tiny_data import TRAIN_ARGS, ultralytics_offline
    from boxloop import modeling

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=8, n_val=4, n_test=0, seed=11)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    ids = fill_workspace(ws, tmp_path / "data", splits=("train", "val"))
    modeling.train(ws, model="yolov8n.yaml", epochs=1, imgsz=64, batch=4, extra=TRAIN_ARGS)
    report = audit(ws, conf=0.01)
    assert (report.audited, report.trained_on) == (4, 8)
    assert audit(ws, conf=0.01, include_trained=True).audited == 12
    first = ids["train"][0]
    old = ws.store.latest_labels([first])[first]
    ws.store.add_label(first, Detections(old.xyxy[:1], old.class_id[:1]) if len(old) > 1 else
                       Detections(np.vstack([old.xyxy, [[0, 0, 5, 5]]]).astype(np.float32), np.append(old.class_id, 0)),
                       source="person")
    assert audit(ws, conf=0.01).audited == 5


def test_an_audit_with_nothing_labeled_says_what_to_do(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    with pytest.raises(InputError, match="no labeled images to audit"):
        audit(ws)


@pytest.mark.slow
def test_audit_push_labelstudio_then_pull_brings_the_review_back(planted, ls_server, client, token_env, monkeypatch) -> None:
    """`boxloop audit --push labelstudio` then `boxloop pull`, as a user runs them, against a
    real Label Studio: the planted mistakes go to a review project, their labels drawn; a
    reviewer fixes the most suspect one and confirms the next, and pull says so."""
    from boxloop.annotation.labelstudio import ITEM_KEY

    ws, weights, mistakes = planted
    monkeypatch.setenv("BOXLOOP_LABELSTUDIO_STORAGE", "upload")  # the images lie outside the server's document root
    title = f"review-{ws.root.parent.name}"
    result = runner.invoke(app, [
        "audit", "--model", str(weights), "--conf", "0.3", "--top", "4", "--push", "labelstudio", "--project", title,
        "--url", ls_server.url, "-w", str(ws.root),
    ])
    assert result.exit_code == 0, result.output
    assert flat(f"review project '{title}'") in flat(result.output) and flat("4 new review task(s)") in flat(result.output)
    (project,) = [p for p in client.projects.list() if p.title == title]
    tasks = sorted((t.dict() for t in client.tasks.list(project=project.id, fields="all", page_size=100)),
                   key=lambda t: t["data"]["boxloop_rank"])
    assert {t["data"][ITEM_KEY] for t in tasks} == set(mistakes)
    first, second = tasks[0], tasks[1]
    before = ws.store.latest_labels([first["data"][ITEM_KEY]])[first["data"][ITEM_KEY]]
    n_versions = len(ws.store.label_versions(first["data"][ITEM_KEY]))
    labels_shown = first["predictions"][0]["result"][: len(before)]  # the labels, before any model box
    client.annotations.create(id=first["id"], result=labels_shown[1:] if len(before) > 1 else [])
    client.annotations.create(id=second["id"], result=second["predictions"][0]["result"])
    pulled = runner.invoke(app, ["pull", "--url", ls_server.url, "-w", str(ws.root)])
    assert pulled.exit_code == 0, pulled.output
    assert flat("1 corrected on review, 1 confirmed as they were") in flat(pulled.output)
    assert flat("next: boxloop round (trains on the corrected labels") in flat(pulled.output)
    fixed = ws.store.label_versions(first["data"][ITEM_KEY])
    assert len(fixed) == n_versions + 1 and fixed[-1]["labels"].equals(before[1:], atol=0.05)
    # the confirmed one is passed over by the next audit (its labels as the reviewer kept them)
    report = audit(ws, model=str(weights), imgsz=128, conf=0.3)
    assert report.checked == 1 and second["data"][ITEM_KEY] not in {i for i, _, _ in report.images}


def _linked_items(ws: Workspace, dataset: Path) -> set[str]:
    """The items in a training view (train and val), by the names it gives their pictures
    (theirs; the links may point at training copies)."""
    by_name = {Path(it.uri).name: it.id for it in ws.store.items()}
    out = {by_name[p.name] for p in (dataset / "images").rglob("*") if not p.is_dir()}
    return out


def test_out_of_fold_audit_judges_every_label_by_a_model_that_never_saw_it(tmp_path: Path, monkeypatch) -> None:
    """Two held-out models, each trained on one fold's complement and auditing that fold:
    every label audited, none by a model that trained on it; run again, nothing retrains; a
    changed label retrains only the model that trains on it."""
    from _tiny_data import TRAIN_ARGS, ultralytics_offline
    from boxloop.audit import HELD_OUT_DIR, assign_folds, audit_out_of_fold
    from boxloop.backends import ultralytics as yolo

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=8, n_val=4, n_test=0, seed=5)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data", splits=("train", "val"))
    labeled = set(ws.store.latest_labels())
    options = {"epochs": 1, "imgsz": 64, "batch": 4, "extra": TRAIN_ARGS}
    said: list[str] = []
    report = audit_out_of_fold(ws, folds=2, conf=0.01, say=said.append, **options)
    assert (report.audited, report.trained_on) == (12, 0)
    assert report.model_version == "2 held-out yolov8n models"
    # a model from scratch after one epoch supports no label: every image is named, none twice
    assert sorted(i for i, _, _ in report.images) == sorted(labeled)
    fold_of = assign_folds(sorted(labeled), 2)
    for k in range(2):
        held = {i for i in labeled if fold_of[i] == k}
        assert said[k] == f"fold {k + 1} of 2: training on {12 - len(held)} labeled image(s), auditing {len(held)}"
        assert _linked_items(ws, ws.runs_dir / HELD_OUT_DIR / f"fold-{k + 1}-of-2" / "dataset") == labeled - held
    assert not ws.store.model_versions()  # the held-out models are no model versions

    trained: list[Path] = []
    real = yolo.train_yolo
    monkeypatch.setattr(yolo, "train_yolo", lambda data, **kw: trained.append(kw["run_dir"]) or real(data, **kw))
    again = audit_out_of_fold(ws, folds=2, conf=0.01, **options)
    assert trained == [] and [i for i, _, _ in again.images] == [i for i, _, _ in report.images]
    first = next(i for i in sorted(labeled) if fold_of[i] == 0)
    old = ws.store.latest_labels([first])[first]
    ws.store.add_label(first, Detections(np.vstack([old.xyxy, [[0, 0, 9, 9]]]).astype(np.float32), np.append(old.class_id, 0)),
                       source="person")
    audit_out_of_fold(ws, folds=2, conf=0.01, **options)
    assert [p.name for p in trained] == ["fold-2-of-2"]  # fold 1 holds that image out: its model stands

    with pytest.raises(InputError, match="too few for 7 folds"):
        audit_out_of_fold(ws, folds=7)
    result = runner.invoke(app, ["audit", "--epochs", "1", "-w", str(ws.root)])
    assert result.exit_code != 0 and flat("give --folds too") in flat(result.output)
    result = runner.invoke(app, ["audit", "--folds", "2", "--epochs", "1", "--imgsz", "64", "--conf", "0.01", "--top", "3",
                                 "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert flat("fold 2 of 2: training on") in out and flat("audited 12 labeled image(s) against 2 held-out yolov8n models") in out
    assert flat("the model finds nothing like") in out and flat("too weak yet") in out  # one epoch from scratch
    assert flat("next: see them with --out audit.csv, then boxloop report --audit audit.csv") in out
    # asked to send its list for re-checking, such a model sends nothing (every image would go) unless forced;
    # the held-out models are reused (the labels stayed)
    exports = ws.root / "exports"
    before = sorted(exports.iterdir()) if exports.is_dir() else []
    args = ["audit", "--folds", "2", "--epochs", "1", "--imgsz", "64", "--conf", "0.01", "--top", "3", "--zip", "-w", str(ws.root)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and flat("nothing exported or pushed: this model is too weak") in flat(result.output)
    assert flat("trained already on these labels and settings: reused runs/audit-folds/fold-1-of-2") in flat(result.output)
    assert (sorted(exports.iterdir()) if exports.is_dir() else []) == before
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert len(sorted(exports.iterdir())) == len(before) + 1 and flat("to re-check:") in flat(result.output)


def test_a_held_out_model_cut_off_goes_on_from_its_last_epoch(tmp_path: Path) -> None:
    """An out-of-fold audit interrupted while training a held-out model (Ctrl-C): run again,
    that model goes on from its last epoch instead of starting over."""
    from _tiny_data import ultralytics_offline
    from boxloop.modeling import train_held_out

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=8, n_val=4, n_test=0, seed=8)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    ids = fill_workspace(ws, tmp_path / "data", splits=("train", "val"))
    run_dir = ws.runs_dir / "audit-folds" / "fold-1-of-2"
    seen: list[int] = []

    def cut_after_two(epoch: int, _total: int) -> None:
        seen.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    settings = {"epochs": 3, "imgsz": 64, "batch": 4}
    with pytest.raises(KeyboardInterrupt):
        train_held_out(ws, run_dir, exclude=set(ids["train"][:3]), on_epoch=cut_after_two, **settings)
    assert (run_dir / "weights" / "last.pt").is_file()
    weights = train_held_out(ws, run_dir, exclude=set(ids["train"][:3]), on_epoch=lambda e, _t: seen.append(e), **settings)
    assert seen == [1, 2, 3] and weights.is_file()
    assert len((run_dir / "results.csv").read_text().strip().splitlines()) == 1 + 3
    with pytest.raises(InputError, match="every labeled image is held out"):
        train_held_out(ws, run_dir, exclude=set(ids["train"] + ids["val"]), **settings)
