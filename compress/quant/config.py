"""params.yaml sections of the quantization core: ``calibrate`` and ``ptq``.

Every bad value becomes one line naming the key, e.g.
``params.yaml: ptq.bits = ['w17a8'] is invalid: weight bits 17 in 'w17a8' out of range; allowed 1..16``.
Cross-section checks (ptq methods / activation bits must have been calibrated) are done by
:func:`check_ptq_against_calibrate`, which the ptq stage calls before any work.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from compress.config import Section
from compress.quant.affine import MAX_BITS, MIN_BITS
from compress.quant.formats import FORMATS
from compress.quant.observers import OBSERVERS

_TAG = re.compile(r"^w(\d+)a(\d+)$")


def parse_tag(tag: str) -> tuple[int, int]:
    """``"w4a8" -> (4, 8)`` (weight bits, activation bits); one-line ValueError otherwise."""
    m = _TAG.match(str(tag).strip().lower())
    if m is None:
        raise ValueError(f"{tag!r} is not a bit-width tag; write w<bits>a<bits>, e.g. w4a8")
    w, a = int(m.group(1)), int(m.group(2))
    for kind, b in (("weight", w), ("activation", a)):
        if not MIN_BITS <= b <= MAX_BITS:
            raise ValueError(f"{kind} bits {b} in {tag!r} out of range; allowed {MIN_BITS}..{MAX_BITS}")
    return w, a


def _methods(v: list[str]) -> list[str]:
    if not v:
        raise ValueError(f"list is empty; allowed observers: {', '.join(OBSERVERS)}")
    bad = [m for m in v if m not in OBSERVERS]
    if bad:
        raise ValueError(f"unknown observer {bad[0]!r}; allowed: {', '.join(OBSERVERS)}")
    if len(set(v)) != len(v):
        raise ValueError("observers listed twice")
    return v


class CalibrateConfig(Section):
    """Activation-range calibration of the baseline on the calib split (never test data)."""

    methods: list[str] = Field(default_factory=lambda: list(OBSERVERS))
    act_bits: list[int] = Field(default_factory=lambda: [8, 4],
                                description="widths the MSE / KL searches optimise for; the first is the primary one")
    batch_size: int = Field(256, ge=1)
    bins: int = Field(2048, ge=16, le=1 << 16, description="histogram bins (percentile, mse, kl)")
    percentile: float = Field(99.99, gt=50, le=100)
    averaging_constant: float = Field(0.01, gt=0, le=1, description="moving_average_minmax EMA constant")
    out: str = "calibration/ranges.json"

    _m = field_validator("methods")(classmethod(lambda cls, v: _methods(v)))

    @field_validator("act_bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("list is empty; give at least one activation width, e.g. [8]")
        bad = [b for b in v if not MIN_BITS <= b <= MAX_BITS]
        if bad:
            raise ValueError(f"activation bits {bad[0]} out of range; allowed {MIN_BITS}..{MAX_BITS}")
        return v

    def observer_kwargs(self) -> dict[str, dict]:
        return {"percentile": {"bins": self.bins, "percentile": self.percentile}, "mse": {"bins": self.bins},
                "kl": {"bins": self.bins}, "moving_average_minmax": {"averaging_constant": self.averaging_constant}}


class PTQConfig(Section):
    """Post-training quantization variants: integer (per bit width x calibration method) and float formats."""

    bits: list[str] = Field(default_factory=lambda: ["w8a8", "w6a8", "w4a8", "w4a4", "w2a8"])
    methods: list[str] = Field(default_factory=lambda: list(OBSERVERS), description="calibration methods (subset of calibrate.methods)")
    weight_granularity: Literal["channel", "tensor", "group"] = "channel"
    weight_symmetric: bool = Field(True, description="symmetric weights (restricted range +-q_max, what int8 kernels take); "
                                                     "false: asymmetric (all 2^b levels, e.g. 4 instead of 3 at 2 bits)")
    group_size: int = Field(128, ge=1)
    rounding: Literal["nearest", "down", "up", "stochastic"] = "nearest"
    floats: list[str] = Field(default_factory=lambda: ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
    float_activations: bool = Field(True, description="also round each layer's input to the float format")
    ort_methods: list[str] | None = Field(None, description="W8A8 variants deployed on ONNX Runtime int8; null = all ptq.methods")
    pt2e_methods: list[str] = Field(default_factory=lambda: ["minmax"],
                                    description="extra W8A8 variants deployed with PT2E + inductor (compile cost: keep small)")
    val_size: int = Field(5000, ge=0, description="val images used for the per-variant val accuracy in metrics/ptq.json (0: skip)")
    out: str = "variants/ptq"

    _m = field_validator("methods")(classmethod(lambda cls, v: _methods(v)))

    @field_validator("ort_methods", "pt2e_methods")
    @classmethod
    def _deploy_methods(cls, v):
        if v:
            bad = [m for m in v if m not in OBSERVERS]
            if bad:
                raise ValueError(f"unknown observer {bad[0]!r}; allowed: {', '.join(OBSERVERS)}")
        return v

    @field_validator("bits")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            parse_tag(t)
        if len({t.lower() for t in v}) != len(v):
            raise ValueError("a bit-width tag is listed twice")
        return [t.lower() for t in v]

    @field_validator("floats")
    @classmethod
    def _floats(cls, v: list[str]) -> list[str]:
        bad = [f for f in v if f not in FORMATS or f == "fp32"]
        if bad:
            raise ValueError(f"unknown float format {bad[0]!r}; allowed: {', '.join(f for f in FORMATS if f != 'fp32')}")
        return v


def check_ptq_against_calibrate(ptq: PTQConfig, cal: CalibrateConfig, source: str = "params.yaml") -> None:
    """ptq may only use calibrated methods and activation widths (one-line error otherwise)."""
    for key, methods in (("methods", ptq.methods), ("ort_methods", ptq.ort_methods or []), ("pt2e_methods", ptq.pt2e_methods)):
        for m in methods:
            if m not in cal.methods:
                raise ValueError(f"{source}: ptq.{key} = {methods!r} is invalid: {m!r} is not in calibrate.methods {cal.methods!r}")
            if key != "methods" and m not in ptq.methods:
                raise ValueError(f"{source}: ptq.{key} = {methods!r} is invalid: {m!r} is not in ptq.methods {ptq.methods!r}")
    for t in ptq.bits:
        a = parse_tag(t)[1]
        if a not in cal.act_bits:
            raise ValueError(f"{source}: ptq.bits = {ptq.bits!r} is invalid: activation width {a} of {t!r} was not "
                             f"calibrated; add it to calibrate.act_bits {cal.act_bits!r}")


SECTIONS = {"calibrate": CalibrateConfig, "ptq": PTQConfig}
