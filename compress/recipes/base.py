"""The step interface of the recipe engine, the state steps share, and the step registry.

A step is one class: ``name``, a typed ``Settings`` model (pydantic, unknown keys refused), where
it may stand in a recipe (``phase``, ``requires``, ``once``), a model-dependent ``check`` that runs
at validation time (layer names, bit allocations) and ``run`` that does the work on a
:class:`RecipeContext`.  Adding a step is one file plus one line in ``compress/recipes/registry.py``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from compress.config import FitConfig


class RecipeError(ValueError):
    """A recipe problem, phrased as one line naming the recipe, the step index and the key."""


class StepSettings(BaseModel):
    """Base of every step's settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class StepFit(FitConfig):
    """The knobs of :func:`compress.train.fit` inside a step (FitConfig + random shifts)."""

    augment_shift: int = Field(0, ge=0, le=8, description="random translation of training images, in pixels")


@dataclass
class RecipeContext:
    """What the steps of one recipe share while it runs."""

    name: str
    model: nn.Module
    spec: dict  # compress.variants.model_spec of the dense architecture
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    seed: int
    monarch: dict[str, dict] = field(default_factory=dict)  # layer -> MonarchShape fields, once a monarch step ran
    encoding: dict[str, Any] | None = None  # the encode step's coder settings, once it ran
    final_bytes: bytes | None = None  # the artifact's bytes, once an encode step wrote them
    progress: bool = False
    done: list[str] = field(default_factory=list)  # names of the steps that ran

    def step_seed(self, index: int) -> int:
        return self.seed * 1000 + index


class Step:
    """Base class; subclasses set the class variables and implement :meth:`run` (and maybe :meth:`check`)."""

    name: ClassVar[str]
    Settings: ClassVar[type[StepSettings]]
    phase: ClassVar[int | None] = None  # monarch 0 < prune 1 < quantize 2 < encode 3; None: anywhere after a step
    requires: ClassVar[tuple[str, ...]] = ()  # steps that must come earlier
    once: ClassVar[bool] = False  # at most one per recipe
    last: ClassVar[bool] = False  # nothing may follow
    needs_previous: ClassVar[bool] = False  # cannot be the first step (finetune)

    def check(self, s: StepSettings, model: nn.Module, done: list[str]) -> None:
        """Model-dependent validation (before any training): raise ``ValueError("@key: message")``."""

    def run(self, ctx: RecipeContext, s: StepSettings, index: int) -> dict:
        """Do the step on ``ctx.model`` in place (or replace it); returns extra trail fields."""
        raise NotImplementedError


def fail(key: str, msg: str):
    """Raise the validation error of one settings key (the engine adds recipe and step index)."""
    raise ValueError(f"@{key}: {msg}")


def fit_step(ctx: RecipeContext, cfg: StepFit, index: int, *, desc: str, after_step: Callable[[nn.Module], None] | None = None,
             params: list[nn.Parameter] | None = None) -> dict:
    """Train ``ctx.model`` with ``cfg``; returns {"iterations", "fit_seconds"}.  ``params``: the
    trainable tensors (default: every parameter that requires grad)."""
    from compress.train import fit, make_optimizer

    opt = make_optimizer(params if params is not None else [p for p in ctx.model.parameters() if p.requires_grad], cfg)
    h = fit(ctx.model, ctx.train, ctx.val, cfg, seed=ctx.step_seed(index), desc=f"{ctx.name} {desc}",
            after_step=after_step, optimizer=opt, progress=ctx.progress)
    return {"iterations": h.iterations, "fit_seconds": round(h.seconds, 3)}


__all__ = ["RecipeContext", "RecipeError", "Step", "StepFit", "StepSettings", "fail", "fit_step"]
