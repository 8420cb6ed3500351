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
    labeled: Annotated[int, typer.Option("--labeled", min=5, help="Images a person has already drawn, at least 5 (the seed set; train, val and test each take some).")] = 60,
    pool: Annotated[int, typer.Option("--pool", help="Unlabeled images to choose from.")] = 240,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated data.")] = 0,
    rounds: Annotated[int, typer.Option("--rounds", help="Active-learning rounds (an oracle labels each batch); 0 = stop after export.")] = 2,
    budget: Annotated[int, typer.Option("--budget", help="Images labeled per round.")] = 40,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs per round (tiny model, CPU).")] = 30,
    imgsz: Annotated[int, typer.Option("--imgsz", help="Training image size.")] = 224,
) -> None:
    """Generate LCD digits, build a workspace, run rounds with an oracle annotator, write the report.

    Example: boxloop demo --out demo-out --rounds 2
    """
    from ..export import export
    from ..ingest import add_images, add_labels
    from ..split import assign_splits
    from ..synth import CLASSES, generate_images, generate_sequence
    from ..workspace import Workspace

    out = out.absolute()
    data = out / "data"
    console.print(f"generating {labeled} labeled + {pool} pool images and a frame sequence in {data}")
    # three streams a seed, none shared with another seed's (seed 1's labeled images were seed 0's pool)
    generate_images(data / "labeled", n=labeled, seed=3 * seed)
    generate_images(data / "pool", n=pool, seed=3 * seed + 1)
    generate_sequence(data / "sequence", n_frames=30, seed=3 * seed + 2)
    if generate_only:
        console.print(f"data: [bold]{data}[/bold] (YOLO layout: images/, labels/, data.yaml)")
        return
    existed = (out / "workspace" / "boxloop.toml").is_file()
    ws = Workspace.init(out / "workspace", classes=CLASSES)
    if existed:
        console.print(f"{ws.root} exists: its labels and rounds are kept and the rounds go on from there "
                      f"(remove {out} for a fresh start)")
    r1 = add_labels(ws, data / "labeled", format="yolo")
    r2 = add_images(ws, [data / "pool" / "images"])
    r3 = add_images(ws, [data / "sequence" / "images"], sequence=True)
    console.print(f"labeled set: {r1.summary()}; pool: {r2.summary()}; sequence: {r3.summary()}")
    split = assign_splits(ws.store, val=0.2, test=0.2, seed=seed)
    console.print("split: " + ", ".join(f"{s} {n}" for s, n in split.totals.items()))
    dataset = export(ws, format="yolo", out=ws.exports_dir / "yolo-labeled")
    console.print(f"workspace: [bold]{ws.root}[/bold]")
    console.print(f"YOLO export: [bold]{dataset}[/bold]  (yolo train data={dataset / 'data.yaml'})")
    if rounds > 0:
        _rounds(ws, data, rounds=rounds, budget=budget, epochs=epochs, imgsz=imgsz, seed=seed)
    from ..report import build_report

    report = build_report(ws)
    console.print(f"see it: boxloop -w {ws.root} status   |   boxloop -w {ws.root} history")
    console.print(f"report: [bold]{report}[/bold]")


def _rounds(ws, data: Path, *, rounds: int, budget: int, epochs: int, imgsz: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Rounds where an oracle (the generator's exact boxes) plays the person correcting pre-labels."""
    import tempfile

    from ..ingest import add_labels
    from ..ledger import describe_round
    from ..loop import Oracle, RoundPlan, run_round
    from ..synth import DIGITS_TRAIN
    from ..workspace import Workspace

    # frames are items by (sequence, index), stills by content: match the truth by content
    with tempfile.TemporaryDirectory(prefix="boxloop-demo-truth-") as tmp:
        truth_ws = Workspace.init(Path(tmp) / "truth", classes=ws.classes)
        add_labels(truth_ws, data / "pool", format="yolo")
        add_labels(truth_ws, data / "sequence", format="yolo")
        by_sha = {truth_ws.store.get_item(i).sha256: d for i, d in truth_ws.store.latest_labels().items()}
        truth_ws.close()
    truth = {it.id: by_sha[it.sha256] for it in ws.store.items() if it.sha256 in by_sha}
    # a small seed set may lack a digit: train without it until the oracle's batches bring one
    train = {**DIGITS_TRAIN, "model": "previous", "scratch": DIGITS_TRAIN["model"], "epochs": epochs, "imgsz": imgsz,
             "allow_missing_classes": True}
    for r in range(rounds):
        plan = RoundPlan(budget=budget, strategy="least_confidence:1", seed=seed + r, train=train)
        rec = run_round(ws, plan, annotator=Oracle(truth), say=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(describe_round(ws.store, rec))
    final = run_round(ws, RoundPlan(budget=0, train=train), say=lambda m: console.print(f"[dim]{m}[/dim]"))
    console.print(f"{describe_round(ws.store, final)} (trained on the last batch; nothing selected)")
