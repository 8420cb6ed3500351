"""Indexing speed: `boxloop add images` (headers + content hash + store) against decoding
every image fully with Pillow (what a script that opens each image to get its size does).

    .venv/bin/python bench/ingest.py            # 20,000 generated 320x240 JPEGs
    .venv/bin/python bench/ingest.py --n 2000   # quicker

Prints images/s for both and, last, `ratio: X` (boxloop / full decode; aim >= 3).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--keep", type=Path, default=None, help="Reuse/keep generated images in this folder.")
    args = ap.parse_args()

    from PIL import Image, ImageOps

    from boxloop.ingest import add_images
    from boxloop.synth import generate_images
    from boxloop.workspace import Workspace

    root = args.keep or Path(tempfile.mkdtemp(prefix="boxloop-bench-ingest-"))
    data = root / "data"
    if not (data / "images").is_dir() or len(list((data / "images").glob("*.jpg"))) < args.n:
        t = time.perf_counter()
        generate_images(data, n=args.n, seed=0)
        print(f"generated {args.n} images in {time.perf_counter() - t:.1f} s")
    files = sorted((data / "images").glob("*.jpg"))[: args.n]
    for f in files:  # warm the page cache the same way for both contenders
        f.read_bytes()

    t = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            _ = im.size
    decode_s = time.perf_counter() - t

    ws_dir = root / "ws"
    shutil.rmtree(ws_dir, ignore_errors=True)
    ws = Workspace.init(ws_dir, classes=[str(d) for d in range(10)])
    t = time.perf_counter()
    report = add_images(ws, files)
    index_s = time.perf_counter() - t
    assert report.added == len(files), report.summary()

    n = len(files)
    print(f"images: {n}")
    print(f"full Pillow decode:   {n / decode_s:8.0f} images/s ({decode_s:.2f} s)")
    print(f"boxloop add images:   {n / index_s:8.0f} images/s ({index_s:.2f} s, incl. sha256 + SQLite)")
    print(f"ratio: {decode_s / index_s:.2f}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
