"""Pictures as phones and the web save them: HEIC (upright as the phone shows it), AVIF,
JPEG 2000 and JPEGs named .jfif are read, decoded as Ultralytics' training decodes them,
handed to the trainer under a suffix it reads, and trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _tiny_data import CLASSES, draw_image, ultralytics_offline
from boxloop.ingest import add_images, add_labels
from boxloop.workspace import Workspace

KINDS = ("heic", "avif", "jp2", "jfif", "png")


def write_picture(path: Path, rgb: np.ndarray, *, orientation: int | None = None) -> Path:
    """Save ``rgb`` in the kind its suffix names (HEIC with pillow-heif, the rest with Pillow)."""
    import pillow_heif
    from PIL import Image

    im = Image.fromarray(rgb)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    kind = path.suffix.lower()
    if kind == ".heic":
        pillow_heif.from_pillow(im).save(path, quality=95, exif=exif.tobytes())
    elif kind == ".jfif":
        im.save(path, format="JPEG", quality=95)
    else:
        im.save(path, format={".avif": "AVIF", ".jp2": "JPEG2000", ".png": "PNG"}[kind], quality=95)
    return path


def blocks(rgb: np.ndarray, n: int = 8) -> np.ndarray:
    """Means of n x n blocks: a lossy codec's noise averages out, a turned picture does not."""
    h, w = (rgb.shape[0] // n) * n, (rgb.shape[1] // n) * n
    return rgb[:h, :w].astype(float).reshape(h // n, n, w // n, n, 3).mean(axis=(1, 3))


def mixed_yolo_folder(root: Path, n: int, *, seed: int = 0) -> Path:
    """A YOLO folder of ``n`` tiny-data pictures, the kinds of KINDS in turn."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        img, boxes = draw_image(rng)
        h, w = img.shape[:2]
        write_picture(root / "images" / f"p{i:02d}.{KINDS[i % len(KINDS)]}", img)
        (root / "labels" / f"p{i:02d}.txt").write_text("".join(
            f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
            for c, x1, y1, x2, y2 in boxes
        ))
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def test_each_kind_is_added_and_decoded_as_training_decodes_it(tmp_path: Path) -> None:
    from ultralytics.utils.patches import imread

    from boxloop.server.images import decode_image
    from boxloop.sources.images import load_image

    rng = np.random.default_rng(3)
    img, _ = draw_image(rng, size=(96, 64))
    folder = tmp_path / "phone"
    folder.mkdir()
    for kind in KINDS:
        write_picture(folder / f"a.{kind}", img)
    write_picture(folder / "turned.heic", img, orientation=6)  # the phone held sideways
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    report = add_images(ws, [folder])
    assert report.added == len(KINDS) + 1 and not report.problems, [str(p) for p in report.problems]
    items = {Path(it.uri).name: it for it in ws.store.items()}
    assert (items["turned.heic"].width, items["turned.heic"].height) == (64, 96)  # as the phone shows it
    assert all((it.width, it.height) == (96, 64) for name, it in items.items() if name != "turned.heic")
    for name, it in items.items():
        ours = load_image(it.uri)
        theirs = imread(it.uri)[:, :, ::-1]  # what Ultralytics trains on (BGR)
        assert ours.shape == theirs.shape, name
        assert np.abs(ours.astype(int) - theirs).mean() < 1.0, name
        shown = np.rot90(img, k=-1) if name == "turned.heic" else img
        assert np.abs(blocks(ours) - blocks(shown)).mean() < 4.0, name  # the picture, up to lossy noise
        # the ML backend decodes the bytes Label Studio sends it alike
        assert np.array_equal(decode_image(Path(it.uri).read_bytes(), where=name), ours), name


def test_the_training_view_names_a_jfif_jpg_and_hands_over_a_png_of_a_kind_the_trainer_does_not_read(
    tmp_path: Path,
) -> None:
    from PIL import Image

    from boxloop.export import write_yolo_dataset
    from boxloop.sources.images import load_image

    src = mixed_yolo_folder(tmp_path / "src", len(KINDS))
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    report = add_labels(ws, src, format="yolo")
    assert report.labeled == len(KINDS) and not report.problems, [str(p) for p in report.problems]
    # an older trainer that reads neither HEIC nor AVIF
    data = write_yolo_dataset(ws, tmp_path / "view", splits=("train", "val"),
                              readable=frozenset({".jpg", ".jpeg", ".png", ".jp2"}))
    images = {p.name: p for p in data.parent.glob("images/*/*")}
    assert sorted(images) == ["p00.png", "p01.png", "p02.jp2", "p03.jpg", "p04.png"]
    uris = {Path(it.uri).stem: it.uri for it in ws.store.items()}
    for name in ("p00.png", "p01.png"):  # HEIC and AVIF: a PNG of the picture, not a link
        assert not images[name].is_symlink()
        with Image.open(images[name]) as im:
            assert im.format == "PNG"
            assert np.array_equal(np.asarray(im.convert("RGB")), load_image(uris[Path(name).stem]))
    assert images["p03.jpg"].resolve() == Path(uris["p03"]).resolve()  # the .jfif itself
    labels = {p.stem for p in data.parent.glob("labels/*/*.txt")}
    assert labels == {Path(n).stem for n in images}
    # an export for people keeps each picture as it is, a .jfif named .jpg
    out = write_yolo_dataset(ws, tmp_path / "export", link=False, splits=("train", "val"))
    exported = sorted(p.name for p in out.parent.glob("images/*/*"))
    assert exported == ["p00.heic", "p01.avif", "p02.jp2", "p03.jpg", "p04.png"]


@pytest.mark.slow
def test_a_model_trains_on_every_kind(tmp_path: Path) -> None:
    """Real Ultralytics training (1 epoch, 64 px): it finds every picture of the view, none
    corrupt, whichever kind it came as."""
    ultralytics_offline(tmp_path / "ultralytics")
    from ultralytics.data.utils import load_dataset_cache_file

    from boxloop.modeling import train

    src = mixed_yolo_folder(tmp_path / "src", 10, seed=1)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    assert add_labels(ws, src, format="yolo").labeled == 10
    outcome = train(ws, model="yolov8n.yaml", epochs=1, imgsz=64, batch=4)
    view = ws.runs_dir / outcome.version / "dataset"
    for split in ("train", "val"):
        pictures = list((view / "images" / split).iterdir())
        found, missing, _empty, corrupt, total = load_dataset_cache_file(view / "labels" / f"{split}.cache")["results"]
        assert (found, missing, corrupt, total) == (len(pictures), 0, 0, len(pictures)), split
    assert {p.suffix for p in (view / "images").glob("*/*")} >= {".heic", ".avif", ".jpg"}


def test_without_a_heif_decoder_a_heic_is_named_with_what_to_install(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "phone"
    folder.mkdir()
    write_picture(folder / "IMG_0001.HEIC", draw_image(np.random.default_rng(0))[0])
    code = (
        "import sys; sys.modules['pi_heif'] = sys.modules['pillow_heif'] = None\n"
        "from boxloop.ingest import add_images; from boxloop.workspace import Workspace\n"
        f"ws = Workspace.init({str(tmp_path / 'ws')!r}, classes=['a'])\n"
        f"r = add_images(ws, [{str(folder)!r}])\n"
        "print(r.added); print(*[p.reason for p in r.problems], sep='\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    added, reason = out.strip().splitlines()
    assert added == "0"
    assert reason == ("not read: boxloop does not read HEIC pictures here; install pi-heif "
                      "(pip install pi-heif), or convert it to JPEG")
