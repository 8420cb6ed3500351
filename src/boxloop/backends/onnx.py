"""ONNX Runtime backend for YOLO and RT-DETR models, and the export that makes them.

The exported graph has two outputs: ``output0`` (batch, 4 + nc, anchors), the head before
NMS exactly as Ultralytics computes it (an RT-DETR's: its queries' boxes and every class's
score, :func:`boxloop.backends.ultralytics.head_output`), and ``embedding`` (batch, D), the
pooled backbone features. Letterbox, NMS and class mapping are the same numpy code as the
PyTorch path (backends/ultralytics.py), so both give the same boxes. onnxruntime is imported
lazily.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InputError
from .ultralytics import DETECT_HEADS, DETR_HEADS, YoloRuntime, not_a_detector, usable_cores

__all__ = ["OnnxBackend", "export_onnx", "onnx_path_for"]

log = logging.getLogger(__name__)
OPSET = 17


def onnx_path_for(weights: str | Path, imgsz: int | Sequence[int]) -> Path:
    """Where the ONNX export of ``weights`` at ``imgsz`` (int or (h, w)) is cached: beside the weights."""
    from .ultralytics import input_shape

    w = Path(weights)
    h, wd = input_shape(imgsz)
    return w.with_name(f"{w.stem}-{h}.onnx" if h == wd else f"{w.stem}-{h}x{wd}.onnx")


def export_onnx(
    weights: str | Path, *, imgsz: int | Sequence[int] | None = None, out: str | Path | None = None,
    cache_dir: str | Path | None = None, tile: int | None = None,
) -> Path:
    """Export a .pt detector to ONNX (dynamic batch, static ``imgsz``, slimmed) with the
    embedding as a second output and class names in the metadata (and ``tile``: the tile it
    was trained on, so the file predicts window by window wherever it goes). Reuses a cached
    export newer than the weights, beside them or in ``cache_dir``. Needs the ``onnx`` and
    ``onnxslim`` packages (no auto-install)."""
    import torch

    from .ultralytics import (
        EmbeddingTap,
        head_output,
        input_shape,
        is_detr,
        load_torch_model,
        resolve_model_arg,
    )

    arg, is_yaml = resolve_model_arg(weights)
    if is_yaml:
        raise InputError(f"{weights}: export needs trained weights (.pt), not a model yaml")
    try:
        import onnx
        import onnxslim
    except ImportError as e:
        raise BackendError(f"ONNX export needs the onnx and onnxslim packages: pip install onnx onnxslim ({e})") from e
    model, names, train_imgsz = load_torch_model(arg, device="cpu")
    stride = int(max(float(model.stride.max()), 32))
    size = input_shape(imgsz or train_imgsz, stride)
    detr = is_detr(model)
    if detr:  # square, as the torch backend runs it
        size = (max(size),) * 2
    dest = Path(out) if out is not None else onnx_path_for(arg, size)
    if out is None and cache_dir is not None:
        dest = Path(cache_dir) / dest.name
    if dest.is_file() and dest.stat().st_mtime >= Path(arg).stat().st_mtime and out is None:
        return dest
    tap = EmbeddingTap(model)  # before the head is switched to export
    head = model.model[-1]
    if not detr:  # an RT-DETR's decoder would give only its top-k answer, one class a box
        head.export = True
        head.format = "onnx"

    class WithEmbedding(torch.nn.Module):
        """The detector returning its pre-NMS head output and the pooled backbone features."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            tap.clear()
            y = head_output(self.model(x), x, detr=detr)
            return y, tap.take()

    wrapper = WithEmbedding().eval()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    im = torch.zeros(1, 3, *size)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                wrapper, (im,), str(tmp), opset_version=OPSET, input_names=["images"],
                output_names=["output0", "embedding"],
                dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}, "embedding": {0: "batch"}},
                dynamo=False,
            )
        m = onnx.load(str(tmp))
        m = onnxslim.slim(m)
        meta = {
            "names": json.dumps(names),
            "imgsz": json.dumps(list(size)),
            "stride": str(stride),
            "source": str(Path(arg).name),
            "producer": "boxloop",
        }
        if detr:
            meta["fill"] = "stretch"
        if tile:
            meta["tile"] = str(int(tile))
        for k, v in meta.items():
            entry = m.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(m, str(tmp))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s to %s (input %dx%d)", arg, dest, *size)
    return dest


def _parse_names(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(raw)  # Ultralytics writes str(dict)
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, Mapping):
        return [str(value[k]) for k in sorted(value, key=int)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


class OnnxBackend(YoloRuntime):
    """A YOLO or RT-DETR detector run by ONNX Runtime, loaded once; batched, on ``threads`` threads
    (default: every core the process may use).

    Works with boxloop's export (embedding included) and with a plain Ultralytics ONNX
    export (no embedding then)."""

    name = "onnx"

    def __init__(
        self, path: str | Path, *, classes: Sequence[str] | None = None,
        class_map: Mapping[str, str] | None = None, device: str = "cpu", batch: int = 8,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: ONNX model not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or usable_cores()  # under taskset, no more threads than cores
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/... types
            raise BackendError(f"{path}: cannot load ONNX model (corrupt or not ONNX): {e}") from e
        self.weights = str(path)
        meta = self.session.get_modelmeta().custom_metadata_map
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        shape = inp.shape
        if len(shape) != 4:
            raise BackendError(f"{path}: expected an image input (batch, 3, H, W), got {shape}")
        if not all(isinstance(s, int) for s in shape[2:]):
            size = json.loads(meta["imgsz"]) if "imgsz" in meta else [640, 640]
            self.imgsz = (int(size[0]), int(size[1]))
        else:
            self.imgsz = (int(shape[2]), int(shape[3]))
        self.stretch = meta.get("fill") == "stretch"  # an RT-DETR's
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.batch = max(1, int(self.fixed_batch or batch))
        task, head = meta.get("task"), meta.get("head")  # Ultralytics writes them (head since 8.4)
        if (task and task != "detect") or (head and head not in DETECT_HEADS | DETR_HEADS):
            raise not_a_detector(path, [head] if head else [], task)
        # Ultralytics exports an RT-DETR's top-k answer only; boxloop's export writes no head
        if meta.get("end2end") == "True" or head in DETR_HEADS:
            raise InputError(
                f"{path}: exported end to end (its 300 best boxes, one class each: no class probabilities "
                "to score uncertainty with); export the .pt again with `boxloop export-model`"
            )
        outputs = [o.name for o in self.session.get_outputs()]
        self._outputs = [outputs[0]] + (["embedding"] if "embedding" in outputs else [])
        names = _parse_names(meta.get("names"))
        if names is None:
            nc = self.session.get_outputs()[0].shape[1]
            if not isinstance(nc, int):
                raise BackendError(f"{path}: no class names in the metadata and no static class count")
            names = [str(i) for i in range(nc - 4)]
        self._init_classes(names, classes, class_map, source=str(path))

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raws, embs = [], []
        step = self.fixed_batch or len(batch)
        for i in range(0, len(batch), step):
            out = self.session.run(self._outputs, {self._input: np.ascontiguousarray(batch[i : i + step], np.float32)})
            raws.append(out[0])
            if len(out) > 1:
                embs.append(out[1])
        return np.concatenate(raws), (np.concatenate(embs) if embs else None)
