"""Commands for the Label Studio round trip: labelstudio connect, push, pull."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ._app import (
    BoxloopTyper,
    WorkspaceOpt,
    app,
    console,
    open_workspace,
    progress_disabled,
    report_problems,
)

ls_app = BoxloopTyper(no_args_is_help=True, help="Connect the workspace to a Label Studio server.")
app.add_typer(ls_app, name="labelstudio")

TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Label Studio API token (default: the LABEL_STUDIO_API_KEY environment variable). Never stored.",
        show_default=False,
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="Label Studio URL (default: \\[labelstudio] url, or the one `labelstudio connect` saved).",
                 show_default=False),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", help="Label Studio project title or id, for this push only (default: \\[labelstudio] project, "
                 "else the project a plain push went to, else the workspace name).", show_default=False),
]
PullProjectOpt = Annotated[
    str | None,
    typer.Option("--project", help="Label Studio project title or id to pull alone (default: the default project, every "
                 "other project with tasks open, and the review project).", show_default=False),
]


@ls_app.command("connect")
def connect_cmd(
    url: Annotated[str, typer.Option("--url", help="Where Label Studio answers, e.g. http://127.0.0.1:8080.")],
    token: TokenOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Check the server and the token, and remember the URL (never the token).

    Example: LABEL_STUDIO_API_KEY=... boxloop labelstudio connect --url http://127.0.0.1:8080
    """
    from ..annotation.labelstudio import connect, resolve_token

    ws = open_workspace(workspace)
    info = connect(ws, url=url, token=resolve_token(token, option="--token"))
    console.print(f"connected to Label Studio {info['version']} at {info['url']} as {info['user']}")


@app.command("push")
def push_cmd(
    selection: Annotated[str, typer.Option("--selection", help="Selection id, or latest.")] = "latest",
    project: ProjectOpt = None,
    with_imputed: Annotated[
        bool, typer.Option("--with-imputed/--without-imputed",
                           help="Pre-draw, flagged, the boxes flicker scoring imputed from neighbouring video frames.")
    ] = True,
    min_confidence: Annotated[
        float | None,
        typer.Option("--min-confidence", help='Pre-label only boxes at or above this confidence (default: \\[labelstudio] prelabel_conf; "auto": the threshold `evaluate` found saves the most drawing, else 0.25).',
                     show_default=False),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Send the selected images to Label Studio, pre-labeled, in active-learning order.

    Sort the Data Manager by prediction score to label the most useful images first.
    Pushing again adds no duplicate task; a newer model version adds its pre-labels; images
    labeled since the selection was made stay out. --project sends this batch elsewhere and
    leaves the default project as it is.

    Example: boxloop push --selection latest --project lcd-round-1
    """
    from ..annotation.labelstudio import push, resolve_token

    ws = open_workspace(workspace)
    token = resolve_token(token, option="--token")
    report = push(ws, selection=selection, project=project, url=url, token=token,
                  with_imputed=with_imputed, prelabel_conf=min_confidence)
    console.print(escape(report.summary()))
    report_problems(report.problems, strict=False, title="note(s)")


@app.command("pull")
def pull_cmd(
    project: PullProjectOpt = None,
    add_classes: Annotated[
        bool, typer.Option("--add-classes", help="Add label names the project uses but boxloop lacks as new classes.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any annotation needed a note.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Bring the corrected boxes back from Label Studio as new human label versions.

    Reads the default project, every other project boxloop has tasks open in, and the review
    project. Safe to interrupt and run again. Shows how many pre-labels were accepted, adjusted,
    deleted, and how many boxes were added by hand.

    Example: boxloop pull
    """
    from ..annotation.labelstudio import pull, resolve_token
    from ..annotation.review import projects_to_pull
    from ..errors import Problems

    ws = open_workspace(workspace)
    token = resolve_token(token, option="--token")
    reports = []
    for title in [project] if project else projects_to_pull(ws):
        if progress_disabled():
            reports.append(pull(ws, project=title, url=url, token=token, add_classes=add_classes))
        else:
            with console.status("pulling from Label Studio"):
                reports.append(pull(ws, project=title, url=url, token=token, add_classes=add_classes))
        console.print(escape(reports[-1].summary()))
    if any(r.labeled or r.updated for r in reports):
        console.print(
            "next: boxloop audit (the model that pre-labeled them finds likely mistakes among them), "
            "then boxloop round (trains on them, then picks the next batch)"
        )
    elif any(r.corrected for r in reports):
        console.print("next: boxloop round (trains on the corrected labels, then picks the next batch)")
    elif sum(r.open for r in reports):
        console.print(f"next: label the {sum(r.open for r in reports)} open task(s) in Label Studio, then pull again")
    problems = Problems()
    for r in reports:
        problems.extend(r.problems)
    report_problems(problems, strict=strict, title="note(s)")
