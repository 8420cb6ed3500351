"""Inline SVG charts for the report: line curves with bands, bars, stacked bars, scatter.

Every function returns one ``<svg>`` string with a viewBox (it scales to the page width),
axes with ticks, a legend where there is more than one series, and a ``<title>`` tooltip
on each mark. Text is escaped here, so callers pass plain strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "CHART_CSS",
    "MARKERS",
    "PALETTE",
    "ScatterPoint",
    "Series",
    "hbar_chart",
    "line_chart",
    "nice_ticks",
    "scatter_chart",
    "stacked_bar_chart",
    "standalone",
]

# Colour-blind-friendly (Okabe-Ito, reordered), then a few more for many classes.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442",
    "#882255", "#44AA99", "#999933", "#AA4499", "#332288",
)

# The charts' look, shared by the report page and the standalone .svg files.
CHART_CSS = """
svg.chart { width:100%; height:auto; display:block; max-width:900px; }
svg.chart .grid { stroke:#edf0f4; } svg.chart .axis { stroke:#9aa5b1; }
svg.chart .tick, svg.chart .legend, svg.chart .bar-value, svg.chart .bar-label { font-size:12px; fill:#3e4c59; }
svg.chart .legend-note { font-size:10.5px; fill:#66788a; font-style:italic; }
svg.chart .axis-title { font-size:12.5px; fill:#66788a; }
svg.chart .line { fill:none; stroke-width:2.4; stroke-linejoin:round; }
svg.chart .band { opacity:.16; stroke:none; }
svg.chart .marker { stroke:#fff; stroke-width:1.2; }
svg.chart .marker.hollow, svg.chart .legend-marker.hollow { stroke-width:1.8; }
svg.chart .dot { stroke:#fff; stroke-width:.6; opacity:.85; }
svg.chart .guide { stroke:#8a4b00; stroke-width:1.2; stroke-dasharray:3 3; }
svg.chart .guide-label { font-size:11px; fill:#8a4b00; }
"""

_W, _H = 720, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 170, 14, 46


@dataclass(frozen=True)
class Series:
    """One curve: points (xs, ys), an optional band (lo, hi) around it, a colour."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None
    dashed: bool = False


@dataclass(frozen=True)
class ScatterPoint:
    """One dot of a scatter plot, with its hover text."""

    x: float
    y: float
    color: str
    r: float = 3.0
    title: str = ""


def _f(v: float) -> str:
    """A coordinate with two decimals, the way SVG files stay small."""
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _fmt_tick(v: float, step: float) -> str:
    """A tick label with just the decimals the step needs (0.25 → two, 5 → none)."""
    decimals = 0
    while decimals < 8 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return f"{v:.{decimals}f}"


def nice_ticks(lo: float, hi: float, *, n: int = 5) -> tuple[float, float, list[float]]:
    """Round axis limits and evenly spaced ticks (1, 2, 2.5 or 5 times a power of ten)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw - 1e-12)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    count = round((stop - start) / step)
    ticks = [start + i * step for i in range(count + 1)]
    return start, stop, ticks


def _open(width: int, height: int, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>"
    )


def _axes(
    *,
    x0: float, x1: float, y0: float, y1: float,
    xticks: list[float], yticks: list[float],
    sx: object, sy: object,
    x_label: str, y_label: str,
    width: int, height: int, left: int, right: int, top: int, bottom: int,
    x_tick_labels: Sequence[str] | None = None,
) -> list[str]:
    """Grid lines, tick labels and axis titles for a plot area."""
    parts = []
    xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    for t in yticks:
        y = sy(t)  # type: ignore[operator]
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(y)}" y2="{_f(y)}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{_f(y + 4)}" text-anchor="end">{_fmt_tick(t, ystep)}</text>')
    for i, t in enumerate(xticks):
        x = sx(t)  # type: ignore[operator]
        label = x_tick_labels[i] if x_tick_labels is not None else _fmt_tick(t, xstep)
        parts.append(f'<line class="axis" x1="{_f(x)}" x2="{_f(x)}" y1="{height - bottom}" y2="{height - bottom + 4}"/>')
        parts.append(f'<text class="tick" x="{_f(x)}" y="{height - bottom + 17}" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}"/>')
    cx = (left + width - right) / 2
    parts.append(f'<text class="axis-title" x="{_f(cx)}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>')
    cy = (top + height - bottom) / 2
    parts.append(
        f'<text class="axis-title" x="14" y="{_f(cy)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_f(cy)})">{escape(y_label)}</text>'
    )
    return parts


def _legend(
    entries: Sequence[tuple[str, str, bool]], *, x: float, y: float,
    markers: Sequence[str | None] = (), dashes: Sequence[str | None] = (), notes: Sequence[str] = (),
) -> list[str]:
    """A column of (name, colour, dashed) swatches; long names are cut, the full one hovers.
    ``markers`` puts each entry's marker shape on its swatch, ``dashes`` a dash pattern of
    its own, ``notes`` a small line under it (e.g. which series it hides or is hidden by)."""
    parts = []
    yy = y
    for i, (name, color, dashed) in enumerate(entries):
        pattern = dashes[i] if i < len(dashes) and dashes[i] else ("5 3" if dashed else None)
        dash = f' stroke-dasharray="{pattern}"' if pattern else ""
        short = name if len(name) <= 20 else name[:19] + "…"
        shape = markers[i] if i < len(markers) else None
        mark = ""
        if shape:  # on the swatch, with no white edge (that reads as a gap in a solid line)
            hollow = bool(notes[i] if i < len(notes) else "")
            mark = _marker(shape, x + 11, yy, color, hollow=hollow).replace('class="marker', 'class="legend-marker', 1)
        note = notes[i] if i < len(notes) else ""
        tip = f"{name} ({note})" if note else name
        parts.append(
            f'<g class="legend-entry"><title>{escape(tip)}</title>'
            f'<line x1="{_f(x)}" x2="{_f(x + 22)}" y1="{_f(yy)}" y2="{_f(yy)}" stroke="{color}" stroke-width="3"{dash}/>'
            f'{mark}<text class="legend" x="{_f(x + 28)}" y="{_f(yy + 4)}">{escape(short)}</text>'
            + (f'<text class="legend-note" x="{_f(x + 28)}" y="{_f(yy + 17)}">{escape(_cut(note, 24))}</text>' if note else "")
            + "</g>"
        )
        yy += 34 if note else 20
    return parts


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# Marker shapes, one per series of a line chart, so that curves drawn over one another stay
# told apart: a diamond over a circle leaves the circle showing between its corners, etc.
MARKERS = ("circle", "diamond", "square", "triangle", "triangle-down")


def _marker(
    shape: str, cx: float, cy: float, color: str, *, r: float = 3.5, title: str = "", hollow: bool = False,
) -> str:
    """One marker of ``shape`` (:data:`MARKERS`) centred on (cx, cy), about ``r`` in radius;
    ``hollow``: an outline a bit larger, so a marker beneath it shows through."""
    tip = f"<title>{escape(title)}</title>" if title else ""
    if hollow:
        r *= 1.5
        paint = f'fill="none" style="stroke:{color}"'
        cls = "marker hollow"
    else:
        paint = f'fill="{color}"'
        cls = "marker"
    if shape == "circle":
        return (f'<circle class="{cls}" data-shape="circle" cx="{_f(cx)}" cy="{_f(cy)}" r="{_f(r)}" '
                f"{paint}>{tip}</circle>")
    if shape == "diamond":
        d = r * 1.3
        path = f"M{_f(cx)} {_f(cy - d)}L{_f(cx + d)} {_f(cy)}L{_f(cx)} {_f(cy + d)}L{_f(cx - d)} {_f(cy)}Z"
    elif shape == "square":
        a = r * 0.8
        path = f"M{_f(cx - a)} {_f(cy - a)}H{_f(cx + a)}V{_f(cy + a)}H{_f(cx - a)}Z"
    else:  # a triangle, pointing up or down
        d = r * 1.3 * (-1 if shape == "triangle-down" else 1)
        path = (f"M{_f(cx)} {_f(cy - d)}L{_f(cx + abs(d) * 0.95)} {_f(cy + d * 0.6)}"
                f"L{_f(cx - abs(d) * 0.95)} {_f(cy + d * 0.6)}Z")
    return f'<path class="{cls}" data-shape="{shape}" d="{path}" {paint}>{tip}</path>'


def _overlaps(series: Sequence[Series], sy: object, *, px: float = 1.5) -> list[tuple[int, bool] | None]:
    """For each series, the earlier one it is drawn over where every point of the two lies
    within ``px`` pixels (same x, nearly the same y), and whether their values are the same
    as shown (to 3 decimals); None where it hides no earlier series."""
    out: list[tuple[int, bool] | None] = []
    for j, s in enumerate(series):
        found = None
        for i in range(j):
            t = series[i]
            if list(t.xs) != list(s.xs):
                continue
            if all(abs(sy(a) - sy(b)) <= px for a, b in zip(t.ys, s.ys, strict=True)):  # type: ignore[operator]
                same = all(round(float(a), 3) == round(float(b), 3) for a, b in zip(t.ys, s.ys, strict=True))
                found = (i, same)
                break
        out.append(found)
    return out


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    title: str,
    y_max: float | None = None,
    guides: Sequence[tuple[float, str]] = (),
) -> str:
    """Curves of y against x, each with markers and an optional shaded band (mean ± std);
    ``guides`` are labeled horizontal lines (a target, a reference)."""
    series = [s for s in series if len(s.xs)]
    if not series:
        return ""
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for y in (*s.ys, *(s.hi or ()))] + [g for g, _ in guides]
    x0, x1, xticks = nice_ticks(min(0.0, min(xs)), max(xs))
    top = max(ys) if y_max is None else y_max
    y0, y1, yticks = nice_ticks(0.0, max(top, 1e-6))
    if y_max is not None and y_max <= 1.0 and y1 > 1.0:
        y1, yticks = 1.0, [t for t in yticks if t <= 1.0 + 1e-9]
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def sx(v: float) -> float:
        return _LEFT + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return _TOP + ph - (min(max(v, y0), y1) - y0) / (y1 - y0) * ph

    parts = [_open(_W, _H, title)]
    parts += _axes(x0=x0, x1=x1, y0=y0, y1=y1, xticks=xticks, yticks=yticks, sx=sx, sy=sy,
                   x_label=x_label, y_label=y_label, width=_W, height=_H,
                   left=_LEFT, right=_RIGHT, top=_TOP, bottom=_BOTTOM)
    for value, label in guides:
        y = sy(value)
        parts.append(
            f'<g><title>{escape(label)}: {value:.3f}</title>'
            f'<line class="guide" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<text class="guide-label" x="{_W - _RIGHT - 4}" y="{_f(y - 4)}" text-anchor="end">{escape(label)}</text></g>'
        )
    for s in series:
        if s.lo is not None and s.hi is not None and len(s.xs) > 1:
            upper = [f"{_f(sx(x))},{_f(sy(y))}" for x, y in zip(s.xs, s.hi, strict=True)]
            lower = [f"{_f(sx(x))},{_f(sy(y))}" for x, y in zip(reversed(s.xs), reversed(s.lo), strict=True)]
            parts.append(
                f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{s.color}">'
                f"<title>{escape(s.name)}: mean ± std</title></polygon>"
            )
    # A series drawn over an earlier one with the same values would hide it whole: it is drawn
    # dashed (the one beneath shows in the gaps) and the legend says which it covers; each
    # series has a marker shape of its own, so the points of both stay visible too.
    overlaps = _overlaps(series, sy)
    shapes = [MARKERS[k % len(MARKERS)] for k in range(len(series))]
    dashes: list[str | None] = []
    notes: list[str] = []
    for s, over in zip(series, overlaps, strict=True):
        if over is None:
            dashes.append("6 4" if s.dashed else None)
            notes.append("")
        else:
            dashes.append("2 5" if s.dashed else "7 6")
            below = series[over[0]].name
            notes.append(f"same values as {below}" if over[1] else f"overlaps {below}")
    for k, s in enumerate(series):
        pts = " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in zip(s.xs, s.ys, strict=True))
        dash = f' stroke-dasharray="{dashes[k]}"' if dashes[k] else ""
        over_attr = f' data-overlaps="{escape(series[overlaps[k][0]].name)}"' if overlaps[k] else ""  # type: ignore[index]
        parts.append(f'<polyline class="line" points="{pts}" stroke="{s.color}"{dash}{over_attr}/>')
        for i, (x, y) in enumerate(zip(s.xs, s.ys, strict=True)):
            band = ""
            if s.lo is not None and s.hi is not None:
                band = f" ± {(s.hi[i] - s.lo[i]) / 2:.3f}"
            parts.append(_marker(shapes[k], sx(x), sy(y), s.color, title=f"{s.name}: {x:g} → {y:.3f}{band}",
                                 hollow=overlaps[k] is not None))
    parts += _legend([(s.name, s.color, s.dashed) for s in series], x=_W - _RIGHT + 18, y=_TOP + 10,
                     markers=shapes, dashes=dashes, notes=notes)
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    rows: Sequence[tuple[str, float | None]],
    *,
    title: str,
    max_value: float = 1.0,
    color: str = PALETTE[0],
) -> str:
    """Horizontal bars, one per (label, value); a value of None reads "n/a" with no bar."""
    if not rows:
        return ""
    row_h, label_w, value_w, width = 24, 150, 60, 720
    top, bottom = 8, 30
    height = top + bottom + row_h * len(rows)
    bar_w = width - label_w - value_w
    _, x1, ticks = nice_ticks(0.0, max_value)

    def sx(v: float) -> float:
        return label_w + max(0.0, min(v, x1)) / x1 * bar_w

    parts = [_open(width, height, title)]
    base = top + row_h * len(rows)
    for t in ticks:
        parts.append(f'<line class="grid" x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{top}" y2="{base}"/>')
        parts.append(f'<text class="tick" x="{_f(sx(t))}" y="{base + 16}" text-anchor="middle">{_fmt_tick(t, ticks[1] - ticks[0] if len(ticks) > 1 else 1)}</text>')
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(
            f'<text class="bar-label" x="{label_w - 8}" y="{y + row_h / 2 + 4}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
        )
        if value is None or not math.isfinite(value):
            parts.append(f'<text class="bar-value muted" x="{label_w + 4}" y="{y + row_h / 2 + 4}">n/a</text>')
            continue
        w = sx(value) - label_w
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{_f(max(w, 0.5))}" height="{row_h - 8}" '
            f'rx="2" fill="{color}"><title>{escape(label)}: {value:.3f}</title></rect>'
        )
        parts.append(f'<text class="bar-value" x="{_f(label_w + w + 6)}" y="{y + row_h / 2 + 4}">{value:.3f}</text>')
    parts.append(f'<line class="axis" x1="{label_w}" x2="{label_w}" y1="{top}" y2="{base}"/>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar_chart(
    categories: Sequence[str],
    layers: Sequence[tuple[str, Sequence[float], str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Vertical bars per category, stacked from ``layers`` of (name, values, colour)."""
    if not categories or not layers:
        return ""
    totals = [sum(layer[1][i] for layer in layers) for i in range(len(categories))]
    _, y1, yticks = nice_ticks(0.0, max(max(totals), 1.0))
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = pw / len(categories)
    bar = min(56.0, slot * 0.6)

    def sx(i: float) -> float:
        return _LEFT + slot * (i + 0.5)

    def sy(v: float) -> float:
        return _TOP + ph - v / y1 * ph

    parts = [_open(_W, _H, title)]
    parts += _axes(x0=0, x1=1, y0=0, y1=y1, xticks=list(range(len(categories))), yticks=yticks,
                   sx=sx, sy=sy, x_label=x_label, y_label=y_label, width=_W, height=_H,
                   left=_LEFT, right=_RIGHT, top=_TOP, bottom=_BOTTOM, x_tick_labels=list(categories))
    for i, cat in enumerate(categories):
        acc = 0.0
        for name, values, color in layers:
            v = float(values[i])
            if v <= 0:
                continue
            share = f" ({v / totals[i]:.0%})" if totals[i] else ""
            parts.append(
                f'<rect class="bar" x="{_f(sx(i) - bar / 2)}" y="{_f(sy(acc + v))}" width="{_f(bar)}" '
                f'height="{_f(sy(acc) - sy(acc + v))}" fill="{color}">'
                f"<title>{escape(cat)}: {escape(name)} {v:g}{share}</title></rect>"
            )
            acc += v
        parts.append(f'<text class="tick" x="{_f(sx(i))}" y="{_f(sy(acc) - 5)}" text-anchor="middle">{acc:g}</text>')
    parts += _legend([(name, color, False) for name, _, color in layers], x=_W - _RIGHT + 18, y=_TOP + 10)
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(
    points: Sequence[ScatterPoint],
    *,
    title: str,
    x_label: str,
    y_label: str,
    legend: Sequence[tuple[str, str]],
) -> str:
    """Dots at (x, y), drawn in the order given (later on top), each with a hover title."""
    if not points:
        return ""
    xs, ys = [p.x for p in points], [p.y for p in points]
    x0, x1, xticks = nice_ticks(min(xs), max(xs))
    y0, y1, yticks = nice_ticks(min(ys), max(ys))
    width, height = _W, 440
    pw, ph = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def sx(v: float) -> float:
        return _LEFT + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return _TOP + ph - (v - y0) / (y1 - y0) * ph

    parts = [_open(width, height, title)]
    parts += _axes(x0=x0, x1=x1, y0=y0, y1=y1, xticks=xticks, yticks=yticks, sx=sx, sy=sy,
                   x_label=x_label, y_label=y_label, width=width, height=height,
                   left=_LEFT, right=_RIGHT, top=_TOP, bottom=_BOTTOM)
    for p in points:
        tip = f"<title>{escape(p.title)}</title>" if p.title else ""
        parts.append(
            f'<circle class="dot" cx="{_f(sx(p.x))}" cy="{_f(sy(p.y))}" r="{_f(p.r)}" fill="{p.color}">{tip}</circle>'
        )
    parts += _legend([(name, color, False) for name, color in legend], x=width - _RIGHT + 18, y=_TOP + 10)
    parts.append("</svg>")
    return "".join(parts)


def standalone(svg: str) -> str:
    """A chart from this module as a file of its own: XML declaration, the chart styles
    inside it and a white background, so it looks the same opened alone or in a document."""
    head, sep, rest = svg.partition(">")
    if not sep or not head.startswith("<svg"):
        raise ValueError("not an <svg> element from boxloop.report.svg")
    _, _, size = head.partition('viewBox="0 0 ')
    width, height = size.split('"', 1)[0].split()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'{head} width="{width}" height="{height}">'
        # opened alone the chart keeps its own size (the page's rule is a fluid width)
        f"<style>{CHART_CSS}svg.chart:root {{ width:{width}px; height:{height}px; max-width:none; font-family:system-ui,'Segoe UI',Roboto,Arial,sans-serif; }}</style>"
        '<rect width="100%" height="100%" fill="#fff"/>'
        f"{rest}\n"
    )
