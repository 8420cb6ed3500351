"""`boxloop report`: write the self-contained HTML report of the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import WorkspaceOpt, app, check_out, console, open_workspace


@app.command("report")
def report(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the HTML file (default: WORKSPACE/report.html).", show_default=False),
    ] = None,
    simulation: Annotated[
        Path | None,
        typer.Option("--simulation", help="A simulation CSV (strategy, seed, round, labeled_images, map50, map50_95) "
                     "to draw one curve per strategy against the random baseline.", show_default=False),
    ] = None,
    audit: Annotated[
        Path | None,
        typer.Option("--audit", help="An audit CSV (boxloop audit --out) to show the likely label mistakes, "
                     "each on its image.", show_default=False),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write one self-contained HTML report (rounds, curves, per-class AP, the selection with its
    why, the likely label mistakes with --audit, an embedding map) that opens offline; prints its path.

    Example: boxloop report --out report.html --simulation simulation/simulation.csv
    """
    from ..report import build_report

    check_out(out)
    ws = open_workspace(workspace)
    path = build_report(
        ws, out=out.absolute() if out is not None else None, simulation_csv=simulation, audit_csv=audit,
    )
    console.print(str(path), markup=False, highlight=False, soft_wrap=True)
