"""Read a simulation CSV (strategy, seed, round, labeled_images, map50, map50_95) and sum it up
per strategy: mean ± std over seeds per round, and the labels needed to reach a share of the
best mAP, so the report can show whether active learning beat random picking.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, Problems
from ..simulate import SIMULATION_COLUMNS, SIMULATION_OPTIONAL
from .svg import PALETTE, Series, line_chart, standalone

__all__ = [
    "CHART_METRICS",
    "METRICS",
    "SIMULATION_COLUMNS",
    "CurvePoint",
    "Simulation",
    "SimulationRow",
    "curve_chart",
    "labels_to_reach",
    "read_simulation",
    "strategy_colors",
    "summarize",
    "write_plots",
]

log = logging.getLogger(__name__)

METRICS = ("map50", "map50_95")
CHART_METRICS = (("map50_95", "mAP50-95"), ("map50", "mAP50"))  # (column, label), in the order shown


@dataclass(frozen=True)
class SimulationRow:
    """One (strategy, seed, round) result; a metric left blank in the CSV is None."""

    strategy: str
    seed: int
    round: int
    labeled_images: int
    map50: float | None
    map50_95: float | None
    labeled_boxes: int | None = None  # None in a CSV written before the column was kept


@dataclass(frozen=True)
class CurvePoint:
    """One round of a strategy over its seeds: mean labeled images, mean and std of a metric."""

    round: int
    labeled_images: float
    mean: float
    std: float
    n: int


@dataclass
class Simulation:
    """The rows of a simulation CSV and the lines that were skipped."""

    path: Path
    rows: list[SimulationRow]
    problems: Problems = field(default_factory=Problems)

    @property
    def strategies(self) -> list[str]:
        """Strategy names in first-seen order."""
        return list(dict.fromkeys(r.strategy for r in self.rows))


def _metric(text: str) -> float | None:
    text = text.strip()
    if text == "":
        return None
    value = float(text)
    if not math.isfinite(value):
        return None
    return value


def _row(row: Mapping[str, str | None]) -> SimulationRow:
    strategy = (row["strategy"] or "").strip()
    if not strategy:
        raise ValueError("empty strategy")
    return SimulationRow(
        strategy=strategy,
        seed=int(row["seed"] or ""),
        round=int(row["round"] or ""),
        labeled_images=int(float(row["labeled_images"] or "")),
        labeled_boxes=int(float(row["labeled_boxes"])) if (row.get("labeled_boxes") or "").strip() else None,
        map50=_metric(row["map50"] or ""),
        map50_95=_metric(row["map50_95"] or ""),
    )


def read_simulation(path: str | Path) -> Simulation:
    """Parse a simulation CSV; a bad line is skipped and recorded with its line number."""
    path = Path(path)
    rows: list[SimulationRow] = []
    problems = Problems()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in SIMULATION_COLUMNS if c not in (reader.fieldnames or []) and c not in SIMULATION_OPTIONAL]
            if missing:
                raise InputError(
                    f"{path}: the simulation CSV lacks column(s) {', '.join(missing)}; "
                    f"expected {', '.join(SIMULATION_COLUMNS)}"
                )
            for row in reader:
                try:
                    rows.append(_row(row))
                except (TypeError, ValueError) as e:
                    problems.add(path, f"bad row skipped: {e}", reader.line_num)
    except OSError as e:
        raise InputError(f"{path}: cannot read the simulation CSV: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: the simulation CSV is not UTF-8 text: {e.reason}") from e
    for p in problems:
        log.warning("%s", p)
    return Simulation(path, rows, problems)


def summarize(rows: Sequence[SimulationRow], metric: str) -> dict[str, list[CurvePoint]]:
    """Per strategy, per round: mean labeled images and mean ± sample std of ``metric`` over seeds."""
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    groups: dict[str, dict[int, list[SimulationRow]]] = {}
    for r in rows:
        if getattr(r, metric) is not None:
            groups.setdefault(r.strategy, {}).setdefault(r.round, []).append(r)
    out: dict[str, list[CurvePoint]] = {}
    for strategy, by_round in groups.items():
        points = []
        for rnd in sorted(by_round):
            group = by_round[rnd]
            values = [float(getattr(r, metric)) for r in group]
            mean = sum(values) / len(values)
            std = (
                math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                if len(values) > 1 else 0.0
            )
            labeled = sum(r.labeled_images for r in group) / len(group)
            points.append(CurvePoint(rnd, labeled, mean, std, len(values)))
        points.sort(key=lambda p: (p.labeled_images, p.round))
        out[strategy] = points
    return out


def labels_to_reach(
    curves: Mapping[str, Sequence[CurvePoint]], *, fraction: float = 0.9
) -> tuple[float | None, dict[str, float | None]]:
    """(target, {strategy: labeled images at the first round whose mean reaches the target}),
    the target being ``fraction`` of the best mean over every strategy; None = never reached."""
    best = max((p.mean for pts in curves.values() for p in pts), default=None)
    if best is None or best <= 0:
        return None, {s: None for s in curves}
    target = fraction * best
    reached = {
        s: next((p.labeled_images for p in pts if p.mean >= target - 1e-12), None)
        for s, pts in curves.items()
    }
    return target, reached


def strategy_colors(strategies: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """Strategy → (colour, dashed): random is the grey dashed baseline; the others take
    palette colours in order."""
    out, k = {}, 0
    for s in strategies:
        if s.lower().startswith("random"):
            out[s] = ("#6b7785", True)
        else:
            out[s] = (PALETTE[k % len(PALETTE)], False)
            k += 1
    return out


def curve_chart(
    curves: Mapping[str, Sequence[CurvePoint]],
    label: str,
    colors: Mapping[str, tuple[str, bool]],
    *,
    guides: Sequence[tuple[float, str]] = (),
) -> str:
    """One SVG chart: ``label`` (mean over seeds, ± std band) against labeled images, a
    curve per strategy."""
    series = [
        Series(
            s, [p.labeled_images for p in pts], [p.mean for p in pts], colors[s][0],
            lo=[p.mean - p.std for p in pts], hi=[p.mean + p.std for p in pts], dashed=colors[s][1],
        )
        for s, pts in curves.items()
    ]
    return line_chart(series, x_label="labeled images", y_label=f"{label} (test split)",
                      title=f"{label} vs labeled images per strategy", y_max=1.0, guides=guides)


def write_plots(csv_path: str | Path, *, full_map50_95: float | None = None) -> list[Path]:
    """The simulation's curves as standalone SVG files beside its CSV
    (``<stem>_map50_95.svg``, ``<stem>_map50.svg``); with the full-data mAP50-95, its 90%
    target is drawn on the mAP50-95 chart. Returns the files written."""
    from ..atomic import write_text_atomic

    csv_path = Path(csv_path)
    sim = read_simulation(csv_path)
    colors = strategy_colors(sim.strategies)
    written = []
    for metric, label in CHART_METRICS:
        curves = summarize(sim.rows, metric)
        if not curves:
            continue
        guides: list[tuple[float, str]] = []
        if metric == "map50_95" and full_map50_95:
            guides = [(0.9 * full_map50_95, "90% of full-data mAP50-95")]
        path = csv_path.with_name(f"{csv_path.stem}_{metric}.svg")
        write_text_atomic(path, standalone(curve_chart(curves, label, colors, guides=guides)))
        written.append(path)
    return written
