"""Commands for the loop: round, history, release, simulate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from ._app import (
    WorkspaceOpt,
    acceptance_table,
    app,
    check_epochs_or_steps,
    console,
    open_workspace,
)
from .select import AggregationOpt


def _train_options(
    model: str | None, epochs: int | None, imgsz: int | None, batch: int | None, device: str | None,
    steps: int | None = None, tile: int | None = None,
) -> dict:
    from ..modeling import check_numbers

    check_epochs_or_steps(epochs, steps)
    check_numbers(epochs=epochs, steps=steps, imgsz=imgsz, batch=batch)
    opts = {"model": model, "epochs": epochs, "steps": steps, "imgsz": imgsz, "batch": batch, "device": device,
            "tile": tile}
    return {k: v for k, v in opts.items() if v is not None}


ModelOpt = Annotated[str | None, typer.Option(
    "--model", help='Model yaml (scratch), .pt weights, or "previous" to fine-tune the newest trained model (default: boxloop.toml).'
)]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs per round (default: boxloop.toml).")]
StepsOpt = Annotated[int | None, typer.Option(
    "--steps",
    help="Train about this many optimizer steps per round instead of --epochs: the epochs follow the label count, "
         "so a round with few labels trains as long as one with many.",
)]
ImgszOpt = Annotated[int | None, typer.Option("--imgsz", help="Training and inference image size.")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Training batch size.")]
TileOpt = Annotated[int | None, typer.Option(
    "--tile", min=32, help="Train on TILE x TILE crops (at least 32) at full resolution and predict by tiles: small "
    "objects in large pictures (default: boxloop.toml \\[train] tile).",
)]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, 0, 0,1 ...")]


@app.command("round")
def round_cmd(
    budget: Annotated[int | None, typer.Option("--budget", help="Images to select for labeling (default: boxloop.toml).")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help='Strategy or preset, e.g. least_confidence, or a weighted mix: "least_confidence:1, flicker:2".')] = None,
    push: Annotated[str, typer.Option("--push", help="Where the selection goes: labelstudio, files (a pre-labeled zip) or none.")] = "none",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the batch to be labeled (polling pull), then go on.")] = False,
    rounds: Annotated[int, typer.Option("--rounds", help="With --wait: how many rounds to run.")] = 1,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="With --wait: seconds between pulls (at least 0.1).")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the selection.")] = 0,
    aggregation: AggregationOpt = None,
    model: ModelOpt = None,
    epochs: EpochsOpt = None,
    steps: StepsOpt = None,
    imgsz: ImgszOpt = None,
    tile: TileOpt = None,
    batch: BatchOpt = None,
    device: DeviceOpt = None,
    allow_missing_classes: Annotated[bool, typer.Option(
        "--allow-missing-classes", help="Train even when a class has no labeled box yet (the rounds may bring some)."
    )] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train → evaluate → predict the pool → select → push. Re-run after an interruption to resume.

    With --push labelstudio the round first pulls what was labeled of earlier batches.

    Example: boxloop round --budget 50 --push labelstudio --wait --rounds 3
    """
    from ..ledger import describe_round, step_results
    from ..loop import RoundPlan, annotator_for, run_round

    annotator = annotator_for(push)
    if rounds > 1 and not wait:
        raise InputError(f"--rounds {rounds} needs --wait: a round's batch is labeled before the next round trains")
    if wait and annotator is None:
        raise InputError("--wait needs --push labelstudio or --push files: with --push none no batch goes out to wait for")
    ws = open_workspace(workspace)
    train = _train_options(model, epochs, imgsz, batch, device, steps, tile)
    if allow_missing_classes:
        train["allow_missing_classes"] = True
    if push == "labelstudio":
        from ..annotation.labelstudio import pull, resolve_token, resolve_url

        resolve_url(ws)  # a missing server or token fails before training, not after it
        resolve_token()
        if ws.store.tasks("labelstudio", status="open"):  # an earlier batch may be labeled by now: train on it
            from ..annotation.review import projects_to_pull

            for title in projects_to_pull(ws):
                console.print(f"before the round, from Label Studio: {escape(pull(ws, project=title).summary())}")
    _earlier_batch(ws, push, wait=wait, poll=poll)
    for i in range(rounds if wait else 1):
        plan = RoundPlan(
            budget=ws.config.select.budget if budget is None else budget, strategy=strategy, seed=seed + i,
            aggregation=aggregation, train=train, wait=wait, poll_seconds=poll,
        )
        rec = run_round(ws, plan, annotator=annotator, say=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(describe_round(ws.store, rec))
        steps = step_results(ws.store, rec.round)
        _say_where_the_batch_went(steps.get("push", {}).get("result"), waited=wait)
        if wait and i + 1 < rounds and not steps.get("select", {}).get("result", {}).get("selected"):
            console.print("nothing left to select: no more rounds (add images to go on)")
            break
    console.print(f"ledger: {ws.runs_dir / 'history.csv'}  (boxloop history, boxloop report)")


def _say_ratios(needed: dict[str, float | None]) -> None:
    """Each strategy's labels as a share of random's, where both reached the level."""
    base = next((n for s, n in needed.items() if s.lower().startswith("random")), None)
    for strategy, n in needed.items():
        if base and n is not None and not strategy.lower().startswith("random"):
            console.print(f"{strategy}: {n / base:.2f}x the labels random needed")


def _earlier_batch(ws: Any, push: str, *, wait: bool, poll: float) -> None:
    """Before a new round: a batch an earlier round (or `export --selection`) sent out that is
    not back would leave the round with no new labels to train on. With --wait, wait for it
    first (pulling it from Label Studio, or until `add labels` brings the zip back); else say so."""
    import time

    from ..annotation.files import batches_out
    from ..ledger import unfinished_round

    if unfinished_round(ws.store) is not None:
        return  # resuming a round: its own batch is waited for by its pull step

    def out(pulled: bool = True) -> int:
        if push == "labelstudio":
            from ..annotation.labelstudio import pull

            if not pulled:
                pull(ws)
            return sum(1 for t in ws.store.tasks("labelstudio", status="open") if not t["meta"].get("review"))
        return sum(batches_out(ws.store).values())

    left = out() if push in ("labelstudio", "files") else 0  # round_cmd pulled Label Studio just before
    if not left:
        return
    where = (", ".join(batches_out(ws.store)) if push == "files" else "Label Studio")
    if not wait:
        console.print(f"[yellow]note:[/yellow] {left} image(s) of an earlier batch are not back yet ({escape(where)}): "
                      "this round trains on the labels it has; bring them back first (boxloop add labels ZIP, or pull), "
                      "or give them up (boxloop release)")
        return
    how = ("bring it back corrected with `boxloop add labels ZIP` from another shell, or give it up with "
           "`boxloop release`" if push == "files" else "label it in Label Studio")
    console.print(f"waiting first for the {left} image(s) of the earlier batch ({escape(where)}): {how}; "
                  "Ctrl-C stops, and the same command goes on")
    while left:
        time.sleep(poll)
        now = out(pulled=False)
        if now != left:
            console.print(f"{now} image(s) of the earlier batch not back yet")
        left = now


def _say_where_the_batch_went(pushed: dict[str, Any] | None, *, waited: bool) -> None:
    """Where the round's push step (its ledger result) sent the batch, and how its labels come back."""
    if not pushed:
        return
    if "path" in pushed and waited:
        console.print(f"its batch went out as {escape(pushed['path'])} and came back")
    elif "path" in pushed:
        imputed = (f", {pushed['imputed']} box(es) the model lost on video frames drawn in (imputed.csv)"
                   if pushed.get("imputed") else "")
        console.print(f"batch to label: [bold]{escape(pushed['path'])}[/bold] ({pushed.get('pushed', '?')} images, "
                      f"pre-labeled{imputed}); correct it in any tool, then: boxloop add labels ZIP (the tool's "
                      "export as it is, or a folder)")
    elif "project_title" in pushed:
        where = (f"Label Studio project {escape(repr(pushed['project_title']))} (id {pushed.get('project_id')}) "
                 f"at {escape(str(pushed.get('url')))}")
        if waited:
            console.print(f"its batch went to {where} ({pushed.get('created', 0)} new task(s)), was labeled and pulled")
        else:
            console.print(f"batch in {where}: {pushed.get('created', 0)} new task(s); when they are labeled, the next "
                          "boxloop round pulls them first")


@app.command("release")
def release_cmd(
    batch: Annotated[str | None, typer.Argument(
        help="The exported batch to put back (the zip or folder name it went out as); without it, the batches out are listed.",
        show_default=False)] = None,
    all_batches: Annotated[bool, typer.Option("--all", help="Put back every exported batch out for labeling.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Put the images of an exported batch nobody will label back in the pool, so `select` may pick them again.

    A batch exported with `--selection` (or by `round --push files`) is out for labeling until its labels come back;
    released, its images are in the pool again, and labels brought back for them later still count what was done
    with the pre-labels. A Label Studio batch goes back by deleting its tasks there, then `boxloop pull`.

    Example: boxloop release round-3-prelabeled.zip
    Example: boxloop release --all
    """
    from ..annotation.files import batches_out, release

    ws = open_workspace(workspace)
    out = batches_out(ws.store)
    if batch is None and not all_batches:
        if not out:
            console.print("no exported batch is out for labeling")
            return
        t = Table(title="exported batches out for labeling")
        t.add_column("batch")
        t.add_column("images not back", justify="right")
        for name, n in out.items():
            t.add_row(escape(name), str(n))
        console.print(t)
        console.print("put one back: boxloop release NAME; all of them: boxloop release --all")
        return
    if batch is not None and all_batches:
        raise InputError("give a batch name or --all, not both")
    batch, n = release(ws.store, batch)
    console.print(f"{n} image(s) back in the pool" + (f" from {escape(batch)}" if batch else "")
                  + "; labels brought back for them later still count")


@app.command("history")
def history_cmd(
    as_csv: Annotated[bool, typer.Option("--csv", help="Print runs/history.csv (one row a round) instead of tables.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The round ledger: labels, model, mAP and pre-label acceptance per round.

    Example: boxloop history
    Example: boxloop history --csv | cut -d, -f1,6
    """
    from ..ledger import (
        history,
        models_outside_rounds,
        models_text,
        unfinished_round,
        where_it_stopped,
        write_history_csv,
    )

    ws = open_workspace(workspace)
    if as_csv:
        sys.stdout.write(write_history_csv(ws).read_text(encoding="utf-8"))
        return
    records = history(ws.store)
    if not records:
        console.print("no rounds yet: run `boxloop round` (or `boxloop train` and `boxloop evaluate`)")
        return
    console.print(_ledger_table("rounds", "round", records))
    outside = models_outside_rounds(ws.store)
    if outside:
        console.print(_ledger_table("models trained outside the rounds (`boxloop serve`, `boxloop train`)",
                                    "after\nround", outside))
        if any(r.map50 is None for r in outside):
            console.print("a model with no mAP was not evaluated: `boxloop evaluate --model VERSION`")
    back = [(str(r.round), r.acceptance) for r in records if r.acceptance]
    if back:
        console.print(acceptance_table("pre-labels of the batches that came back", back))
        whose = [f"round {r.round}: {models_text(r.prelabel_models)}" for r in records if r.acceptance and r.prelabel_models]
        if whose:
            console.print("whose pre-labels they were: " + escape("; ".join(whose)))
    if records[0].round == 0:
        console.print(
            "round 0: before the first `boxloop round`: the newest model trained then (its mAP where it was evaluated), "
            "the labels it had, and the batches that came back corrected"
        )
    if all(r.round == 0 for r in records):
        console.print("next: `boxloop round` (its line says what the labels bought since round 0)")
    unfinished = unfinished_round(ws.store)
    if unfinished is not None:
        console.print(f"[yellow]{escape(where_it_stopped(ws.store, unfinished))}[/yellow]")
    console.print(f"csv: {write_history_csv(ws)}")


def _ledger_table(title: str, first: str, records: list[Any]) -> Table:
    """Rounds (or models) with their labels, model, mAP and seconds, one row each."""
    t = Table(title=title)
    for col in (first, "labeled\nimages", "boxes", "model", "mAP50", "mAP50-95", "seconds"):
        t.add_column(col, justify="right", no_wrap=col != "model")
    for r in records:
        t.add_row(
            str(r.round), str(r.labeled_images), str(r.labeled_boxes), escape(r.model_version or "-"),
            "-" if r.map50 is None else f"{r.map50:.3f}", "-" if r.map50_95 is None else f"{r.map50_95:.3f}",
            f"{sum(r.seconds.values()):.0f}",
        )
    return t


@app.command("simulate")
def simulate_cmd(
    dataset: Annotated[Path, typer.Argument(help="A fully labeled YOLO folder (its test/ folder, if any, is the test split) or boxloop workspace.")],
    strategies: Annotated[str, typer.Option("--strategies", help="Comma-separated strategies; random is the baseline.")] = "random,least_confidence",
    initial: Annotated[int, typer.Option("--initial", help="Labeled images to start from.")] = 50,
    budget: Annotated[int, typer.Option("--budget", help="Images labeled per round.")] = 50,
    rounds: Annotated[int, typer.Option("--rounds", help="Batches of --budget each strategy labels after the initial set "
                                        "(it trains rounds + 1 models: on the initial set, then after each batch).")] = 5,
    seeds: Annotated[int, typer.Option("--seeds", help="Number of seeds (0..N-1).")] = 3,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the simulation workspaces and CSVs.")] = Path("simulation"),
    aggregation: AggregationOpt = None,
    model: ModelOpt = None,
    epochs: EpochsOpt = None,
    steps: StepsOpt = None,
    imgsz: ImgszOpt = None,
    tile: TileOpt = None,
    batch: BatchOpt = None,
    device: DeviceOpt = None,
    full_epochs: Annotated[int | None, typer.Option(
        "--full-epochs", help="Epochs for the full-data reference (default: --epochs); more when rounds warm-start.",
    )] = None,
    test_fraction: Annotated[float, typer.Option(
        "--test-fraction", min=0.01, max=0.9,
        help="Share of the dataset (0.01 to 0.9) drawn, seeded, as the test split every strategy is scored on, where the dataset "
        "has no test/ folder of its own.",
    )] = 0.2,
) -> None:
    """Hide the labels of a labeled dataset and let an oracle reveal them round by round.

    With --steps each round trains its model from the same start for the same number of
    optimizer steps, and the full-data reference is one more such training, on every label:
    the comparison the full-data mAP is fair for. With --model previous each round fine-tunes
    the last round's model (faster rounds); give the full-data reference more epochs with
    --full-epochs so it stays a fair ceiling. Run again with the same --out to resume, or
    with a larger --rounds to extend it.

    Example: boxloop simulate data/lcd --strategies random,least_confidence --initial 50 --budget 50 --rounds 5 --seeds 3
    """
    from ..simulate import MIN_REFERENCE_MAP, simulate

    strategy_list = [s.strip() for s in strategies.split(",") if s.strip()]
    train = _train_options(model, epochs, imgsz, batch, device, steps, tile)
    later = "round 2" if rounds == 1 else f"rounds 2 to {rounds + 1} each"
    console.print(f"each strategy and seed: round 1 trains on the {initial} initial labels, {later} after a batch "
                  f"of {budget}")
    full_train = None if full_epochs is None else _train_options(model, full_epochs, imgsz, batch, device, tile=tile)
    result = simulate(
        dataset, strategies=strategy_list, initial=initial, budget=budget, rounds=rounds, seeds=range(seeds), out=out,
        train=train, full_data_train=full_train, test_fraction=test_fraction,
        aggregation=aggregation, say=lambda m: console.print(f"[dim]{m}[/dim]"),
    )
    untrained = any(v < MIN_REFERENCE_MAP for v in result.full_map50_95.values())
    for strategy, n in result.labels_needed.items():
        boxes = result.boxes_needed.get(strategy)
        drawn = "" if n is None or boxes is None else f" ({boxes:.0f} boxes)"
        reached = "no level to reach" if untrained else "not reached" if n is None else f"{n:.0f} labels"
        console.print(f"{strategy}: {reached}{drawn} to 90% of full-data mAP50-95")
    _say_ratios(result.labels_needed)
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]")
    if result.best_map50_95 != result.full_map50_95:  # no ceiling: measure against the best model each seed's labels trained
        for strategy, n in result.labels_needed_best.items():
            console.print(f"{strategy}: {'not reached' if n is None else f'{n:.0f} labels'} to 90% of the best "
                          "model of each seed (the reference or a round)")
        _say_ratios(result.labels_needed_best)
    console.print(f"curves: {result.csv}\nsummary: {result.summary_csv}")
    for plot in result.plots:
        console.print(f"plot: {plot}")
