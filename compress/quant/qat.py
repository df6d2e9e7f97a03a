"""Quantization-aware training (QAT): fine-tune a float model through fake-quant layers.

Forward: every prunable layer sees fake-quantized weights and a fake-quantized input
(compress.quant.fakequant).  Backward: straight-through estimator (Bengio et al. 2013),
    d x^/d x = 1 inside the clipping range, 0 outside.
Two ways to set the ranges (``quantizer``):

* ``fixed`` — weights: per-channel min-max of the current weight at every step (the
  :class:`~compress.quant.fakequant.QLinear` default); activations: the calibrated input
  range of each layer (calibration/ranges.json), frozen during training.
* ``lsq`` — Learned Step size Quantization (Esser et al., ICLR 2020): the step Δ = 1/s of the
  weights (per channel) and of each layer's input is a trainable parameter,
      x^ = (round(clip(x/Δ + z, Q_n, Q_p)) - z) Δ,
      ∂x^/∂Δ = round(v) - z - x/Δ inside,  Q_n - z or Q_p - z outside   (v = x/Δ + z),
  with the gradient of Δ scaled by g = 1/sqrt(N Q_p).  Weights are symmetric (z = 0,
  init Δ = 2 mean|w| / sqrt(Q_p)); activations keep the calibrated integer zero point z
  and start from the calibrated range.

``export_quantized`` turns a trained QAT model into integer codes + (s, z) per channel
(:class:`compress.quant.packing.QTensor`) and exact activation ranges, the inputs of the
packed / int8 deployment.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from torch import nn

from compress.models import prunable_layers
from compress.quant.affine import affine_params
from compress.quant.fakequant import (
    QConv2d,
    QLinear,
    QuantSpec,
    _QuantMixin,
    act_spec,
    quantize_model,
    quantize_weight,
    weight_spec,
)
from compress.quant.packing import QTensor, save_packed
from compress.quant.rounding import round_

QUANTIZERS = ("fixed", "lsq")


def _check_quantizer(q: str) -> None:
    if q not in QUANTIZERS:
        raise ValueError(f"qat.quantizer = {q!r} is unknown; allowed: {', '.join(QUANTIZERS)}")


# --------------------------------------------------------------------------- LSQ
def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """Value x, gradient g * dL/dx (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


def round_ste(v: torch.Tensor, mode: str = "nearest", generator: torch.Generator | None = None) -> torch.Tensor:
    """round(v) forward, identity backward."""
    return v + (round_(v.detach(), mode, generator) - v).detach()


def lsq_fake_quant(x: torch.Tensor, step: torch.Tensor, zero: torch.Tensor | float, qmin: int, qmax: int, g: float,
                   rounding: str = "nearest", generator: torch.Generator | None = None) -> torch.Tensor:
    """LSQ fake quantization; ``step`` broadcasts against ``x`` (scalar or (C, 1, ...))."""
    step = grad_scale(step, g).abs() + 1e-12  # Δ > 0
    v = torch.clamp(x / step + zero, qmin, qmax)  # clip in the integer domain (STE: zero gradient outside)
    return (round_ste(v, rounding, generator) - zero) * step


class _LSQMixin(_QuantMixin):
    """QLinear / QConv2d with learned weight and activation step sizes."""

    def _setup(self, wspec, aspec, act_range):
        super()._setup(wspec, aspec, act_range)
        if wspec is not None:
            if wspec.granularity not in ("tensor", "channel"):
                raise ValueError(f"qat.weight_granularity = {wspec.granularity!r}: LSQ supports tensor or channel")
            qp = 2 ** (wspec.bits - 1) - 1
            w = self.weight.detach().reshape(self.weight.shape[0], -1)  # (O, n)
            mean_abs = w.abs().mean(1) if wspec.granularity == "channel" else w.abs().mean().reshape(1)
            self.w_step = nn.Parameter(2 * mean_abs / math.sqrt(max(qp, 1)))  # LSQ init, (O,) or (1,)
        if aspec is not None:
            self.a_step = nn.Parameter(torch.tensor(1.0))
            self.register_buffer("a_zero", torch.tensor(0.0))
            self.a_init = False
            if act_range is not None:
                self._init_act(*act_range)

    def _init_act(self, lo: float, hi: float) -> None:
        s, z = affine_params(torch.tensor(float(lo)), torch.tensor(float(hi)), self.aspec.bits, self.aspec.signed, False)
        with torch.no_grad():
            self.a_step.copy_(1.0 / s)
            self.a_zero.copy_(z)
        self.a_init = True

    def weight_fake_quant(self) -> torch.Tensor:
        if self.wspec is None:
            return self.weight
        qn, qp = -(2 ** (self.wspec.bits - 1)), 2 ** (self.wspec.bits - 1) - 1
        g = 1.0 / math.sqrt(self.weight.numel() / self.w_step.numel() * qp)
        step = self.w_step.reshape(-1, *([1] * (self.weight.ndim - 1)))  # (O, 1, ...) or (1, 1, ...)
        return lsq_fake_quant(self.weight, step, 0.0, qn, qp, g, self.wspec.rounding, self.generator)

    def input_fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        if self.aspec is None:
            return x
        if not self.a_init:  # no calibrated range: initialise from the first batch
            self._init_act(x.min().item(), x.max().item())
        qmin, qmax = self.aspec.qrange
        g = 1.0 / math.sqrt(x[0].numel() * qmax)
        return lsq_fake_quant(x, self.a_step, self.a_zero, qmin, qmax, g, self.aspec.rounding, self.generator)

    def act_range(self) -> tuple[float, float]:
        """The learned range as (lo, hi): affine_params(lo, hi) reproduces (1/Δ, z)."""
        qmin, qmax = self.aspec.qrange
        d, z = self.a_step.detach().abs().item() + 1e-12, self.a_zero.item()
        return (qmin - z) * d, (qmax - z) * d


class LSQLinear(_LSQMixin, QLinear):
    pass


class LSQConv2d(_LSQMixin, QConv2d):
    pass


# --------------------------------------------------------------------------- prepare / train
def prepare_qat(model: nn.Module, wbits: int | Mapping[str, int | None], abits: int | None | Mapping[str, int | None],
                act_ranges: Mapping[str, tuple[float, float]] | None = None, quantizer: str = "fixed",
                granularity: str = "channel", rounding: str = "nearest") -> nn.Module:
    """Deep copy of ``model`` with fake-quant layers ready for QAT (weights shared with nothing).

    ``act_ranges``: calibrated input range per prunable layer (``fixed``: frozen; ``lsq``: init).
    """
    _check_quantizer(quantizer)
    classes = (LSQLinear, LSQConv2d) if quantizer == "lsq" else (QLinear, QConv2d)
    return quantize_model(model, wbits, abits, act_ranges, weight_spec(8, granularity=granularity, rounding=rounding),
                          act_spec(8, rounding=rounding), module_classes=classes)


def qat_layers(model: nn.Module) -> dict[str, _QuantMixin]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _QuantMixin)}


def make_qat_optimizer(model: nn.Module, cfg, lsq_lr: float) -> torch.optim.Optimizer:
    """compress.train.make_optimizer with LSQ step sizes in their own group at ``lsq_lr`` (no weight decay)."""
    from compress.train import make_optimizer

    steps = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in ("w_step", "a_step")]
    ids = {id(p) for p in steps}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    opt = make_optimizer(rest, cfg)
    if steps:
        opt.add_param_group({"params": steps, "lr": lsq_lr, "weight_decay": 0.0})
    return opt


def train_qat(model_q: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], cfg, *,
              seed: int, lsq_lr: float = 1e-3, on_eval=None, desc: str = "qat", progress: bool = True,
              restore_best: bool = True):
    """Fine-tune the fake-quant model with compress.train.fit (cfg: fit's knobs).  Returns History.
    With ``restore_best`` the weights (and LSQ steps) of the lowest validation loss are kept.

    Frozen activation ranges (``fixed``) are buffers, so only weights, biases and LSQ steps train.
    """
    from compress.train import fit

    g = torch.Generator().manual_seed(seed)
    for m in qat_layers(model_q).values():
        m.generator = g  # stochastic rounding, when chosen, is seeded
    opt = make_qat_optimizer(model_q, cfg, lsq_lr)
    return fit(model_q, train, val, cfg, seed=seed, optimizer=opt, on_eval=on_eval, desc=desc, progress=progress,
               restore_best=restore_best)


# --------------------------------------------------------------------------- export
def _codes(m: _QuantMixin) -> QTensor:
    spec = m.wspec
    w = m.weight.detach()
    if isinstance(m, _LSQMixin):
        qn, qp = -(2 ** (spec.bits - 1)), 2 ** (spec.bits - 1) - 1
        step = m.w_step.detach().abs() + 1e-12  # (O,) or (1,)
        q = torch.clamp(w / step.reshape(-1, *([1] * (w.ndim - 1))) + 0.0, qn, qp)
        q = round_(q, "nearest")
        s = (1.0 / step).reshape(-1, 1)  # (R, 1) lecture multipliers
        return QTensor(q=q, s=s, z=torch.zeros_like(s), spec=QuantSpec(spec.bits, True, True, spec.granularity))
    q, s, z = quantize_weight(w, dataclasses.replace(spec, rounding="nearest"))
    return QTensor(q=q, s=s, z=z, spec=spec)


@torch.no_grad()
def export_quantized(model_q: nn.Module) -> tuple[dict[str, QTensor], dict[str, torch.Tensor], dict[str, dict]]:
    """(weight codes per layer ``{name}.weight``, every other float tensor of the original model,
    ``{layer: {"lo", "hi", "spec"}}`` activation quantizers) of a QAT model.  The activation entries
    use the layout of :func:`compress.quant.ptq.save_packed_model`; for LSQ, (lo, hi) is the range
    whose lecture parameters are exactly the learned (1/Δ, z).

    Keys are those of the float model's state dict, so :func:`baked_state_dict` loads into it.
    """
    layers = qat_layers(model_q)
    qts, acts = {}, {}
    for name, m in layers.items():
        if m.wspec is not None:
            qts[f"{name}.weight"] = _codes(m)
        if m.aspec is not None:
            lo, hi = m.act_range() if isinstance(m, _LSQMixin) else (m.act_lo.item(), m.act_hi.item())
            acts[name] = {"lo": lo, "hi": hi, "spec": dataclasses.asdict(dataclasses.replace(m.aspec, rounding="nearest"))}
    extra = {"w_step", "a_step", "a_zero", "act_lo", "act_hi"}
    floats = {k: v.detach().float() for k, v in model_q.state_dict().items()
              if k not in qts and k.rsplit(".", 1)[-1] not in extra}
    return qts, floats, acts


def baked_state_dict(qts: Mapping[str, QTensor], floats: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of the float architecture with every quantized weight replaced by its dequantized value."""
    return {**{k: v for k, v in floats.items()}, **{k: qt.dequantize() for k, qt in qts.items()}}


def save_qat_packed(model_q: nn.Module, path, meta: dict | None = None):
    """Write the QAT result as a bit-packed artifact (``compress.quant.packing``) in the layout of the
    quant core's ``packed`` runtime: codes + (s, z) per channel, float tensors, activation quantizers."""
    qts, floats, acts = export_quantized(model_q)
    return save_packed(path, qts, floats, {**(meta or {}), "acts": acts})


def weight_bits_average(qts: Mapping[str, QTensor], model: nn.Module) -> float:
    """Parameter-weighted mean bits of all prunable-layer weights (float ones count 32)."""
    total, bits = 0, 0.0
    for name, layer in prunable_layers(model).items():
        n = layer.weight.numel()
        b = qts[f"{name}.weight"].spec.bits if f"{name}.weight" in qts else 32
        total, bits = total + n, bits + n * b
    return bits / max(total, 1)


__all__ = [
    "QUANTIZERS",
    "LSQConv2d",
    "LSQLinear",
    "baked_state_dict",
    "export_quantized",
    "grad_scale",
    "lsq_fake_quant",
    "make_qat_optimizer",
    "prepare_qat",
    "qat_layers",
    "round_ste",
    "save_qat_packed",
    "train_qat",
    "weight_bits_average",
]

