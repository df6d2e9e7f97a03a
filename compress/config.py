"""Typed, validated configuration for every stage (params.yaml).

Each method family declares its own params sections in a ``config`` module that exposes
``SECTIONS = {"section_name": PydanticModel}``; the modules are listed in ``SECTION_MODULES``
(one registry line per family).  ``load_params`` validates the whole file before any work
starts and turns the first problem into one line that names the key, the bad value and
what is allowed: ``ConfigError: params.yaml: train.epochs = 0 -> Input should be greater
than or equal to 1``.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator


class ConfigError(ValueError):
    """A params.yaml problem, phrased as one line a user can act on."""


class Section(BaseModel):
    """Base of every params section: unknown keys are errors, values are validated on assignment.

    Cross-field validators call ``self.fail("field", "what is allowed")`` so the one-line error
    names the exact key (``data.val_size = 70000 is invalid: ...``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @staticmethod
    def fail(field: str, msg: str):
        raise ValueError(f"@{field}: {msg}")


# --------------------------------------------------------------------------- core sections
class DataConfig(Section):
    source: Literal["mnist", "mnist5k", "digits", "cifar10"] = "mnist"
    root: str = "data/raw"
    download: bool = True
    offline_fallback: Literal["mnist5k", "digits"] | None = "mnist5k"
    val_size: int = Field(5000, ge=1)
    train_size: int | None = Field(None, ge=1, description="None: all remaining training images")
    test_size: int | None = Field(None, ge=1, description="None: the whole test set")
    calib_size: int = Field(1024, ge=1)
    out: str = "data/prepared"

    @model_validator(mode="after")
    def _sizes_fit(self) -> "DataConfig":
        from compress.data import DATASET_SIZES

        n_train = DATASET_SIZES[self.source][0]
        if self.val_size >= n_train:
            self.fail("val_size", f"{self.source} has {n_train} training images; choose a value below {n_train}")
        if self.train_size is not None and self.train_size + self.val_size > n_train:
            self.fail("train_size", f"train_size + val_size must be <= {n_train} (the {self.source} training set)")
        return self


class ModelConfig(Section):
    name: str = "lenet5"
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> "ModelConfig":
        from compress.models import MODELS

        if self.name not in MODELS:
            self.fail("name", f"unknown model {self.name!r}; allowed: {', '.join(sorted(MODELS))}")
        return self


class FitConfig(Section):
    """The knobs :func:`compress.train.fit` reads. Every training or fine-tuning section shares them;
    a family that wants other defaults derives its section with :func:`fit_config`."""

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    schedule: Literal["onecycle", "cosine", "constant"] = "cosine"
    max_iterations: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    eval_every: int = Field(0, ge=0, description="validate every N iterations (0: once per epoch)")


def fit_config(name: str, doc: str, **defaults: Any) -> type[FitConfig]:
    """A :class:`FitConfig` subclass with other defaults; the constraints stay those of FitConfig."""
    import copy

    fields: dict[str, Any] = {}
    for key, value in defaults.items():
        base = FitConfig.model_fields[key]
        info = copy.copy(base)
        info.default = value
        fields[key] = (base.annotation, info)
    return create_model(name, __base__=FitConfig, __doc__=doc, **fields)


class TrainConfig(fit_config("_BaselineFit", "fit knobs of the baseline", epochs=12, lr=2e-3, schedule="onecycle")):
    augment_shift: int = Field(2, ge=0, le=8, description="random translation of training images, in pixels")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compiled_variant: bool = False
    out: str = "models/baseline"


class EvaluateConfig(Section):
    batch_size: int = Field(256, ge=1)
    latency_batches: list[int] = Field(default_factory=lambda: [1, 256])
    warmup: int = Field(10, ge=0)
    repeats: int = Field(50, ge=1)
    threads: int | None = Field(None, ge=1, description="None: all cores")
    variants_root: str = "variants"

    @model_validator(mode="after")
    def _batches(self) -> "EvaluateConfig":
        if sorted(set(self.latency_batches)) != [1, 256]:
            self.fail("latency_batches", "must be [1, 256]: the variants table has latency_ms_b1 and latency_ms_b256 columns")
        return self


class TrackingConfig(Section):
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "compress-suite"
    enabled: bool = True


CORE_SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "tracking": TrackingConfig,
}

# One line per method family: each module exposes SECTIONS = {name: Section subclass}.
SECTION_MODULES: list[str] = [
    "compress.quant.config",
    "compress.quant.qat_config",
    "compress.prune.config",
    "compress.hessian.config",
    "compress.structured.config",
    "studies.config",
    "dashboards.config",
]


def all_sections() -> dict[str, type[Section]]:
    sections = dict(CORE_SECTIONS)
    for mod_name in SECTION_MODULES:
        if importlib.util.find_spec(mod_name.rsplit(".", 1)[0]) is None:
            continue
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:  # family not installed yet
            if e.name == mod_name:
                continue
            raise
        for name, model in mod.SECTIONS.items():
            if name in sections:
                raise RuntimeError(f"params section {name!r} declared twice ({mod_name})")
            sections[name] = model
    return sections


def _params_model() -> type[BaseModel]:
    fields: dict[str, Any] = {"seed": (int, Field(0, ge=0))}
    for name, model in all_sections().items():
        fields[name] = (model, Field(default_factory=model))
    return create_model("Params", __config__=ConfigDict(extra="forbid"), **fields)


def _allowed_keys(model: Any, path: list[str]) -> list[str]:
    """Field names of the (possibly nested) section model that ``path`` leads to."""
    import typing

    for p in path:
        if model is None or p not in getattr(model, "model_fields", {}):
            return []
        ann = model.model_fields[p].annotation
        candidates = [ann, *typing.get_args(ann)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(model.model_fields) if model is not None else []


def _format_error(err: ValidationError, source: str, raw: dict) -> str:
    e = err.errors()[0]
    loc = [str(p) for p in e["loc"]]
    key = ".".join(loc) if loc else "(top level)"
    value: Any = raw
    for p in e["loc"]:
        try:
            value = value[p]
        except (KeyError, IndexError, TypeError):
            value = e.get("input", "<missing>")
            break
    msg = e["msg"].removeprefix("Value error, ")
    if msg.startswith("@"):  # a cross-field validator named the exact field
        field, msg = msg[1:].split(": ", 1)
        loc = [*loc, field]
        key = ".".join(loc)
        value = raw
        for p in loc:
            value = value.get(p, "<default>") if isinstance(value, dict) else "<default>"
    if e["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        sections = all_sections()
        if len(loc) == 1:
            allowed = ["seed", *sections]
        else:
            allowed = _allowed_keys(sections.get(loc[0]), loc[1:-1])
        where = f"in {parent}" if parent else "at the top level"
        return f"{source}: unknown key {key!r} {where}; allowed keys: {', '.join(allowed)}"
    if e["type"] == "literal_error":
        return f"{source}: {key} = {value!r} is not allowed; {msg}"
    return f"{source}: {key} = {value!r} is invalid: {msg}"


def validate_params(raw: dict | None, source: str = "params.yaml"):
    """Validate a params mapping; raise ConfigError with one line on the first problem."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return _params_model().model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source, raw)) from None


def load_params(path: str | Path = "params.yaml"):
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found; run from the project root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return validate_params(raw, source=str(path))


def section_hash(section: BaseModel | dict) -> str:
    import hashlib
    import json

    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
