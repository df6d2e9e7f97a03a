"""Integer storage of structured-layer factors through the shared quantization API (compress.quant).

Every row of every block of a factor (Monarch: w1 (k, j*r, i) and w2 (j, l, k*r)) is one output channel: the factor is
viewed as (blocks * rows, cols) and quantized with ``compress.quant.fakequant.weight_spec(bits)``
(signed, symmetric, per channel, round-to-nearest: the lecture's affine map with z = 0,
s = q_max / max|w_row|).  The artifact is ``compress.quant.packing.save_packed``: bit-packed codes +
one float32 multiplier per channel for the factors, float32 for every other tensor (biases, the
dense classifier).  Loading dequantizes back to float32: storage is ``bits``-bit, compute is fp32.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compress.quant.fakequant import QuantSpec, quantize_weight, weight_spec
from compress.quant.packing import QTensor, load_packed, save_packed
from compress.structured.base import structured_layers
from compress.variants import ArtifactError

FORMAT = "structured-packed-v1"
FORMATS_READ = (FORMAT, "monarch-packed-v1")  # the earlier name of the same layout


def factor_spec(bits: int) -> QuantSpec:
    return weight_spec(bits)  # signed, symmetric, per channel


def quantize_factor(w: torch.Tensor, bits: int) -> QTensor:
    """w (blocks, rows, cols) -> codes and multipliers, one channel per (block, row)."""
    spec = factor_spec(bits)
    q, s, z = quantize_weight(w.detach().float().reshape(-1, w.shape[-1]), spec)  # (blocks*rows, cols), (R, 1)
    return QTensor(q, s, z, spec)


def roundtrip(w: torch.Tensor, bits: int) -> torch.Tensor:
    """What the artifact holds for ``w``: dequantize(quantize(w)), shape of w."""
    return quantize_factor(w, bits).dequantize().reshape(w.shape)


def factor_names(model: nn.Module) -> list[str]:
    return [f"{n}.{p}" for n, m in structured_layers(model).items() for p in m.factor_names]


def fake_quantized(model: nn.Module, bits: int) -> nn.Module:
    """In place: replace every structured factor by its quantization round trip."""
    with torch.no_grad():
        for name in factor_names(model):
            p = model.get_parameter(name)
            p.copy_(roundtrip(p, bits))
    return model


def save_quantized(model: nn.Module, path: str | Path, bits: int) -> Path:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    qtensors = {name: quantize_factor(state.pop(name), bits) for name in factor_names(model)}
    return save_packed(path, qtensors, state, meta={"format": FORMAT, "bits": bits})


def load_quantized(model: nn.Module, path: str | Path) -> nn.Module:
    """Dequantize the stored factors into ``model`` (a structured model of the same structure)."""
    qts, floats, meta = load_packed(path)
    if meta.get("format") not in FORMATS_READ:
        raise ArtifactError(path, f"is not a packed structured state (format {meta.get('format')!r})")
    own = model.state_dict()
    state = dict(floats)
    for name in factor_names(model):
        if name not in qts:
            raise ArtifactError(path, f"has no quantized factor {name!r} (was it written for this model structure?)")
        state[name] = qts.pop(name).dequantize().reshape(own[name].shape)
    model.load_state_dict(state, strict=True)
    return model


def stored_weight_bits(model: nn.Module, bits: int) -> float:
    """Average stored bits per parameter: ``bits`` per factor entry + a float32 multiplier per
    channel; 32 for every other parameter."""
    qnames = set(factor_names(model))
    total, count = 0, 0
    for name, p in model.named_parameters():
        total += bits * p.numel() + 32 * p[..., :1].numel() if name in qnames else 32 * p.numel()
        count += p.numel()
    return total / max(count, 1)
