"""Recipes: a model + an ordered list of steps, validated whole before any training, then run.

A recipe (one entry of params.yaml ``recipes``)::

    lenet300-dc:
      model: lenet300                # compress.models.MODELS
      model_kwargs: {}
      baseline: {epochs: 8, ...}     # fit knobs of the model's own fp32 baseline, or {source: train}
      steps:
        - {step: prune, method: magnitude, sparsity: {"net.1": 0.96, ...}, schedule: gradual, finetune: {...}}
        - {step: quantize, method: kmeans, bits: 5}
        - {step: finetune, epochs: 1, lr: 0.0003}
        - {step: encode, coder: lzma}

:func:`validate_recipe` turns the first problem into ONE line naming the recipe, the step index and
the key (``recipes.lenet300-dc.steps[1].bits = 12 is invalid: ...``): an unknown step or key, a step
out of order (``encode`` before ``quantize``), bits or sparsity out of range, an unknown model or
layer.  :func:`run_recipe` runs the steps on a trained baseline and reports one trail row per step
(artifact bytes as it would be written after the step, validation accuracy, seconds) through
``on_step``; the library itself does not log.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, ValidationError
from torch import nn

from compress.models import MODELS, build_model
from compress.recipes.base import (
    RecipeContext,
    RecipeError,
    Step,
    StepFit,
    StepSettings,
)
from compress.recipes.registry import STEPS

DEFAULT_INPUT = (1, 28, 28)


class BaselineSettings(StepFit):
    """The model's own fp32 baseline: trained with these fit knobs (``source: own``), or the train stage's
    baseline (``source: train``, models/baseline) when the recipe's model is the suite's model."""

    epochs: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    augment_shift: int = Field(2, ge=0, le=8)
    source: Literal["own", "train"] = Field("own", description="own: train the baseline here with these knobs | train: "
                                                               "start from the train stage's baseline (models/baseline)")


@dataclass
class Recipe:
    name: str
    model: str
    model_kwargs: dict
    baseline: BaselineSettings
    steps: list[tuple[Step, StepSettings]]

    def spec(self, input_shape=DEFAULT_INPUT, num_classes: int = 10) -> dict:
        from compress.variants import model_spec

        return model_spec(self.model, self.model_kwargs, input_shape, num_classes)


# --------------------------------------------------------------------------- validation
def _value_at(raw: Any, loc: tuple) -> Any:
    for p in loc:
        try:
            raw = raw[p]
        except (KeyError, IndexError, TypeError):
            return "<default>"
    return raw


def _pydantic_line(prefix: str, err: ValidationError, raw: dict, model_cls: type) -> str:
    e = err.errors()[0]
    loc = tuple(e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if msg.startswith("@"):  # a validator named the exact key
        key, msg = msg[1:].split(": ", 1)
        loc = (*loc, *key.split("."))
        return f"{prefix}.{'.'.join(map(str, loc))} = {_value_at(raw, loc)!r} is invalid: {msg}"
    key = ".".join(map(str, loc))
    if e["type"] == "extra_forbidden":
        return f"{prefix}.{key}: unknown key; allowed: {', '.join(_fields_at(model_cls, loc[:-1]))}"
    if e["type"] == "missing":
        return f"{prefix}.{key}: missing; it is required"
    return f"{prefix}.{key} = {_value_at(raw, loc)!r} is invalid: {msg}"


def _fields_at(model_cls: type[BaseModel], path: tuple) -> list[str]:
    """Field names of the (nested) settings model that ``path`` leads to."""
    import typing

    for p in path:
        field_info = model_cls.model_fields.get(str(p))
        if field_info is None:
            return list(model_cls.model_fields)
        ann = field_info.annotation
        sub = next((c for c in (ann, *typing.get_args(ann)) if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            return list(model_cls.model_fields)
        model_cls = sub
    return list(model_cls.model_fields)


def validate_recipe(name: str, raw: Any, input_shape=DEFAULT_INPUT, num_classes: int = 10) -> Recipe:
    """A validated :class:`Recipe`, or :class:`RecipeError` with one line naming recipe, step index and key.

    Builds the (untrained) model to check layer names; trains nothing.
    """
    where = f"recipes.{name}"
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a mapping with model, steps (and baseline, model_kwargs), got {type(raw).__name__}")
    allowed = ("model", "model_kwargs", "baseline", "steps")
    for k in raw:
        if k not in allowed:
            raise RecipeError(f"{where}.{k}: unknown key; allowed: {', '.join(allowed)}")
    model_name = raw.get("model")
    if model_name not in MODELS:
        raise RecipeError(f"{where}.model = {model_name!r} is unknown; allowed: {', '.join(sorted(MODELS))}")
    kwargs = raw.get("model_kwargs") or {}
    try:
        model = build_model(model_name, input_shape, num_classes, **kwargs)
    except ValueError as e:
        raise RecipeError(f"{where}.model_kwargs = {kwargs!r} is invalid: {e}") from None
    try:
        baseline = BaselineSettings.model_validate(raw.get("baseline") or {})
    except ValidationError as e:
        raise RecipeError(_pydantic_line(f"{where}.baseline", e, raw.get("baseline") or {}, BaselineSettings)) from None
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise RecipeError(f"{where}.steps: must be a non-empty list of {{step: <name>, ...settings}}; steps: {', '.join(STEPS)}")
    steps: list[tuple[Step, StepSettings]] = []
    done: list[str] = []
    phase, phase_at = -1, None
    for i, st in enumerate(steps_raw):
        at = f"{where}.steps[{i}]"
        if not isinstance(st, dict) or "step" not in st:
            raise RecipeError(f"{at}.step: missing; each step is a mapping with 'step': one of {', '.join(STEPS)}")
        kind = st["step"]
        if kind not in STEPS:
            raise RecipeError(f"{at}.step = {kind!r} is unknown; allowed: {', '.join(STEPS)}")
        cls = STEPS[kind]
        # 1. order: phases never go back, requirements met, once-only and last steps respected
        if done and STEPS[done[-1]].last:
            raise RecipeError(f"{at}.step = {kind!r} is out of order: nothing may follow {done[-1]} (steps[{i - 1}])")
        if cls.needs_previous and not done:
            raise RecipeError(f"{at}.step = {kind!r} is out of order: {kind} needs an earlier step (prune, quantize or monarch)")
        for req in cls.requires:
            if req not in done:
                raise RecipeError(f"{at}.step = {kind!r} is out of order: {kind} needs a {req} step before it")
        if cls.once and kind in done:
            raise RecipeError(f"{at}.step = {kind!r} is repeated: a recipe has at most one {kind} step")
        if cls.phase is not None:
            if cls.phase < phase:
                later = [n for n, c in STEPS.items() if c.phase == phase][0]
                raise RecipeError(f"{at}.step = {kind!r} is out of order: {kind} must come before {later} (steps[{phase_at}])")
            if cls.phase > phase:
                phase, phase_at = cls.phase, i
        # 2. settings: typed, ranges checked
        body = {k: v for k, v in st.items() if k != "step"}
        try:
            s = cls.Settings.model_validate(body)
        except ValidationError as e:
            raise RecipeError(_pydantic_line(at, e, body, cls.Settings)) from None
        # 3. model-dependent checks (layer names, allocations) on the architecture as it is at this step
        step = cls()
        try:
            step.check(s, model, list(done))
        except ValueError as e:
            msg = str(e)
            key, msg = msg[1:].split(": ", 1) if msg.startswith("@") else ("step", msg)
            raise RecipeError(f"{at}.{key}: {msg}") from None
        if kind == "monarch":  # later steps see the Monarch layers
            from compress.structured.monarch import monarchize, plan

            model = monarchize(model, plan(model, s.layers, s.nblocks, s.rank), project_weights=False)
        steps.append((step, s))
        done.append(kind)
    return Recipe(name, model_name, dict(kwargs), baseline, steps)


def validate_recipes(raw: dict, input_shape=DEFAULT_INPUT, num_classes: int = 10) -> dict[str, Recipe]:
    """Every recipe of a ``{name: recipe}`` mapping, validated (the first problem raises)."""
    if not isinstance(raw, dict) or not raw:
        raise RecipeError("recipes: expected a non-empty mapping {name: {model, baseline, steps}}")
    return {n: validate_recipe(n, r, input_shape, num_classes) for n, r in raw.items()}


# --------------------------------------------------------------------------- baseline
def train_baseline(recipe: Recipe, train, val, *, seed: int, input_shape=DEFAULT_INPUT, num_classes: int = 10,
                   on_eval: Callable[[dict], None] | None = None, progress: bool = False,
                   trained: str | None = None) -> tuple[nn.Module, dict]:
    """The recipe model's own fp32 baseline (seeded init, ``recipe.baseline`` fit knobs), or with
    ``baseline.source: train`` the trained baseline folder ``trained`` (the train stage's).
    Returns (model in eval mode, {"seconds", "iterations", "source"})."""
    from compress.train import fit

    if recipe.baseline.source == "train":
        from compress.checkpoint import load_baseline

        if trained is None:
            raise RecipeError(f"recipes.{recipe.name}.baseline.source = 'train' needs the train stage's baseline folder")
        model, spec = load_baseline(trained)
        if spec["name"] != recipe.model or (spec.get("kwargs") or {}) != recipe.model_kwargs:
            raise RecipeError(f"recipes.{recipe.name}.baseline.source = 'train': {trained} holds a {spec['name']} "
                              f"{spec.get('kwargs') or {}}, not the recipe's {recipe.model} {recipe.model_kwargs}")
        return model, {"seconds": 0.0, "iterations": 0, "source": str(trained)}
    torch.manual_seed(seed)
    model = build_model(recipe.model, input_shape, num_classes, **recipe.model_kwargs)
    h = fit(model, train, val, recipe.baseline, seed=seed, desc=f"{recipe.name} baseline", on_eval=on_eval, progress=progress)
    return model.eval(), {"seconds": h.seconds, "iterations": h.iterations, "source": "trained"}


def baseline_key(recipe: Recipe, seed: int) -> str:
    """Recipes with equal keys train identical baselines (model, kwargs, fit knobs or path, seed): a
    stage may train it once and reuse it."""
    import hashlib
    import json

    blob = json.dumps([recipe.model, recipe.model_kwargs, recipe.baseline.model_dump(mode="json"), seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def fp32_bytes(model: nn.Module) -> int:
    """Bytes of the fp32 safetensors file of ``model`` (what the train stage writes for a baseline)."""
    from safetensors.torch import save

    return len(save({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}))


# --------------------------------------------------------------------------- run
@dataclass
class RecipeResult:
    name: str
    spec: dict
    monarch: dict
    model: nn.Module  # the final artifact, decoded (eval mode)
    artifact: bytes  # the final file's bytes
    trail: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _artifact_bytes(ctx: RecipeContext) -> bytes:
    from compress.recipes.artifact import serialize
    from compress.recipes.tensors import to_artifact

    enc = ctx.encoding or {"coder": "none", "level": 0, "floats": "float32"}
    return serialize(to_artifact(ctx.model, ctx.spec, ctx.monarch), **enc)


def run_recipe(recipe: Recipe, baseline: nn.Module, train, val, *, seed: int, baseline_seconds: float = 0.0,
               input_shape=DEFAULT_INPUT, num_classes: int = 10, on_step: Callable[[dict], None] | None = None,
               progress: bool = False) -> RecipeResult:
    """Run the steps on a copy of the trained ``baseline``; one trail row per step (and one for the baseline).

    Trail row: {recipe, index, step, size_bytes, ratio, val_acc, seconds, sparsity, ...step extras};
    ``size_bytes`` is the length of the artifact as it would be written after the step (coder
    ``none`` and float32 until the encode step), ``ratio`` the baseline's fp32 bytes over it.
    """
    import copy

    from compress.recipes.tensors import model_from_bytes, weight_counts
    from compress.train import evaluate_model

    spec = recipe.spec(input_shape, num_classes)
    ctx = RecipeContext(name=recipe.name, model=copy.deepcopy(baseline).eval(), spec=spec, train=train, val=val,
                        seed=seed, progress=progress)
    base_bytes = fp32_bytes(baseline)
    trail: list[dict] = []

    def emit(index: int, step: str, size: int, seconds: float, extra: dict) -> None:
        kept, total = weight_counts(ctx.model)
        row = {"recipe": recipe.name, "index": index, "step": step, "size_bytes": size,
               "ratio": round(base_bytes / size, 3), "val_acc": evaluate_model(ctx.model, *val)[1],
               "seconds": round(seconds, 3), "sparsity": round(1 - kept / total, 5), **extra}
        trail.append(row)
        if on_step is not None:
            on_step(row)

    emit(0, "baseline", base_bytes, baseline_seconds, {})
    for i, (step, s) in enumerate(recipe.steps, 1):
        t0 = time.perf_counter()
        extra = step.run(ctx, s, i)
        ctx.done.append(step.name)
        raw = ctx.final_bytes if step.name == "encode" else _artifact_bytes(ctx)
        emit(i, step.name, len(raw), time.perf_counter() - t0, extra)
    if ctx.final_bytes is None:  # no encode step: the artifact is the raw (coder none) file
        ctx.final_bytes = _artifact_bytes(ctx)
        ctx.model = model_from_bytes(ctx.final_bytes, f"recipe {recipe.name}")
    final = trail[-1]
    summary = {"size_bytes": len(ctx.final_bytes), "baseline_bytes": base_bytes,
               "ratio": round(base_bytes / len(ctx.final_bytes), 3), "val_acc": final["val_acc"],
               "baseline_val_acc": trail[0]["val_acc"], "seconds": round(sum(r["seconds"] for r in trail), 3),
               "sparsity": final["sparsity"]}
    return RecipeResult(recipe.name, spec, dict(ctx.monarch), ctx.model.eval(), ctx.final_bytes, trail, summary)


__all__ = [
    "BaselineSettings",
    "Recipe",
    "RecipeError",
    "RecipeResult",
    "baseline_key",
    "fp32_bytes",
    "run_recipe",
    "train_baseline",
    "validate_recipe",
    "validate_recipes",
]
