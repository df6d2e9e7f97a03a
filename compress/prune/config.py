"""params.yaml sections of the pruning family: ``prune`` (one-shot / iterative pruning variants
with fine-tuning) and ``lottery`` (iterative magnitude pruning, Frankle & Carbin 2019)."""
from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from compress.config import FitConfig, Section, check_known


def _sparsity(v: float) -> float:
    if not 0.0 <= v < 1.0:
        raise ValueError("sparsity must be in [0, 1) (the fraction of weights removed)")
    return v


def _rate(v: float) -> float:
    if not 0.0 < v < 1.0:
        raise ValueError("rate must be in (0, 1) (the fraction of remaining weights pruned per round)")
    return v




class PruneVariant(Section):
    """One pruned variant: ``variants/prune/prune-<key>/``."""

    method: str = Field("magnitude", description="a registered score (compress.prune.magnitude.SCORES: magnitude = |w|, "
                        "gradient = |w dL/dw|, ...) or structured (whole units removed: a smaller dense model)")
    scope: Literal["layer", "global"] = Field("global", description="rank weights per layer or across all layers")
    criterion: Literal["percentage", "topk", "threshold"] = Field("percentage", description="percentage (sparsity) | topk (keep k) | "
                                                                                  "threshold (keep score > tau)")
    sparsity: float = Field(0.9, description="fraction of weights removed (structured: of units removed per layer)")
    k: int | None = Field(None, ge=1, description="topk: weights kept (per layer or in total)")
    tau: float | None = Field(None, ge=0, description="threshold: keep score > tau")
    rounds: int = Field(1, ge=1, description="reach the target in this many prune + fine-tune rounds")
    layers: list[str] | None = Field(None, description="fnmatch patterns of layer names; null = all prunable layers")
    norm: Literal["l1", "l2"] = Field("l1", description="structured: the unit score")
    l1_lambda: float = Field(0.0, ge=0, description=">0: train with loss + lambda*||w||_1 before pruning")
    grad_batches: int = Field(8, ge=1, description="gradient method: batches averaged for the saliency")
    retrain: FitConfig | None = Field(None, description="retraining after each unstructured round (a FitConfig block; null: "
                                                         "prune.finetune)")

    _s = field_validator("sparsity")(classmethod(lambda cls, v: _sparsity(v)))

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        from compress.prune.magnitude import (
            SCORES,  # the registry is the only source of criterion names
        )

        return check_known("pruning method", v, [*SCORES, "structured"])

    @model_validator(mode="after")
    def _consistent(self) -> PruneVariant:
        if self.criterion == "topk" and self.k is None:
            raise ValueError("k is required when criterion = 'topk'")
        if self.criterion == "threshold" and self.tau is None:
            raise ValueError("tau is required when criterion = 'threshold'")
        if self.method == "structured" and self.criterion != "percentage":
            raise ValueError("structured pruning uses criterion = 'percentage' (sparsity = fraction of units removed)")
        if self.rounds > 1 and self.criterion != "percentage":
            raise ValueError("rounds > 1 needs criterion = 'percentage' (a sparsity schedule)")
        return self


class PruneConfig(Section):
    storage: Literal["auto", "bitmask", "csr"] = Field("auto", description="sparse layout per tensor: auto (the smaller of "
                                                                          "bitmask / CSR) | bitmask | csr")
    finetune: FitConfig = Field(default_factory=FitConfig, description="training after every pruning round and for the L1 "
                                                                        "phase (a FitConfig block; max_iterations caps each phase)")
    variants: dict[str, PruneVariant] = Field(default_factory=dict, description="key -> variants/prune/prune-<key>/: "
                                              "{method, scope, criterion, sparsity, k, tau, rounds, layers, norm, l1_lambda, "
                                              "grad_batches, retrain}")
    workers: int = Field(2, ge=1, description="variants run in this many processes (1 torch thread each)")

    @field_validator("variants")
    @classmethod
    def _names(cls, v: dict[str, PruneVariant]) -> dict[str, PruneVariant]:
        for name in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", name):
                raise ValueError(f"variant name {name!r} must match [a-z0-9][a-z0-9.-]* (it names a folder and an MLflow run)")
        return v


# ----------------------------------------------------------------------------- lottery
# Named training regimes (``compress.prune.imp.DEFAULT`` / ``PAPER``, where the measurements behind
# them are written down).  Both: LeNet-300-100 on MNIST as in Frankle & Carbin (2019), Fig. 1/3/4,
# Adam 1.2e-3, batch 60, Glorot init, validation every 100 iterations.  ``default``: each training
# stops at its validation early stop (patience 2,000 iterations, budget 20,000, flagged when hit);
# ``paper``: 50,000 iterations per training, the early stop the argmin over all of them.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"iterations": 20_000, "batch_size": 60, "lr": 1.2e-3, "optimizer": "adam", "eval_every": 100,
                "patience": 2_000},
    "paper": {"iterations": 50_000, "batch_size": 60, "lr": 1.2e-3, "optimizer": "adam", "eval_every": 100,
              "patience": None},
}


class LotteryConfig(Section):
    preset: Literal["paper", "default"] = Field("default", description="training regime (see PRESETS in "
                                                "compress/prune/config.py); explicit keys below override it")
    model: str = Field("lenet300", description="trained here from its own w0 per seed")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of the model")
    init: Literal["glorot", "kaiming", "default"] = Field("glorot", description="initialisation of w0 (the paper: Glorot)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="one IMP run per seed (intervals over seeds)")
    rate: float = Field(0.2, description="fraction of the remaining weights pruned per layer per round")
    output_rate: float | None = Field(None, description="the output layer's rate; null: rate / 2 (the paper)")
    target_remaining: float = Field(0.036, gt=0, le=1, description="stop when at most this fraction of weights remains")
    rewind_iteration: int = Field(0, ge=0, description="0: reset to w0; k: rewind to the weights at iteration k")
    controls: list[Literal["reinit", "random_mask"]] = Field(default_factory=lambda: ["reinit"],
                                                             description="reinit: same mask, new init | random_mask: random mask, same init")
    controls_at: list[float] | None = Field(default_factory=lambda: [0.056], description="fractions of weights remaining "
                                            "whose nearest round trains the controls (0.056: round 13 of LeNet-300-100); "
                                            "null: every round with at most controls_max_remaining left (the paper)")
    controls_max_remaining: float = Field(1.0, gt=0, le=1, description="with controls_at null: train controls only at "
                                          "levels with at most this fraction of weights remaining (1.0: every level)")
    # null: taken from the preset
    iterations: int | None = Field(None, ge=1, description="iteration budget per training, flagged when it binds (null: from the preset)")
    patience: int | None = Field(None, ge=1, description="stop after this many iterations without a lower validation loss "
                                 "(null: from the preset; the paper preset has none)")
    batch_size: int | None = Field(None, ge=1, description="null: from the preset")
    lr: float | None = Field(None, gt=0, description="null: from the preset")
    optimizer: Literal["adam", "adamw", "sgd"] | None = Field(None, description="null: from the preset")
    eval_every: int | None = Field(None, ge=1, description="validate every N iterations (null: from the preset)")
    workers: int | None = Field(None, ge=1, description="training processes (null: one per core, at most one per seed)")
    threads: int = Field(1, ge=1, description="torch threads per training process")

    _r = field_validator("rate")(classmethod(lambda cls, v: _rate(v)))

    @field_validator("output_rate")
    @classmethod
    def _orate(cls, v: float | None) -> float | None:
        return None if v is None else _rate(v)

    @field_validator("controls_at")
    @classmethod
    def _at(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not 0 < f <= 1 for f in v):
            raise ValueError("every entry must be a fraction of weights remaining in (0, 1]")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        from compress.models import MODELS

        return check_known("model", v, sorted(MODELS))

    @model_validator(mode="after")
    def _schedule(self) -> LotteryConfig:
        t = self.trainer()
        if self.rewind_iteration >= t.max_iterations:
            self.fail("rewind_iteration", f"{self.rewind_iteration} must be below the training budget "
                      f"({t.max_iterations} iterations)")
        if t.patience is not None and not t.eval_every <= t.patience < t.max_iterations:
            self.fail("patience", f"{t.patience} must be at least eval_every ({t.eval_every}) and below the "
                      f"iteration budget ({t.max_iterations})")
        return self

    def trainer(self) -> SimpleNamespace:
        """The effective training knobs (preset, overridden by explicit keys) in ``train_to_early_stop``'s format."""
        p = dict(PRESETS[self.preset])
        for k in p:
            if getattr(self, k) is not None:
                p[k] = getattr(self, k)
        return SimpleNamespace(batch_size=p["batch_size"], optimizer=p["optimizer"], lr=p["lr"], weight_decay=0.0,
                               max_iterations=p["iterations"], eval_every=p["eval_every"], patience=p["patience"])

    @property
    def effective_output_rate(self) -> float:
        return self.rate / 2 if self.output_rate is None else self.output_rate


SECTIONS = {"prune": PruneConfig, "lottery": LotteryConfig}
