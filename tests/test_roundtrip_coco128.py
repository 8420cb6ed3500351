"""coco128 (real COCO photos with YOLO labels): import → export → re-import keeps every box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boxloop.export import export, write_yolo_dataset
from boxloop.formats.yolo import parse_class_names
from boxloop.ingest import add_labels
from boxloop.workspace import Workspace


@pytest.fixture(scope="module")
def coco_ws(coco128: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("coco") / "ws", classes=parse_class_names(coco128 / "data.yaml"))
    report = add_labels(ws, coco128, format="yolo")
    assert report.added == 128
    return ws


def boxes_by_sha(ws: Workspace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    items = {it.id: it for it in ws.store.items()}
    return {items[i].sha256: (d.xyxy, d.class_id) for i, d in ws.store.latest_labels().items()}


def test_yolo_export_reimports_to_the_same_boxes(coco_ws: Workspace, tmp_path: Path) -> None:
    out = export(coco_ws, format="yolo", out=tmp_path / "yolo")
    again = Workspace.init(tmp_path / "again", classes=coco_ws.classes)
    add_labels(again, out, format="yolo")
    before, after = boxes_by_sha(coco_ws), boxes_by_sha(again)
    assert before.keys() == after.keys() and len(before) == 126
    for sha, (xyxy, cls) in before.items():
        # YOLO text keeps 6 decimals of a normalised coordinate: within 1e-6 of the image size
        np.testing.assert_allclose(after[sha][0], xyxy, atol=1e-6 * 640 + 1e-4)
        assert np.array_equal(after[sha][1], cls)


def test_yolo_export_is_a_dataset_ultralytics_accepts(coco_ws: Workspace, tmp_path: Path) -> None:
    from ultralytics.data.utils import check_det_dataset

    data = write_yolo_dataset(coco_ws, tmp_path / "view", link=True)
    info = check_det_dataset(str(data), autodownload=False)
    assert info["nc"] == 80 and info["names"][0] == "person"
    train_images = list((tmp_path / "view" / "images" / "train").iterdir())
    assert train_images and all(p.is_symlink() for p in train_images)  # a view, not copies
    n_labels = sum(1 for _ in (tmp_path / "view" / "labels").rglob("*.txt"))
    assert n_labels == 126


def test_zip_export_is_atomic_and_complete(coco_ws: Workspace, tmp_path: Path) -> None:
    import zipfile

    archive = export(coco_ws, format="yolo", zip=True, out=tmp_path / "ds.zip")
    assert archive == tmp_path / "ds.zip"
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
    assert "data.yaml" in names and sum(n.startswith("labels/") for n in names) == 126
    assert [p.name for p in tmp_path.iterdir()] == ["ds.zip"]  # no temp folder or half file left


def test_failed_export_leaves_nothing(coco_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boxloop.export as ex

    calls = {"n": 0}
    real = ex._place_image

    def flaky(src: str, dst: Path, *, link: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 50:
            raise OSError("disk full")
        real(src, dst, link=link)

    monkeypatch.setattr(ex, "_place_image", flaky)
    with pytest.raises(OSError, match="disk full"):
        export(coco_ws, format="yolo", out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("format", "label_path", "atol"), [
        ("coco", "annotations.json", 1e-3),
        ("voc", "Annotations", 1e-2),
        ("cvat", "annotations.xml", 1e-3),
        ("labelstudio", "tasks.json", 1e-3),
    ])
def test_export_in_each_format_reimports_to_the_same_boxes(
    coco_ws: Workspace, tmp_path: Path, format: str, label_path: str, atol: float
) -> None:
    out = export(coco_ws, format=format, out=tmp_path / format)
    again = Workspace.init(tmp_path / "again", classes=coco_ws.classes)
    report = add_labels(again, out / label_path, format=format)
    assert not report.problems, [str(p) for p in report.problems][:5]
    before, after = boxes_by_sha(coco_ws), boxes_by_sha(again)
    assert before.keys() == after.keys() and len(after) == 126
    for sha, (xyxy, cls) in before.items():
        np.testing.assert_allclose(after[sha][0], xyxy, atol=atol)  # same boxes, same order
        assert np.array_equal(after[sha][1], cls)


def test_coco_export_loads_in_pycocotools_with_the_same_box_count(coco_ws: Workspace, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    out = export(coco_ws, format="coco", out=tmp_path / "coco")
    coco = COCO(str(out / "annotations.json"))
    n_boxes = sum(len(d) for d in coco_ws.store.latest_labels().values())
    assert len(coco.getAnnIds()) == n_boxes == 929
    assert len(coco.getImgIds()) == 126
    first = coco.loadImgs(coco.getImgIds()[:1])[0]
    assert (out / first["file_name"]).is_file()
