"""Ultralytics backend (YOLO and RT-DETR detectors): train on a YOLO dataset view; predict
every box down to a low threshold with its full class-score vector (read from the head, before
NMS; an RT-DETR's from its decoder's queries) and a pooled backbone embedding.

The letterbox and NMS here are numpy + OpenCV and shared with the ONNX Runtime backend
(backends/onnx.py), so both runtimes turn the same network output into the same boxes.
torch and ultralytics are imported only inside functions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InputError
from ..types import Detections
from .base import Prediction, TrainResult

__all__ = [
    "DETECT_HEADS",
    "DETR_HEADS",
    "Letterboxed",
    "UltralyticsBackend",
    "YoloRuntime",
    "class_matrix",
    "decode_output",
    "detr_model",
    "head_output",
    "is_detr",
    "letterbox",
    "load_backend",
    "not_a_detector",
    "parse_class_map",
    "require_detector",
    "resolve_model_arg",
    "resumable_epoch",
    "train_yolo",
]

log = logging.getLogger(__name__)

MAX_DET = 300  # boxes kept per image after NMS (Ultralytics' default)
MAX_NMS = 30000  # candidates going into NMS
_MAX_WH = 7680.0  # class offset for one class-aware NMS pass (Ultralytics' trick)
PAD_VALUE = 114
_YAML = (".yaml", ".yml")


# -- pre- and post-processing shared by every YOLO-family runtime -----------------------------


@dataclass(frozen=True)
class Letterboxed:
    """An image ready for the network: CHW float32 in [0, 1] and how to map boxes back."""

    blob: np.ndarray  # (3, H, W) float32, RGB
    gain: float | tuple[float, float]  # one for both sides, or (x, y) for a picture stretched
    pad: tuple[int, int]  # left, top
    shape: tuple[int, int]  # original (height, width)
    # the original's pixels per pixel of the image letterboxed (x, y): a JPEG decoded at a
    # reduced size (1/2, 1/4, 1/8) for a network input that small
    scale: tuple[float, float] = (1.0, 1.0)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept HxWx3 RGB uint8 (the backend contract); gray and RGBA are converted, others refused."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(f"images must be uint8, got {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 4:
        return a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"images must be HxWx3 RGB, got shape {a.shape}")
    return a


def letterbox(image: np.ndarray, imgsz: tuple[int, int], *, stretch: bool = False) -> Letterboxed:
    """Resize keeping the aspect ratio and pad to ``imgsz`` (h, w) with grey, as Ultralytics does;
    with ``stretch``, resize to ``imgsz`` whatever the aspect ratio, as Ultralytics feeds an
    RT-DETR (its ``scale_fill``)."""
    import cv2

    image = as_rgb(image)
    h, w = image.shape[:2]
    new_h, new_w = imgsz
    if stretch:
        img = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        return Letterboxed(cv2.dnn.blobFromImage(img, scalefactor=1 / 255.0)[0], (new_w / w, new_h / h), (0, 0), (h, w))
    r = min(new_h / h, new_w / w)
    nw, nh = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (new_w - nw) / 2, (new_h - nh) / 2
    img = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    blob = cv2.dnn.blobFromImage(img, scalefactor=1 / 255.0)[0]  # (3, H, W) float32, channel order kept
    return Letterboxed(blob, r, (left, top), (h, w))


def decode_output(
    raw: np.ndarray,
    boxed: Letterboxed,
    *,
    conf: float,
    iou: float,
    classes_matrix: np.ndarray | None = None,
    max_det: int = MAX_DET,
) -> Detections:
    """One image's head output (4 + nc, anchors; an RT-DETR's queries, :func:`head_output`):
    xywh in network pixels then per-class sigmoid scores → boxes in image pixels after
    class-aware NMS, each with ``confidence`` (its best class score) and ``data["class_probs"]`` (the score vector normalised to 1).

    ``classes_matrix`` (model classes × project classes) maps the score vector into the
    project's classes; the box's class is the argmax of the mapped vector. Model classes
    with a row of zeros (not the project's) are left out before anything else: no box of
    theirs, no share of any box's probabilities."""
    import cv2

    scores = raw[4:].T  # (A, nc)
    if classes_matrix is not None and not classes_matrix.any(axis=1).all():
        used = classes_matrix.any(axis=1)  # the model's classes the project has
        scores, classes_matrix = scores[:, used], classes_matrix[used]
    best = scores.max(axis=1)
    keep = np.flatnonzero(best > conf)
    n_out = scores.shape[1] if classes_matrix is None else classes_matrix.shape[1]
    if not len(keep):
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
            {"class_probs": np.zeros((0, n_out), np.float32)},
        )
    if len(keep) > MAX_NMS:
        keep = keep[np.argsort(-best[keep], kind="stable")[:MAX_NMS]]
    xywh = raw[:4, keep].T.astype(np.float64)
    s = scores[keep]
    c = best[keep]
    cls = s.argmax(axis=1)
    # one NMS pass for all classes: boxes of different classes are moved apart
    offset = (cls * _MAX_WH)[:, None]
    nms_boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2 + offset, xywh[:, 2:]], axis=1)
    found = cv2.dnn.NMSBoxes(nms_boxes.tolist(), c.astype(float).tolist(), float(conf), float(iou))
    picked = np.asarray(found, np.int64).reshape(-1)[:max_det]
    xywh, s, c = xywh[picked], s[picked], c[picked]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    left, top = boxed.pad
    sx, sy = boxed.scale
    gx, gy = boxed.gain if isinstance(boxed.gain, tuple) else (boxed.gain, boxed.gain)
    xyxy = (xyxy - np.array([left, top, left, top])) / np.array([gx, gy, gx, gy]) * np.array([sx, sy, sx, sy])
    h, w = boxed.shape
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    probs = s / np.maximum(s.sum(axis=1, keepdims=True), 1e-12)
    if classes_matrix is not None:
        probs = probs @ classes_matrix
    probs = probs.astype(np.float32)
    return Detections(xyxy.astype(np.float32), probs.argmax(axis=1), c.astype(np.float32), {"class_probs": probs})


def parse_class_map(pairs: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["old=new", ...]`` (or a mapping) → {old: new}; a malformed pair is an InputError."""
    if pairs is None:
        return {}
    if isinstance(pairs, Mapping):
        return {str(k): str(v) for k, v in pairs.items()}
    out: dict[str, str] = {}
    for pair in pairs:
        for part in str(pair).split(","):
            if not part.strip():
                continue
            old, sep, new = part.partition("=")
            if not sep or not old.strip() or not new.strip():
                raise InputError(f"--class-map expects old=new, got {part!r}")
            out[old.strip()] = new.strip()
    return out


def class_matrix(
    model_classes: Sequence[str], project_classes: Sequence[str], class_map: Mapping[str, str] | None = None,
    *, source: str = "the weights",
) -> np.ndarray | None:
    """The (model × project) 0/1 matrix sending each model class to its project class by
    name (after ``class_map``); None when the two lists are the same. A model class the
    project lacks gets a row of zeros, so its boxes are not predicted (a COCO model in a
    project of cars and people finds cars and people), and a warning names it; when no
    model class is the project's it is an error listing both lists."""
    class_map = dict(class_map or {})
    unknown_keys = sorted(set(class_map) - set(model_classes))
    if unknown_keys:
        raise InputError(
            f"--class-map names {', '.join(unknown_keys)}, not classes of {source}: {list(model_classes)}"
        )
    unknown_values = sorted(set(class_map.values()) - set(project_classes))
    if unknown_values:
        raise InputError(
            f"--class-map maps onto {', '.join(unknown_values)}, not classes of the project: {list(project_classes)}"
        )
    mapped = [class_map.get(n, n) for n in model_classes]
    if list(mapped) == list(project_classes):
        return None
    index = {n: i for i, n in enumerate(project_classes)}
    missing = [n for n in model_classes if class_map.get(n, n) not in index]
    if len(missing) == len(model_classes):
        raise BackendError(
            f"class names of {source} differ from the project's: model {list(model_classes)} vs "
            f"project {list(project_classes)} (none in common); map them with --class-map old=new"
        )
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        log.warning(
            "%s: %d of its %d classes are not the project's and are not predicted (%s); "
            "--class-map old=new maps one onto a project class",
            source, len(missing), len(model_classes), shown,
        )
    m = np.zeros((len(model_classes), len(project_classes)), np.float32)
    for i, n in enumerate(mapped):
        if n in index:
            m[i, index[n]] = 1.0
    return m


@dataclass
class StageTimes:
    """Seconds spent per stage over all images (worker threads add up)."""

    seconds: dict[str, float] = field(default_factory=dict)
    images: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, dt: float, images: int = 0) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + dt
            self.images += images

    def ms_per_image(self) -> dict[str, float]:
        n = max(self.images, 1)
        return {k: 1000 * v / n for k, v in self.seconds.items()}

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.images = 0


class YoloRuntime:
    """What the torch and ONNX YOLO backends share: letterbox (``prepare``, thread-safe),
    network call (``_forward``), decode + NMS + class mapping (``run``)."""

    name = "yolo"
    imgsz: tuple[int, int]
    stretch = False  # an RT-DETR sees the picture stretched to its square input, not letterboxed
    model_classes: list[str]
    _classes: list[str]
    _matrix: np.ndarray | None

    def _init_classes(
        self, model_classes: Sequence[str], classes: Sequence[str] | None, class_map: Mapping[str, str] | None,
        source: str,
    ) -> None:
        self.model_classes = list(model_classes)
        self._classes = list(classes) if classes is not None else list(model_classes)
        self._matrix = class_matrix(self.model_classes, self._classes, class_map, source=source)
        self.times = StageTimes()

    @property
    def classes(self) -> list[str]:
        """The classes of ``class_id`` and of the columns of ``class_probs`` (the project's)."""
        return list(self._classes)

    def prepare(self, image: np.ndarray) -> Letterboxed:
        t = time.perf_counter()
        out = letterbox(image, self.imgsz, stretch=self.stretch)
        self.times.add("preprocess", time.perf_counter() - t)
        return out

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def run(self, prepared: Sequence[Letterboxed], *, conf: float = 0.01, iou: float = 0.6) -> list[Prediction]:
        """Predictions for letterboxed images (one network call per batch)."""
        if not prepared:
            return []
        t = time.perf_counter()
        raw, emb = self._forward(np.stack([p.blob for p in prepared]))
        t2 = time.perf_counter()
        out = [
            Prediction(
                decode_output(raw[i], p, conf=conf, iou=iou, classes_matrix=self._matrix),
                None if emb is None else np.ascontiguousarray(emb[i], np.float32),
            )
            for i, p in enumerate(prepared)
        ]
        self.times.add("inference", t2 - t)
        self.times.add("postprocess", time.perf_counter() - t2, images=len(prepared))
        return out

    def predict(self, images: Sequence[np.ndarray], *, conf: float = 0.01, iou: float = 0.6) -> list[Prediction]:
        """Boxes, class probabilities and an embedding for each RGB image."""
        return self.run([self.prepare(im) for im in images], conf=conf, iou=iou)


# -- the torch runtime --------------------------------------------------------------------------


def input_shape(imgsz: int | Sequence[int], stride: int = 32) -> tuple[int, int]:
    """(h, w) network input for an int size (square) or an (h, w) pair, rounded up to the stride."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, (int, np.integer)) else (int(imgsz[0]), int(imgsz[1]))
    return tuple(max(stride, int(np.ceil(v / stride) * stride)) for v in (h, w))  # type: ignore[return-value]


def rect_shape(imgsz: int, width: int, height: int, stride: int = 32) -> tuple[int, int]:
    """The smallest (h, w) input holding an image of this size scaled so its long side is
    ``imgsz``: 320x240 images at 320 run at 256x320, 20% fewer pixels than 320x320."""
    r = imgsz / max(width, height)
    return input_shape((round(height * r), round(width * r)), stride)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (under ``taskset -c 0`` that is one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_all_cores() -> None:
    """Ultralytics sets torch to cpu_count - 1 threads (1 on 2 cores); use them all
    (:func:`usable_cores`)."""
    import torch

    n = usable_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def readable_suffixes() -> frozenset[str]:
    """The image suffixes boxloop hands this Ultralytics to train on as they are: those it
    reads (``.jpg``, ...), but a HEIC or AVIF, which it decodes slowly through Pillow where
    recent versions read them at all. Any other picture goes to it as a JPEG of it."""
    from ultralytics.data.utils import IMG_FORMATS

    return frozenset(f".{s.lower()}" for s in IMG_FORMATS) - {".heic", ".heif", ".avif"}


def resolve_model_arg(model: str | Path) -> tuple[str, bool]:
    """(what to hand Ultralytics, whether it is a yaml). A weights file must exist locally:
    boxloop never lets Ultralytics download a checkpoint by name."""
    text = str(model)
    if text.lower().endswith(_YAML):
        p = Path(text).expanduser()
        if p.is_file():
            return str(p.absolute()), True
        if os.sep in text or "/" in text:
            raise InputError(f"{text}: model yaml not found")
        return text, True  # a name Ultralytics ships, e.g. yolov8n.yaml (no download)
    p = Path(text).expanduser()
    if not p.exists():
        raise InputError(
            f"{text}: weights file not found (boxloop never downloads weights; give a local .pt/.onnx "
            "file or a model yaml such as yolov8n.yaml to train from scratch)"
        )
    if not p.is_file():
        raise InputError(f"{text}: not a file")
    return str(p.absolute()), False


def require_trainable_model(model: str | Path) -> None:
    """Refuse, before a run's folder is made, what training would fail on once it loads it: a
    weights file that is not there, or a model yaml whose head is no detector's (a
    segmentation, pose, oriented-box or classification yaml); weights are checked as the
    trainer loads them (:func:`require_detector`)."""
    arg, is_yaml = resolve_model_arg(model)
    if not is_yaml:
        return
    try:
        head = yaml_head(arg)
    except Exception as e:  # a yaml Ultralytics cannot read: its trainer says what is wrong
        log.debug("%s: head not read (%s)", model, e)
        return
    if head and head not in DETECT_HEADS | DETR_HEADS:
        raise not_a_detector(model, [head])


def _names_list(names: Any) -> list[str]:
    if isinstance(names, Mapping):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names]


# heads that are YOLO detectors of axis-aligned boxes (YOLOv5u, v8, v9, 11, 26; v10's)
DETECT_HEADS = frozenset({"Detect", "v10Detect"})
# a detection transformer's decoder (RT-DETR): its queries' boxes and every class's score,
# read as a YOLO head's output (head_output)
DETR_HEADS = frozenset({"RTDETRDecoder"})
# what a user calls the models whose heads are neither, by a class in the head's ancestry
_HEAD_KINDS = {
    "Segment": "a segmentation", "Pose": "a pose", "OBB": "an oriented-box", "Classify": "a classification",
    "WorldDetect": "a YOLO-World", "YOLOEDetect": "a YOLOE",
}


def head_name(model: Any) -> str:
    """The class name of a detector's last layer, its head ("Detect", "RTDETRDecoder", ...)."""
    layers = getattr(model, "model", None)
    return type(layers[-1] if layers is not None and len(layers) else model).__name__


def is_detr(model: Any) -> bool:
    """Whether a model is a detection transformer (RT-DETR): it is trained by its own trainer
    and sees pictures stretched to a square, not letterboxed."""
    return head_name(model) in DETR_HEADS


def require_detector(model: Any, source: str | Path) -> None:
    """Refuse, before any training or predicting, a model whose head is not a detection head
    of axis-aligned boxes (a YOLO's or an RT-DETR's): a segmentation model fails after its
    first epoch, an oriented-box one would draw its rotated boxes as axis-aligned ones. The
    error names the file and the kind of model."""
    if head_name(model) not in DETECT_HEADS | DETR_HEADS:
        layers = getattr(model, "model", None)
        head = layers[-1] if layers is not None and len(layers) else model
        raise not_a_detector(source, [c.__name__ for c in type(head).__mro__])


def not_a_detector(source: str | Path, head: Sequence[str], task: str | None = None) -> InputError:
    """The error for a model whose head (its class name first, then its ancestry) is no YOLO
    detection head, or whose ``task`` (ONNX metadata) is not ``detect``."""
    kind = next((k for cls, k in _HEAD_KINDS.items() for name in head if cls in name), None)
    name = head[0] if head else "?"
    what = (
        f"{kind} model ({name} head)" if kind
        else f"a {task} model" if task and task != "detect"
        else f"not a detection model (its last layer is {name})"
    )
    return InputError(
        f"{source}: {what}; boxloop trains and reads detectors of axis-aligned boxes "
        "(YOLOv5u, v8, v9, v10, 11, 26, RT-DETR): give one of their yamls (yolo11n.yaml) or detection weights (.pt)"
    )


def load_torch_model(weights: str | Path, *, nc: int | None = None, device: str = "cpu") -> tuple[Any, list[str], int]:
    """(fused eval DetectionModel, its class names, its training imgsz) from a .pt file or a
    model yaml (a fresh model with ``nc`` classes). Errors name the file."""
    import torch

    arg, is_yaml = resolve_model_arg(weights)
    model: Any
    dev = torch.device("cpu" if device == "cpu" else (device if str(device).startswith("cuda") else f"cuda:{device}"))
    if is_yaml:
        from ultralytics.nn.tasks import DetectionModel, RTDETRDetectionModel

        try:
            kind = RTDETRDetectionModel if yaml_head(arg) in DETR_HEADS else DetectionModel
            model = kind(arg, nc=nc, verbose=False)
        except (FileNotFoundError, KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise InputError(f"{weights}: cannot build a model from this yaml: {e}") from e
        names = [str(i) for i in range(int(model.model[-1].nc))]
        imgsz = 640
    else:
        from ultralytics.nn.tasks import load_checkpoint

        if os.path.getsize(arg) == 0:
            raise BackendError(f"{weights}: empty weights file (0 bytes)")
        try:
            model, _ = load_checkpoint(arg, device="cpu", fuse=False)
        except Exception as e:  # torch.load and Ultralytics raise a zoo of types for a bad file
            raise BackendError(f"{weights}: cannot load weights (corrupt or not an Ultralytics checkpoint): {e}") from e
        names = _names_list(getattr(model, "names", None) or [str(i) for i in range(getattr(model, "nc", 0))])
        targs = getattr(model, "args", {}) or {}
        imgsz = int(targs.get("imgsz", 640)) if isinstance(targs.get("imgsz", 640), (int, float)) else 640
    require_detector(model, weights)
    head = model.model[-1]
    if getattr(head, "one2one_cv2", None) is not None:
        # NMS-free heads (YOLO26, YOLOv10) keep top classes only: use the one-to-many branch
        head.end2end = False
    model = model.float().fuse(verbose=False).eval().to(dev)
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
    return model, names, imgsz


def yaml_head(arg: str) -> str:
    """The module name of a model yaml's last layer (its head), "" where the yaml has none;
    ``arg`` is a file or a yaml Ultralytics ships (``rtdetr-l.yaml``)."""
    from ultralytics.nn.tasks import yaml_model_load

    layers = (yaml_model_load(arg).get("head") or [[]])[-1]
    return str(layers[2]) if len(layers) > 2 else ""


def detr_model(model: str | Path) -> bool:
    """Whether a model yaml or weights file is an RT-DETR (read without building it); False
    for what cannot be read, which training names when it loads it."""
    try:
        arg, is_yaml = resolve_model_arg(model)
        if is_yaml:
            return yaml_head(arg) in DETR_HEADS
        import torch

        ckpt = torch.load(arg, map_location="cpu", weights_only=False)
    except Exception as e:  # a missing, corrupt or foreign file: the trainer says what is wrong
        log.debug("%s: not read as a model (%s)", model, e)
        return False
    net = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, Mapping) else None
    return net is not None and is_detr(net)


def head_output(out: Any, x: Any, *, detr: bool) -> Any:
    """A detector's output for the batch ``x`` as one tensor (batch, 4 + nc, boxes): each box's
    center x, y, width and height in input pixels, then every class's score, before NMS. A
    YOLO head gives that itself; an RT-DETR's decoder gives its queries' boxes (normalized)
    and class logits beside its top-k answer (one class a box), and these are read instead."""
    if not detr:
        return out[0] if isinstance(out, (tuple, list)) else out
    import torch

    boxes, logits = out[1][0][-1], out[1][1][-1]  # the last decoder layer's: (batch, queries, 4 / nc)
    h, w = x.shape[2:]
    xywh = boxes * boxes.new_tensor([w, h, w, h])
    return torch.cat([xywh, logits.sigmoid()], dim=-1).transpose(1, 2)


def backbone_end(model: Any) -> int:
    """Index of the last backbone layer."""
    yaml = getattr(model, "yaml", None) or {}
    n = len(yaml.get("backbone", [])) if isinstance(yaml, Mapping) else 0
    return n - 1 if n > 0 else max(len(model.model) - 2, 0)


_PROBE = 64  # pixels of the probe image that tells the backbone layers' strides apart


def embedding_layers(model: Any) -> list[int]:
    """Backbone layers whose pooled outputs make the image embedding: the last layer of each
    stage from stride 4 to the backbone's end (yolov8n: 2, 4, 6, 9). Early stages see light,
    blur and noise, late ones shapes; the last layer alone hardly tells a dark, noisy shot
    of a display from a clear one. Found by one forward pass of a small blank image."""
    import torch

    end = backbone_end(model)
    widths: dict[int, int] = {}

    def keep(i: int) -> Callable[..., None]:
        def hook(_m: Any, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                widths[i] = int(out.shape[-1])
        return hook

    hooks = [model.model[i].register_forward_hook(keep(i)) for i in range(end + 1)]
    try:
        p = next(model.parameters())
        with torch.inference_mode():
            model(torch.zeros(1, 3, _PROBE, _PROBE, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
    last: dict[int, int] = {}
    for i in sorted(widths):
        last[widths[i]] = i
    layers = sorted(i for w, i in last.items() if _PROBE // w >= 4)
    return layers or [end]


def pooled_embedding(features: Sequence[Any]) -> Any:
    """The image embedding from the chosen layers' outputs (torch tensors, N x C x H x W):
    each mean-pooled and scaled to unit length, so every stage weighs the same, then joined
    (unit length overall)."""
    import torch

    parts = [torch.nn.functional.normalize(f.float().mean(dim=(2, 3)), dim=1) for f in features]
    return torch.cat(parts, dim=1) / float(len(parts)) ** 0.5


class EmbeddingTap:
    """Forward hooks on a detector's :func:`embedding_layers`; :meth:`take` gives the pooled
    embedding of the last forward pass and forgets it."""

    def __init__(self, model: Any) -> None:
        self.layers = embedding_layers(model)
        self._out: dict[int, Any] = {}
        for i in self.layers:
            model.model[i].register_forward_hook(lambda _m, _i, out, i=i: self._out.__setitem__(i, out))

    def clear(self) -> None:
        self._out.clear()

    def take(self) -> Any:
        out, self._out = self._out, {}
        return pooled_embedding([out[i] for i in self.layers]) if len(out) == len(self.layers) else None


class UltralyticsBackend(YoloRuntime):
    """A YOLO or RT-DETR detector run by PyTorch in-process (CPU or GPU), loaded once.

    >>> be = load_backend("runs/m001/weights/best.pt", classes=["a", "b"])  # doctest: +SKIP
    >>> be.predict([rgb])[0].detections.data["class_probs"].shape            # doctest: +SKIP
    (n, 2)
    """

    name = "ultralytics"

    def __init__(
        self, weights: str | Path, *, classes: Sequence[str] | None = None, device: str = "cpu",
        imgsz: int | Sequence[int] | None = None, class_map: Mapping[str, str] | None = None,
    ) -> None:
        import torch

        self.weights = str(weights)
        self.device = device
        if device == "cpu":
            use_all_cores()
        self.model, names, train_imgsz = load_torch_model(
            weights, nc=len(classes) if classes and str(weights).lower().endswith(_YAML) else None, device=device
        )
        if str(weights).lower().endswith(_YAML) and classes:
            names = list(classes)
        stride = int(max(float(self.model.stride.max()), 32))
        self.imgsz = input_shape(train_imgsz if imgsz is None else imgsz, stride)
        self.detr = is_detr(self.model)
        if self.detr:  # trained on squares the pictures were stretched to
            self.imgsz = (max(self.imgsz),) * 2
            self.stretch = True
        self.stride = stride
        self._init_classes(names, classes, class_map, source=str(weights))
        self._torch_device = next(self.model.parameters()).device
        self._lock = threading.Lock()
        self._tap = EmbeddingTap(self.model)
        self._torch = torch

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            self._tap.clear()
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._torch_device)
            y = head_output(self.model(x), x, detr=self.detr)
            emb = self._tap.take()
            return y.float().cpu().numpy(), None if emb is None else emb.cpu().numpy()


def load_backend(
    weights_or_yaml: str | Path,
    *,
    classes: Sequence[str] | None = None,
    runtime: str = "torch",
    device: str = "cpu",
    imgsz: int | Sequence[int] | None = None,
    class_map: Mapping[str, str] | Sequence[str] | None = None,
    batch: int = 8,
    threads: int | None = None,
    tile: int | None = None,
    onnx_dir: str | Path | None = None,
) -> Any:
    """Load a detector once: a .pt (or model yaml) with PyTorch, or an .onnx file with ONNX
    Runtime (chosen by ``runtime="onnx"`` or the file suffix; a .pt is exported first, cached
    beside it, or in ``onnx_dir``). ``imgsz`` is an int (square) or (h, w). ``classes`` are the project's; the weights' classes are mapped by name
    (and ``class_map`` old=new), a mismatch is an error listing both. ``threads``: ONNX
    Runtime's threads for this model (default: :func:`usable_cores`); torch's count is the
    process's, set apart (``torch.set_num_threads``). ``tile``: a model trained on tiles
    predicts window by window (:class:`boxloop.backends.tiled.TiledBackend`), each window at
    ``imgsz``."""
    if tile:
        from .tiled import TiledBackend

        inner = load_backend(
            weights_or_yaml, classes=classes, runtime=runtime, device=device, imgsz=imgsz, class_map=class_map,
            batch=batch, threads=threads, onnx_dir=onnx_dir,
        )
        return TiledBackend(inner, tile, batch=batch)
    if runtime not in ("torch", "onnx"):
        raise InputError(f"unknown runtime {runtime!r}; known: torch, onnx")
    cmap = parse_class_map(class_map)
    path = str(weights_or_yaml)
    if path.lower().endswith(".onnx") or runtime == "onnx":
        from .onnx import OnnxBackend, export_onnx

        if not path.lower().endswith(".onnx"):
            arg, is_yaml = resolve_model_arg(path)
            if is_yaml:
                raise InputError(f"{path}: an untrained model yaml cannot run with ONNX; train it first")
            path = str(export_onnx(arg, imgsz=imgsz, cache_dir=onnx_dir))
        return OnnxBackend(path, classes=classes, class_map=cmap, device=device, batch=batch, threads=threads)
    return UltralyticsBackend(path, classes=classes, device=device, imgsz=imgsz, class_map=cmap)


# -- training -------------------------------------------------------------------------------------

# Third-party loggers Ultralytics attaches to a trainer when their package is importable. With
# ray installed (boxloop's `ray` extra) its Ray Tune hook warns at every epoch outside a Tune
# trial; boxloop's own run folder is the record, so none of them is attached.
_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def _without_integrations(add: Callable[[Any], None]) -> Callable[[Any], None]:
    """Ultralytics' ``add_integration_callbacks`` with the integrations switched off in
    memory only (the user's settings file is never written)."""

    def run(instance: Any) -> None:
        from ultralytics.utils import SETTINGS

        saved = {k: SETTINGS.get(k) for k in _INTEGRATIONS}
        dict.update(SETTINGS, dict.fromkeys(_INTEGRATIONS, False))  # dict.update: not saved to disk
        try:
            add(instance)
        finally:
            dict.update(SETTINGS, saved)

    return run



def trained_imgsz(weights: str | Path) -> int | None:
    """The image size an Ultralytics checkpoint (.pt) was trained at, from the training
    arguments it keeps; None for another file or a checkpoint without them."""
    if Path(weights).suffix.lower() != ".pt":
        return None
    import torch

    try:
        ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    except Exception as e:  # the loader names a bad file when it loads it for real
        log.debug("%s: no training arguments: %s", weights, e)
        return None
    size = (ckpt.get("train_args") or {}).get("imgsz") if isinstance(ckpt, dict) else None
    return int(size) if isinstance(size, (int, float)) and size > 0 else None


def resumable_epoch(last: Path) -> int | None:
    """The last epoch an interrupted run saved in ``last.pt`` (1-based), or None where
    training can not go on from it: a run that finished (Ultralytics strips the optimizer
    and marks the epoch -1) or a file that is not a training checkpoint."""
    import torch

    try:
        ckpt = torch.load(str(last), map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a checkpoint cut off mid-write
        log.warning("%s: cannot read it to go on from (%s); training starts again", last, e)
        return None
    epoch = ckpt.get("epoch", -1) if isinstance(ckpt, Mapping) else -1
    if not isinstance(epoch, int) or epoch < 0 or ckpt.get("optimizer") is None:
        return None
    return epoch + 1


def train_yolo(
    data_yaml: str | Path,
    *,
    model: str | Path,
    run_dir: Path,
    epochs: int = 30,
    imgsz: int = 320,
    batch: int = 16,
    device: str = "cpu",
    patience: int = 50,
    workers: int = 0,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train Ultralytics YOLO on a data.yaml into ``run_dir`` (weights/best.pt, last.pt,
    results.csv, args.yaml), offline: no plots (fonts), no downloads, all CPU cores.
    ``resume`` goes on from ``run_dir/weights/last.pt`` (a run that was interrupted; see
    :func:`resumable_epoch`) with the settings it was started with."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if resume:
        model = Path(run_dir).absolute() / "weights" / "last.pt"
    arg, is_yaml = resolve_model_arg(model)
    if epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    if not is_yaml and os.path.getsize(arg) == 0:
        raise BackendError(f"{model}: empty weights file (0 bytes)")
    from ultralytics import RTDETR, YOLO

    try:
        yolo = YOLO(arg, task="detect")
    except Exception as e:  # a bad .pt surfaces as many exception types
        raise BackendError(f"{model}: cannot load weights (corrupt or not an Ultralytics checkpoint): {e}") from e
    require_detector(yolo.model, model)
    if is_detr(yolo.model):  # its own trainer: matching loss, stretched squares, its validator
        yolo = RTDETR(arg)

    def threads(_trainer: Any) -> None:
        if str(device) == "cpu":
            use_all_cores()

    trained = [0]  # the last epoch trained: the final validation reports one more, not trained

    def epoch_trained(trainer: Any) -> None:
        trained[0] = int(trainer.epoch) + 1

    def epoch_end(trainer: Any) -> None:
        if on_epoch is not None and int(trainer.epoch) + 1 == trained[0]:
            on_epoch(trained[0], int(trainer.epochs))

    yolo.add_callback("on_pretrain_routine_end", threads)
    yolo.add_callback("on_train_epoch_start", threads)
    yolo.add_callback("on_train_epoch_end", epoch_trained)
    yolo.add_callback("on_fit_epoch_end", epoch_end)
    run_dir = Path(run_dir).absolute()
    args: dict[str, Any] = {
        "data": str(data_yaml),
        "epochs": int(epochs),
        "imgsz": int(imgsz),
        "batch": int(batch),
        "device": device,
        "patience": int(patience),
        "workers": int(workers),
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,
        "plots": False,
        "verbose": False,
        "seed": int(seed),
        "amp": str(device) != "cpu",
    }
    args.update(dict(extra or {}))
    if resume:  # the checkpoint keeps what it was started with; only these may change
        args = {k: args[k] for k in ("data", "device", "workers", "patience", "plots")} | {
            "resume": str(arg), "save_dir": str(run_dir),  # the run's folder now, were the workspace moved
        }
    log.info("training %s on %s for %d epoch(s) into %s", model, data_yaml, epochs, run_dir)
    import ultralytics.engine.trainer as trainer_module

    saved_check_amp = trainer_module.check_amp
    saved_integrations = trainer_module.callbacks.add_integration_callbacks
    # Ultralytics' AMP check downloads yolo26n.pt on a GPU; boxloop never downloads weights
    trainer_module.check_amp = lambda *_a, **_k: True
    trainer_module.callbacks.add_integration_callbacks = _without_integrations(saved_integrations)
    try:
        yolo.train(**args)
    except KeyboardInterrupt:
        raise
    except (BackendError, InputError):
        raise
    except Exception as e:  # the trainer's own failure; the message says what went wrong
        raise BackendError(f"training failed: {type(e).__name__}: {e}") from e
    finally:
        trainer_module.check_amp = saved_check_amp
        trainer_module.callbacks.add_integration_callbacks = saved_integrations
    save_dir = Path(getattr(yolo.trainer, "save_dir", run_dir))
    best = save_dir / "weights" / "best.pt"
    weights = best if best.is_file() else save_dir / "weights" / "last.pt"
    if not weights.is_file():
        raise BackendError(f"training finished without weights in {save_dir / 'weights'}")
    metrics = {
        str(k): float(v) for k, v in (getattr(yolo.trainer, "metrics", None) or {}).items()
        if isinstance(v, (int, float, np.floating))
    }
    return TrainResult(run_dir=save_dir, weights=weights, metrics=metrics)
