"""LSQ: Learned Step size Quantization (Esser et al., ICLR 2020), the ``lsq`` QAT quantizer.

The step Δ = 1/s of the weights (per channel or per tensor) and of each layer's input is a trainable
parameter,
    x^ = (round(clip(x/Δ + z, Q_n, Q_p)) - z) Δ,
    ∂x^/∂Δ = round(v) - z - x/Δ inside,  Q_n - z or Q_p - z outside   (v = x/Δ + z),
with the gradient of Δ scaled by g = 1/sqrt(N Q_p).  Weights are symmetric (z = 0,
init Δ = 2 mean|w| / sqrt(Q_p)); activations keep the calibrated integer zero point z and start
from the calibrated range (or from the first batch when none is given).

The layers implement the quantizer interface of :class:`compress.quant.fakequant._QuantMixin`
(``quant_params``, ``quant_state``, ``weight_codes``, ``act_range``); the registry line is in
:mod:`compress.quant.quantizers`.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from compress.quant.affine import affine_params
from compress.quant.fakequant import QConv2d, QLinear, QuantSpec, _QuantMixin
from compress.quant.rounding import round_


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

    quant_params: ClassVar[tuple[str, ...]] = ("w_step", "a_step")  # learned steps: their own optimizer group (qat.lsq_lr)
    quant_state: ClassVar[tuple[str, ...]] = (*_QuantMixin.quant_state, "w_step", "a_step", "a_zero")

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

    def weight_codes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, QuantSpec]:
        """Codes round(clip(w/Δ, Q_n, Q_p)) with the lecture multiplier s = 1/Δ per row and z = 0."""
        spec, w = self.wspec, self.weight.detach()
        qn, qp = -(2 ** (spec.bits - 1)), 2 ** (spec.bits - 1) - 1
        step = self.w_step.detach().abs() + 1e-12  # (O,) or (1,)
        q = torch.clamp(w / step.reshape(-1, *([1] * (w.ndim - 1))) + 0.0, qn, qp)
        q = round_(q, "nearest")
        s = (1.0 / step).reshape(-1, 1)  # (R, 1) lecture multipliers
        return q, s, torch.zeros_like(s), QuantSpec(spec.bits, True, True, spec.granularity)

    def act_range(self) -> tuple[float, float]:
        """The learned range as (lo, hi): affine_params(lo, hi) reproduces (1/Δ, z)."""
        qmin, qmax = self.aspec.qrange
        d, z = self.a_step.detach().abs().item() + 1e-12, self.a_zero.item()
        return (qmin - z) * d, (qmax - z) * d


class LSQLinear(_LSQMixin, QLinear):
    pass


class LSQConv2d(_LSQMixin, QConv2d):
    pass


__all__ = ["LSQConv2d", "LSQLinear", "grad_scale", "lsq_fake_quant", "round_ste"]
