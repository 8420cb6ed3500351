"""The embedding map: PCA to two dimensions in numpy, drawn as a scatter of labeled, pool and
selected items (selected ones sized by their selection score)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .svg import ScatterPoint, scatter_chart

__all__ = ["MAX_POINTS", "STATE_COLORS", "embedding_map", "pca_2d"]

MAX_POINTS = 4000
STATE_COLORS = {"pool": "#9aa5b1", "labeled": "#0072B2", "selected": "#D55E00"}


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates on the two main axes of ``x`` and the share of variance each explains.
    Signs are fixed (largest loading positive) so the same data always draws the same map."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(2)
    x = x.reshape(n, -1)
    x = x - x.mean(axis=0)
    cov = x.T @ x / max(1, n - 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:2]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    vectors = vectors * np.where(signs == 0, 1, signs)
    coords = x @ vectors
    total = float(np.clip(np.linalg.eigvalsh(cov), 0, None).sum())
    share = values / total if total > 0 else np.zeros_like(values)
    if coords.shape[1] < 2:  # one-dimensional embeddings: a flat second axis
        coords = np.hstack([coords, np.zeros((n, 2 - coords.shape[1]))])
        share = np.concatenate([share, np.zeros(2 - len(share))])
    return coords, share


def embedding_map(
    ids: Sequence[str],
    vectors: np.ndarray,
    *,
    labeled: set[str],
    selected: Mapping[str, float],
    names: Mapping[str, str],
    title: str,
) -> tuple[str, int]:
    """The SVG scatter of the embeddings and how many points it shows (at most MAX_POINTS:
    every selected and a fixed sample of the rest)."""
    ids = list(ids)
    keep = np.arange(len(ids))
    if len(ids) > MAX_POINTS:
        must = np.array([i for i, k in enumerate(ids) if k in selected], dtype=np.int64)
        rest = np.setdiff1d(keep, must)
        rng = np.random.default_rng(0)
        extra = rng.choice(rest, size=max(0, MAX_POINTS - len(must)), replace=False)
        keep = np.sort(np.concatenate([must, extra]))
    coords, share = pca_2d(vectors[keep])
    scores = [s for s in selected.values()]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 0.0)
    layers: dict[str, list[ScatterPoint]] = {"pool": [], "labeled": [], "selected": []}
    for row, idx in enumerate(keep):
        item_id = ids[int(idx)]
        x, y = float(coords[row, 0]), float(coords[row, 1])
        name = names.get(item_id, item_id)
        if item_id in selected:
            s = float(selected[item_id])
            r = 3.5 + 4.0 * ((s - lo) / (hi - lo) if hi > lo else 1.0)
            layers["selected"].append(
                ScatterPoint(x, y, STATE_COLORS["selected"], r, f"{name} · selected · score {s:.3f}")
            )
        elif item_id in labeled:
            layers["labeled"].append(ScatterPoint(x, y, STATE_COLORS["labeled"], 3.0, f"{name} · labeled"))
        else:
            layers["pool"].append(ScatterPoint(x, y, STATE_COLORS["pool"], 2.5, f"{name} · pool"))
    points = layers["pool"] + layers["labeled"] + layers["selected"]
    legend = [(f"{state} ({len(pts)})", STATE_COLORS[state]) for state, pts in layers.items() if pts]
    svg = scatter_chart(
        points,
        title=title,
        x_label=f"PC1 ({share[0]:.0%} of variance)",
        y_label=f"PC2 ({share[1]:.0%})",
        legend=legend,
    )
    return svg, len(points)
