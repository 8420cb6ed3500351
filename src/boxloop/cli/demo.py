"""`boxloop demo`: the whole story on a generated LCD-digit dataset, nothing downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app, console


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the generated data and the workspace.")] = Path("demo-out"),
    generate_only: Annotated[bool, typer.Option("--generate-only", help="Only generate the LCD-digit dataset.")] = False,
    labeled: Annotated[int, typer.Option("--labeled", help="Images a person has already drawn (the seed set).")] = 60,
    pool: Annotated[int, typer.Option("--pool", help="Unlabeled images to choose from.")] = 240,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated data.")] = 0,
) -> None:
    """Generate LCD digits, build a workspace from them, split and export; prints where.

    Example: boxloop demo --out demo-out
    """
    from ..ingest import add_images, add_labels
    from ..split import assign_splits
    from ..export import export
    from ..synth import CLASSES, generate_images, generate_sequence
    from ..workspace import Workspace

    out = out.absolute()
    data = out / "data"
    console.print(f"generating {labeled} labeled + {pool} pool images and a frame sequence in {data}")
    generate_images(data / "labeled", n=labeled, seed=seed)
    generate_images(data / "pool", n=pool, seed=seed + 1)
    generate_sequence(data / "sequence", n_frames=30, seed=seed + 2)
    if generate_only:
        console.print(f"data: [bold]{data}[/bold] (YOLO layout: images/, labels/, data.yaml)")
        return
    ws = Workspace.init(out / "workspace", classes=CLASSES)
    r1 = add_labels(ws, data / "labeled", format="yolo")
    r2 = add_images(ws, [data / "pool" / "images"])
    r3 = add_images(ws, [data / "sequence" / "images"], sequence=True)
    console.print(f"labeled set: {r1.summary()}; pool: {r2.summary()}; sequence: {r3.summary()}")
    split = assign_splits(ws.store, val=0.2, test=0.2, seed=seed)
    console.print("split: " + ", ".join(f"{s} {n}" for s, n in split.totals.items()))
    dataset = export(ws, format="yolo", out=ws.exports_dir / "yolo-labeled")
    console.print(f"workspace: [bold]{ws.root}[/bold]")
    console.print(f"YOLO export: [bold]{dataset}[/bold]  (yolo train data={dataset / 'data.yaml'})")
    console.print(f"see it: boxloop -w {ws.root} status")
