"""``boxloop select``: choose the images to label next, and say why each one was chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import BoxloopError
from ..scoring import SCORERS, SELECTORS, ScoreOptions
from ..scoring.pool import AGGREGATIONS
from ._app import (
    WorkspaceOpt,
    app,
    check_out,
    console,
    open_workspace,
    progress_bar,
    report_problems,
)
from .labelstudio import TokenOpt, UrlOpt

ModelVersionOpt = Annotated[
    str | None, typer.Option("--model-version", "-m", help="Whose predictions to score (default: the newest).")
]
AggregationOpt = Annotated[
    str | None, typer.Option("--aggregation", help=f"Per-image aggregation of box uncertainty: {', '.join(AGGREGATIONS)} "
                             "(default: \\[select] aggregation, max).")
]


@app.command("select")
def select_cmd(
    budget: Annotated[int | None, typer.Option("--budget", "-n", help="How many images to pick (default: \\[select] budget).")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy", "-s",
            help=("Weighted scorers, e.g. 'least_confidence:1,flicker:2', optionally ending in a selector "
                  f"({', '.join(SELECTORS)}), or a preset name from \\[select.presets]. "
                  f"Scorers: {', '.join(SCORERS)}."),
        ),
    ] = None,
    diverse: Annotated[
        bool | None,
        typer.Option("--diverse/--no-diverse", help="Prefer picks far from labeled images and each other (needs embeddings; "
                     "random alone stays a uniform sample: ask for \"random,diverse\").",
                     show_default=False),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed; the same seed gives the same selection.")] = None,
    model_version: ModelVersionOpt = None,
    aggregation: AggregationOpt = None,
    explain_id: Annotated[
        str | None, typer.Option("--explain", metavar="ID", help="Print why item ID (or image file name) was picked, then exit.")
    ] = None,
    selection_id: Annotated[
        str | None, typer.Option("--selection", help="With --explain: which selection (default: the newest).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the batch as a CSV to-label list (rank, image, score, why).")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Score the unlabeled pool and pick the images whose correction teaches the model most.

    Images tied at the pool's lowest score (no evidence: an early model finds no box in them)
    are never ranked: they fill what the scored images leave of the budget, sampled uniformly.

    Example: boxloop select --budget 50 --strategy "least_confidence:1,flicker:2" --diverse --seed 7
    """
    from ..selection import explain, select, write_selection_csv

    check_out(out)  # before the selection is saved
    ws = open_workspace(workspace)
    if explain_id is not None:
        console.print(explain(ws.store, explain_id, selection_id=selection_id), markup=False, highlight=False)
        return
    cfg = ws.config.select
    text = strategy or cfg.strategy
    text = cfg.presets.get(text, text)
    exclude = ws.store.skipped_item_ids() if ws.config.labelstudio.skipped == "skipped" else set()
    report = select(
        ws.store,
        budget=budget if budget is not None else cfg.budget,
        strategy=text,
        diverse=diverse if diverse is not None else (None if cfg.diverse else False),
        seed=seed,
        model_version=model_version,
        options=ScoreOptions(aggregation=aggregation or cfg.aggregation),
        exclude=exclude,
    )
    sel = report.selection
    table = Table(
        title=f"{len(sel.item_ids)} to label",
        caption=f"strategy {escape(sel.strategy)}, selector {sel.config.get('selector')}, "
                f"model {escape(str(sel.model_version))}, seed {sel.seed}; score: each scorer's rank in the pool "
                "(0-1, the share of the pool it beats, ties sharing the middle) times its weight, added up; mostly: the scorer that "
                "counts most, with its own value",
    )
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("image", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("mostly", overflow="fold")
    shown = ws.store.display_names(ws.store.items(sel.item_ids))  # a video frame by its video's name
    for rank, item_id in enumerate(sel.item_ids, 1):
        comps = sel.why[item_id].get("components", {})
        lead = max(comps.items(), key=lambda kv: kv[1]["weight"] * kv[1]["percentile"], default=None)
        reason = f"{lead[0]} {lead[1]['score']:.3g}" if lead else sel.why[item_id].get("selector", "")
        if sel.why[item_id].get("selector") == "uniform":
            reason = f"uniform sample ({reason}: no evidence to rank)"
        image = escape(shown[item_id])
        table.add_row(str(rank), escape(item_id), image, f"{sel.scores[item_id]:.3f}", escape(reason))
    console.print(table)
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    if report.imputed:
        n = sum(len(d) for d in report.imputed.values())
        console.print(f"{n} imputed box(es) on {len(report.imputed)} flickering frame(s) stored as pre-labels")
    if out is not None:
        console.print(f"to-label list: [bold]{escape(str(write_selection_csv(ws.store, sel, out)))}[/bold]")
    console.print(f"saved selection [bold]{escape(sel.id)}[/bold]; see why: boxloop select --explain ITEM_ID")


@app.command("audit")
def audit_cmd(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="A model version or weights file (default: the newest trained); "
                                 "with --folds, what the held-out models train from, as `train --model` (default: \\[train] model).")
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option("--folds", help="Audit every label: train this many held-out models, each on all labels but one "
                     "fold's, judging that fold (K trainings; kept in runs/audit-folds, reused while the labels stay). "
                     "--include-trained costs nothing more: try it first.",
                     show_default=False),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="With --folds: epochs per held-out model (default: \\[train]).",
                                               show_default=False)] = None,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="With --folds: training and prediction size (default: \\[train]).",
                                              show_default=False)] = None,
    conf: Annotated[float, typer.Option("--conf", help="How confident a model box must be to count against a label.")] = 0.5,
    loose_iou: Annotated[float, typer.Option("--loose-iou", help="A box of the right class under this IoU is loose.")] = 0.7,
    include_trained: Annotated[
        bool, typer.Option("--include-trained", help="Also audit the labels the model trained on (it tends to agree with them).")
    ] = False,
    top: Annotated[int, typer.Option("--top", "-n", help="Images to list (and to --zip).")] = 20,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write every suspect to this CSV.")] = None,
    zip_: Annotated[
        bool, typer.Option("--zip", help="Also export the listed images with their labels as a YOLO zip, to re-check in any tool.")
    ] = False,
    push: Annotated[
        str | None,
        typer.Option("--push", help="Send the listed images to be re-checked: labelstudio (a review project, labels drawn, "
                     "suspects noted; `boxloop pull` brings the corrections back) or files (as --zip).",
                     show_default=False),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="With --push labelstudio: the review project's title (default: the labeling "
                     "project's, then \" review\").", show_default=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="--zip/--push even when the model is too weak to judge (it finds nothing "
                           "like most labels): every image would be sent.")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Find likely label mistakes: the labeled images a model disagrees with most, most suspect first.

    A mistake is an object no label covers, a class the model reads otherwise, a loose box or
    a box on nothing. Audits the labels the model did not train on: the val and test splits,
    and labels made after its training began (a batch just pulled). With --folds K, every
    label, each judged by a held-out model trained without it.

    Example: boxloop audit --top 30 --out audit.csv --push labelstudio
    Example: boxloop audit --folds 5 --epochs 60 --out audit.csv
    """
    from ..audit import audit, audit_out_of_fold, write_audit_csv

    if top < 1:
        raise typer.BadParameter("--top must be at least 1")
    if push not in (None, "labelstudio", "files"):
        raise typer.BadParameter(f"--push must be labelstudio or files, got {push!r}")
    zip_ = zip_ or push == "files"
    if folds is None and (epochs is not None or imgsz is not None):
        raise typer.BadParameter("--epochs and --imgsz train held-out models: give --folds too")
    from ..modeling import check_numbers

    check_numbers(epochs=epochs, imgsz=imgsz)
    if push == "labelstudio":  # before the audit's work: a missing token says this command takes --token
        from ..annotation.labelstudio import resolve_token

        token = resolve_token(token, option="--token")
    check_out(out)
    ws = open_workspace(workspace)
    if folds is not None:
        train = {k: v for k, v in {"model": model, "epochs": epochs, "imgsz": imgsz}.items() if v is not None}
        per_fold = epochs if epochs is not None else ws.config.train.epochs
        total = folds * int(per_fold) if epochs is not None or not ws.config.train.steps else None
        with progress_bar("training held-out models (epochs)", total=total) as advance:
            done = [0]

            def on_epoch(epoch: int, _total: int) -> None:
                advance(max(epoch - done[0], 0))
                done[0] = epoch

            def say(text: str) -> None:  # a fold begins: its epochs count from 1
                done[0] = 0
                console.print(text)

            report = audit_out_of_fold(ws, folds=folds, conf=conf, loose_iou=loose_iou, say=say, on_epoch=on_epoch, **train)
    else:
        with progress_bar("predicting labeled images") as advance:
            report = audit(
                ws, model=model, conf=conf, loose_iou=loose_iou, include_trained=include_trained, progress=advance,
            )
    left_out = (
        f"; {report.trained_on} left out, the model trained on their labels (--include-trained)"
        if report.trained_on else ""
    )
    console.print(
        f"audited {report.audited} labeled image(s) against [bold]{report.model_version}[/bold]{left_out}"
    )
    if report.checked:
        console.print(f"{report.checked} image(s) a person re-checked at their current labels and kept were passed over")
    if not report.images:
        console.print("no disagreement at this --conf: the labels agree with the model")
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n)
    if report.too_weak():
        console.print(
            f"[yellow]the model finds nothing like {report.counts()['unsupported']} of the {report.boxes} labels: it is "
            "too weak yet to tell a mistake from an object it cannot see; train it longer or on more labels "
            "(with --folds: --epochs)[/yellow]"
        )
    console.print(f"{len(report.images)} image(s) with suspects ({counts}); the {min(top, len(report.images))} most suspect:")
    uris = {it.id: it.uri for it in ws.store.items([i for i, _, _ in report.images[:top]])}
    table = Table("rank", "image", "score", "suspects")
    for rank, (item_id, score, suspects) in enumerate(report.images[:top], 1):
        words = "; ".join(s.describe(ws.classes) for s in suspects[:3]) + (
            f"; and {len(suspects) - 3} more" if len(suspects) > 3 else ""
        )
        table.add_row(str(rank), escape(Path(uris[item_id]).name), f"{score:.2f}", escape(words))
    console.print(table)
    if out is not None:
        console.print(f"suspects: [bold]{escape(str(write_audit_csv(ws, report, out)))}[/bold]")
    if not zip_ and not push:
        seen = f"boxloop report --audit {escape(str(out))} (each drawn)" if out is not None else "--out audit.csv, then boxloop report --audit audit.csv (each drawn)"
        console.print(f"next: see them with {seen}; re-check them with --zip (any tool; boxloop add labels brings the "
                      "fixes back) or --push labelstudio (then boxloop pull)")
    if report.too_weak() and (zip_ or push) and not force:
        raise BoxloopError(
            "nothing exported or pushed: this model is too weak to judge the labels, so a reviewer would re-check "
            "objects it merely cannot see yet; train it longer or on more labels, or add --force to send them anyway"
        )
    if zip_:
        from ..export import export

        sent = [i for i, _, _ in report.images[:top]]
        path = export(ws, what="labeled", zip=True, ids=sent)
        ws.store.sent_to_check(sent)  # coming back unchanged, they count as re-checked
        console.print(
            f"to re-check: [bold]{escape(str(path))}[/bold]; bring the corrections back with "
            "`boxloop add labels ZIP` (a new label version; the old one is kept)"
        )
    if push == "labelstudio":
        from ..annotation.review import push_review

        review = push_review(ws, report, top=top, project=project, url=url, token=token)
        console.print(escape(review.summary()))
        console.print("next: fix the labels in that project (each suspect is noted on its box), then `boxloop pull`")
        report_problems(review.problems, strict=False, title="note(s)")
