"""The selection gallery: base64 JPEG thumbnails with predicted boxes drawn over them as SVG,
and the why of each pick rendered generically (component scores, text, nested values).
"""

from __future__ import annotations

import base64
import io
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..types import Detections, Item, Selection
from .svg import PALETTE

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "ItemState", "batch_summary", "card", "format_value", "selection_states", "thumbnail_data_uri", "why_html",
]

log = logging.getLogger(__name__)

THUMB_SIZE = 256
MIN_CONFIDENCE = 0.25


def thumbnail_data_uri(uri: str, *, size: int = THUMB_SIZE, quality: int = 82) -> str:
    """A ``data:image/jpeg;base64,…`` thumbnail of an image as displayed (EXIF applied),
    at most ``size`` pixels on its longer side."""
    from PIL import Image

    from ..sources.images import load_image

    im = Image.fromarray(load_image(uri, at_least=size))
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def format_value(value: Any, *, depth: int = 0) -> str:
    """A why value as short plain text: floats to 3 decimals, dicts and lists compactly."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= 160 else value[:159] + "…"
    if depth >= 2:
        return "…"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {format_value(v, depth=depth + 1)}" for k, v in list(value.items())[:8])
        more = ", …" if len(value) > 8 else ""
        return "{" + inner + more + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(format_value(v, depth=depth + 1) for v in value[:8])
        more = ", …" if len(value) > 8 else ""
        return "[" + inner + more + "]"
    try:  # numpy scalars and the like
        return format_value(float(value), depth=depth)
    except (TypeError, ValueError):
        return str(value)[:160]


def why_html(
    why: Mapping[str, Any], classes: Sequence[str] = (), *, alpha: Any = None, file_names: Mapping[str, str] | None = None
) -> str:
    """The why of one pick: in words where ``select`` saved it (as ``select --explain`` says
    it), else a definition list of its keys and values (escaped)."""
    if not why:
        return '<p class="muted small">no why recorded</p>'
    if "components" in why:
        from ..selection import why_lines

        try:
            lines = why_lines(why, classes, alpha=alpha, file_names=file_names)
        except (KeyError, TypeError, ValueError):  # a why saved by an older boxloop: shown as it is
            lines = []
        if lines:
            items = "".join(f"<li>{escape(line.strip())}</li>" for line in lines)
            return f'<ul class="why words">{items}</ul>'
    rows = "".join(
        f"<dt>{escape(str(k))}</dt><dd>{escape(format_value(v))}</dd>" for k, v in why.items()
    )
    return f'<dl class="why">{rows}</dl>'


def _boxes_svg(item: Item, detections: Detections | None, classes: Sequence[str]) -> tuple[str, int]:
    """Boxes (confidence ≥ MIN_CONFIDENCE) in the item's displayed pixel frame, as an SVG that
    lies over the thumbnail; returns the SVG and the number of boxes drawn."""
    if detections is None or not len(detections):
        return "", 0
    if detections.confidence is not None:
        detections = detections[detections.confidence >= MIN_CONFIDENCE]
    if not len(detections):
        return "", 0
    w, h = max(1, item.width), max(1, item.height)
    # Text is sized in the item's pixels; cards are of one width, so scale by the width
    # for ~11 px on a card as wide as a thumbnail.
    font = w / THUMB_SIZE * 11
    parts = [
        f'<svg class="boxes" viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    # Most confident last, so it is drawn on top.
    conf_all = detections.confidence
    order = list(range(len(detections)))
    if conf_all is not None:
        order.sort(key=lambda i: float(conf_all[i]))
    for i in order:
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        cid = int(detections.class_id[i])
        name = classes[cid] if 0 <= cid < len(classes) else str(cid)
        color = PALETTE[cid % len(PALETTE)]
        conf = "" if detections.confidence is None else f" {float(detections.confidence[i]):.2f}"
        label = escape(f"{name}{conf}")
        # The tag sits above the box, or inside its top edge when the box touches the top.
        tag_h = font * 1.35
        tag_y = y1 - tag_h if y1 >= tag_h else y1
        tag_w = font * (0.62 * len(f"{name}{conf}") + 0.6)
        parts.append(
            f'<g><title>{label}</title>'
            f'<rect class="box" x="{x1:.1f}" y="{y1:.1f}" width="{max(0.0, x2 - x1):.1f}" height="{max(0.0, y2 - y1):.1f}" '
            f'fill="none" stroke="{color}" stroke-width="2" vector-effect="non-scaling-stroke"/>'
            f'<rect class="tag" x="{x1:.1f}" y="{tag_y:.1f}" width="{tag_w:.1f}" height="{tag_h:.1f}" fill="{color}"/>'
            f'<text x="{x1 + font * 0.3:.1f}" y="{tag_y + font * 1.0:.1f}" font-size="{font:.1f}" '
            f'class="box-label">{label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts), len(detections)


@dataclass(frozen=True)
class ItemState:
    """What became of one picked image, now: ``key`` one of ``labeled`` (labeled since it was
    picked), ``labeled_before``, ``out`` (out for labeling), ``skipped``, ``released`` (back in
    the pool: its batch was released, or its pre-labels only offered), ``pool`` (in the pool,
    no task out for it); ``text`` says it on the card, ``detail`` in its hover text."""

    key: str
    text: str
    detail: str = ""


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _where(tool: str, project: str) -> str:
    if tool == "labelstudio":
        return f"in Label Studio (project {project})"
    if tool == "files":
        return f"in the exported batch {project}"
    return f"in {tool} ({project})"


def selection_states(store: Store, ids: Sequence[str], *, selected_at: float | None) -> dict[str, ItemState]:
    """The state now of each of ``ids`` (items of a selection made at ``selected_at``, a
    time.time(); None when unknown), as the store tells it: human labels first, then the
    item's annotation tasks (``open``: out for labeling; ``skipped``; ``offered``: back in the
    pool), else in the pool with nothing out."""
    from ..annotation.files import TOOL as FILES
    from ..annotation.labelstudio import TOOL as LABELSTUDIO

    states: dict[str, ItemState] = {}
    for item_id in ids:
        versions = store.label_versions(item_id)
        if versions:
            after = [v for v in versions if selected_at is None or v["created_at"] >= selected_at]
            if after:
                first = after[0]
                rnd = f", round {first['round']}" if first.get("round") else ""
                states[item_id] = ItemState(
                    "labeled", f"labeled since {_when(first['created_at'])}",
                    f"came back labeled ({first['source']}{rnd}); {len(versions)} label version(s)",
                )
            else:
                states[item_id] = ItemState(
                    "labeled_before", "labeled (before it was picked)",
                    f"labeled {_when(versions[-1]['created_at'])}, before this selection was made",
                )
            continue
        tasks = [t for tool in (FILES, LABELSTUDIO) for t in store.tasks(tool, item_id=item_id)]
        tasks = [t for t in tasks if not t["meta"].get("review")]
        by_status: dict[str, dict[str, Any]] = {}
        for t in sorted(tasks, key=lambda t: t["pushed_at"]):
            by_status[t["status"]] = t  # the newest of each status
        if "open" in by_status:
            t = by_status["open"]
            states[item_id] = ItemState(
                "out", "out for labeling", f"{_where(t['tool'], t['project'])} since {_when(t['pushed_at'])}",
            )
        elif "skipped" in by_status:
            t = by_status["skipped"]
            states[item_id] = ItemState(
                "skipped", "skipped by the annotator", f"skipped {_where(t['tool'], t['project'])}; no labels",
            )
        elif "offered" in by_status and by_status["offered"]["meta"].get("skipped"):
            t = by_status["offered"]
            states[item_id] = ItemState(
                "released", "back in the pool",
                f"skipped in {_where(t['tool'], t['project'])}, and back in the pool ([labelstudio] skipped = "
                '"pool"); select may pick it again',
            )
        elif "offered" in by_status:
            t = by_status["offered"]
            states[item_id] = ItemState(
                "released", "back in the pool",
                f"not out for labeling: {_where(t['tool'], t['project'])} was released (boxloop release) or "
                "only offered pre-labels; select may pick it again",
            )
        else:
            states[item_id] = ItemState(
                "pool", "in the pool, not out for labeling",
                "no labels, and no task out in an annotation tool for it",
            )
    return states


def batch_summary(states: Mapping[str, ItemState], total: int) -> tuple[str, bool]:
    """What became of a selection of ``total`` items, in words (``5 of 5 came back labeled``),
    and whether it is still the batch to label (nothing of it labeled, skipped or released)."""
    counts: dict[str, int] = {}
    for st in states.values():
        counts[st.key] = counts.get(st.key, 0) + 1
    words = {
        "labeled": "came back labeled", "labeled_before": "were labeled before it was picked",
        "out": "out for labeling", "skipped": "skipped by the annotator",
        "released": "back in the pool (released)",
        "pool": "in the pool, not out for labeling",
    }
    parts = [f"{counts[k]} of {total} {w}" for k, w in words.items() if counts.get(k)]
    gone = total - sum(counts.values())
    if gone:
        parts.append(f"{gone} of {total} no longer in the workspace")
    current = not any(counts.get(k) for k in ("labeled", "labeled_before", "skipped", "released"))
    return " · ".join(parts), current


def card(
    item: Item,
    *,
    rank: int,
    selection: Selection,
    detections: Detections | None,
    classes: Sequence[str],
    file_names: Mapping[str, str] | None = None,
    state: ItemState | None = None,
    name: str | None = None,
) -> str:
    """One gallery card: thumbnail with boxes, name (``name``: how to call the image, a video
    frame by its video's; else its file name), selection score, the image's state now
    (``state``) and the why (``file_names``: file names of the items a why names)."""
    shown = name or item.name
    score = selection.scores.get(item.id)
    score_txt = "—" if score is None else f"{float(score):.3f}"
    try:
        src = thumbnail_data_uri(item.uri)
    except InputError as e:
        log.warning("gallery: %s", e)
        picture = f'<div class="thumb missing">image not readable<br><span class="small">{escape(item.uri)}</span></div>'
        n_boxes = 0
    else:
        boxes, n_boxes = _boxes_svg(item, detections, classes)
        ratio = f"{max(1, item.width)} / {max(1, item.height)}"
        picture = (
            f'<div class="thumb" style="aspect-ratio: {ratio}">'
            f'<img src="{src}" alt="{escape(shown)}" loading="eager">{boxes}</div>'
        )
    badge = "" if state is None else (
        f'<div class="state state-{escape(state.key)}" title="{escape(state.detail)}">{escape(state.text)}</div>'
    )
    state_attr = "" if state is None else f' data-state="{escape(state.key)}"'
    return (
        f'<figure class="card" data-item="{escape(item.id)}"{state_attr}>{picture}'
        f'<figcaption><div class="card-head"><span class="rank">#{rank}</span> '
        f'<span class="name" title="{escape(item.uri)}">{escape(shown)}</span>'
        f'<span class="score" title="selection score">{score_txt}</span></div>{badge}'
        f'<div class="small muted">{item.width}×{item.height} · {n_boxes} predicted box'
        f'{"" if n_boxes == 1 else "es"} ≥ {MIN_CONFIDENCE}</div>'
        f"{why_html(selection.why.get(item.id, {}), classes, alpha=selection.config.get('alpha'), file_names=file_names)}"
        "</figcaption></figure>"
    )


SUSPECT_COLOR = "#e4002b"


def suspect_card(
    item: Item, *, rank: int, score: float, labels: Detections | None, rows: Sequence[Mapping[str, str]],
    classes: Sequence[str],
) -> str:
    """One card of the audit: the thumbnail with the person's boxes in their class colours and
    each suspect's box dashed in red (the model's box for a missed object, the label's
    otherwise), then the suspects in words."""
    try:
        src = thumbnail_data_uri(item.uri)
    except InputError as e:
        log.warning("audit: %s", e)
        picture = f'<div class="thumb missing">image not readable<br><span class="small">{escape(item.uri)}</span></div>'
    else:
        boxes, _ = _boxes_svg(item, labels, classes)
        w, h = max(1, item.width), max(1, item.height)
        marks = "".join(
            f'<g><title>{escape(r["why"])}</title><rect class="suspect" x="{float(r["x1"]):.1f}" y="{float(r["y1"]):.1f}" '
            f'width="{max(0.0, float(r["x2"]) - float(r["x1"])):.1f}" height="{max(0.0, float(r["y2"]) - float(r["y1"])):.1f}" '
            f'fill="none" stroke="{SUSPECT_COLOR}" stroke-width="3" stroke-dasharray="6 4" '
            'vector-effect="non-scaling-stroke"/></g>'
            for r in rows
        )
        picture = (
            f'<div class="thumb" style="aspect-ratio: {w} / {h}">'
            f'<img src="{src}" alt="{escape(item.name)}" loading="eager">{boxes}'
            f'<svg class="boxes suspects" viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
            f'xmlns="http://www.w3.org/2000/svg">{marks}</svg></div>'
        )
    words = "".join(f'<li data-kind="{escape(r["kind"])}">{escape(r["why"])}</li>' for r in rows)
    n = 0 if labels is None else len(labels)
    return (
        f'<figure class="card" data-item="{escape(item.id)}">{picture}'
        f'<figcaption><div class="card-head"><span class="rank">#{rank}</span> '
        f'<span class="name" title="{escape(item.uri)}">{escape(item.name)}</span>'
        f'<span class="score" title="audit score">{score:.2f}</span></div>'
        f'<div class="small muted">{item.width}×{item.height} · {n} labeled box{"" if n == 1 else "es"}</div>'
        f'<ul class="suspects small">{words}</ul></figcaption></figure>'
    )
