"""What a user test of train / predict / evaluate / export-model found: numbers of 0 taken for
the default, a refused run leaving a folder that looked cut off, training silent in a pipe,
messages sending the user one step back at a time, and an 80-class evaluation of 90 lines.
None of these tests trains a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from _tiny_data import CLASSES, fill_workspace, make_yolo_dataset, ultralytics_offline
from boxloop import modeling
from boxloop.cli import app
from boxloop.errors import BackendError, InputError
from boxloop.evaluate import STEADY_BOXES, coco_metrics
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace

runner = CliRunner()


def cli(ws: Workspace, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "-w", str(ws.root)])


@pytest.fixture
def labeled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A workspace with train/val/test labels, where training, were it to start, fails at once."""
    from boxloop.backends import ultralytics

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=6, n_val=2, n_test=3, seed=1)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data")

    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(ultralytics, "train_yolo", no_training)
    return ws


def says(text: str, output: str) -> bool:
    return flat(text) in flat(output)


def nothing_written(ws: Workspace) -> None:
    assert ws.store.model_versions() == []
    assert not ws.runs_dir.is_dir() or [p.name for p in ws.runs_dir.iterdir()] == []
    assert "cutoff" not in flat(cli(ws, "status").output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["train", "--epochs", "-2"], "--epochs must be at least 1, got -2"),
        (["train", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["train", "--imgsz", "0"], "--imgsz must be at least 32, got 0"),
        (["train", "--batch", "0"], "--batch must be at least 1, got 0"),
        (["train", "--batch", "-1"], "--batch must be at least 1, got -1 (Ultralytics' automatic batch size"),
        (["predict", "--imgsz", "0"], "--imgsz must be at least 32, got 0"),
        (["predict", "--batch", "0"], "--batch must be at least 1, got 0"),
        (["evaluate", "--imgsz", "0"], "--imgsz must be at least 32, got 0"),
        (["export-model", "--imgsz", "0"], "--imgsz must be at least 32, got 0"),
    ],
)
def test_a_number_of_zero_or_less_is_refused_before_anything_is_written(
    labeled: Workspace, args: list[str], message: str
) -> None:
    """0 was taken for "the default" (`--epochs 0` trained 30 epochs, `--imgsz 0` at 320),
    and `--epochs -2` left runs/m001 behind, which status listed as a run cut off."""
    weights = labeled.root / "given.pt"  # a weights file given by path is registered as a version once read
    weights.write_bytes(b"not read: the option is refused first")
    model = ["--model", "yolov8n.yaml"] if args[0] == "train" else ["--model", str(weights)]
    result = cli(labeled, *args, *model)
    assert result.exit_code == 1, result.output
    assert says(f"error: {message}", result.output)
    nothing_written(labeled)


@pytest.mark.parametrize(
    ("setting", "message"),
    [("epochs = 30", "boxloop.toml: [train] epochs must be at least 1, got 0"),
     ("batch = 16", "boxloop.toml: [train] batch must be at least 1, got 0")],
)
def test_a_zero_in_boxloop_toml_is_named_as_the_setting(labeled: Workspace, setting: str, message: str) -> None:
    """A zero in the file is refused when the file is read, whatever the command line gives."""
    toml = labeled.root / "boxloop.toml"
    assert f"\n{setting}\n" in toml.read_text()
    toml.write_text(toml.read_text().replace(f"\n{setting}\n", f"\n{setting.split(' = ')[0]} = 0\n"))
    result = cli(labeled, "train", "--model", "yolov8n.yaml")
    assert result.exit_code == 1 and says(message, result.output), result.output
    nothing_written(labeled)
    given = cli(labeled, "train", "--model", "yolov8n.yaml", "--epochs", "2", "--batch", "4")
    assert given.exit_code == 1 and says(message, given.output), given.output
    nothing_written(labeled)


def test_a_model_yaml_that_is_no_detector_is_refused_before_the_run_folder_is_made(labeled: Workspace) -> None:
    result = cli(labeled, "train", "--model", "yolov8n-seg.yaml", "--epochs", "1")
    assert result.exit_code == 1 and says("yolov8n-seg.yaml: a segmentation model (Segment head)", result.output)
    nothing_written(labeled)


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder_behind(
    labeled: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing in it could be resumed; status and prune would list it as a run cut off."""
    from boxloop.backends import ultralytics

    def fails(*_a: object, run_dir: Path, **_k: object) -> None:
        assert (run_dir / "run_inputs.json").is_file()  # the run had begun
        raise BackendError("training failed: out of memory")

    monkeypatch.setattr(ultralytics, "train_yolo", fails)
    with pytest.raises(BackendError, match="out of memory"):
        modeling.train(labeled, model="yolov8n.yaml", epochs=1, imgsz=64)
    nothing_written(labeled)


def test_train_says_each_epoch_when_its_output_is_no_terminal(
    labeled: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `boxloop round` does: a pipe or a log showed nothing until the end."""
    said: list[str] = []

    def two_epochs(ws: Workspace, *, on_epoch, **_k: object) -> modeling.TrainOutcome:  # type: ignore[no-untyped-def]
        for epoch in (1, 2):
            on_epoch(epoch, 2)
            said.append(f"epoch {epoch}")
        return modeling.TrainOutcome("m001", ws.runs_dir / "m001", ws.runs_dir / "m001" / "best.pt", {}, 6, 2)

    monkeypatch.setattr(modeling, "train", two_epochs)
    result = cli(labeled, "train", "--epochs", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["train epoch 1/2", "train epoch 2/2"] and said == ["epoch 1", "epoch 2"]


def test_a_message_that_sends_the_user_back_names_every_step_missing(tmp_path: Path) -> None:
    """`predict` with no labels at all said "run `boxloop train`", which then said to add labels."""
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    for command in ("predict", "export-model"):
        out = cli(ws, command).output
        assert says("no trained model yet; add labels (`boxloop add labels PATH`), then `boxloop train`, or pass", out)
    assert says("no labeled images to evaluate on; add labels (`boxloop add labels PATH`), then "
                "`boxloop split --test 0.1`, then `boxloop train`", cli(ws, "evaluate").output)
    assert modeling.way_to_predictions(ws.store) == (
        "add labels (`boxloop add labels PATH`), then `boxloop train`, then `boxloop predict` "
        "(or `boxloop add predictions` for another detector's)"
    )
    make_yolo_dataset(tmp_path / "data", n_train=6, n_val=0, n_test=0, seed=2)
    fill_workspace(ws, tmp_path / "data", splits=("train",))
    ws.store.set_split({it.id: None for it in ws.store.items()})  # labeled, not split yet
    assert says("no trained model yet; run `boxloop train`, or pass --model PATH", cli(ws, "predict").output)
    assert modeling.way_to_predictions(ws.store).startswith("run `boxloop train`, then `boxloop predict`")
    assert says("no labeled images in the test split; make one with `boxloop split --test 0.1`, then `boxloop train`",
                cli(ws, "evaluate").output)
    ws.store.set_split({it.id: "train" for it in ws.store.items()})  # as training leaves them
    assert says("none can be made from the 6 labeled images: it is drawn only from labeled images not yet in "
                "train/val; add labels for more images", cli(ws, "evaluate").output)
    ws.store.add_model_version("m001", backend="ultralytics", classes=CLASSES, path=str(tmp_path / "best.pt"))
    assert modeling.way_to_predictions(ws.store).startswith("run `boxloop predict`")
    assert not says("then `boxloop train`", cli(ws, "evaluate").output)


def box(cls: int, x: float, conf: float | None = None) -> tuple:
    return (cls, x, 10.0, x + 30.0, 40.0, conf)


def detections(*rows: tuple) -> Detections:
    xyxy = np.array([r[1:5] for r in rows], np.float32).reshape(-1, 4)
    confs = [r[5] for r in rows]
    return Detections(xyxy, np.array([r[0] for r in rows], np.int64),
                      None if confs[0] is None else np.array(confs, np.float32))


def test_per_class_predictions_count_the_boxes_at_the_working_threshold() -> None:
    gt = {"a": detections(box(0, 0), box(1, 50))}
    pred = {"a": detections(box(0, 0, 0.9), box(2, 50, 0.3), box(2, 90, 0.1)), "elsewhere": detections(box(1, 0, 0.9))}
    m = coco_metrics(gt, pred, classes=["x", "y", "z", "w"], conf=0.25)
    assert m["per_class_predictions"] == {"x": 1, "y": 0, "z": 1, "w": 0}


def test_evaluate_lists_the_classes_seen_and_sums_up_the_rest(tmp_path: Path) -> None:
    """An 80-class workspace printed 80 rows, most of them '-'; and 4 test images with 14
    boxes gave a mAP with no word on how little it rests on."""
    classes = [f"c{k:02d}" for k in range(80)]
    ws = Workspace.init(tmp_path / "ws", classes=classes)
    labels = {
        "img0": detections(box(0, 0), box(0, 40), box(1, 80), box(1, 120)),
        "img1": detections(box(0, 0), box(2, 40), box(2, 80), box(2, 120)),
        "img2": detections(box(1, 0), box(1, 40), box(1, 80)),
        "img3": detections(box(0, 0), box(2, 40), box(0, 80)),
    }
    for item_id, d in labels.items():
        ws.store.add_item(Item(item_id, str(tmp_path / f"{item_id}.png"), 200, 60, item_id.ljust(64, "0")))
        ws.store.add_label(item_id, d, source="test")
    ws.store.set_split(dict.fromkeys(labels, "test"))
    preds = {i: Detections(d.xyxy, d.class_id, np.full(len(d), 0.9, np.float32)) for i, d in labels.items()}
    preds["img0"] = Detections.concat([preds["img0"], detections(box(7, 160, 0.6), box(9, 160, 0.1))])
    ws.store.add_model_version("other-detector", backend="import:yolo", classes=classes)
    ws.store.put_predictions("other-detector", preds)

    result = cli(ws, "evaluate", "--model", "other-detector")
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1].strip() for line in result.output.splitlines() if line.count("│") >= 5]
    assert rows == ["c00", "c01", "c02", "c07"]  # boxes in the split, or predicted there (c07 at 0.6)
    assert says("76 classes with no box in the test split, none predicted at conf 0.25: c03, c04, c05, c06, c08, c09, "
                "c10, c11, c12, c13, c14, c15, ... and 64 more", result.output)
    assert len(result.output.splitlines()) < 25
    assert says(f"mAP is measured on 4 images / 14 boxes here: under {STEADY_BOXES} boxes it is noisy", result.output)


def test_train_numbers_are_checked_in_the_library_too(tmp_path: Path) -> None:
    """`boxloop round`, `audit --folds` and serve reach training through the library."""
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    with pytest.raises(InputError, match="--epochs must be at least 1, got 0"):
        modeling.train(ws, epochs=0)
    with pytest.raises(InputError, match="--imgsz must be at least 32, got 16"):
        modeling.train_held_out(ws, tmp_path / "fold", exclude=(), imgsz=16)
    assert not (tmp_path / "fold").exists()


def test_an_interrupted_predict_names_the_command_that_goes_on(labeled: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in `predict`: the same command would predict every image again; `--missing`
    goes on where it stopped, and the message says so."""
    def interrupted(*a, **k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(modeling, "predict", interrupted)
    result = cli(labeled, "predict", "--model", "whatever.pt")
    assert result.exit_code == 130
    assert says("interrupted; what was predicted is kept: `boxloop predict --missing` (with the same options) "
                "goes on where it stopped", result.output)
