"""Pictures as phones and the web save them: HEIC (upright as the phone shows it), AVIF,
JPEG 2000 and JPEGs named .jfif are read, decoded as Ultralytics' training decodes them,
handed to the trainer under a suffix it reads, and trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
        assert np.array_equal(decode_image(Path(it.uri).read_bytes(), where=name).image, ours), name


def test_a_kind_the_reader_does_not_take_is_handed_over_as_a_jpeg_and_a_jfif_as_jpg(tmp_path: Path) -> None:
    from PIL import Image

    from boxloop.export import write_yolo_dataset
    from boxloop.sources.images import load_image

    src = mixed_yolo_folder(tmp_path / "src", len(KINDS))
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    report = add_labels(ws, src, format="yolo")
    assert report.labeled == len(KINDS) and not report.problems, [str(p) for p in report.problems]
    uris = {Path(it.uri).stem: it.uri for it in ws.store.items()}
    # the training view of an older Ultralytics that reads neither HEIC nor AVIF
    data = write_yolo_dataset(ws, tmp_path / "view", splits=("train", "val"),
                              readable=frozenset({".jpg", ".jpeg", ".png", ".jp2"}))
    images = {p.name: p for p in data.parent.glob("images/*/*")}
    assert sorted(images) == ["p00.jpg", "p01.jpg", "p02.jp2", "p03.jpg", "p04.png"]
    for name in ("p00.jpg", "p01.jpg"):  # HEIC and AVIF: a JPEG of the picture, not a link
        assert not images[name].is_symlink()
        with Image.open(images[name]) as im:
            assert im.format == "JPEG"
            got = np.asarray(im.convert("RGB"))
        assert np.abs(blocks(got) - blocks(load_image(uris[Path(name).stem]))).mean() < 2.0, name
    assert images["p03.jpg"].resolve() == Path(uris["p03"]).resolve()  # the .jfif itself
    assert images["p02.jp2"].resolve() == Path(uris["p02"]).resolve()
    labels = {p.stem for p in data.parent.glob("labels/*/*.txt")}
    assert labels == {Path(n).stem for n in images}
    # an export for other tools: what a browser or OpenCV reads, a .jfif's bytes as they are
    out = write_yolo_dataset(ws, tmp_path / "export", link=False, splits=("train", "val"))
    exported = {p.name: p for p in out.parent.glob("images/*/*")}
    assert sorted(exported) == ["p00.jpg", "p01.jpg", "p02.jpg", "p03.jpg", "p04.png"]
    assert exported["p03.jpg"].read_bytes() == Path(uris["p03"]).read_bytes()
    assert exported["p04.png"].read_bytes() == Path(uris["p04"]).read_bytes()
    for name in ("p00.jpg", "p01.jpg", "p02.jpg"):
        with Image.open(exported[name]) as im:
            assert im.format == "JPEG" and im.size == (160, 120), name


@pytest.mark.parametrize("with_pictures", [False, True])
def test_labels_for_a_heic_sent_out_as_jpeg_come_back_to_it(tmp_path: Path, with_pictures: bool) -> None:
    """The pre-labeled zip holds IMG_0001.jpg for a phone's IMG_0001.heic: the labels an
    annotation tool gives back for IMG_0001.jpg, alone or with the picture (re-encoded by the
    tool), are the HEIC's."""
    from PIL import Image

    from boxloop.export import export
    from boxloop.types import Detections

    folder = tmp_path / "phone"
    folder.mkdir()
    img, _ = draw_image(np.random.default_rng(5))
    write_picture(folder / "IMG_0001.heic", img)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    add_images(ws, [folder])
    (item,) = ws.store.items()
    ws.store.put_predictions("mv1", {item.id: Detections([[10, 10, 60, 50]], [0], [0.9])})
    sent = export(ws, format="yolo", what="prelabeled", out=tmp_path / "sent")
    assert sorted(p.name for p in (sent / "images").iterdir()) == ["IMG_0001.jpg"]
    back = tmp_path / "back"
    (back / "labels").mkdir(parents=True)
    (back / "labels" / "IMG_0001.txt").write_text("1 0.5 0.5 0.25 0.5\n")  # corrected: a disc, moved
    (back / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    if with_pictures:
        (back / "images").mkdir()
        with Image.open(sent / "images" / "IMG_0001.jpg") as im:
            im.save(back / "images" / "IMG_0001.jpg", quality=70)
    report = add_labels(ws, back, format="yolo")
    assert (report.added, report.known, report.labeled) == (0, 1, 1), report.summary()
    assert len(ws.store.items()) == 1
    np.testing.assert_allclose(ws.store.latest_labels()[item.id].xyxy, [[60, 30, 100, 90]], atol=0.01)


@pytest.mark.slow
def test_a_model_trains_on_every_kind(tmp_path: Path) -> None:
    """Real Ultralytics training (1 epoch, 64 px): it finds every picture of the view, none
    corrupt, whichever kind it came as; a HEIC or AVIF reaches it as a JPEG (Ultralytics reads
    them slowly, through Pillow, if at all), and pictures at least twice the training size as
    training copies under shrunk/."""
    ultralytics_offline(tmp_path / "ultralytics")
    from ultralytics.data.utils import load_dataset_cache_file

    from boxloop.modeling import predict, train

    src = mixed_yolo_folder(tmp_path / "src", 10, seed=1)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    assert add_labels(ws, src, format="yolo").labeled == 10
    outcome = train(ws, model="yolov8n.yaml", epochs=1, imgsz=64, batch=4)
    view = ws.runs_dir / outcome.version / "dataset"
    for split in ("train", "val"):
        pictures = list((view / "images" / split).iterdir())
        found, missing, _empty, corrupt, total = load_dataset_cache_file(view / "labels" / f"{split}.cache")["results"]
        assert (found, missing, corrupt, total) == (len(pictures), 0, 0, len(pictures)), split
    placed = list((view / "images").glob("*/*"))
    assert {p.suffix for p in placed} == {".jpg", ".jp2", ".png"}
    # 160x120 pictures for a 64-pixel input: each a copy at half size, upright, kind as named
    for p in placed:
        assert p.resolve().parent == ws.root / "shrunk", p
        with Image.open(p) as im:
            assert im.size == (80, 60) and im.format == {".jpg": "JPEG", ".jp2": "JPEG2000", ".png": "PNG"}[p.suffix]
    # predict keeps a copy of each picture it cannot decode reduced (training's, where it made
    # one), in the kind training names it: every kind but the JPEGs
    for p in (ws.root / "shrunk").iterdir():
        p.unlink()
    report = predict(ws, model=outcome.version, scope="labeled", imgsz=64, rect=False)
    assert report.items == 10 and not report.problems
    kind = {".heic": ".jpg", ".avif": ".jpg", ".jp2": ".jp2", ".png": ".png"}
    expected = {f"{it.sha256[:24]}-80x60{kind[Path(it.uri).suffix]}" for it in ws.store.items()
                if Path(it.uri).suffix in kind}
    assert len(expected) == 8 and {p.name for p in (ws.root / "shrunk").iterdir()} == expected


def test_a_large_heic_is_decoded_once_then_read_from_its_kept_copy(tmp_path: Path, monkeypatch) -> None:
    """A phone's HEIC cannot be decoded at a fraction of its size (a 12-MP one takes 0.7 s):
    for a small network input, `predict` keeps a JPEG copy at 1/2, 1/4 or 1/8 under shrunk/ and
    reads that from then on, the same pixels the first time as every later time."""
    import boxloop.sources.images as images
    from boxloop.modeling import decode_reduced

    img, _ = draw_image(np.random.default_rng(2), size=(400, 300))
    photo = write_picture(tmp_path / "IMG_0002.heic", img)
    ws = Workspace.init(tmp_path / "ws", classes=CLASSES)
    add_images(ws, [photo])
    (it,) = ws.store.items()
    copies = ws.root / "shrunk"
    first, scale = decode_reduced(it.uri, size=(400, 300), sha256=it.sha256, fit=(64, 64), copies=copies)
    assert first.shape == (75, 100, 3) and scale == (4.0, 4.0)  # 64 / 400: a quarter is the least still larger
    (kept,) = copies.iterdir()
    assert kept.suffix == ".jpg" and kept.name.startswith(it.sha256[:24])
    assert np.abs(blocks(first, 5) - blocks(img, 20)).mean() < 4.0

    def no_decode(*args, **kwargs):
        raise AssertionError("the HEIC was decoded again")

    monkeypatch.setattr(images, "load_image", no_decode)
    again, _ = decode_reduced(it.uri, size=(400, 300), sha256=it.sha256, fit=(64, 64), copies=copies)
    assert np.array_equal(again, first)
    # without a place to keep copies (Ray's workers), or for a JPEG, nothing is kept
    monkeypatch.undo()
    whole, scale = decode_reduced(it.uri, size=(400, 300), sha256=it.sha256, fit=(64, 64))
    assert whole.shape == (300, 400, 3) and scale == (1.0, 1.0)


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


def test_heic_photos_decoded_at_once_in_a_fresh_process_are_all_read(tmp_path: Path) -> None:
    """`predict` decodes in threads (and indexing a bucket in 16): in a new process Pillow
    learns HEIF when the first photo it cannot identify comes, and every thread that met one
    meanwhile reads its photo too."""
    import subprocess
    import sys

    folder = tmp_path / "phone"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(16):
        write_picture(folder / f"IMG_{i:04d}.heic", draw_image(rng, size=(64, 48))[0])
    code = (
        "import sys, threading\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from boxloop.sources.images import load_image\n"
        "start = threading.Barrier(16)\n"
        "def one(f):\n"
        "    start.wait()\n"
        "    try:\n"
        "        return load_image(f).shape == (48, 64, 3)\n"
        "    except Exception as e:\n"
        "        return repr(e)\n"
        f"files = sorted(__import__('glob').glob({str(folder / '*.heic')!r}))\n"
        "with ThreadPoolExecutor(16) as pool:\n"
        "    print(*pool.map(one, files), sep='\\n')\n"
    )
    for _ in range(3):  # a fresh process each time: the first photos race the registration
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == ["True"] * 16, out


def test_a_heic_that_failed_just_before_another_thread_taught_pillow_heif_is_read(tmp_path: Path, monkeypatch) -> None:
    """The race behind the test above, made certain: this thread's open fails (Pillow did not
    know HEIF yet), another thread registers HEIF before this one asks; this one reads too."""
    import PIL.Image

    import boxloop.sources.images as images

    photo = write_picture(tmp_path / "IMG_0003.heic", draw_image(np.random.default_rng(6), size=(64, 48))[0])
    images._add_heif_opener()  # "the other thread": HEIF is registered, and known to be
    real_open, calls = PIL.Image.open, []

    def open_before_registration(source, *args, **kwargs):
        calls.append(source)
        if len(calls) == 1:
            raise PIL.Image.UnidentifiedImageError(f"cannot identify image file {source!r}")
        return real_open(source, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", open_before_registration)
    assert images.load_image(photo).shape == (48, 64, 3)
    assert len(calls) == 2
