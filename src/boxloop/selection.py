"""Choosing what to label, against the store: load the pool's predictions, embeddings and
frame order for a model version, run a strategy, record the selection with the why of every
pick (and flicker's imputed boxes), and explain one pick in words."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, NothingToSelect
from .scoring import (
    SCORERS,
    SELECTORS,
    FrameSequence,
    PackedBoxes,
    Pool,
    ScoreOptions,
    Strategy,
    combine,
    flicker_frames,
    k_center,
    parse_strategy,
    ranked_diverse,
    score_pool,
    suppress_duplicates,
    top_k,
)
from .scoring.diversity import unit_rows
from .sources.remote import is_remote
from .store import Store
from .types import Detections, Selection

__all__ = [
    "FLIP_SUFFIX",
    "ScoreReport",
    "SelectionReport",
    "compares_with_labeled",
    "explain",
    "flipped_version",
    "item_names",
    "load_pool",
    "score",
    "select",
    "write_scores_csv",
    "write_selection_csv",
]

log = logging.getLogger(__name__)

#: Predictions on horizontally flipped images are stored under "<model version>@hflip",
#: in the flipped image's pixel coordinates.
FLIP_SUFFIX = "@hflip"


def flipped_version(model_version: str) -> str:
    """The model version under which predictions on mirrored images are stored."""
    return model_version + FLIP_SUFFIX


@dataclass(frozen=True)
class SelectionReport:
    """A saved selection, what the user should hear about it, and the imputed boxes stored."""

    selection: Selection
    notes: tuple[str, ...] = ()
    imputed: Mapping[str, Detections] = field(default_factory=dict)


def _default_version(store: Store, model_version: str | None) -> tuple[str, list[str]]:
    """Whose predictions to score, and notes on the choice. By default the newest predictions
    that cover the pool (as much of it as any version's): a newer version that predicted only
    a few images (a quick check of some file) does not shrink the pool to them, and a newer
    model that predicted nothing yet is named, with how to use it."""
    versions = [v for v in store.predicted_versions() if not v.endswith(FLIP_SUFFIX)]
    if model_version is not None:
        if model_version not in versions:
            known = f"; model versions with predictions: {', '.join(versions)}" if versions else ""
            raise InputError(
                f"no predictions from model version {model_version!r}; run "
                f"`boxloop predict --model {model_version}` first{known}"
            )
        return model_version, []
    if not versions:
        from .modeling import way_to_predictions

        raise InputError(f"no predictions yet; {way_to_predictions(store)} before selecting")
    size, covered = store.pool_coverage()
    most = max((covered.get(v, 0) for v in versions), default=0)
    chosen = next(v for v in versions if covered.get(v, 0) == most)  # newest first
    notes = []
    if chosen != versions[0]:
        notes.append(
            f"scoring {chosen}'s predictions ({most} of the {size} pool images): the newer {versions[0]}'s cover "
            f"{covered.get(versions[0], 0)} (`boxloop predict --model {versions[0]}` predicts the rest; "
            f"--model-version {versions[0]} scores those alone)"
        )
    models = [v for v in store.model_versions() if v.get("path")]  # oldest first
    newest = str(models[-1]["id"]) if models else None
    if newest is not None and newest != chosen and not covered.get(newest):
        notes.append(f"the newest model, {newest}, has not predicted the pool: scoring {chosen}'s predictions "
                     f"(`boxloop predict` first to score {newest}'s)")
    return chosen, notes


def load_pool(
    store: Store,
    model_version: str,
    *,
    need: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> tuple[Pool, list[str]]:
    """The pool for a model version: unlabeled items not in review, not in the test split,
    with predictions from it. ``need`` names Pool fields to load ("embeddings", "sequence",
    "flipped"; embeddings are loaded when present anyway). Returns (pool, notes)."""
    need = set(need)
    notes: list[str] = []
    excluded = set(exclude)
    candidates = store.items(state="prelabeled", model_version=model_version)
    tests = sum(1 for it in candidates if it.split == "test")
    items = [it for it in candidates if it.split != "test" and it.id not in excluded]
    if tests:
        notes.append(f"{tests} unlabeled item(s) of the frozen test split are never selected")
    unpredicted = store.items(state="pool")
    waiting = len(unpredicted)
    gone = [it for it in unpredicted if not is_remote(it.uri) and not os.path.exists(it.uri)]
    if len(gone) < waiting:
        notes.append(f"{waiting - len(gone)} unlabeled item(s) have no predictions yet; run `boxloop predict` to "
                     "include them")
    if gone:  # predict cannot help these
        notes.append(f"{len(gone)} unlabeled item(s) have no predictions and their file is no longer where it was "
                     f"added from (moved or deleted; first: {gone[0].uri}): put the files back, then `boxloop predict`")
    others = len(store.items(state="prelabeled")) - len(candidates)  # predicted, but by other versions only
    if others > 0:
        notes.append(f"{others} unlabeled item(s) have predictions of other versions, none of {model_version}'s; "
                     f"`boxloop predict --model {model_version} --missing` includes them")
    if not items:
        raise NothingToSelect(_nothing_to_select(store, model_version, tests=tests, waiting=waiting,
                                                 skipped=sum(1 for it in candidates if it.id in excluded)))
    ids = [it.id for it in items]
    num_classes = len(store.classes())
    all_predictions = store.predictions(model_version)
    boxes = PackedBoxes.from_detections([all_predictions[i] for i in ids], num_classes=num_classes, ids=ids)

    emb_version, emb_ids, emb = _pool_embeddings(store, model_version, ids)
    embeddings = None
    if len(emb_ids) == len(ids):
        embeddings = emb
        if emb_version != model_version:
            own = len(store.done_item_ids(model_version, what="embeddings") & set(ids))
            notes.append(
                f"embeddings (diversity, novelty, near-duplicates) from model version {emb_version!r}, "
                f"the newest with one for every pool item: model version {model_version!r}, whose "
                f"predictions are scored, has none for {len(ids) - own} of the {len(ids)}"
            )
    elif "embeddings" in need:
        raise InputError(
            f"diversity and novelty need image embeddings, but {len(ids) - len(emb_ids)} of the "
            f"{len(ids)} pool items have none from model version {model_version!r}, and no other "
            f"model version has them for the whole pool; {way_to_embeddings(store)}"
        )
    labeled = store.latest_labels()
    tested = {it.id for it in store.items(split="test")}
    box_counts = np.array([len(d) for i, d in labeled.items() if i not in tested], np.int64)  # what training sees
    # the test split's images teach no model: picks need not keep away from them; the labeled
    # images' embeddings come from the model version the pool's come from (one space)
    labeled_ids, labeled_emb = store.embeddings(emb_version, sorted(i for i in labeled if i not in tested))
    counts = np.zeros(num_classes, np.int64)
    for d in labeled.values():
        counts += np.bincount(d.class_id[(d.class_id >= 0) & (d.class_id < num_classes)], minlength=num_classes)

    sequence = None
    if "sequence" in need:
        pool_pos = {i: p for p, i in enumerate(ids)}
        framed = [it for it in store.items() if it.video_id is not None and it.frame_index is not None
                  and it.id in all_predictions]
        in_pool = sum(1 for it in framed if it.id in pool_pos)
        if not in_pool:
            raise InputError(
                f"flicker needs frames in order, but none of the {len(ids)} pool items comes from a "
                "video or an image sequence; add videos with `boxloop add video` or folders with "
                "`boxloop add images --sequence`, or drop flicker from the strategy"
            )
        if in_pool < len(ids):
            notes.append(f"flicker: {len(ids) - in_pool} pool item(s) are not video frames and score 0")
        seq_boxes = PackedBoxes.from_detections(
            [all_predictions[it.id] for it in framed], num_classes=num_classes, ids=[it.id for it in framed]
        )
        sequence = FrameSequence.build(
            seq_boxes, [it.video_id for it in framed], [it.frame_index for it in framed],
            [pool_pos.get(it.id, -1) for it in framed],
        )

    flipped = widths = None
    if "flipped" in need:
        flip_version = flipped_version(model_version)
        flip = store.predictions(flip_version, ids)
        if len(flip) < len(ids):
            raise InputError(
                f"consistency needs predictions on horizontally flipped images (model version "
                f"{flip_version!r}), but {len(ids) - len(flip)} of the {len(ids)} pool items have "
                "none; run `boxloop predict --hflip` or drop consistency from the strategy"
            )
        flipped = PackedBoxes.from_detections([flip[i] for i in ids], num_classes=num_classes, ids=ids)
        widths = np.array([it.width for it in items], np.float32)

    pool = Pool(
        ids=tuple(ids),
        boxes=boxes,
        embeddings=embeddings,
        labeled_embeddings=labeled_emb if len(labeled_ids) else None,
        labeled_class_counts=counts,
        labeled_ids=tuple(labeled_ids),
        labeled_box_counts=box_counts,
        sequence=sequence,
        flipped=flipped,
        widths=widths,
        embeddings_version=emb_version if embeddings is not None else None,
    )
    return pool, notes


def way_to_embeddings(store: Store) -> str:
    """The command that stores image embeddings for the pool and the labeled images
    (`boxloop embed`: every image, with the newest trained model unless told another)."""
    if any(v["path"] for v in store.model_versions()):
        return "run `boxloop embed` (the newest trained model embeds every image; `--model VERSION` for another)"
    return "run `boxloop embed --model WEIGHTS.pt` (a detector's weights embed every image; there is no trained model yet)"


def _pool_embeddings(store: Store, model_version: str, ids: Sequence[str]) -> tuple[str, list[str], np.ndarray]:
    """(model version, ids, embeddings) for the pool: the scored model version's own, or,
    where it lacks some (predictions imported from another detector come without any), the
    newest other model version's that covers every pool item (`boxloop embed` stores the
    newest trained model's); the own, partial ones when none does."""
    emb_ids, emb = store.embeddings(model_version, ids)
    if len(emb_ids) == len(ids):
        return model_version, emb_ids, emb
    wanted = set(ids)
    for v in reversed(store.model_versions()):  # newest first
        other = str(v["id"])
        if other != model_version and wanted <= store.done_item_ids(other, what="embeddings"):
            other_ids, other_emb = store.embeddings(other, ids)
            return other, other_ids, other_emb
    return model_version, emb_ids, emb


def _nothing_to_select(store: Store, model_version: str, *, tests: int, waiting: int, skipped: int) -> str:
    """Why no item can be selected, and what would give some."""
    why = []
    if waiting:
        why.append(f"{waiting} have no predictions yet (`boxloop predict`)")
    in_review = store.count_by_state().get("in_review", 0)
    if in_review:
        why.append(f"{in_review} are in review, sent out to be labeled (`boxloop pull`, or `boxloop add labels` "
                   "for what the annotation tool exported, brings them back)")
    if skipped:
        why.append(f"{skipped} were skipped by the annotator")
    if tests:
        why.append(f"{tests} belong to the frozen test split")
    others = len(store.items(state="prelabeled")) - len(store.items(state="prelabeled", model_version=model_version))
    if others:  # a newer model (one `boxloop serve` trained, say) has not predicted the pool yet
        why.append(f"{others} have predictions from other model versions only: `boxloop predict` (model "
                   f"{model_version}), or `boxloop select --model-version OLDER`")
    return (
        f"nothing to select: no unlabeled item has predictions from model version {model_version!r}"
        + (f"; of the unlabeled: {'; '.join(why)}" if why else "; the pool is empty (`boxloop add images PATH`)")
    )


def _needs(strategy: Strategy, diverse: bool | None) -> set[str]:
    need: set[str] = set()
    for name, _ in strategy.components:
        need |= {n if n != "labeled_embeddings" else "embeddings" for n in SCORERS[name].needs}
    if strategy.selector in ("k_center", "diverse") or diverse:
        need.add("embeddings")
    return need


def compares_with_labeled(strategy: str, diverse: bool) -> bool:
    """Whether a selection keeps its picks apart from the labeled images (diverse or k-center
    batches, the novelty scorer), so it needs their embeddings; the random baseline does not."""
    parsed = parse_strategy(strategy, diverse=diverse)
    if parsed.is_random_baseline:
        return False
    return parsed.selector in ("k_center", "diverse") or any(
        "labeled_embeddings" in SCORERS[name].needs for name, _ in parsed.components
    )


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def _without_evidence(combined: np.ndarray) -> np.ndarray | None:
    """The items tied at the pool's lowest combined score when two or more are (None
    otherwise): the scorers gave them nothing to tell them apart - with least_confidence, an
    untrained model's images without a single box above the band's low edge."""
    if len(combined) < 2:
        return None
    tied = combined <= combined.min()
    return tied if tied.sum() > 1 else None


def _cold_start_note(strategy: Strategy, raw: Mapping[str, float], tied: int, n: int, ranked: int, uniform: int) -> str:
    value = ", ".join(f"{name} {v:.3g}" for name, v in raw.items())
    head = f"{tied} of {n} pool item(s) share the lowest score ({value}): no evidence to rank them"
    if not uniform:
        return f"{head}; all {ranked} picks come from the {n - tied} scored above it ({strategy.selector})"
    if not ranked:
        return f"{head} (a cold start: every item); a uniform sample of {uniform}"
    return (f"{head} (a cold start); {ranked} picked from the {n - tied} scored above it ({strategy.selector}), "
            f"{uniform} sampled uniformly from the tied")


def _pick(
    strategy: Strategy,
    combined: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    baseline: bool,
    alpha: float,
    dedup_threshold: float,
    unit: np.ndarray | None,
    labeled_unit: np.ndarray | None,
    dedup: str,
) -> tuple[np.ndarray, Mapping[int, int], str]:
    """The strategy's selector on ``combined`` (positions into it): (picks, suppressed
    near-duplicate -> the pick it resembles, how duplicates were handled)."""
    n = len(combined)
    if strategy.selector == "k_center":
        cand = np.arange(n) if not strategy.components else top_k(combined, min(n, 10 * k))
        return cand[k_center(unit[cand], k, rng=rng, labeled=labeled_unit)], {}, "not needed: k-center spreads picks"  # type: ignore[index]
    threshold_text = f"cosine similarity >= {dedup_threshold}"
    if strategy.selector == "diverse":
        found = ranked_diverse(combined, k, rng=rng, embeddings=unit, labeled=labeled_unit,  # type: ignore[arg-type]
                               alpha=alpha, threshold=dedup_threshold)
        return found.indices, found.suppressed, threshold_text
    if unit is not None and not baseline:
        found = suppress_duplicates(top_k(combined, n), unit, k, threshold=dedup_threshold)
        return found.indices, found.suppressed, threshold_text
    return top_k(combined, k), {}, dedup


def _saturated(raw: Mapping[str, np.ndarray]) -> list[str]:
    """A note for each scorer that gives most of the pool its top value: it cannot rank them."""
    notes = []
    for name, values in raw.items():
        v = np.asarray(values, np.float64)
        if len(v) >= 10 and v.max() > v.min():
            top = int(np.sum(v == v.max()))
            if top > len(v) / 2:
                notes.append(f"{name} gives {top} of the {len(v)} pool images its highest value ({v.max():.3g}): it "
                             "cannot rank them against each other")
    return notes


def _names_a_selector(strategy: str) -> bool:
    """Whether a strategy string names its selector (``"entropy,top_k"``)."""
    return any(t.partition(":")[0].strip() in SELECTORS for t in str(strategy).split(","))


def select(
    store: Store,
    *,
    budget: int,
    strategy: str,
    diverse: bool | None = None,
    seed: int | None = None,
    model_version: str | None = None,
    options: ScoreOptions | None = None,
    normalisation: str = "percentile",
    dedup_threshold: float = 0.95,
    alpha: float = 0.5,
    exclude: Iterable[str] = (),
    save: bool = True,
) -> SelectionReport:
    """Choose ``budget`` items to label with a strategy string and record the selection.

    ``diverse``: True = ranked batch-mode diversity (embeddings required), False = plain
    ranking, None = diversity when embeddings exist. ``seed`` None draws one (recorded).
    """
    if budget <= 0:
        raise InputError(f"budget must be a positive number of images, got {budget}")
    if not 0.0 < dedup_threshold <= 1.0:
        raise InputError(f"dedup threshold must lie in (0, 1], got {dedup_threshold}")
    options = options or ScoreOptions()
    parsed = parse_strategy(strategy, diverse=bool(diverse))
    if diverse and _names_a_selector(strategy) and parsed.selector != "diverse":
        raise InputError(f"--diverse asks for the diverse selector, but the strategy {strategy!r} names "
                         f"{parsed.selector}: drop one")
    version, chosen = _default_version(store, model_version)
    pool, notes = load_pool(store, version, need=_needs(parsed, diverse), exclude=exclude)
    notes[:0] = chosen
    baseline = parsed.is_random_baseline
    if baseline:
        notes.append("random: a uniform sample (no diversity, no duplicate suppression), the baseline")
    elif diverse is None and parsed.selector == "top_k" and not _names_a_selector(strategy) and pool.embeddings is not None:
        parsed = Strategy(parsed.components, "diverse")  # diversity by default; a selector named stands
    elif diverse is None and pool.embeddings is None:
        notes.append(
            f"no embeddings for this model version ({version}), nor from another for the whole pool: "
            f"ranking without diversity; {way_to_embeddings(store)}"
        )
    seed = secrets.randbits(32) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    scores = score_pool(pool, parsed, options=options, rng=rng)
    notes.extend(_saturated(scores.raw))
    if parsed.components:
        combined, parts = combine(scores.raw, parsed.weights, normalisation=normalisation)
    else:
        combined, parts = np.zeros(len(pool)), {}

    n = len(pool)
    k = min(budget, n)
    suppressed: Mapping[int, int] = {}
    # Pooled CNN features are mostly positive, so raw cosine calls every pair alike (an
    # untrained model's embeddings all sit near one direction); centering on the mean of
    # pool and labeled embeddings makes the similarity about what differs between images.
    center = None
    if pool.embeddings is not None:
        parts_ = [pool.embeddings] + ([pool.labeled_embeddings] if pool.labeled_embeddings is not None and len(pool.labeled_embeddings) else [])
        center = np.concatenate(parts_).mean(axis=0, dtype=np.float64).astype(np.float32)
    unit = None if center is None else unit_rows(pool.embeddings - center)  # type: ignore[operator]
    labeled_unit = (
        None if pool.labeled_embeddings is None or center is None else unit_rows(pool.labeled_embeddings - center)
    )
    blind = _without_evidence(combined) if parsed.components and not baseline and k < n else None
    dedup = "off: budget covers the whole pool" if k == n else "off: the random baseline" if baseline else "off: no embeddings"
    uniform = np.zeros(0, np.int64)
    cold_start: dict[str, Any] | None = None
    if k == n:
        notes.append(f"budget {budget} is not less than the {n} unlabeled item(s) to pick from: selecting all of them")
        picks = top_k(combined, n)
    else:
        ranked = np.arange(n)
        if blind is not None:
            # cold start: the scorers say nothing about the items tied at the lowest score, so
            # ranking them (or spreading picks over an untrained model's embeddings) is no
            # better than chance; they are only ever sampled uniformly
            ranked = np.flatnonzero(~blind)
            tied = np.flatnonzero(blind)
            uniform = rng.choice(tied, k - min(k, len(ranked)), replace=False).astype(np.int64)
            cold_start = {"tied": len(tied), "score": float(combined[tied[0]]), "ranked": min(k, len(ranked)), "uniform": len(uniform)}
            raw = {name: float(scores.raw[name][tied[0]]) for name, _ in parsed.components}
            notes.append(_cold_start_note(parsed, raw, len(tied), n, min(k, len(ranked)), len(uniform)))
        m = min(k, len(ranked))
        picks = np.zeros(0, np.int64)
        if not m:
            dedup = "off: a cold start, sampled uniformly"
        else:
            found, dropped, dedup = _pick(
                parsed, combined[ranked], m, rng=rng, baseline=baseline, alpha=alpha, dedup_threshold=dedup_threshold,
                unit=None if unit is None else unit[ranked], labeled_unit=labeled_unit, dedup=dedup,
            )
            picks, suppressed = ranked[found], {int(ranked[d]): int(ranked[kept]) for d, kept in dropped.items()}
        if len(picks) < m:
            # the budget is what a person set aside for labeling: fill it with the best of the rest
            taken = set(int(i) for i in picks)
            rest = [int(i) for i in ranked[top_k(combined[ranked], len(ranked))] if int(i) not in taken][: m - len(picks)]
            notes.append(
                f"only {len(picks)} of {m} were far from each other; filled {len(rest)} with the next best "
                f"scores (near-duplicates at cosine similarity >= {dedup_threshold})"
            )
            picks = np.concatenate([np.asarray(picks, np.int64), np.asarray(rest, np.int64)])
            suppressed = {d: kept for d, kept in suppressed.items() if d not in set(rest)}
        picks = np.concatenate([np.asarray(picks, np.int64), uniform])
    seconds = time.perf_counter() - t0

    ids = [pool.ids[i] for i in picks]
    by_pick: dict[int, list[str]] = {}
    for dup, kept in suppressed.items():
        by_pick.setdefault(kept, []).append(pool.ids[dup])
    why: dict[str, dict[str, Any]] = {}
    uniform_set = set(int(i) for i in uniform)
    for rank, i in enumerate(picks):
        comps: dict[str, Any] = {}
        for name, weight in parsed.components:
            entry: dict[str, Any] = {
                "weight": weight,
                "score": float(scores.raw[name][i]),
                "percentile": float(parts[name][i]),
            }
            explainer = SCORERS[name].explain
            if explainer is not None:
                entry["details"] = dict(explainer(pool, int(i), options))
            comps[name] = entry
        item_why: dict[str, Any] = {
            "rank": rank,
            "score": float(combined[i]),
            "components": comps,
            "selector": "uniform" if int(i) in uniform_set else parsed.selector,
        }
        if int(i) in by_pick:
            item_why["suppressed_duplicates"] = by_pick[int(i)][:10]
            item_why["suppressed_count"] = len(by_pick[int(i)])
        why[pool.ids[i]] = _rounded(item_why)

    config: dict[str, Any] = {
        "strategy": str(parsed),
        "components": [[name, w] for name, w in parsed.components],
        "selector": parsed.selector,
        "normalisation": normalisation,
        "budget": budget,
        "pool_size": n,
        "diverse": parsed.selector == "diverse",
        # whose embeddings the diversity, novelty and near-duplicates were measured with
        # (another model version's when the scored one has none, e.g. imported predictions)
        "embeddings_model_version": pool.embeddings_version,
        "alpha": alpha if parsed.selector == "diverse" else None,
        "dedup": dedup,
        "dedup_threshold": dedup_threshold,
        "cold_start": cold_start,
        **options.as_dict(),
        "exact": True,
        "approximations": [],
        "seconds": round(seconds, 3),
        "notes": notes,
    }
    if parsed.selector == "k_center":
        config["k_center"] = "exact greedy (lazy bound updates), cosine geometry"
    digest = hashlib.sha256("\n".join([version, str(seed), *ids]).encode()).hexdigest()[:8]
    selection = Selection(
        id=f"sel-{time.strftime('%Y%m%d-%H%M%S')}-{digest}",
        model_version=version,
        strategy=str(parsed),
        seed=seed,
        item_ids=tuple(ids),
        scores={pool.ids[i]: float(combined[i]) for i in picks},
        why=why,
        config=config,
    )

    imputed: dict[str, Detections] = {}
    if "flicker" in parsed.weights and pool.sequence is not None:
        result = flicker_frames(pool.sequence, options)
        for frame in np.unique(result.imputed_frame):
            where = int(pool.sequence.pool_index[frame])
            if where >= 0:
                imputed[pool.ids[where]] = result.imputed(int(frame))
    if save:
        with store.transaction():
            store.save_selection(selection)
            if imputed:
                store.put_imputed(version, imputed)
    log.info("selected %d of %d items with %s in %.2f s", len(ids), n, parsed, seconds)
    return SelectionReport(selection, tuple(notes), imputed)


# -- scores without a selection ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ScoreReport:
    """Every pool item's component scores (raw and percentile) and combined score."""

    model_version: str
    strategy: str
    ids: tuple[str, ...]
    raw: Mapping[str, np.ndarray]
    percentiles: Mapping[str, np.ndarray]
    combined: np.ndarray
    engine: str = "local"
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def ranking(self) -> np.ndarray:
        """Pool positions, best combined score first (ties by position)."""
        return np.lexsort((np.arange(len(self.ids)), -self.combined))


def score_components(
    pool: Pool, strategy: Strategy, *, options: ScoreOptions, rng: np.random.Generator, engine: Any = None,
) -> dict[str, np.ndarray]:
    """Raw component scores; with an engine other than local, the scorers that read one
    item at a time run there in chunks (the same numbers), the rest here."""
    from .engine import chunkable
    from .scoring import check_needs

    names = [name for name, _ in strategy.components]
    shipped = [n for n in names if chunkable(n)] if engine is not None and engine.name != "local" else []
    check_needs(pool, shipped)
    here = Strategy(tuple((n, w) for n, w in strategy.components if n not in shipped), "top_k")
    raw = dict(score_pool(pool, here, options=options, rng=rng).raw) if here.components else {}
    if shipped:
        raw.update(engine.score(pool, shipped, options))
    return {n: np.asarray(raw[n], np.float64) for n in names}


def score(
    store: Store,
    *,
    strategy: str,
    model_version: str | None = None,
    options: ScoreOptions | None = None,
    normalisation: str = "percentile",
    seed: int | None = 0,
    exclude: Iterable[str] = (),
    engine: str | Any = "local",
    ray_address: str | None = None,
) -> ScoreReport:
    """Score the pool with a strategy's scorers, without selecting or saving a selection
    (``boxloop score``). A selector in the strategy is ignored: scores only."""
    from .engine import get_engine

    options = options or ScoreOptions()
    parsed = parse_strategy(strategy)
    if not parsed.components:
        raise InputError(f"strategy {strategy!r} names no scorer; a selector alone gives no scores")
    eng = get_engine(engine, address=ray_address) if isinstance(engine, str) else engine
    version, chosen = _default_version(store, model_version)
    plain = Strategy(parsed.components, "top_k")
    pool, notes = load_pool(store, version, need=_needs(plain, False), exclude=exclude)
    notes[:0] = chosen
    t0 = time.perf_counter()
    rng = np.random.default_rng(secrets.randbits(32) if seed is None else int(seed))
    raw = score_components(pool, plain, options=options, rng=rng, engine=eng)
    notes.extend(_saturated(raw))
    combined, parts = combine(raw, plain.weights, normalisation=normalisation)
    seconds = time.perf_counter() - t0
    log.info("scored %d items with %s on %s in %.2f s", len(pool), plain, eng.name, seconds)
    return ScoreReport(
        model_version=version, strategy=str(plain), ids=pool.ids, raw=raw, percentiles=dict(parts),
        combined=np.asarray(combined, np.float64), engine=eng.name, seconds=seconds, notes=tuple(notes),
    )


def write_scores_csv(report: ScoreReport, path: str | os.PathLike[str], *, uris: Mapping[str, str] | None = None) -> Path:
    """Write the scores (best first) as CSV, aside and renamed into place; returns the path."""
    import csv
    import io

    from .atomic import write_text_atomic

    names = list(report.raw)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "item_id", "uri", "score", *names, *(f"{n}_percentile" for n in names)])
    for rank, i in enumerate(report.ranking(), 1):
        item_id = report.ids[i]
        w.writerow([
            rank, item_id, (uris or {}).get(item_id, ""), f"{report.combined[i]:.6g}",
            *(f"{report.raw[n][i]:.6g}" for n in names),
            *(f"{report.percentiles[n][i]:.6g}" for n in names),
        ])
    return write_text_atomic(path, buf.getvalue())


def write_selection_csv(store: Store, selection: Selection, path: str | os.PathLike[str]) -> Path:
    """The batch as a to-label list, in the order to label it: rank, item id, uri, image (a
    video frame as its video's name and frame number), score, how it was picked, why (each
    scorer's reason in words) and each scorer's value and percentile; written aside and renamed."""
    import csv
    import io

    from .atomic import write_text_atomic

    names = list(dict.fromkeys(n for i in selection.item_ids for n in selection.why[i].get("components", {})))
    items = store.items(selection.item_ids)
    uris = {it.id: it.uri for it in items}
    shown = store.display_names(items)  # a video frame as "clipA.mp4 frame 10"
    classes = store.classes()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "item_id", "uri", "image", "score", "picked_by", "why", *names,
                *(f"{n}_percentile" for n in names)])
    for rank, item_id in enumerate(selection.item_ids, 1):
        why = selection.why[item_id]
        comps = why.get("components", {})
        words = "; ".join(line for n, c in comps.items() for line in _component_line(n, c, classes, False))
        w.writerow([
            rank, item_id, uris[item_id], shown[item_id], f"{selection.scores[item_id]:.6g}", why.get("selector", ""),
            words,
            *(f"{comps[n]['score']:.6g}" if n in comps else "" for n in names),
            *(f"{comps[n]['percentile']:.6g}" if n in comps else "" for n in names),
        ])
    return write_text_atomic(path, buf.getvalue())


# -- the why, in words ------------------------------------------------------------------------
def _class(cid: int, names: Sequence[str], ids: bool = True) -> str:
    """``class 40 (wine glass)``, or with ``ids`` off ``wine glass`` (an annotator knows classes by name)."""
    if not 0 <= cid < len(names):
        return f"class {cid}"
    return f"class {cid} ({names[cid]})" if ids else str(names[cid])


def _component_line(name: str, c: Mapping[str, Any], names: Sequence[str], ids: bool = True) -> list[str]:
    d = c.get("details", {})
    head = f"{name} {c['score']:.4g} (weight {c['weight']:g}, beats {100 * c['percentile']:.0f}% of the pool)"
    if name in ("least_confidence", "margin", "entropy") and "top_box" in d:
        b = d["top_box"]
        return [f"{head}: most doubtful box is {_class(b['class_id'], names, ids)} at confidence "
                f"{b['confidence']:.2f} (uncertainty {b['uncertainty']:.2f}; {d['boxes']} box(es), "
                f"aggregation {d['aggregation']})"]
    if name in ("least_confidence", "margin", "entropy"):
        return [f"{head}: no box at or above confidence {d.get('band', ['?'])[0]} (counts as one weak box)"]
    if name == "uncertain_count":
        classes = ", ".join(_class(x, names, ids) for x in d.get("classes", []))
        lo, hi = d.get("band", ["?", "?"])
        return [f"{head}: {d.get('boxes', 0)} box(es) with confidence in [{lo}, {hi})" + (f": {classes}" if classes else "")]
    if name == "flicker":
        lines = [head + ":" if d.get("events") else f"{head}: {d.get('note', 'no flicker event')}"]
        for e in d.get("events", []):
            if e["kind"] == "missing":
                a, b = e["seen_in"]
                at = f" at confidence >= {e['min_confidence']:g}" if "min_confidence" in e else ""
                lines.append(f"  flicker: box of {_class(e['class_id'], names, ids)} seen in frames {a} and {b}, "
                             f"missing in {e['missing_in']}{at} (imputed box {e['imputed_xyxy']})")
            else:
                a, b = e["absent_in"]
                lines.append(f"  flicker: box of {_class(e['class_id'], names, ids)} seen only in frame "
                             f"{e['seen_in']}, not in {a} or {b} (confidence {e['confidence']:.2f})")
        return lines
    if name == "consistency" and d:
        return [f"{head}: {d['unmatched']} box(es) without a partner and {d['class_changes']} class "
                f"change(s) between the image and its mirror image ({d['matches']} match(es))"]
    if name == "class_rarity" and "class_id" in d:
        return [f"{head}: {_class(d['class_id'], names, ids)} at confidence {d['confidence']:.2f} has "
                f"{d['labeled_boxes']} of {d['labeled_total']} labeled boxes"]
    if name == "novelty" and d:
        return [f"{head}: cosine distance {d['distance']:.3f} to the nearest labeled image {d['nearest_labeled']}"]
    return [head]


def _selected_id(store: Store, sel: Selection, key: str) -> str:
    """The id of the selected item that ``key`` names: its id, its uri, or its file name when
    one selected image has that name."""
    if key in sel.why:
        return key
    matches = [it for it in store.items(sel.item_ids) if key in (it.uri, it.name)]
    if len(matches) == 1:
        return matches[0].id
    if matches:
        raise InputError(f"{len(matches)} images in selection {sel.id} are named {key!r} "
                         f"({', '.join(it.uri for it in matches[:3])}); give the item id")
    sample = ", ".join(sel.item_ids[:5]) + (" ..." if len(sel.item_ids) > 5 else "")
    raise InputError(f"item {key!r} is not in selection {sel.id} ({len(sel.item_ids)} items: {sample}): "
                     + _why_not_selected(store, key))


def _why_not_selected(store: Store, key: str) -> str:
    """Why the image ``key`` names (an id, a uri or a file name) is in no selection: there is
    no such image, it is labeled, it belongs to the test split, or it was not picked."""
    named = [it for it in store.items() if key in (it.id, it.uri, it.name)]
    if not named:
        return "no image of this workspace has that id, path or file name"
    if len(named) > 1:
        shown = ", ".join(it.uri for it in named[:3]) + (" ..." if len(named) > 3 else "")
        return f"{len(named)} images of this workspace are named so ({shown}); give the item id or the path"
    it = named[0]
    if store.label_versions(it.id):
        return f"{it.uri} is labeled; selections pick from the unlabeled images"
    if it.split == "test":
        return f"{it.uri} belongs to the frozen test split, which is never selected"
    return f"{it.uri} is in the pool but was not picked"


def explain(store: Store, item_id: str, *, selection_id: str | None = None) -> str:
    """Why an item was picked, in words, from a saved selection (the newest by default).
    ``item_id`` may also be the image's uri or file name."""
    sel = store.selection(selection_id)
    item_id = _selected_id(store, sel, item_id)
    w = sel.why[item_id]
    names = store.classes()
    cfg = sel.config
    lines = [
        f"{item_id} ({store.get_item(item_id).uri}): rank {w['rank'] + 1} of {len(sel.item_ids)} in selection {sel.id}",
        f"  model version {sel.model_version}"
        + (f" (embeddings from {cfg['embeddings_model_version']})"
           if cfg.get("embeddings_model_version") not in (None, sel.model_version) else "")
        + f", strategy {sel.strategy}, seed {sel.seed}, {cfg.get('normalisation', 'percentile')} normalisation",
    ]
    lines.extend("  " + line for line in why_lines(
        w, names, alpha=cfg.get("alpha"), file_names=item_names(store, w.get("suppressed_duplicates", ()))
    ))
    return "\n".join(lines)


def item_names(store: Store, ids: Iterable[str]) -> dict[str, str]:
    """The file name of each of ``ids`` the workspace still holds (a why names items by id)."""
    wanted = set(ids)
    return {it.id: it.name for it in store.items() if it.id in wanted} if wanted else {}


def why_lines(
    why: Mapping[str, Any], names: Sequence[str], *, alpha: Any = None, file_names: Mapping[str, str] | None = None,
    class_ids: bool = True,
) -> list[str]:
    """One pick's why (as ``select`` saved it) in words: its score's terms, each scorer's
    reason, how the selector took it. Shared by ``select --explain``, the report's gallery and
    the Label Studio task (``class_ids`` off: classes by name alone). ``file_names`` shows the
    near-duplicates it left out by file name (else by id)."""
    lines = []
    comps = why.get("components", {})
    if comps:
        terms = " + ".join(f"{c['weight']:g} x {c['percentile']:.2f} ({n}'s rank in the pool)" for n, c in comps.items())
        lines.append(f"score {why['score']:.4g} = {terms}; each scorer's own value:")
        for name, c in comps.items():
            lines.extend(_component_line(name, c, names, class_ids))
    if why.get("selector") == "diverse":
        lines.append(f"picked by ranked batch-mode diversity (alpha {alpha}): "
                     "high score, far from labeled images and earlier picks")
    elif why.get("selector") == "k_center":
        lines.append("picked by k-center: the image farthest from everything labeled or picked before it")
    elif why.get("selector") == "uniform":
        lines.append("sampled uniformly: it shares the pool's lowest score with too many others to rank "
                     "(a cold start: the model has no evidence on them)")
    if why.get("suppressed_count"):
        shown = ", ".join((file_names or {}).get(i, i) for i in why["suppressed_duplicates"])
        lines.append(f"{why['suppressed_count']} near-duplicate(s) left out in its favour: {shown}")
    return lines
