"""params.yaml sections of the quantization family: ``calibrate``, ``ptq``, ``qat``, ``binary`` and ``sr``.

Every bad value becomes one line naming the key, e.g.
``params.yaml: ptq.bits = ['w17a8'] is invalid: weight bits 17 in 'w17a8' out of range; allowed 1..16``.
Cross-section checks (ptq methods / activation bits must have been calibrated) are done by
:func:`check_ptq_against_calibrate`, which the ptq stage calls before any work.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from compress.config import FitConfig, Section, check_known
from compress.quant.affine import MAX_BITS, MIN_BITS
from compress.quant.formats import FLOAT_FORMATS
from compress.quant.observers import OBSERVERS
from compress.quant.quantizers import QUANTIZERS

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
    check_known("observer", v, OBSERVERS)
    if len(set(v)) != len(v):
        raise ValueError("observers listed twice")
    return v


class CalibrateConfig(Section):
    """Activation-range calibration of the baseline on the calib split (never test data)."""

    methods: list[str] = Field(default_factory=lambda: list(OBSERVERS), description="observers, each writes its ranges: "
                               "minmax, moving_average_minmax, percentile, mse, kl")
    act_bits: list[int] = Field(default_factory=lambda: [8, 4],
                                description="widths the MSE / KL searches optimise for; the first is the primary one")
    batch_size: int = Field(256, ge=1, description="calibration images per forward pass")
    bins: int = Field(2048, ge=16, le=1 << 16, description="histogram bins (percentile, mse, kl)")
    percentile: float = Field(99.99, gt=50, le=100, description="percentile observer: the range covers this % of |x|")
    averaging_constant: float = Field(0.01, gt=0, le=1, description="moving_average_minmax EMA constant")

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

    bits: list[str] = Field(default_factory=lambda: ["w8a8", "w6a8", "w4a8", "w4a4", "w2a8"],
                            description="w<1..16>a<1..16> tags; activation widths must be in calibrate.act_bits")
    methods: list[str] = Field(default_factory=lambda: list(OBSERVERS), description="calibration methods (subset of calibrate.methods)")
    weight_granularity: Literal["channel", "tensor", "group"] = Field(
        "channel", description="one weight scale per output channel, per tensor or per group of group_size inputs")
    weight_symmetric: bool = Field(True, description="symmetric weights (restricted range +-q_max, what int8 kernels take); "
                                                     "false: asymmetric (all 2^b levels, e.g. 4 instead of 3 at 2 bits)")
    group_size: int = Field(128, ge=1, description="inputs per weight group (weight_granularity: group)")
    rounding: Literal["nearest", "down", "up", "stochastic"] = Field("nearest", description="rounding of the weights: RN, RD, RU or SR")
    floats: list[str] = Field(default_factory=lambda: ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"],
                              description="float formats, one ptq-<format> variant each")
    float_activations: bool = Field(True, description="also round each layer's input to the float format")
    ort_methods: list[str] | None = Field(None, description="W8A8 variants deployed on ONNX Runtime int8; null = all ptq.methods")
    pt2e_methods: list[str] = Field(default_factory=lambda: ["minmax"],
                                    description="extra W8A8 variants deployed with PT2E + inductor (compile cost: keep small)")
    val_size: int = Field(5000, ge=0, description="val images used for the per-variant val accuracy in metrics/ptq.json (0: skip)")

    _m = field_validator("methods")(classmethod(lambda cls, v: _methods(v)))

    @field_validator("ort_methods", "pt2e_methods")
    @classmethod
    def _deploy_methods(cls, v):
        return check_known("observer", v, OBSERVERS) if v else v

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
        return check_known("float format", v, [f for f in FLOAT_FORMATS if f != "fp32"])


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


class QATConfig(FitConfig):
    """QAT fine-tuning of the baseline with STE fake-quant (Jacob et al. 2018; LSQ: Esser et al. 2020): a training
    block (FitConfig) per bit width."""

    bits: list[str] = Field(default_factory=lambda: ["w8a8", "w4a4", "w2a4"],
                            description="w<2..8>a<2..16>, or w<bits> for float activations; one variant each")
    quantizer: str = Field("fixed", description=" | ".join(f"{k}: {q.description}" for k, q in QUANTIZERS.items()))
    calibration: str = Field("minmax", description="which calibrate method's ranges fix (fixed) or initialise (lsq) activations")
    weight_granularity: Literal["channel", "tensor"] = Field("channel", description="per output channel or per tensor weights")
    rounding: Literal["nearest", "stochastic"] = Field("nearest", description="rounding inside the fake-quant forward")
    lsq_lr: float = Field(1e-3, gt=0, description="learning rate of the LSQ step sizes (quantizer: lsq)")

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

    @field_validator("quantizer")
    @classmethod
    def _quantizer(cls, v: str) -> str:
        return check_known("quantizer", v, QUANTIZERS)  # the registry is the only source of names

    @model_validator(mode="after")
    def _learned_params_schedule(self) -> QATConfig:
        if QUANTIZERS[self.quantizer].learns_params and self.schedule == "onecycle":
            self.fail("schedule", f"onecycle cannot be combined with quantizer: {self.quantizer} (OneCycleLR would override "
                                  "lsq_lr); use cosine or constant")
        return self

    @field_validator("calibration")
    @classmethod
    def _calibration(cls, v: str) -> str:
        return check_known("calibration method", v, OBSERVERS)


class BinaryConfig(FitConfig):
    """BinaryConnect (Courbariaux, Bengio & David 2015) on permutation-invariant MNIST, trained from scratch (a
    training block: FitConfig's keys set every run; the reference code trains 250 epochs, see docs/results/binary.md)."""

    modes: list[Literal["det", "stoch"]] = Field(default_factory=lambda: ["det"],
                                                 description="det = sign(w); stoch = +1 with probability hard_sigmoid(w)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1], description="one run per (mode, seed)")
    fp32_seeds: list[int] = Field(default_factory=list, description="seeds of the unregularised fp32 MLP of the "
                                                                           "paper table ([] = skip)")
    hidden: list[int] = Field(default_factory=lambda: [1024, 1024, 1024], description="hidden widths (the paper: 3 x 1024, batch norm)")
    lr_scale: Literal["glorot", "none"] = Field("glorot", description="per binary layer lr x 1/H, H = sqrt(1.5/(fan_in+fan_out)), "
                                                "as in the reference code")
    fp32_lr: float = Field(1e-3, gt=0, description="learning rate of the fp32 reference MLP")
    workers: int | None = Field(None, ge=1, description="training processes, one torch thread each (null: one per core)")

    @model_validator(mode="after")
    def _binary_knobs(self) -> BinaryConfig:
        if self.optimizer == "adamw":
            self.fail("optimizer", "adamw is not used by BinaryConnect; allowed: adam, sgd")
        if self.schedule == "onecycle":
            self.fail("schedule", "onecycle would override the per-layer lr scale; allowed: cosine, constant")
        return self

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

    enabled: bool = Field(True, description="also train the MLP (RN vs SR weight updates)")
    format: str = Field("fp8_e4m3", description="the weights' storage format (bf16 shows a small RN/SR gap, fp8 e4m3 a dramatic one)")
    hidden: list[int] = Field(default_factory=lambda: [100], description="hidden widths of the MLP")
    epochs: int = Field(1, ge=1, description="passes over the (first train_size) training images")
    batch_size: int = Field(64, ge=1, description="images per SGD step")
    lr: float = Field(0.01, gt=0, description="SGD learning rate (no momentum)")
    train_size: int | None = Field(20000, ge=1, description="first N training images (None: all)")

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        return _check_format(v)


def _check_format(v: str) -> str:
    return check_known("float format", v, FLOAT_FORMATS)


class SRConfig(Section):
    """Stagnation of round-to-nearest vs stochastic rounding: GD on f(x) = (x - target)^2."""

    format: str = Field("fp8_e5m2", description="the iterate's format (fp8 e5m2: unit roundoff 2^-3)")
    target: float = Field(1024.0, description="minimiser of f(x) = (x - target)^2")
    x0: float = Field(0.0, description="starting point")
    lr: float = Field(0.05, gt=0, lt=0.5, description="GD step; < 0.5 so exact GD converges monotonically")
    steps: int = Field(60, ge=1, description="GD steps")
    sr_runs: int = Field(20, ge=1, description="independent SR trajectories (mean and band are plotted)")
    rounded: Literal["update", "all"] = Field("update", description="update: only the new iterate x <- fl(x - lr f'(x)) is "
                                              "rounded | all: every operation")
    train: SRTrainConfig = Field(default_factory=SRTrainConfig, description="low-precision weight training, RN vs SR")

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        return _check_format(v)

    @model_validator(mode="after")
    def _start(self) -> SRConfig:
        if self.x0 == self.target:
            raise ValueError(f"x0 = {self.x0} equals target: nothing to optimise")
        return self


def check_qat_against_calibrate(qat: QATConfig, cal: CalibrateConfig) -> None:
    """qat may only use a calibrated method and calibrated activation widths (one-line error otherwise)."""
    if qat.calibration not in cal.methods:
        raise ValueError(f"qat.calibration = {qat.calibration!r} is not calibrated; allowed: calibrate.methods = {cal.methods}")
    missing = sorted({a for a in (parse_bits(t)[1] for t in qat.bits) if a is not None} - set(cal.act_bits))
    if missing:
        raise ValueError(f"qat.bits = {qat.bits} needs {missing[0]}-bit activation ranges; add {missing[0]} to "
                         f"calibrate.act_bits (now {cal.act_bits})")


SECTIONS = {"calibrate": CalibrateConfig, "ptq": PTQConfig, "qat": QATConfig, "binary": BinaryConfig, "sr": SRConfig}
