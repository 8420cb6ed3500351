"""Selection speed: boxloop's greedy k-center and full prediction scoring against the
straightforward numpy a user would write instead.

    .venv/bin/python bench/selection.py                 # 1,000 of 1,000,000 x 256; 1,000,000 items scored
    .venv/bin/python bench/selection.py --n 50000       # quicker
    .venv/bin/python bench/selection.py --only scoring  # one part

k-center: the embeddings are clustered like image embeddings (a few thousand groups of
similar images at varying spread, L2-normalised); the baseline is a chunked numpy greedy
pass per pick (every pick re-reads the whole matrix). Both start from the same first pick
and the bench checks they choose the same items.

Scoring: synthetic videos (1,000 frames each) with tracked objects that sometimes drop out,
spurious low-confidence boxes, 10 classes with class-probability vectors, and predictions on
the mirrored images; every prediction-based scorer (least_confidence, margin, entropy,
uncertain_count, class_rarity, flicker, consistency), their percentile combination and the
top 1,000. The baseline scores item by item (numpy inside an item, Python between items);
it runs on ``--baseline-n`` items and is scaled linearly (its cost is per item), after
checking both give the same scores there.

Peak memory: the highest resident set size during the call minus the one before it (the
inputs), sampled every 5 ms; for k-center it is shown as (matrix + that) / matrix.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from boxloop.scoring import (
    FrameSequence,
    PackedBoxes,
    Pool,
    ScoreOptions,
    combine,
    k_center,
    parse_strategy,
    score_pool,
    top_k,
)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, seconds, peak resident memory above the level before the call), sampling
    /proc/self/statm every 5 ms from a thread (tracemalloc would slow Python loops down)."""
    import threading

    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss())

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t = time.perf_counter()
    try:
        out = fn()
    finally:
        seconds = time.perf_counter() - t
        done.set()
        watcher.join()
    return out, seconds, max(peak[0], _rss()) - base


# -- k-center ----------------------------------------------------------------------------------
def clustered_embeddings(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    groups = max(10, n // 300)
    centres = rng.normal(size=(groups, d)).astype(np.float32)
    spread = rng.uniform(0.15, 0.8, groups).astype(np.float32)
    x = np.empty((n, d), np.float32)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        g = rng.integers(0, groups, b - a)
        block = centres[g] + spread[g, None] * rng.standard_normal((b - a, d), dtype=np.float32)
        x[a:b] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x


def numpy_k_center(x: np.ndarray, k: int, first: int, chunk: int = 16384) -> list[int]:
    """Greedy k-center, one chunked distance pass over the matrix per pick."""
    norms = np.einsum("ij,ij->i", x, x)
    d = np.full(len(x), np.inf, np.float32)
    picks = [first]
    while True:
        c = x[picks[-1]]
        for a in range(0, len(x), chunk):
            dist = norms[a : a + chunk] - 2 * (x[a : a + chunk] @ c) + norms[picks[-1]]
            np.minimum(d[a : a + chunk], dist, out=d[a : a + chunk])
        d[picks[-1]] = -1
        if len(picks) == k:
            return picks
        picks.append(int(np.argmax(d)))


def bench_k_center(n: int, d: int, k: int, baseline_k: int) -> None:
    rng = np.random.default_rng(0)
    x = clustered_embeddings(n, d, rng)
    matrix = x.nbytes
    print(f"k-center: {k} of {n:,} x {d} float32 ({matrix / 2**20:.0f} MiB)")
    picks, secs, peak = measure(lambda: k_center(x, k, rng=np.random.default_rng(1)))
    print(f"  boxloop k_center (exact, lazy bounds): {secs:8.2f} s   peak {(matrix + peak) / matrix:.2f}x the matrix")
    bk = min(k, baseline_k)
    base, bsecs, bpeak = measure(lambda: numpy_k_center(x, bk, int(picks[0])))
    same = list(picks[:bk]) == base
    scaled = bsecs * k / bk
    note = "" if bk == k else f" (ran {bk} picks, scaled x{k / bk:.1f})"
    print(f"  numpy chunked greedy:                  {scaled:8.2f} s   peak {(matrix + bpeak) / matrix:.2f}x the matrix{note}")
    print(f"  same picks: {same}")
    print(f"  k-center ratio: {scaled / secs:.1f}x faster")


# -- scoring -----------------------------------------------------------------------------------
C = 10
FRAMES_PER_VIDEO = 1000
TRACKS = 5
W, H = 640.0, 480.0


def synthetic_predictions(n: int, rng: np.random.Generator, *, mirrored: bool = False,
                          base: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Packed arrays (frame, xyxy, class, conf, probs) of n frames, sorted by frame."""
    if base is None:
        videos = (n + FRAMES_PER_VIDEO - 1) // FRAMES_PER_VIDEO
        start = rng.uniform(0, [W - 120, H - 120], (videos, TRACKS, 2))
        vel = rng.normal(0, 0.4, (videos, TRACKS, 2))
        size = rng.uniform(30, 110, (videos, TRACKS, 2))
        cls = rng.integers(0, C, (videos, TRACKS))
        frame = np.repeat(np.arange(n), TRACKS)
        track = np.tile(np.arange(TRACKS), n)
        v, f = frame // FRAMES_PER_VIDEO, frame % FRAMES_PER_VIDEO
        xy = np.abs(start[v, track] + vel[v, track] * f[:, None]) % [W - 120, H - 120]
        jitter = rng.normal(0, 1.5, (len(frame), 4))
        xyxy = np.concatenate([xy, xy + size[v, track]], 1) + jitter
        conf = rng.uniform(0.3, 1.0, len(frame))
        visible = rng.random(len(frame)) < 0.97
        frame, xyxy, conf, klass = frame[visible], xyxy[visible], conf[visible], cls[v, track][visible]
    else:
        keep = rng.random(len(base["frame"])) < 0.95
        frame, klass = base["frame"][keep], base["class"][keep]
        x = base["xyxy"][keep]
        x = np.stack([W - x[:, 2], x[:, 1], W - x[:, 0], x[:, 3]], 1) + rng.normal(0, 2, (len(frame), 4))
        xyxy = x
        conf = np.clip(base["conf"][keep] + rng.normal(0, 0.05, len(frame)), 0.01, 1)
        flip_class = rng.random(len(frame)) < 0.02
        klass = np.where(flip_class, rng.integers(0, C, len(frame)), klass)
    spurious = rng.poisson(1.5, n)
    s_frame = np.repeat(np.arange(n), spurious)
    s_xy = rng.uniform(0, [W - 60, H - 60], (len(s_frame), 2))
    s_xyxy = np.concatenate([s_xy, s_xy + rng.uniform(10, 60, (len(s_frame), 2))], 1)
    frame = np.concatenate([frame, s_frame])
    order = np.argsort(frame, kind="stable")
    xyxy = np.concatenate([xyxy, s_xyxy])[order].astype(np.float32)
    klass = np.concatenate([klass, rng.integers(0, C, len(s_frame))])[order]
    conf = np.concatenate([conf, rng.uniform(0.01, 0.4, len(s_frame))])[order].astype(np.float32)
    frame = frame[order]
    logits = rng.normal(0, 1, (len(frame), C)).astype(np.float32)
    logits[np.arange(len(frame)), klass] += rng.uniform(0, 5, len(frame)).astype(np.float32)
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    return {"frame": frame, "xyxy": xyxy, "class": klass.astype(np.int64), "conf": conf, "probs": probs}


def packed(p: dict[str, np.ndarray], n: int) -> PackedBoxes:
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(p["frame"], minlength=n), out=offsets[1:])
    return PackedBoxes(offsets, p["xyxy"], p["class"], p["conf"], p["probs"], C)


def synthetic_pool(n: int) -> Pool:
    rng = np.random.default_rng(0)
    preds = synthetic_predictions(n, rng)
    flips = synthetic_predictions(n, rng, mirrored=True, base=preds)
    boxes = packed(preds, n)
    frames = np.arange(n)
    sequence = FrameSequence(boxes, frames // FRAMES_PER_VIDEO, frames % FRAMES_PER_VIDEO, frames)
    return Pool(
        ids=tuple(f"f{j}" for j in range(n)), boxes=boxes, sequence=sequence, flipped=packed(flips, n),
        widths=np.full(n, W, np.float32), labeled_class_counts=np.array([900, 500, 300, 200, 100, 50, 20, 10, 5, 0]),
    )


STRATEGY = "least_confidence,margin,entropy,uncertain_count,class_rarity,flicker,consistency"


def boxloop_scores(pool: Pool, options: ScoreOptions, k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    strategy = parse_strategy(STRATEGY)
    raw = score_pool(pool, strategy, options=options, rng=np.random.default_rng(0)).raw
    total, _ = combine(raw, strategy.weights)
    return dict(raw), top_k(total, k)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _greedy(iou: np.ndarray, ok: np.ndarray) -> list[tuple[int, int]]:
    ia, ib = np.nonzero(ok)
    order = np.lexsort((ib, ia, -iou[ia, ib]))
    used_a, used_b, out = set(), set(), []
    for j in order:
        if ia[j] not in used_a and ib[j] not in used_b:
            used_a.add(ia[j])
            used_b.add(ib[j])
            out.append((int(ia[j]), int(ib[j])))
    return out


def numpy_scores(pool: Pool, options: ScoreOptions, n: int) -> dict[str, np.ndarray]:
    """Item by item, as a user would write it (numpy within an item)."""
    b, f = pool.boxes, pool.flipped
    assert f is not None and pool.widths is not None and pool.labeled_class_counts is not None
    counts = pool.labeled_class_counts.astype(np.float64)
    total = counts.sum() + C
    rarity = np.log(total / (counts + 1)) / np.log(total)
    lo, hi = options.band
    out = {k: np.zeros(n) for k in STRATEGY.split(",")}
    seen = []
    for i in range(n):
        a, z = b.offsets[i], b.offsets[i + 1]
        conf, probs, xyxy, cls = b.confidence[a:z], b.class_probs[a:z], b.xyxy[a:z], b.class_id[a:z]
        ev = conf >= lo
        q = np.concatenate([probs * conf[:, None], (1 - conf)[:, None]], 1)[ev]
        if len(q):
            out["least_confidence"][i] = (1 - q.max(1)).max()
            s = np.sort(q, 1)
            out["margin"][i] = (1 - (s[:, -1] - s[:, -2])).max()
            out["entropy"][i] = (-(q * np.log(np.where(q > 0, q, 1))).sum(1) / np.log(C + 1)).max()
            out["class_rarity"][i] = (conf[ev] * (probs[ev] @ rarity)).max()
        else:
            out["least_confidence"][i], out["margin"][i] = lo, 2 * lo
            out["entropy"][i] = -(lo * np.log(lo) + (1 - lo) * np.log(1 - lo)) / np.log(C + 1)
        out["uncertain_count"][i] = ((conf >= lo) & (conf < hi)).sum()
        keep = conf >= options.min_confidence
        mine = (xyxy[keep], cls[keep])
        seen.append(mine)
        fa, fz = f.offsets[i], f.offsets[i + 1]
        fk = f.confidence[fa:fz] >= options.min_confidence
        fx = f.xyxy[fa:fz][fk]
        fx = np.stack([pool.widths[i] - fx[:, 2], fx[:, 1], pool.widths[i] - fx[:, 0], fx[:, 3]], 1)
        fc = f.class_id[fa:fz][fk]
        iou = _iou_matrix(mine[0], fx)
        m = _greedy(iou, iou >= options.match_iou)
        un = len(mine[0]) + len(fx) - 2 * len(m)
        bad = sum(1 for x, y in m if mine[1][x] != fc[y]) + sum(1 - iou[x, y] for x, y in m if mine[1][x] == fc[y])
        out["consistency"][i] = (un + bad) / (len(m) + un) if len(m) + un else 0.0
    video = pool.sequence.video[:n]  # type: ignore[union-attr]
    for i in range(1, n - 1):
        if video[i - 1] != video[i] or video[i + 1] != video[i]:
            continue
        (pa, pc), (ca, cc), (na, nc) = seen[i - 1], seen[i], seen[i + 1]
        iou = _iou_matrix(pa, na)
        events = 0
        for x, y in _greedy(iou, (iou >= options.t_track) & (pc[:, None] == nc[None, :])):
            mean = (pa[x] + na[y]) / 2
            hit = _iou_matrix(mean[None], ca)[0] >= options.t_assert
            events += not (hit & (cc == pc[x])).any()
        near_p = (_iou_matrix(ca, pa) >= options.t_assert) & (cc[:, None] == pc[None, :])
        near_n = (_iou_matrix(ca, na) >= options.t_assert) & (cc[:, None] == nc[None, :])
        events += int((~near_p.any(1) & ~near_n.any(1)).sum())
        out["flicker"][i] = events
    return out


def bench_scoring(n: int, k: int, baseline_n: int) -> None:
    t = time.perf_counter()
    pool = synthetic_pool(n)
    boxes = int(pool.boxes.offsets[-1])
    inputs = sum(a.nbytes for p in (pool.boxes, pool.flipped) for a in (p.xyxy, p.class_id, p.confidence, p.class_probs))  # type: ignore[union-attr]
    print(f"scoring: {n:,} items, {boxes:,} boxes (+ mirrored), {C} classes, "
          f"inputs {inputs / 2**20:.0f} MiB (generated in {time.perf_counter() - t:.1f} s)")
    options = ScoreOptions()
    (raw, _picks), secs, peak = measure(lambda: boxloop_scores(pool, options, k))
    print(f"  boxloop score_pool + combine + top_{k}: {secs:8.2f} s   peak {peak / 2**20:.0f} MiB on top of the inputs")
    bn = min(n, baseline_n)
    sub = pool.slice(0, bn)
    base, bsecs, bpeak = measure(lambda: numpy_scores(sub, options, bn))
    small = score_pool(sub, parse_strategy(STRATEGY), options=options, rng=np.random.default_rng(0)).raw
    same = all(np.allclose(small[name], base[name], atol=1e-5) for name in base)
    scaled = bsecs * n / bn
    note = "" if bn == n else f" (ran {bn:,} items, scaled x{n / bn:.0f})"
    print(f"  numpy item by item:                 {scaled:8.2f} s   peak {bpeak / 2**20:.0f} MiB{note}")
    print(f"  same scores: {same}   flicker events: {int(raw['flicker'].sum()):,}")
    print(f"  scoring ratio: {scaled / secs:.1f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="pool size (both parts)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--baseline-k", type=int, default=1000, help="picks the k-center baseline runs (scaled to --k)")
    ap.add_argument("--baseline-n", type=int, default=50_000, help="items the scoring baseline runs (scaled to --n)")
    ap.add_argument("--only", choices=["k_center", "scoring"], default=None)
    args = ap.parse_args()
    if args.only in (None, "k_center"):
        bench_k_center(args.n, args.dim, args.k, args.baseline_k)
    if args.only in (None, "scoring"):
        bench_scoring(args.n, args.k, args.baseline_n)


if __name__ == "__main__":
    main()
