"""Int8 storage of Monarch factors: symmetric, per output channel of every block.

For a factor w (blocks, rows, cols) each row of each block gets its own scale
Delta = max|w_row| / 127 and is stored as q = round(w / Delta) in [-127, 127] (int8), the
standard symmetric per-channel scheme (Jacob et al. 2018; Krishnamoorthi 2018, Sec. 2).  The
artifact is a safetensors file: int8 ``<name>.q`` + float32 ``<name>.scale`` for every Monarch
factor and the float32 tensors of everything else.  Loading dequantizes (q * Delta) back to
float32: the stored bytes are int8, the arithmetic at inference is fp32.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from compress.checkpoint import read_state_dict, save_state_dict
from compress.structured.monarch import monarch_layers

QMAX = 127
FORMAT = "monarch-int8-perchannel-v1"


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 same shape, scale float32 (..., 1)): per last-dim row, symmetric, round-to-nearest-even."""
    amax = w.detach().abs().amax(dim=-1, keepdim=True).float()  # (..., 1)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))  # all-zero row: any scale, q = 0
    q = torch.round(w.detach().float() / scale).clamp_(-QMAX, QMAX).to(torch.int8)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def factor_names(model: nn.Module) -> list[str]:
    return [f"{n}.{p}" for n in monarch_layers(model) for p in ("w1", "w2")]


def quantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with every Monarch factor replaced by ``.q`` (int8) and ``.scale`` (fp32)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for name in factor_names(model):
        q, s = quantize_per_channel(state.pop(name))
        state[f"{name}.q"], state[f"{name}.scale"] = q, s
    return state


def fake_quantized(model: nn.Module) -> nn.Module:
    """In place: replace every Monarch factor by its int8 round trip (what the artifact holds)."""
    with torch.no_grad():
        for name in factor_names(model):
            p = model.get_parameter(name)
            p.copy_(dequantize(*quantize_per_channel(p)))
    return model


def save_int8(model: nn.Module, path: str | Path) -> Path:
    return save_state_dict(quantized_state(model), path, metadata={"format": FORMAT})


def load_int8(model: nn.Module, path: str | Path) -> nn.Module:
    """Dequantize the stored factors into ``model`` (a Monarch model of the same structure)."""
    state = read_state_dict(path)
    for name in factor_names(model):
        try:
            q, s = state.pop(f"{name}.q"), state.pop(f"{name}.scale")
        except KeyError:
            raise ValueError(f"{path}: no int8 factor {name!r}; was it written by save_int8 for this model?") from None
        state[name] = dequantize(q, s)
    model.load_state_dict(state, strict=True)
    return model


def stored_weight_bits(model: nn.Module) -> tuple[float, int]:
    """(average bits per stored weight incl. the fp32 per-channel scales, number of weights)."""
    qnames = set(factor_names(model))
    bits, count = 0, 0
    for name, p in model.named_parameters():
        if name in qnames:
            bits += 8 * p.numel() + 32 * p[..., :1].numel()  # int8 entries + one fp32 scale per row
        else:
            bits += 32 * p.numel()
        count += p.numel()
    return bits / max(count, 1), count
