"""params.yaml sections of the training-time quantization family: ``qat``, ``binary``, ``sr``.

Every bad value becomes one line naming the key (``params.yaml: qat.bits = ['w9a8'] is
invalid: ...``), raised by :func:`compress.config.load_params` before any work starts.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from compress.config import Section, fit_config

QAT_WBITS = (2, 8)  # weight bits a QAT variant may use (1 bit is BinaryConnect's job)
QAT_ABITS = (2, 16)  # activation bits (None = float activations, written "w4" without "a")
_BITS_RE = re.compile(r"^w(\d+)(?:a(\d+))?$")


def parse_bits(tag: str) -> tuple[int, int | None]:
    """``"w4a8" -> (4, 8)``; ``"w4" -> (4, None)`` (float activations).  Raises a one-line ValueError."""
    m = _BITS_RE.match(str(tag).strip().lower())
    if m is None:
        raise ValueError(f"{tag!r} is not a bit-width tag; write w<bits>a<bits> (e.g. w4a4) or w<bits> for float activations")
    w, a = int(m.group(1)), (int(m.group(2)) if m.group(2) else None)
    if not QAT_WBITS[0] <= w <= QAT_WBITS[1]:
        raise ValueError(f"weight bits {w} in {tag!r} out of range; allowed {QAT_WBITS[0]}..{QAT_WBITS[1]} (1 bit: use the binary stage)")
    if a is not None and not QAT_ABITS[0] <= a <= QAT_ABITS[1]:
        raise ValueError(f"activation bits {a} in {tag!r} out of range; allowed {QAT_ABITS[0]}..{QAT_ABITS[1]}")
    return w, a


_FitKnobs = fit_config("_FitKnobs", "The knobs compress.train.fit reads (as in ``train``).", epochs=2, lr=1e-4,
                       schedule="cosine")


class QATConfig(_FitKnobs):
    """QAT fine-tuning of the baseline with STE fake-quant (Jacob et al. 2018; LSQ: Esser et al. 2020)."""

    lr: float = Field(5e-4, gt=0)

    bits: list[str] = Field(default_factory=lambda: ["w8a8", "w4a4", "w2a4"])
    quantizer: Literal["fixed", "lsq"] = "fixed"  # fixed: calibrated activation ranges; lsq: learned steps
    calibration: str = "minmax"  # which calibrate method's ranges (calibrate.out) initialise/fix activations
    weight_granularity: Literal["channel", "tensor"] = "channel"
    rounding: Literal["nearest", "stochastic"] = "nearest"  # rounding inside the fake-quant forward
    lsq_lr: float = Field(1e-3, gt=0, description="learning rate of the LSQ step sizes (quantizer: lsq)")
    out: str = "variants/qat"

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one bit width, e.g. [w8a8, w4a4]")
        tags = []
        for t in v:
            parse_bits(t)
            tags.append(str(t).strip().lower())
        if len(set(tags)) != len(tags):
            raise ValueError(f"duplicate bit widths in {v}")
        return tags

    @model_validator(mode="after")
    def _lsq_schedule(self) -> "QATConfig":
        if self.quantizer == "lsq" and self.schedule == "onecycle":
            self.fail("schedule", "onecycle cannot be combined with quantizer: lsq (OneCycleLR would override lsq_lr); use cosine or constant")
        return self

    @field_validator("calibration")
    @classmethod
    def _calibration(cls, v: str) -> str:
        try:
            from compress.quant.observers import OBSERVERS
        except ImportError:  # quant core not installed: the stage checks the ranges file instead
            return v
        if v not in OBSERVERS:
            raise ValueError(f"unknown calibration method; allowed: {sorted(OBSERVERS)}")
        return v


class BinaryConfig(Section):
    """BinaryConnect (Courbariaux, Bengio & David 2015) on permutation-invariant MNIST."""

    modes: list[Literal["det", "stoch"]] = Field(default_factory=lambda: ["det", "stoch"])
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    fp32_seeds: list[int] = Field(default_factory=lambda: [0], description="seeds of the unregularised fp32 MLP")
    hidden: list[int] = Field(default_factory=lambda: [1024, 1024, 1024])
    epochs: int = Field(2, ge=1)  # the reference code trains 250 epochs; see README
    batch_size: int = Field(200, ge=1)  # the paper's minibatch for MNIST
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(3e-3, gt=0)
    lr_scale: Literal["glorot", "none"] = "glorot"  # per-layer lr x 1/H_glorot, as in the reference code
    schedule: Literal["cosine", "constant"] = "cosine"  # onecycle would override the per-layer lr scale
    fp32_lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    max_iterations: int | None = Field(None, ge=1)
    eval_every: int = Field(0, ge=0)
    out: str = "variants/binary"

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list of distinct binarization modes from det, stoch")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("must be a non-empty list of distinct non-negative seeds")
        return v

    @field_validator("fp32_seeds")
    @classmethod
    def _fp32_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or (v and min(v) < 0):
            raise ValueError("must be a list of distinct non-negative seeds (empty: no fp32 reference)")
        return v

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError("must be a non-empty list of positive layer widths, e.g. [1024, 1024, 1024]")
        return v


class SRTrainConfig(Section):
    """Optional: train an MLP whose weights live in a low-precision format, RN vs SR (Gupta et al. 2015)."""

    enabled: bool = True
    format: str = "fp8_e4m3"  # bf16 shows a small gap, fp8 e4m3 a dramatic one (README)
    hidden: list[int] = Field(default_factory=lambda: [100])
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.01, gt=0)
    train_size: int | None = Field(20000, ge=1, description="first N training images (None: all)")

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        return _check_format(v)


def _check_format(v: str) -> str:
    try:
        from compress.quant.formats import FORMATS
    except ImportError:
        return v
    if v not in FORMATS:
        raise ValueError(f"unknown float format; allowed: {sorted(FORMATS)}")
    return v


class SRConfig(Section):
    """Stagnation of round-to-nearest vs stochastic rounding: GD on f(x) = (x - target)^2."""

    format: str = "fp8_e5m2"  # unit roundoff 2^-3 (t = 3 significand bits)
    target: float = 1024.0
    x0: float = 0.0
    lr: float = Field(0.05, gt=0, lt=0.5, description="GD step; < 0.5 so exact GD converges monotonically")
    steps: int = Field(60, ge=1)
    sr_runs: int = Field(20, ge=1, description="independent SR trajectories (mean and band are plotted)")
    rounded: Literal["update", "all"] = "update"  # update: x <- fl(x - lr f'(x)); all: every op rounded
    seed: int = Field(0, ge=0)
    train: SRTrainConfig = Field(default_factory=SRTrainConfig)

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        return _check_format(v)

    @model_validator(mode="after")
    def _start(self) -> "SRConfig":
        if self.x0 == self.target:
            raise ValueError(f"x0 = {self.x0} equals target: nothing to optimise")
        return self


SECTIONS = {"qat": QATConfig, "binary": BinaryConfig, "sr": SRConfig}
