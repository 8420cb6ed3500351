"""Label audit: the labeled images whose human labels a model disagrees with most, ranked,
each disagreement named, so a person re-checks a few images instead of every one.

People correcting pre-labels make the mistakes pre-labels invite: an object nobody drew
because the model did not draw it, a box accepted with the wrong class, a box left loose. A
model's confident predictions point at them:

- ``missed``: the model finds an object at ``conf`` or more where no label lies (IoU < 0.5
  with every label): maybe an object nobody drew;
- ``class``: a label the model covers with a confident box of another class, giving the
  label's class little probability: maybe the wrong class;
- ``loose``: a label the model covers confidently with the same class, but at IoU under
  ``loose_iou`` (or under 0.5, beside a confident box of its class that no label lies under):
  maybe a box drawn loosely, cut short or off the object;
- ``unsupported``: a label the model finds nothing like (no box of its class at IoU 0.5 above
  ``support``): maybe a box drawn on nothing, or an object the model cannot see yet. Weighed
  at half, as models miss hard objects more often than people draw on nothing.

A model trained long enough agrees with the labels it was trained on, errors included, so by default only labels
it did not train on are audited: the val and test splits, and labels made or changed after
its training began (the batch just pulled, which the model pre-labeled). Weights from
elsewhere (a COCO checkpoint) trained on none of them.

To audit every label (a dataset labeled elsewhere, brought in whole), ``include_trained``
judges them with the one model; where a model fits its training labels closely,
:func:`audit_out_of_fold` deals the labeled images into K folds and trains K held-out models,
each on every label but one fold's, which it then audits: each label is judged by a model that
never saw it, for the price of K trainings, by models that each learn from fewer labels
(bench/audit.py --folds measures both). The held-out models are not model versions (nothing predicts with them
later); they stay in ``runs/audit-folds/`` so that running the audit again with the same
labels and settings trains nothing, and an interrupted one goes on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .evaluate import box_iou
from .store import Store
from .types import Detections
from .workspace import Workspace

__all__ = [
    "AUDIT_KINDS", "HELD_OUT_DIR", "AuditReport", "Suspect", "assign_folds", "audit", "audit_out_of_fold", "find_suspects",
    "read_audit_csv", "write_audit_csv",
]

log = logging.getLogger(__name__)
AUDIT_KINDS = ("missed", "class", "loose", "unsupported")
MATCH_IOU = 0.5  # a prediction covers a label at this IoU or more
_UNSUPPORTED_WEIGHT = 0.5
_SUPPORT = 0.1  # a label with a same-class box above this is supported
_FAR_IOU = 0.1  # a confident box this near an unmatched label of its class marks the label loose
HELD_OUT_DIR = "audit-folds"  # under runs/: the held-out models of out-of-fold audits


@dataclass(frozen=True)
class Suspect:
    """One disagreement between an image's labels and a model. ``xyxy`` is the box concerned
    (the model's for ``missed``, the label's otherwise), in image pixels; ``score`` in [0, 1]
    ranks it."""

    kind: str
    xyxy: tuple[float, float, float, float]
    label_class: int | None
    model_class: int | None
    confidence: float  # the model's box's; for ``unsupported`` the best support found
    iou: float | None
    score: float

    def describe(self, classes: Sequence[str]) -> str:
        label = classes[self.label_class] if self.label_class is not None else None
        model = classes[self.model_class] if self.model_class is not None else None
        if self.kind == "missed":
            return f"missed {model}? the model finds one at {self.confidence:.2f} where no label is"
        if self.kind == "class":
            return f"class: labeled {label}, the model reads {model} at {self.confidence:.2f}"
        if self.kind == "loose":
            return f"loose {label}? IoU {self.iou:.2f} with the model's box at {self.confidence:.2f}"
        return f"unsupported {label}: the model finds nothing like it (best {self.confidence:.2f})"


@dataclass(frozen=True)
class _Match:
    """How one image's labels and predictions pair up (indices into each)."""

    same: list[tuple[int, int, float]]  # (label, prediction, IoU): the same class, the prediction above support
    cross: list[tuple[int, int, float]]  # the same across classes, for what the first pass left
    bare: list[tuple[int, float]]  # (label, best same-class confidence): no prediction took it
    extra: list[int]  # predictions at conf or more that no label lies under (IoU < 0.5 with every label)
    ious: np.ndarray  # (labels, predictions)


def _match(labels: Detections, pred: Detections, *, conf: float, support: float) -> _Match:
    h_cls = np.asarray(labels.class_id, np.int64)
    p_cls = np.asarray(pred.class_id, np.int64)
    p_conf = np.asarray(pred.confidence, np.float64)
    ious = box_iou(labels.xyxy, pred.xyxy) if len(labels) and len(pred) else np.zeros((len(labels), len(pred)))
    h_taken = np.zeros(len(labels), bool)
    p_taken = np.zeros(len(pred), bool)
    found: dict[bool, list[tuple[int, int, float]]] = {True: [], False: []}
    # same class first, best IoU first; then what is left across classes
    for same_class in (True, False):
        pairs = [
            (float(ious[i, j]), int(i), int(j)) for i, j in zip(*np.nonzero(ious >= MATCH_IOU), strict=True)
            if (h_cls[i] == p_cls[j]) == same_class and p_conf[j] >= min(conf, support)
        ]
        for iou, i, j in sorted(pairs, key=lambda t: (-t[0], -p_conf[t[2]])):
            if not (h_taken[i] or p_taken[j]):
                h_taken[i] = p_taken[j] = True
                found[same_class].append((i, j, iou))
    bare = []
    for i in np.flatnonzero(~h_taken):
        same = (p_cls == h_cls[i]) & (ious[i] >= MATCH_IOU) if len(pred) else np.zeros(0, bool)
        bare.append((int(i), float(p_conf[same].max()) if same.any() else 0.0))
    # a second box on a labeled object is the model's duplicate, not a missed object
    extra = [
        int(j) for j in np.flatnonzero(~p_taken & (p_conf >= conf))
        if not (len(labels) and (ious[:, j] >= MATCH_IOU).any())
    ]
    return _Match(found[True], found[False], bare, extra, ious)


def find_suspects(
    labels: Detections,
    pred: Detections,
    *,
    conf: float = 0.5,
    loose_iou: float = 0.7,
    support: float = 0.1,
    unlikely: float = 0.2,
) -> list[Suspect]:
    """An image's disagreements, most suspect first (see the module's doc for each kind).
    ``unlikely``: the most probability a confident box of another class may give the
    label's class for a ``class`` suspect. The scores are the model's own numbers:
    ``missed`` its confidence, ``class`` its confidence times the probability it leaves the
    label's class, ``loose`` its confidence times (1 - IoU), ``unsupported`` 0.5 (1 - its
    best support)."""
    if pred.confidence is None:
        raise InputError("predictions to audit against need confidences")
    h_cls = np.asarray(labels.class_id, np.int64)
    p_cls = np.asarray(pred.class_id, np.int64)
    p_conf = np.asarray(pred.confidence, np.float64)
    probs = pred.data.get("class_probs") if pred.data else None
    m = _match(labels, pred, conf=conf, support=support)
    out: list[Suspect] = []

    def box(xyxy: np.ndarray) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in xyxy)  # type: ignore[return-value]

    for i, j, iou in m.same:
        if p_conf[j] >= conf and iou < loose_iou:
            score = p_conf[j] * (1.0 - iou)
            out.append(Suspect("loose", box(labels.xyxy[i]), int(h_cls[i]), int(p_cls[j]), float(p_conf[j]), iou, float(score)))
    for i, j, iou in m.cross:
        p_label = float(probs[j, h_cls[i]]) if probs is not None and h_cls[i] < probs.shape[1] else 0.0
        if p_conf[j] >= conf and p_label <= unlikely:
            score = p_conf[j] * (1.0 - p_label)
            out.append(Suspect("class", box(labels.xyxy[i]), int(h_cls[i]), int(p_cls[j]), float(p_conf[j]), iou, float(score)))
    # a label no box matched, beside a confident box of its class that no label lies under:
    # one box drawn far off (loose), not a missed object and a box on nothing
    far: dict[int, tuple[int, float]] = {}
    taken: set[int] = set()
    for i, best in m.bare:
        near = [
            (float(m.ious[i, j]), j) for j in m.extra
            if p_cls[j] == h_cls[i] and m.ious[i, j] >= _FAR_IOU and j not in taken
        ]
        if best < support and near:
            iou, j = max(near)
            far[i] = (j, iou)
            taken.add(j)
    for i, (j, iou) in far.items():
        out.append(Suspect(
            "loose", box(labels.xyxy[i]), int(h_cls[i]), int(p_cls[j]), float(p_conf[j]), iou,
            float(p_conf[j] * (1.0 - iou)),
        ))
    for i, best in m.bare:
        if best < support and i not in far:
            score = _UNSUPPORTED_WEIGHT * (1.0 - best)
            out.append(Suspect("unsupported", box(labels.xyxy[i]), int(h_cls[i]), None, best, None, float(score)))
    for j in m.extra:
        if j not in taken:
            score = float(p_conf[j])
            out.append(Suspect("missed", box(pred.xyxy[j]), None, int(p_cls[j]), float(p_conf[j]), None, float(score)))
    return sorted(out, key=lambda s: -s.score)


@dataclass
class AuditReport:
    """What an audit found: ``images`` are (item id, score, suspects), most suspect first."""

    model_version: str
    audited: int = 0
    trained_on: int = 0  # labeled items left out: the model trained on their labels
    boxes: int = 0  # labels judged
    images: list[tuple[str, float, list[Suspect]]] = field(default_factory=list)
    checked: int = 0  # images with suspects a person re-checked at these labels and kept: passed over

    def too_weak(self) -> bool:
        """Whether the model finds nothing like most labels: it cannot tell mistakes yet."""
        return self.boxes > 0 and self.counts()["unsupported"] > 0.5 * self.boxes

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(AUDIT_KINDS, 0)
        for _, _, suspects in self.images:
            for s in suspects:
                out[s.kind] += 1
        return out


def _training_start(version: Mapping[str, Any]) -> float | None:
    """When a boxloop-trained version's training began (its labels were read then); None for
    weights from elsewhere, which trained on none of the workspace's labels."""
    meta = version.get("meta") or {}
    if "train_images" not in meta:
        return None
    return float(version["created_at"]) - float(meta.get("seconds") or 0.0)


def audit(
    ws: Workspace,
    *,
    model: str | Path | None = None,
    conf: float = 0.5,
    loose_iou: float = 0.7,
    include_trained: bool = False,
    progress: Any = None,
    **predict_options: Any,
) -> AuditReport:
    """Audit the workspace's human labels against a model version (the newest by default),
    predicting the labeled images it has not predicted yet; see the module's doc."""
    from .modeling import predict, resolve_model

    _check_thresholds(conf, loose_iou)
    store = ws.store
    labels = store.latest_labels()
    if not labels:
        raise InputError("no labeled images to audit; `boxloop add labels PATH` or `boxloop pull` first")
    resolved = resolve_model(ws, model)
    version_row = next((v for v in store.model_versions() if v["id"] == resolved.version), {})
    start = _training_start(version_row) if version_row else None
    items = {it.id: it for it in store.items(ids=list(labels))}
    audited = list(items)
    trained_on: list[str] = []
    if start is not None and not include_trained:
        then = store.latest_labels(list(items), as_of=start)
        trained_on = [
            i for i in audited
            if items[i].split == "train" and i in then and then[i].equals(labels[i])
        ]
        left_out = set(trained_on)
        audited = [i for i in audited if i not in left_out]
    report = AuditReport(resolved.version, audited=len(audited), trained_on=len(trained_on))
    if not audited:
        return report
    preds = store.predictions(resolved.version, audited)
    missing = [i for i in audited if i not in preds]
    if missing:
        if resolved.path is None:
            raise InputError(
                f"model version {resolved.version} has no weights and no predictions for {len(missing)} "
                "labeled image(s) to audit"
            )
        done = predict(ws, model=model, ids=missing, progress=progress, **predict_options)
        for problem in done.problems:
            log.warning("%s", problem)
        preds = store.predictions(resolved.version, audited)
    _judge(report, labels, preds, audited, conf=conf, loose_iou=loose_iou)
    return _pass_over_checked(store, report)


def _pass_over_checked(store: Store, report: AuditReport) -> AuditReport:
    """The report without the images a person re-checked at their current labels and kept (a
    review confirmed, a re-check zip brought back unchanged): listed again, every audit by the
    same model would put what the person chose to keep back at the top."""
    checked = store.checked_versions()
    if not checked:
        return report
    current = {i: store.label_version(i) for i, _, _ in report.images if i in checked}
    kept = [entry for entry in report.images if not (entry[0] in current and current[entry[0]] == checked[entry[0]])]
    report.checked = len(report.images) - len(kept)
    report.images = kept
    return report


def _judge(report: AuditReport, labels: Mapping[str, Detections], preds: Mapping[str, Detections], ids: Sequence[str],
           *, conf: float, loose_iou: float) -> None:
    for item_id in [i for i in ids if i in preds]:  # one that could not be read: predict named it
        report.boxes += len(labels[item_id])
        suspects = find_suspects(labels[item_id], preds[item_id], conf=conf, loose_iou=loose_iou, support=_SUPPORT)
        if suspects:
            report.images.append((item_id, suspects[0].score, suspects))
    report.images.sort(key=lambda t: (-t[1], t[0]))


def _check_thresholds(conf: float, loose_iou: float) -> None:
    if not 0.0 < conf < 1.0:
        raise InputError(f"--conf must be within (0, 1), got {conf}")
    if not 0.0 < loose_iou <= 1.0:
        raise InputError(f"--loose-iou must be within (0, 1], got {loose_iou}")


def assign_folds(item_ids: Sequence[str], folds: int) -> dict[str, int]:
    """Each item's fold (0..folds-1), from a hash of its id: the same every run, and a label
    added later leaves every other item in its fold."""
    return {i: int(hashlib.sha256(i.encode()).hexdigest()[:12], 16) % folds for i in item_ids}


def audit_out_of_fold(
    ws: Workspace,
    *,
    folds: int = 5,
    conf: float = 0.5,
    loose_iou: float = 0.7,
    say: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    progress: Any = None,
    **train_options: Any,
) -> AuditReport:
    """Audit every human label with a model that did not train on it: K held-out models,
    each trained (``train_options``: as `train`'s, defaults from [train]) on the labels of
    all folds but one, and auditing that one. See the module's doc."""
    from .modeling import predict_with_weights, train_held_out

    _check_thresholds(conf, loose_iou)
    if folds < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    store = ws.store
    labels = store.latest_labels()
    if not labels:
        raise InputError("no labeled images to audit; `boxloop add labels PATH` or `boxloop pull` first")
    if len(labels) < 2 * folds:
        raise InputError(
            f"{len(labels)} labeled image(s) are too few for {folds} folds (each held-out model would train on about "
            f"{len(labels) * (folds - 1) // folds}); use fewer --folds, or audit with one model"
        )
    fold_of = assign_folds(list(labels), folds)
    items = {it.id: it for it in store.items(ids=list(labels))}
    model = train_options.get("model") or ws.config.train.model
    tile = ws.config.train.tile or None  # [train] tile: the held-out models train and predict by tiles too
    given = train_options.get("imgsz")
    imgsz = int(given if given is not None else (tile or ws.config.train.imgsz))
    report = AuditReport(f"{folds} held-out {Path(str(model)).stem} models", audited=len(labels))
    for k in range(folds):
        held = [i for i in labels if fold_of[i] == k]
        if not held:  # a fold the hash dealt nothing: no model to train for it
            continue
        if say:
            say(f"fold {k + 1} of {folds}: training on {len(labels) - len(held)} labeled image(s), auditing {len(held)}")
        started = time.time()
        run_dir = ws.runs_dir / HELD_OUT_DIR / f"fold-{k + 1}-of-{folds}"
        weights = train_held_out(ws, run_dir, exclude=set(held), on_epoch=on_epoch, **train_options)
        if say and weights.stat().st_mtime < started:
            say(f"  trained already on these labels and settings: reused {run_dir.relative_to(ws.root)}")
        preds, problems = predict_with_weights(ws, weights, [items[i] for i in held], imgsz=imgsz, tile=tile,
                                               progress=progress)
        for problem in problems:
            log.warning("%s", problem)
        _judge(report, labels, preds, held, conf=conf, loose_iou=loose_iou)
    return _pass_over_checked(store, report)


def write_audit_csv(ws: Workspace, report: AuditReport, path: str | Path) -> Path:
    """One row per suspect, images in the order to re-check them: rank, item id, image,
    image score, kind, label class, model class, confidence, IoU, box (x1, y1, x2, y2 in the
    image's pixels), and the suspect in words; written aside and renamed."""
    import csv
    import io

    from .atomic import write_text_atomic

    classes = ws.classes
    uris = {it.id: it.uri for it in ws.store.items([i for i, _, _ in report.images])}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([
        "rank", "item_id", "uri", "image_score", "kind", "label_class", "model_class", "confidence", "iou",
        "x1", "y1", "x2", "y2", "why",
    ])
    for rank, (item_id, score, suspects) in enumerate(report.images, 1):
        for s in suspects:
            w.writerow([
                rank, item_id, uris[item_id], f"{score:.4f}", s.kind,
                "" if s.label_class is None else classes[s.label_class],
                "" if s.model_class is None else classes[s.model_class],
                f"{s.confidence:.4f}", "" if s.iou is None else f"{s.iou:.4f}",
                *(f"{v:.1f}" for v in s.xyxy), s.describe(classes),
            ])
    return write_text_atomic(path, buf.getvalue())


def read_audit_csv(path: str | Path) -> list[tuple[str, float, list[dict[str, str]]]]:
    """A CSV ``write_audit_csv`` wrote, back as (item id, image score, its rows), in rank
    order; a row it cannot read is an error naming the file and line."""
    import csv

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"{path}: cannot read the audit CSV: {e.strerror or e}") from e
    reader = csv.DictReader(text.splitlines())
    need = {"rank", "item_id", "image_score", "kind", "x1", "y1", "x2", "y2", "why"}
    if not need <= set(reader.fieldnames or ()):
        raise InputError(f"{path}: not an audit CSV (boxloop audit --out): it lacks {', '.join(sorted(need - set(reader.fieldnames or ())))}")
    images: dict[str, tuple[int, float, list[dict[str, str]]]] = {}
    for line, row in enumerate(reader, start=2):
        try:
            rank, score = int(row["rank"]), float(row["image_score"])
            [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}:{line}: not an audit row: {e}") from e
        if row["kind"] not in AUDIT_KINDS:
            raise InputError(f"{path}:{line}: unknown kind {row['kind']!r}; known: {', '.join(AUDIT_KINDS)}")
        images.setdefault(row["item_id"], (rank, score, []))[2].append(row)
    return [(item_id, score, rows) for item_id, (_, score, rows) in sorted(images.items(), key=lambda kv: kv[1][0])]
