"""``boxloop embed`` and ``boxloop score``: the heavy passes of predict and select on their
own, locally or over Ray (``--engine ray``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..scoring import SCORERS
from ._app import (
    StrictOpt,
    WorkspaceOpt,
    app,
    check_out,
    console,
    open_workspace,
    progress_bar,
    report_problems,
)
from .model import (
    DeviceOpt,
    EngineOpt,
    ImgszOpt,
    ItemsOpt,
    MissingOpt,
    ModelOpt,
    PredictBatchOpt,
    RayActorsOpt,
    RayAddressOpt,
    RuntimeOpt,
    quiet_ray,
)
from .select import AggregationOpt, ModelVersionOpt


@app.command("embed", on_interrupt="what was embedded is kept: `boxloop embed --missing` (with the same options) goes on where it stopped")
def embed_cmd(
    model: ModelOpt = None,
    scope: Annotated[
        str, typer.Option("--scope", help="Which items: all, unlabeled (the pool), labeled, train, val, test.")
    ] = "all",
    items: ItemsOpt = None,
    runtime: RuntimeOpt = None,
    device: DeviceOpt = None,
    imgsz: ImgszOpt = None,
    batch: PredictBatchOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
    missing: MissingOpt = False,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Store image embeddings only: the predict pass, keeping no boxes.

    Novelty and diversity compare the pool with the labeled training images; `predict` embeds
    them with the pool, `embed --scope labeled` does it for a model that predicted elsewhere
    (imported predictions, another machine).

    Example: boxloop embed --scope labeled
    Example: boxloop embed --engine ray --ray-address auto
    """
    from ..modeling import _scope_items, predict

    ws = open_workspace(workspace)
    ids = [i.strip() for i in items.split(",") if i.strip()] if items else None
    total = len(_scope_items(ws, scope, ids))
    quiet_ray(engine)
    with progress_bar("embedding", total=total) as advance:
        report = predict(
            ws, model=model, scope=scope, ids=ids, runtime=runtime, device=device, imgsz=imgsz, batch=batch,
            progress=advance, engine=engine, ray_address=ray_address, ray_actors=ray_actors, keep="embeddings",
            missing=missing,
        )
    console.print(report.summary())
    report_problems(report.problems, strict=strict)


@app.command("score")
def score_cmd(
    strategy: Annotated[
        str | None,
        typer.Option("--strategy", "-s", help=f"Weighted scorers, e.g. 'least_confidence:1,novelty:1' (default: \\[select] strategy). Scorers: {', '.join(SCORERS)}."),
    ] = None,
    model_version: ModelVersionOpt = None,
    aggregation: AggregationOpt = None,
    top: Annotated[int, typer.Option("--top", help="Rows to print (the CSV has every item).")] = 20,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="CSV to write (default: exports/scores-VERSION-TIME.csv).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random scorer.")] = 0,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Score the unlabeled pool with a strategy, without selecting; every item's scores go to a CSV.

    `boxloop select` picks from the same scores.

    Example: boxloop score --strategy "least_confidence:1,class_rarity:0.5" --top 10
    Example: boxloop score --engine ray --ray-address auto
    """
    from ..scoring import ScoreOptions
    from ..selection import score, write_scores_csv

    check_out(out)
    ws = open_workspace(workspace)
    cfg = ws.config.select
    text = strategy or cfg.strategy
    text = cfg.presets.get(text, text)
    exclude = ws.store.skipped_item_ids() if ws.config.labelstudio.skipped == "skipped" else set()
    quiet_ray(engine)
    report = score(
        ws.store, strategy=text, model_version=model_version, options=ScoreOptions(aggregation=aggregation or cfg.aggregation),
        seed=seed, exclude=exclude, engine=engine, ray_address=ray_address,
    )
    items = ws.store.items(ids=list(report.ids))
    uris = {it.id: it.uri for it in items}
    dest = out or ws.exports_dir / f"scores-{report.model_version}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    path = write_scores_csv(report, dest, uris=uris)
    names = list(report.raw)
    shown = ws.store.display_names(items)  # a video frame by its video's name
    table = Table(title=f"top {min(top, len(report.ids))} of {len(report.ids)} by {escape(report.strategy)}")
    table.add_column("#", justify="right")
    table.add_column("image")
    table.add_column("score", justify="right")
    for n in names:
        table.add_column(n, justify="right")
    for rank, i in enumerate(report.ranking()[: max(top, 0)], 1):
        table.add_row(
            str(rank), escape(shown.get(report.ids[i], report.ids[i])), f"{report.combined[i]:.3f}",
            *(f"{report.raw[n][i]:.3g}" for n in names),
        )
    console.print(table)
    if len(names) > 1:
        console.print("score: each scorer's rank in the pool (0-1, the share of the pool it beats, ties sharing the middle) times its weight, "
                      f"added up; the columns after it: each scorer's own value ({', '.join(map(escape, names))})")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    console.print(f"scored {len(report.ids)} item(s) on {report.engine} in {report.seconds:.2f} s; wrote {path}")
