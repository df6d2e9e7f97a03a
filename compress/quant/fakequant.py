"""Simulated ("fake") quantization: quantize -> dequantize in float, with a straight-through
estimator (STE) so the same modules serve PTQ evaluation and QAT.

    x^ = (clip(round(s x + z), q_min, q_max) - z) / s           (lecture affine map + inverse)
    d x^ / d x = 1 if q_min <= s x + z <= q_max else 0          (STE, Bengio et al. 2013)

Weights: per-tensor, per-channel (output channel, axis 0) or per-group (``group_size``
consecutive inputs of one output channel).  Activations: per-tensor, range from calibration.
``quantize_model`` wraps every prunable layer of a deep copy in ``QLinear`` / ``QConv2d``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from compress.quant.affine import (
    affine_params,
    check_bits,
    dequantize,
    qrange,
    quantize,
)
from compress.quant.formats import get_format, round_to_format
from compress.quant.rounding import check_mode

GRANULARITIES = ("tensor", "channel", "group")


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized.  Validates itself (torchao-style ``__post_init__``)."""

    bits: int = 8
    signed: bool = True
    symmetric: bool = False
    granularity: str = "tensor"
    group_size: int = 128
    rounding: str = "nearest"

    def __post_init__(self):
        check_bits(self.bits)
        check_mode(self.rounding)
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity {self.granularity!r} is unknown; allowed: {', '.join(GRANULARITIES)}")
        if self.group_size < 1:
            raise ValueError(f"group_size = {self.group_size} must be >= 1")
        if self.symmetric and self.signed and self.bits < 2:
            raise ValueError("symmetric signed quantization needs bits >= 2 (use symmetric=False for 1 bit)")

    @property
    def qrange(self) -> tuple[int, int]:
        return qrange(self.bits, self.signed)

    def with_bits(self, bits: int) -> QuantSpec:
        sym = self.symmetric and not (self.signed and bits < 2)  # 1-bit signed falls back to asymmetric
        return dataclasses.replace(self, bits=bits, symmetric=sym)


def weight_spec(bits: int = 8, **kw) -> QuantSpec:
    """Default weight spec: signed, symmetric, per output channel (what int8 kernels expect)."""
    kw = {"signed": True, "symmetric": bits >= 2, "granularity": "channel", **kw}
    return QuantSpec(bits=bits, **kw)


def act_spec(bits: int = 8, **kw) -> QuantSpec:
    """Default activation spec: unsigned, asymmetric, per tensor (uint8 activations)."""
    kw = {"signed": False, "symmetric": False, "granularity": "tensor", **kw}
    return QuantSpec(bits=bits, **kw)


_default_wspec, _default_aspec = weight_spec, act_spec


class FakeQuantSTE(torch.autograd.Function):
    """``dequantize(quantize(x))`` forward; gradient passed straight through inside the clip range."""

    @staticmethod
    def forward(ctx, x, s, z, qmin, qmax, rounding="nearest", generator=None):
        v = s * x + z
        ctx.save_for_backward((v >= qmin) & (v <= qmax))
        return dequantize(quantize(x, s, z, qmin, qmax, rounding, generator), s, z).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return g * inside, None, None, None, None, None, None


def fake_quant(x: torch.Tensor, s, z, qmin: int, qmax: int, rounding: str = "nearest",
               generator: torch.Generator | None = None) -> torch.Tensor:
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    z = torch.as_tensor(z, dtype=x.dtype, device=x.device)
    return FakeQuantSTE.apply(x, s, z, qmin, qmax, rounding, generator)


# --------------------------------------------------------------------------- weights
def _blocks(w: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, int]:
    """View ``w`` as (R, G, K) blocks sharing one (s, z): tensor (1, 1, N), channel (O, 1, n),
    group (O, ceil(n/gs), gs) zero-padded.  Returns the view and the padding length."""
    if spec.granularity == "tensor":
        return w.reshape(1, 1, -1), 0
    rows = w.reshape(w.shape[0], -1)  # (O, n)
    if spec.granularity == "channel":
        return rows.unsqueeze(1), 0
    n = rows.shape[1]
    gs = min(spec.group_size, n)
    pad = (-n) % gs
    if pad:
        rows = F.pad(rows, (0, pad))  # zeros: inside every range (ranges include 0)
    return rows.reshape(rows.shape[0], -1, gs), pad


def _unblock(b: torch.Tensor, shape: torch.Size, pad: int) -> torch.Tensor:
    rows = b.reshape(b.shape[0], -1)
    if pad:
        rows = rows[:, :-pad]
    return rows.reshape(shape)


def weight_qparams(w: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, z) of shape (R, G): one pair per tensor / output channel / group."""
    b, _ = _blocks(w.detach(), spec)  # (R, G, K)
    return affine_params(b.amin(-1), b.amax(-1), spec.bits, spec.signed, spec.symmetric)


def quantize_weight(w: torch.Tensor, spec: QuantSpec, generator: torch.Generator | None = None):
    """Integer codes (w's shape, integer-valued float) and their (s, z) of shape (R, G)."""
    s, z = weight_qparams(w, spec)
    b, pad = _blocks(w.detach(), spec)
    q = quantize(b, s.unsqueeze(-1), z.unsqueeze(-1), *spec.qrange, spec.rounding, generator)
    return _unblock(q, w.shape, pad), s, z


def dequantize_weight(q: torch.Tensor, s: torch.Tensor, z: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    b, pad = _blocks(q.to(torch.float32), spec)
    return _unblock(dequantize(b, s.unsqueeze(-1), z.unsqueeze(-1)), q.shape, pad)


def fake_quant_weight(w: torch.Tensor, spec: QuantSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fake-quantized weight with STE gradient (ranges from the current weight, no gradient)."""
    s, z = weight_qparams(w, spec)
    b, pad = _blocks(w, spec)
    return _unblock(fake_quant(b, s.unsqueeze(-1), z.unsqueeze(-1), *spec.qrange, spec.rounding, generator), w.shape, pad)


# --------------------------------------------------------------------------- modules
class _QuantMixin:
    """Shared by QLinear / QConv2d: weight fake-quant + input (activation) fake-quant.

    Activation range buffers ``act_lo`` / ``act_hi`` come from calibration; when none is given
    they start as NaN and track the running min / max of the inputs seen (QAT warm-up).

    This is also the interface of a QAT quantizer (``compress.quant.quantizers.QUANTIZERS``); a
    subclass (e.g. LSQ) overrides what differs:

    * ``quant_params``: names of the quantizer's own learned parameters (step sizes, clipping
      values), trained in their own optimizer group without weight decay;
    * ``quant_state``: names of every parameter / buffer that is quantizer state, not a tensor of
      the float model (left out of the exported float tensors);
    * :meth:`weight_fake_quant`, :meth:`input_fake_quant` (the forward), :meth:`weight_codes`
      (the integer codes export stores) and :meth:`act_range` (the exported input range).
    """

    wspec: QuantSpec | None
    aspec: QuantSpec | None
    quant_params: ClassVar[tuple[str, ...]] = ()
    quant_state: ClassVar[tuple[str, ...]] = ("act_lo", "act_hi")

    def _setup(self, wspec: QuantSpec | None, aspec: QuantSpec | None, act_range: tuple[float, float] | None):
        self.wspec, self.aspec = wspec, aspec
        lo, hi = act_range if act_range is not None else (math.nan, math.nan)
        self.register_buffer("act_lo", torch.tensor(float(lo)))
        self.register_buffer("act_hi", torch.tensor(float(hi)))
        self.observe = act_range is None
        self.generator: torch.Generator | None = None

    def weight_fake_quant(self) -> torch.Tensor:
        return self.weight if self.wspec is None else fake_quant_weight(self.weight, self.wspec, self.generator)

    def act_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.aspec
        return affine_params(self.act_lo, self.act_hi, a.bits, a.signed, a.symmetric)

    def input_fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        if self.aspec is None:
            return x
        if self.observe and (self.training or torch.isnan(self.act_lo)):
            with torch.no_grad():
                lo, hi = x.min().to(self.act_lo), x.max().to(self.act_hi)
                self.act_lo.copy_(lo if torch.isnan(self.act_lo) else torch.minimum(self.act_lo, lo))
                self.act_hi.copy_(hi if torch.isnan(self.act_hi) else torch.maximum(self.act_hi, hi))
        s, z = self.act_qparams()
        return fake_quant(x, s, z, *self.aspec.qrange, self.aspec.rounding, self.generator)

    def weight_codes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, QuantSpec]:
        """(integer codes, s, z, spec) of the weight as the deployed artifact stores it: round-to-nearest
        on the grid of the current weight (stochastic rounding is a training-time choice)."""
        q, s, z = quantize_weight(self.weight.detach(), dataclasses.replace(self.wspec, rounding="nearest"))
        return q, s, z, self.wspec

    def act_range(self) -> tuple[float, float]:
        """The input range (lo, hi) whose affine parameters the forward uses."""
        return self.act_lo.item(), self.act_hi.item()

    def extra_repr(self) -> str:
        w = "fp" if self.wspec is None else f"w{self.wspec.bits}/{self.wspec.granularity}"
        a = "fp" if self.aspec is None else f"a{self.aspec.bits}"
        return f"{super().extra_repr()}, {w}, {a}"


class QLinear(_QuantMixin, nn.Linear):
    @classmethod
    def from_float(cls, m: nn.Linear, wspec=None, aspec=None, act_range=None) -> QLinear:
        q = cls(m.in_features, m.out_features, bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
        q.weight, q.bias = m.weight, m.bias
        q._setup(wspec, aspec, act_range)
        return q

    def forward(self, x):  # (B, in) -> (B, out)
        return F.linear(self.input_fake_quant(x), self.weight_fake_quant(), self.bias)


class QConv2d(_QuantMixin, nn.Conv2d):
    @classmethod
    def from_float(cls, m: nn.Conv2d, wspec=None, aspec=None, act_range=None) -> QConv2d:
        q = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                bias=m.bias is not None, padding_mode=m.padding_mode, device=m.weight.device, dtype=m.weight.dtype)
        q.weight, q.bias = m.weight, m.bias
        q._setup(wspec, aspec, act_range)
        return q

    def forward(self, x):  # (B, Cin, H, W) -> (B, Cout, H', W')
        return self._conv_forward(self.input_fake_quant(x), self.weight_fake_quant(), self.bias)


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _per_layer(v, name: str):
    return v.get(name) if isinstance(v, Mapping) else v


def quantize_model(model: nn.Module, wbits: int | None | Mapping[str, int | None] = 8,
                   abits: int | None | Mapping[str, int | None] = 8,
                   act_ranges: Mapping[str, tuple[float, float]] | None = None,
                   weight_spec: QuantSpec | None = None, act_spec: QuantSpec | None = None,
                   module_classes: tuple[type, type] = (QLinear, QConv2d)) -> nn.Module:
    """Deep copy of ``model`` with every prunable layer wrapped for fake quantization.

    ``wbits`` / ``abits``: one width for all layers or ``{layer_name: bits}`` keyed by
    ``compress.models.prunable_layers`` names (None or a missing key: keep float).
    ``act_ranges``: ``{layer_name: (lo, hi)}`` of each layer's INPUT (from ``calibrate``).
    ``weight_spec`` / ``act_spec``: templates whose ``bits`` is replaced per layer.
    """
    from compress.models import prunable_layers

    wt = weight_spec or _default_wspec(8)
    at = act_spec or _default_aspec(8)
    qlin, qconv = module_classes
    out = copy.deepcopy(model)
    for name, m in prunable_layers(out).items():
        wb, ab = _per_layer(wbits, name), _per_layer(abits, name)
        ws = wt.with_bits(wb) if wb is not None else None
        as_ = at.with_bits(ab) if ab is not None else None
        rng = act_ranges.get(name) if act_ranges is not None and as_ is not None else None
        cls = qconv if isinstance(m, nn.Conv2d) else qlin
        _set_module(out, name, cls.from_float(m, ws, as_, rng))
    return out


@torch.no_grad()
def quantize_model_float(model: nn.Module, fmt, act_fmt="same", rounding: str = "nearest",
                         generator: torch.Generator | None = None) -> nn.Module:
    """Deep copy with every prunable layer's weight (and bias) rounded to the float format ``fmt``
    and, unless ``act_fmt`` is None, its input rounded to ``act_fmt`` (default: the same format)."""
    from compress.models import prunable_layers

    fmt = get_format(fmt)
    afmt = fmt if act_fmt == "same" else (get_format(act_fmt) if act_fmt is not None else None)
    out = copy.deepcopy(model)
    for _, m in prunable_layers(out).items():
        for p in (m.weight, m.bias):
            if p is not None:
                p.copy_(round_to_format(p, fmt, rounding, generator))
        if afmt is not None:
            m.register_forward_pre_hook(lambda _m, inp, f=afmt: (round_to_format(inp[0], f, rounding, generator),))
    return out


__all__ = [
    "GRANULARITIES",
    "FakeQuantSTE",
    "QConv2d",
    "QLinear",
    "QuantSpec",
    "act_spec",
    "dequantize_weight",
    "fake_quant",
    "fake_quant_weight",
    "quantize_model",
    "quantize_model_float",
    "quantize_weight",
    "weight_qparams",
    "weight_spec",
]
