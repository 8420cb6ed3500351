"""train / predict / evaluate / export-model / add predictions through the CLI, on a workspace
filled directly through the store, with real Ultralytics training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from _tiny_data import (
    CLASSES,
    add_pool,
    fill_workspace,
    make_yolo_dataset,
    trained_tiny_model,
    ultralytics_offline,
)
from boxloop.backends.base import Backend
from boxloop.backends.fake import FakeBackend
from boxloop.cli import app
from boxloop.types import Detections, Item
from boxloop.workspace import Workspace

runner = CliRunner()


def cli(ws: Workspace | Path, *args: str):  # type: ignore[no-untyped-def]
    root = ws.root if isinstance(ws, Workspace) else ws
    return runner.invoke(app, [*args, "-w", str(root)])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A workspace with labeled train/val/test items, a pool with one broken image, trained by the CLI."""
    base = tmp_path_factory.mktemp("cli-model")
    ultralytics_offline(Path(tmp_path_factory.getbasetemp()) / "ultralytics-config")
    data_root = base / "data"
    make_yolo_dataset(data_root, n_train=24, n_val=8, n_test=8, seed=3)
    ws = Workspace.init(base / "ws", classes=CLASSES)
    split_ids = fill_workspace(ws, data_root)
    pool = add_pool(ws, base / "pool", n=10)
    broken = base / "pool" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    ws.store.add_item(Item("broken0000000000", str(broken), 160, 120, "0" * 64))
    result = cli(ws, "train", "--model", "yolov8n.yaml", "--epochs", "1", "--imgsz", "128", "--batch", "8")
    assert result.exit_code == 0, result.output
    return {"ws": ws, "pool": pool, "splits": split_ids, "train_output": result.output, "base": base}


def test_train_records_a_model_version_with_its_run_folder(project: dict) -> None:
    ws: Workspace = project["ws"]
    assert "m001" in project["train_output"]
    assert "train epoch 1/1" in project["train_output"].splitlines()  # output no terminal: a line an epoch
    version = ws.store.model_version("m001")
    run = ws.runs_dir / "m001"
    assert Path(version["path"]) == run / "weights" / "best.pt"
    for name in ("weights/best.pt", "weights/last.pt", "results.csv", "args.yaml"):
        assert (run / name).is_file(), name
    assert version["backend"] == "ultralytics" and version["classes"] == CLASSES
    assert version["meta"]["epochs"] == 1 and version["meta"]["train_images"] == 24
    # the dataset view links the images, it does not copy them
    linked = next((run / "dataset" / "images" / "train").iterdir())
    assert linked.is_symlink()


def test_predict_stores_boxes_probabilities_and_embeddings_once(project: dict) -> None:
    ws: Workspace = project["ws"]
    outputs = []
    for _ in range(2):  # running twice replaces, never duplicates
        result = cli(ws, "predict", "--model", "m001", "--conf", "0.01")
        assert result.exit_code == 0, result.output
        outputs.append(result)
        rows = ws.store.conn.execute("SELECT COUNT(*) FROM predictions WHERE model_version='m001'").fetchone()[0]
        assert rows == len(project["pool"])
    preds = ws.store.predictions("m001")
    assert set(preds) == set(project["pool"])
    for d in preds.values():
        assert d.confidence is not None and d.data["class_probs"].shape == (len(d), len(CLASSES))
        np.testing.assert_array_equal(d.data["class_probs"].argmax(axis=1), d.class_id)
    ids, emb = ws.store.embeddings("m001")
    # the labeled training images are embedded too (picks are kept apart from them); not the test split
    training = project["splits"]["train"] + project["splits"]["val"]
    assert sorted(ids) == sorted(project["pool"] + training) and emb.shape == (len(ids), 480)
    assert f"{len(training)} image(s) embedded with m001" in outputs[0].output  # the second run had none to embed
    assert "embedded" not in result.output


def test_an_image_that_fails_to_decode_is_reported_and_the_run_goes_on(project: dict) -> None:
    ws: Workspace = project["ws"]
    result = cli(ws, "predict", "--model", "m001")
    assert result.exit_code == 0
    assert "broken.png" in flat(result.output) and "1 skipped" in result.output
    strict = cli(ws, "predict", "--model", "m001", "--strict")
    assert strict.exit_code == 1 and "broken.png" in flat(strict.output)


def test_evaluate_on_the_test_split_is_stored_per_version(project: dict, tmp_path_factory) -> None:
    ws: Workspace = project["ws"]
    weights, _ = trained_tiny_model(tmp_path_factory)
    result = cli(ws, "evaluate", "--model", str(weights), "--imgsz", "128", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    version = payload["model_version"]
    assert version.startswith(f"{weights.parent.parent.name}-")  # a run's weights/best.pt: named by its run
    stored = ws.store.evaluation(version, "test")
    assert stored is not None and stored["map50"] == pytest.approx(payload["map50"])
    assert stored["images"] == len(project["splits"]["test"])
    assert payload["map50"] > 0.5 and set(payload["per_class_ap"]) == set(CLASSES)
    # the buckets go by the boxes at the 128-px input (160x120 images: scale 0.8)
    assert payload["size_unit"] == "network input pixels (long side 128)"
    assert sum(v["labels"] for v in payload["by_size"].values()) == payload["labels"]
    table = cli(ws, "evaluate", "--model", "m001")
    assert table.exit_code == 0 and "mAP50" in table.output and "square" in table.output
    assert flat("by object size, in network input pixels (long side") in flat(table.output)
    assert ws.store.evaluation("m001", "test") is not None


def test_export_model_then_predict_with_the_onnx_runtime(project: dict) -> None:
    ws: Workspace = project["ws"]
    result = cli(ws, "export-model", "--model", "m001", "--format", "onnx", "--imgsz", "128")
    assert result.exit_code == 0, result.output
    onnx_file = ws.runs_dir / "m001" / "weights" / "best-96x128.onnx"  # the pool's 160x120 pictures, long side 128
    assert onnx_file.is_file() and flat(str(onnx_file)) in flat(result.output)
    torch_preds = ws.store.predictions("m001")
    result = cli(ws, "predict", "--model", "m001", "--runtime", "onnx", "--imgsz", "128")
    assert result.exit_code == 0, result.output
    assert flat(f"(ONNX Runtime: {onnx_file})") in flat(result.output)  # which file ran is said
    onnx_preds = ws.store.predictions("m001")
    assert {k: len(v) for k, v in onnx_preds.items()} == {k: len(v) for k, v in torch_preds.items()}


def test_onnx_of_weights_from_elsewhere_is_written_in_the_workspace(project: dict, tmp_path_factory, tmp_path: Path) -> None:
    """`predict --model their.pt --runtime onnx` exported the ONNX beside the user's weights (in
    their data folder, or another workspace's runs/): it goes under this workspace's runs/onnx/."""
    import shutil

    ws: Workspace = project["ws"]
    weights, _ = trained_tiny_model(tmp_path_factory)
    theirs = tmp_path / "handed-over" / "lcd.pt"
    theirs.parent.mkdir()
    shutil.copy(weights, theirs)
    item = project["pool"][0]
    result = cli(ws, "predict", "--model", str(theirs), "--runtime", "onnx", "--items", item, "--imgsz", "128")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in theirs.parent.iterdir()) == ["lcd.pt"]
    made = list((ws.runs_dir / "onnx").rglob("*.onnx"))
    assert len(made) == 1 and made[0].parent.name.startswith("lcd-")
    assert flat(f"(ONNX Runtime: {made[0]})") in flat(result.output)
    # that look at one image with someone's file does not make it the default model (predict --missing took it)
    from boxloop.modeling import resolve_model

    own = [v["id"] for v in ws.store.model_versions() if v["path"] and v["meta"].get("source") != "file"]
    assert resolve_model(ws).version == own[-1]


def test_bad_format_for_export_is_refused(project: dict) -> None:
    result = cli(project["ws"], "export-model", "--format", "tflite")
    assert result.exit_code == 1 and "unknown export format" in result.output


def test_training_without_labels_is_a_clear_message(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "empty", classes=CLASSES)
    result = cli(ws, "train", "--model", "yolov8n.yaml", "--epochs", "1")
    assert result.exit_code == 1
    assert "no labeled images to train on" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "3"], "--rounds 3 needs --wait"),
        (["--wait"], "--wait needs --push labelstudio or --push files"),
        (["--wait", "--push", "paper"], "unknown --push 'paper'; known: none, files, labelstudio"),
        (["--wait", "--push", "files", "--poll", "0"], "Invalid value for '--poll'"),
    ],
)
def test_round_options_that_cannot_work_are_refused_before_anything_runs(tmp_path: Path, args: list[str], message: str) -> None:
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    result = cli(ws, "round", *args)
    assert result.exit_code in (1, 2) and message in " ".join(result.output.split()), result.output
    assert not ws.store.model_versions() and ledger_rounds(ws) == 0


def test_round_to_label_studio_with_no_server_set_says_so_before_training(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "a-token")
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    make_yolo_dataset(tmp_path / "d", n_train=4, n_val=0, seed=1)
    fill_workspace(ws, tmp_path / "d", splits=("train",))
    result = cli(ws, "round", "--push", "labelstudio", "--epochs", "1")
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "no Label Studio URL: run `boxloop labelstudio connect --url URL`, or set [labelstudio] url" in said
    assert not ws.store.model_versions() and ledger_rounds(ws) == 0
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    monkeypatch.setenv("BOXLOOP_LABELSTUDIO_URL", "http://127.0.0.1:1")  # a URL now, but no token
    result = cli(ws, "round", "--push", "labelstudio", "--epochs", "1")
    assert result.exit_code == 1 and "no Label Studio API token: set LABEL_STUDIO_API_KEY" in result.output
    assert not ws.store.model_versions()


def ledger_rounds(ws: Workspace) -> int:
    return int(ws.store.conn.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])


def test_waiting_rounds_stop_when_nothing_is_left_to_select(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "done", classes=CLASSES)
    make_yolo_dataset(tmp_path / "d", n_train=8, n_val=0, n_test=2, seed=1)
    fill_workspace(ws, tmp_path / "d", splits=("train", "test"))  # every image labeled
    result = cli(ws, "round", "--push", "files", "--wait", "--rounds", "3", "--model", "yolov8n.yaml", "--epochs", "1",
                 "--imgsz", "64", "--batch", "4", "--allow-missing-classes")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "round 1: no unlabeled image left to pick" in said and "nothing left to select: no more rounds" in said
    assert [v["id"] for v in ws.store.model_versions()] == ["m001"] and ledger_rounds(ws) == 1  # not 3 trainings


def test_training_with_a_class_that_has_no_example_names_it(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ghost", classes=[*CLASSES, "ghost"])
    make_yolo_dataset(tmp_path / "d", n_train=4, n_val=0, seed=1)
    fill_workspace(ws, tmp_path / "d", splits=("train",))
    result = cli(ws, "train", "--model", "yolov8n.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4")
    assert result.exit_code == 1 and "ghost" in result.output and "--allow-missing-classes" in result.output
    assert "or set [train] allow_missing_classes = true in boxloop.toml" in " ".join(result.output.split())
    # set once in boxloop.toml instead of passing the flag to every train and round
    toml = ws.root / "boxloop.toml"
    toml.write_text(toml.read_text().replace("allow_missing_classes = false", "allow_missing_classes = true"))
    result = cli(ws, "train", "--model", "yolov8n.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4")
    assert result.exit_code == 0, result.output
    assert "model version m001" in result.output


def test_a_round_trains_without_a_class_only_when_told(tmp_path: Path, caplog) -> None:
    """The refusal names --allow-missing-classes; `round` takes it as `train` does (a seed set
    may lack a class the rounds will bring), and the training says which class it lacks."""
    ws = Workspace.init(tmp_path / "ghost", classes=[*CLASSES, "ghost"])
    make_yolo_dataset(tmp_path / "d", n_train=8, n_val=0, n_test=2, seed=1)
    fill_workspace(ws, tmp_path / "d", splits=("train", "test"))
    args = ["round", "--budget", "0", "--model", "yolov8n.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4"]
    refused = cli(ws, *args)
    assert refused.exit_code == 1 and "ghost" in refused.output and "--allow-missing-classes" in refused.output
    result = cli(ws, *args, "--allow-missing-classes")
    assert result.exit_code == 0, result.output
    assert "round 1: model m001" in " ".join(result.output.split())
    assert any("without a labeled box of class(es) ghost" in r.getMessage() for r in caplog.records)


def test_missing_weights_are_named_and_never_downloaded(project: dict) -> None:
    result = cli(project["ws"], "predict", "--model", "yolov8n.pt")
    assert result.exit_code == 1 and "yolov8n.pt" in result.output
    result = cli(project["ws"], "train", "--model", "yolo11n.pt", "--epochs", "1")
    assert result.exit_code == 1 and "never downloads" in result.output


def test_weights_with_other_class_names_need_a_class_map(tmp_path: Path, tmp_path_factory) -> None:
    weights, _data_root = trained_tiny_model(tmp_path_factory)
    ws = Workspace.init(tmp_path / "pets", classes=["cat", "dog", "bird"])
    add_pool(ws, tmp_path / "pool", n=3)
    result = cli(ws, "predict", "--model", str(weights), "--imgsz", "128")
    assert result.exit_code == 1
    assert "square" in result.output and "cat" in result.output and "--class-map" in result.output
    result = cli(
        ws, "predict", "--model", str(weights), "--imgsz", "128",
        "--class-map", "square=cat", "--class-map", "disc=dog,bar=bird",
    )
    assert result.exit_code == 0, result.output
    assert len(ws.store.predictions(ws.store.model_version()["id"])) == 3


def test_add_predictions_from_yolo_txt_with_a_bad_line(project: dict, tmp_path: Path) -> None:
    ws: Workspace = project["ws"]
    folder = tmp_path / "other-detector"
    folder.mkdir()
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (folder / "pool_000.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n2 0.1 0.1 0.1 0.1 0.3\n")
    (folder / "pool_001.txt").write_text("1 0.5 0.5 0.2 0.2 0.8\nthis is not a box\n")
    (folder / "nobody.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n")
    result = cli(ws, "add", "predictions", str(folder), "--format", "yolo", "--model-version", "mmdet-1")
    assert result.exit_code == 0, result.output
    assert "pool_001.txt:2:" in flat(result.output) and "nobody" in flat(result.output)
    assert flat("pool_001.txt: predictions skipped (this image keeps none of this version's) until the file is fixed") in flat(
        result.output)
    preds = ws.store.predictions("mmdet-1")
    # pool_001's file lost a line: no predictions rather than some (once: stored as if the detector found 1 box)
    assert list(preds) == [project["pool"][0]] and sum(len(d) for d in preds.values()) == 2
    d = preds[project["pool"][0]]
    np.testing.assert_allclose(d.xyxy[0], [64, 48, 96, 72], atol=1e-3)  # 160x120 image
    np.testing.assert_allclose(d.confidence, [0.9, 0.3], atol=1e-6)
    assert ws.store.model_version("mmdet-1")["backend"] == "import:yolo"


def test_add_predictions_leave_out_boxes_of_classes_the_project_lacks(tmp_path: Path) -> None:
    """Another detector's YOLO txt with a classes.txt of more classes than the project's:
    the project's are kept by name, the others' boxes are left out."""
    ws = Workspace.init(tmp_path / "ws", classes=["square", "disc"])
    pool = add_pool(ws, tmp_path / "pool", n=1)
    folder = tmp_path / "coco-detector"
    folder.mkdir()
    (folder / "classes.txt").write_text("person\ndisc\nsquare\n")
    (folder / "pool_000.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n1 0.3 0.3 0.1 0.1 0.8\n2 0.7 0.7 0.1 0.1 0.7\n")
    result = cli(ws, "add", "predictions", str(folder), "--model-version", "coco-1")
    assert result.exit_code == 0, result.output
    d = ws.store.predictions("coco-1")[pool[0]]
    assert [ws.classes[c] for c in d.class_id] == ["disc", "square"]
    np.testing.assert_allclose(d.confidence, [0.8, 0.7], atol=1e-6)


def test_add_predictions_for_video_frames_find_each_frame_by_its_folder(tmp_path: Path) -> None:
    """Every video's frames share names (frame_000012.jpg): predictions written in a tree like
    the frames' own (one folder per video) land on their frame; a flat folder says what is wrong."""
    from _images import write_image
    from boxloop.ingest import add_images

    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    for cam in ("cam-a", "cam-b"):
        for i in range(2):
            write_image(tmp_path / "frames" / cam / f"frame_{i}.jpg", size=(160, 120), seed=len(cam) * 10 + i + (cam == "cam-b"))
    add_images(ws, [tmp_path / "frames" / "cam-a", tmp_path / "frames" / "cam-b"], sequence=True)
    ids = {(Path(it.uri).parent.name, Path(it.uri).stem): it.id for it in ws.store.items()}
    for cam, cls in (("cam-a", 0), ("cam-b", 1)):
        for i in range(2):
            f = tmp_path / "preds" / cam / f"frame_{i}.txt"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"{cls} 0.5 0.5 0.2 0.2 0.9\n")
    result = cli(ws, "add", "predictions", str(tmp_path / "preds"), "--model-version", "det-1")
    assert result.exit_code == 0, result.output
    preds = ws.store.predictions("det-1")
    assert {k: int(preds[i].class_id[0]) for k, i in ids.items()} == {
        ("cam-a", "frame_0"): 0, ("cam-a", "frame_1"): 0, ("cam-b", "frame_0"): 1, ("cam-b", "frame_1"): 1}
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "frame_0.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n")
    result = cli(ws, "add", "predictions", str(tmp_path / "flat"), "--model-version", "det-2")
    assert "ambiguous image 'frame_0': 2 items named frame_0" in " ".join(result.output.split())
    assert "keep the folders the images are in" in " ".join(result.output.split())
    assert not ws.store.predictions("det-2")


def test_add_predictions_from_coco_results(project: dict, tmp_path: Path) -> None:
    ws: Workspace = project["ws"]
    dataset = {
        "images": [{"id": 7, "file_name": "pool_002.png"}, {"id": 8, "file_name": "pool_003.png"}],
        "categories": [{"id": 1, "name": "bar"}, {"id": 2, "name": "square"}, {"id": 3, "name": "disc"}],
    }
    results = [
        {"image_id": 7, "category_id": 2, "bbox": [10, 20, 30, 40], "score": 0.7},
        {"image_id": 8, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.2},
        {"image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.2},
        {"image_id": 8, "bbox": [0, 0, 5, 5]},
    ]
    (tmp_path / "val.json").write_text(json.dumps(dataset))
    (tmp_path / "results.json").write_text(json.dumps(results))
    result = cli(
        ws, "add", "predictions", str(tmp_path / "results.json"), "--format", "coco-results",
        "--coco-json", str(tmp_path / "val.json"), "--model-version", "tf-1",
    )
    assert result.exit_code == 0, result.output
    assert "2 problem(s)" in result.output and "results.json[2]" in flat(result.output)
    preds = ws.store.predictions("tf-1")
    d = preds[project["pool"][2]]
    np.testing.assert_allclose(d.xyxy, [[10, 20, 40, 60]])
    assert CLASSES[int(d.class_id[0])] == "square"
    assert CLASSES[int(preds[project["pool"][3]].class_id[0])] == "bar"


def test_the_fake_backend_is_deterministic_and_follows_the_protocol() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    be = FakeBackend(CLASSES, max_boxes=6)
    assert isinstance(be, Backend)
    p1, p2, p3 = be.predict([a, a.copy(), b], conf=0.0)
    assert p1.detections.equals(p2.detections) and np.array_equal(p1.embedding, p2.embedding)
    assert not np.array_equal(p1.embedding, p3.embedding)
    for p in (p1, p3):
        d = p.detections
        np.testing.assert_allclose(d.data["class_probs"].sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(d.data["class_probs"].argmax(axis=1), d.class_id)
        assert (d.xyxy[:, 2:] <= [80, 60]).all() and (np.diff(d.confidence) <= 0).all()
    high = be.predict([a], conf=0.3)[0].detections
    assert (high.confidence >= 0.3).all() and len(high) <= len(p1.detections)


def test_predict_with_a_ready_backend_stores_everything(tmp_path: Path) -> None:
    from boxloop.modeling import predict

    ws = Workspace.init(tmp_path / "fake", classes=CLASSES)
    pool = add_pool(ws, tmp_path / "pool", n=5)
    ws.store.add_label(pool[0], Detections(np.array([[0, 0, 5, 5]]), np.array([0])), source="test")
    report = predict(ws, backend=FakeBackend(CLASSES), model="fake-1")
    assert report.items == 4 and not report.problems
    assert set(ws.store.predictions("fake-1")) == set(pool[1:])
    ids, emb = ws.store.embeddings("fake-1")
    assert len(ids) == 4 and emb.shape == (4, 48)
    assert "decode" in report.ms_per_image


@pytest.mark.parametrize("batch", [4, 16, 128])
def test_small_data_recipe_never_drops_most_steps_as_the_labels_grow(batch: int) -> None:
    """Steps per epoch (images / (batch x accumulation)) may dip as a label set grows, but
    never below what SMALL_TRAIN_SET images gave (the old recipe fell from 125 to 8 at batch 4);
    large sets reach Ultralytics' own nominal batch (nbs left unset); a setting the user gives wins."""
    from boxloop.modeling import SMALL_TRAIN_SET, ULTRALYTICS_NBS, small_data_recipe

    def steps(n: int) -> float:
        nbs = small_data_recipe(n, batch, None).get("nbs", ULTRALYTICS_NBS)
        return n / max(batch, nbs)  # Ultralytics accumulates max(round(nbs / batch), 1) batches

    floor = SMALL_TRAIN_SET / batch
    assert all(steps(n) >= floor for n in range(SMALL_TRAIN_SET, 40 * SMALL_TRAIN_SET, 7))
    assert small_data_recipe(SMALL_TRAIN_SET - 1, batch, None).get("nbs", batch) == batch
    assert "nbs" not in small_data_recipe(20 * SMALL_TRAIN_SET, batch, None)
    assert small_data_recipe(600, batch, {"nbs": 64}) == {"nbs": 64}


def _ultralytics_steps(epochs: int, batches: int, accumulate: int) -> int:
    """Optimizer steps as Ultralytics' trainer takes them: whenever ``accumulate`` batches
    have passed since the last step, counting across epochs."""
    steps, last = 0, -1
    for ni in range(epochs * batches):
        if ni - last >= accumulate:
            steps, last = steps + 1, ni
    return steps


@pytest.mark.parametrize("batch,nbs", [(4, 4), (4, 8), (16, 64), (3, 64)])
def test_epochs_for_steps_give_the_steps_asked_and_no_epoch_more(batch: int, nbs: int) -> None:
    from boxloop.errors import InputError
    from boxloop.modeling import epochs_for_steps

    accumulate = max(round(nbs / batch), 1)
    for images in (1, 7, 32, 499, 512, 2000):
        batches = -(-images // batch)
        for steps in (1, 10, 600, 2500):
            epochs = epochs_for_steps(steps, images, batch, nbs)
            assert _ultralytics_steps(epochs, batches, accumulate) >= steps, (images, steps)
            assert epochs == 1 or _ultralytics_steps(epochs - 1, batches, accumulate) < steps, (images, steps)
    with pytest.raises(InputError, match="steps must be >= 1"):
        epochs_for_steps(0, 10, batch, nbs)


def test_train_for_a_number_of_steps_picks_the_epochs_from_the_label_count(tmp_path: Path) -> None:
    """`boxloop train --steps 5` on 24 train images at batch 8 (3 batches, each a step) trains
    2 epochs and records both; --epochs with --steps is refused before anything is trained."""
    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=24, n_val=4, n_test=0, seed=5)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data")
    both = cli(ws, "train", "--model", "yolov8n.yaml", "--epochs", "1", "--steps", "5", "--imgsz", "64")
    assert both.exit_code == 2 and "give--epochsor--steps,notboth" in flat(both.output)
    assert ws.store.model_versions() == []
    result = cli(ws, "train", "--model", "yolov8n.yaml", "--steps", "5", "--imgsz", "64", "--batch", "8")
    assert result.exit_code == 0, result.output
    meta = ws.store.model_version("m001")["meta"]
    assert (meta["steps"], meta["epochs"], meta["train_images"]) == (5, 2, 24)
    assert len((ws.runs_dir / "m001" / "results.csv").read_text().strip().splitlines()) == 1 + 2  # a row per epoch


def test_an_interrupted_training_goes_on_from_its_last_epoch_when_run_again(tmp_path: Path) -> None:
    """Training cut off after epoch 2 of 4 (Ctrl-C, a lost SSH session, a preempted machine):
    `train` again with the same labels and settings resumes that run at epoch 3 under the
    same version; after a label changes, a new run starts from scratch beside it."""
    from boxloop import modeling
    from boxloop.ingest import add_labels
    from boxloop.runs import INPUTS_FILE, interrupted_run, training

    ultralytics_offline(tmp_path / "ultralytics-config")
    make_yolo_dataset(tmp_path / "data", n_train=12, n_val=4, n_test=0, seed=6)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    fill_workspace(ws, tmp_path / "data")
    settings = {"model": "yolov8n.yaml", "epochs": 4, "imgsz": 64, "batch": 4}
    seen: list[int] = []

    def cut_after_two(epoch: int, _total: int) -> None:
        seen.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        modeling.train(ws, on_epoch=cut_after_two, **settings)
    assert ws.store.model_versions() == [] and (ws.runs_dir / "m001" / "weights" / "last.pt").is_file()
    status = flat(cli(ws, "status").output)
    assert flat("training runs cut off: m001 (boxloop train with the same labels and settings goes on") in status
    assert flat("next: boxloop train with the options run m001 was started with (runs/m001/run_inputs.json) goes on "
                "from its last saved epoch") in status
    assert "disk:runs" in status
    inputs = json.loads((ws.runs_dir / "m001" / INPUTS_FILE).read_text())
    with training(ws.runs_dir / "m001"):  # as while another process trains it: not taken for interrupted
        assert interrupted_run(ws.runs_dir, registered=(), fingerprint=inputs["fingerprint"]) is None
        assert "trainingnow:m001" in flat(cli(ws, "status").output)
    assert interrupted_run(ws.runs_dir, registered=(), fingerprint=inputs["fingerprint"]) == ws.runs_dir / "m001"
    done = modeling.train(ws, on_epoch=lambda e, _t: seen.append(e), **settings)
    assert done.version == "m001" and seen == [1, 2, 3, 4]
    assert ws.store.model_version("m001")["meta"]["resumed_after_epoch"] == 2
    assert len((ws.runs_dir / "m001" / "results.csv").read_text().strip().splitlines()) == 1 + 4
    assert sorted(p.name for p in ws.runs_dir.iterdir()) == ["m001"]
    assert "cutoff" not in flat(cli(ws, "status").output)

    # other labels: a new run, not the old one resumed
    with pytest.raises(KeyboardInterrupt):
        modeling.train(ws, on_epoch=cut_after_two, **settings)  # m002 cut off
    extra = tmp_path / "more"
    make_yolo_dataset(extra, n_train=2, n_val=0, n_test=0, seed=7)
    add_labels(ws, extra, format="yolo", split="train")
    fresh = modeling.train(ws, on_epoch=None, **settings)
    assert fresh.version == "m003" and "resumed_after_epoch" not in ws.store.model_version("m003")["meta"]


def test_predict_that_reads_no_image_fails(project: dict, tmp_path: Path) -> None:
    """Every picture unreadable (an endpoint down, a disk unmounted): exit 1 with the reason,
    not "0 image(s) predicted" and exit 0 as if the batch had some bad images."""
    ws: Workspace = project["ws"]
    broken = next(it for it in ws.store.items() if it.id == "broken0000000000")
    result = cli(ws, "predict", "--items", broken.id, "--imgsz", "128")
    assert result.exit_code == 1, result.output
    said = flat(result.output)
    assert flat(broken.uri) in said and flat("none of the 1 image(s) could be read: nothing predicted") in said
