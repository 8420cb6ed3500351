"""boxloop.toml → frozen dataclasses. Nothing is read at import; environment variables
``BOXLOOP_<SECTION>_<KEY>`` override the file (e.g. ``BOXLOOP_TRAIN_EPOCHS=5``)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Config",
    "LabelStudioConfig",
    "PredictConfig",
    "SelectConfig",
    "ServeConfig",
    "TrainConfig",
    "default_toml",
    "load_config",
]


@dataclass(frozen=True)
class TrainConfig:
    model: str = "yolov8n.yaml"
    epochs: int = 30
    steps: int = 0  # > 0: about this many optimizer steps, the epochs following the label count
    imgsz: int = 320
    batch: int = 16
    device: str = "cpu"
    patience: int = 50
    workers: int = 0
    allow_missing_classes: bool = False  # train while a class has no labeled box yet
    tile: int = 0  # > 0: train on tiles of this side at full resolution, predict by tiles (small objects)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"[train] steps must be 0 (train --epochs) or more, got {self.steps}")
        if self.tile and self.tile < 32:
            raise ConfigError(f"[train] tile must be 0 (whole pictures) or a side of 32 pixels or more, got {self.tile}")
        for name, least in (("epochs", 1), ("batch", 1), ("imgsz", 32)):
            if getattr(self, name) < least:
                raise ConfigError(f"[train] {name} must be at least {least}, got {getattr(self, name)}")


@dataclass(frozen=True)
class PredictConfig:
    conf: float = 0.01
    iou: float = 0.6
    runtime: str = "torch"
    batch: int = 8

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConfigError(f"[predict] batch must be at least 1, got {self.batch}")


@dataclass(frozen=True)
class SelectConfig:
    budget: int = 50
    strategy: str = "least_confidence:1"
    diverse: bool = True
    aggregation: str = "max"
    presets: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .scoring.pool import AGGREGATIONS

        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"[select] aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}")


@dataclass(frozen=True)
class LabelStudioConfig:
    url: str = ""
    project: str = ""
    storage: str = "local-files"
    document_root: str = ""
    skipped: str = "pool"
    # the lowest confidence of a box pushed as a pre-label: a number, or "auto", the threshold
    # the model version's evaluation found saves the most drawing (0.25 until it is evaluated)
    prelabel_conf: str = "auto"

    def __post_init__(self) -> None:
        value = str(self.prelabel_conf).strip().lower()
        if value != "auto":
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if not 0.0 <= number <= 1.0:
                raise ConfigError(f'[labelstudio] prelabel_conf must be "auto" or a number within 0..1, got {self.prelabel_conf!r}')
            value = str(number)
        object.__setattr__(self, "prelabel_conf", value)


@dataclass(frozen=True)
class ServeConfig:
    """``boxloop serve``, the Label Studio ML backend: when it retrains and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 9090
    train_every: int = 20  # new annotations (created, updated, deleted) that start a training
    warm_start: bool = True  # fine-tune the newest trained model instead of starting from [train] model
    val: float = 0.2  # share of newly labeled images a training keeps for validation
    test: float = 0.1  # share kept for the frozen test split, while there is none yet
    max_body_bytes: int = 16 * 1024 * 1024
    max_image_bytes: int = 64 * 1024 * 1024
    fetch_timeout: float = 20.0
    allowed_storage: str = ""  # comma-separated URL prefixes images may come from besides Label Studio


@dataclass(frozen=True)
class Config:
    name: str = "boxloop"
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    labelstudio: LabelStudioConfig = field(default_factory=LabelStudioConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


_SECTIONS: dict[str, type] = {
    "train": TrainConfig,
    "predict": PredictConfig,
    "select": SelectConfig,
    "labelstudio": LabelStudioConfig,
    "serve": ServeConfig,
}


def _coerce(value: Any, to: Any, where: str) -> Any:
    # field types are strings under `from __future__ import annotations`
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(to if isinstance(to, str) else getattr(to, "__name__", ""))
    if kind is None:
        return value
    if kind is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from e


def _section(cls: type, raw: Mapping[str, Any], where: str, env: Mapping[str, str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(fields)}"
        )
    values = dict(raw)
    section = where.rsplit("[", 1)[-1].rstrip("]")
    said = {name: f"{where} {name}" for name in fields}
    for name in fields:
        key = f"BOXLOOP_{section.upper()}_{name.upper()}"
        if key in env:
            values[name] = env[key]
            said[name] = f"environment variable {key} (it overrides {where} {name})"
    coerced = {k: v if k == "presets" else _coerce(v, fields[k].type, said[k]) for k, v in values.items()}
    try:
        return cls(**coerced)
    except ConfigError as e:  # a value out of range: say where it came from
        from_env = [said[k].split(" (", 1)[0] for k in fields if said[k].startswith("environment")]
        source = f" (set by {', '.join(from_env)})" if from_env else ""
        raise ConfigError(f"{where.rsplit(' [', 1)[0]}: {e}{source}") from e


# BOXLOOP_ variables that are no setting of boxloop.toml
OTHER_VARIABLES = ("BOXLOOP_WORKSPACE", "BOXLOOP_LOG", "BOXLOOP_NO_PROGRESS", "BOXLOOP_CACHE_DIR", "BOXLOOP_CACHE_SIZE",
                   "BOXLOOP_BASIC_AUTH")


def _check_environment(env: Mapping[str, str]) -> None:
    """A BOXLOOP_ variable that names no setting is an error, as a typo in boxloop.toml is
    (``BOXLOOP_TRAIN_EPOCH=1`` once trained the file's 30 epochs without a word)."""
    for key in sorted(k for k in env if k.startswith("BOXLOOP_") and k not in OTHER_VARIABLES):
        section = next((name for name in _SECTIONS if key.startswith(f"BOXLOOP_{name.upper()}_")), None)
        if section is None:
            raise ConfigError(
                f"environment variable {key} names no setting: BOXLOOP_<SECTION>_<KEY> with a section of "
                f"{', '.join(s.upper() for s in _SECTIONS)}; or one of {', '.join(OTHER_VARIABLES)}"
            )
        names = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        if key.removeprefix(f"BOXLOOP_{section.upper()}_").lower() not in names:
            raise ConfigError(
                f"environment variable {key} names no setting of [{section}]; known: "
                + ", ".join(f"BOXLOOP_{section.upper()}_{n.upper()}" for n in names)
            )


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read a boxloop.toml; unknown sections or keys are errors naming them."""
    path = Path(path)
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    project = raw.pop("project", {})
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown section(s) {', '.join(sorted(unknown))}; known: project, {', '.join(_SECTIONS)}"
        )
    _check_environment(env)
    sections = {
        name: _section(cls, raw.get(name, {}), f"{path} [{name}]", env)
        for name, cls in _SECTIONS.items()
    }
    return Config(name=str(project.get("name", path.parent.name)), **sections)


def default_toml(name: str) -> str:
    """The boxloop.toml a new workspace starts with: every setting, with its default."""
    c = Config()
    return f'''# boxloop workspace settings. Environment variables BOXLOOP_<SECTION>_<KEY> override them.
[project]
name = "{name}"

[train]
model = "{c.train.model}"   # a model yaml (from scratch) or a .pt file (transfer learning)
epochs = {c.train.epochs}
steps = {c.train.steps}   # > 0: train about this many optimizer steps instead (epochs follow the label count)
imgsz = {c.train.imgsz}
batch = {c.train.batch}
device = "{c.train.device}"     # "cpu", "0", "0,1"
patience = {c.train.patience}
workers = {c.train.workers}
allow_missing_classes = {str(c.train.allow_missing_classes).lower()}   # true: train while a class has no labeled box yet (early rounds)
tile = {c.train.tile}   # > 0: small objects in large pictures: train on tiles of this side at full resolution, predict by tiles

[predict]
conf = {c.predict.conf}         # low on purpose: active learning needs the uncertain boxes
iou = {c.predict.iou}
runtime = "{c.predict.runtime}"  # "torch" or "onnx"
batch = {c.predict.batch}

[select]
budget = {c.select.budget}
strategy = "{c.select.strategy}"
diverse = {str(c.select.diverse).lower()}
aggregation = "{c.select.aggregation}"  # an image's box uncertainties: "max" (its most doubtful box), "mean" or "sum" (box-rich images first)

[select.presets]
video = "least_confidence:1,flicker:2"

[labelstudio]
url = ""                  # e.g. http://127.0.0.1:8080; the token comes from LABEL_STUDIO_API_KEY
project = ""
storage = "local-files"   # "local-files" (a folder the server serves), "upload" (files sent to Label Studio) or "cloud" (images in a bucket)
document_root = ""
skipped = "pool"          # skipped tasks go back to the "pool" or stay "skipped"
prelabel_conf = "{c.labelstudio.prelabel_conf}"   # boxes below this are not pushed as pre-labels; "auto": the threshold `evaluate` found saves the most drawing

[serve]                   # `boxloop serve`: the Label Studio ML backend
host = "{c.serve.host}"       # 0.0.0.0 only behind a firewall, and with --basic-auth
port = {c.serve.port}
train_every = {c.serve.train_every}          # retrain after this many new annotations (or on "Start training")
warm_start = {str(c.serve.warm_start).lower()}         # fine-tune the newest model instead of training from [train] model
val = {c.serve.val}
test = {c.serve.test}
max_body_bytes = {c.serve.max_body_bytes}
max_image_bytes = {c.serve.max_image_bytes}
fetch_timeout = {c.serve.fetch_timeout}
allowed_storage = ""      # images only from Label Studio, plus these URL prefixes, e.g. "s3://bucket/, https://cdn.example.com/img/"
'''
