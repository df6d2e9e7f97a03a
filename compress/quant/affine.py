"""Uniform affine integer quantization, in the lecture's convention.

The lecture maps a real range ``[x_min, x_max]`` onto the integer range ``[q_min, q_max]``:

    s   = (q_max - q_min) / (x_max - x_min)          # a *multiplier* (levels per unit)
    X_s = s (X - x_min) + q_min = s X + z,   z = q_min - s x_min
    X_q = clip(round(X_s), q_min, q_max)             # quantize
    X^  = (X_q - z) / s                              # dequantize (the inverse map)

NOTE: ``s`` here is the *inverse* of the PyTorch / ONNX "scale" (``x = scale * (q - zp)``);
use :func:`torch_scale` to convert.  ``z`` is the zero point (by default rounded to an integer
so that 0.0 is exactly representable, as every integer kernel requires).

Per-channel / per-group parameters: pass tensors for ``x_min``/``x_max``; ``quantize`` and
``dequantize`` take ``axis`` to broadcast them along that dimension of ``x``.
Bits 1..16, signed (``[-2^(b-1), 2^(b-1)-1]``) or unsigned (``[0, 2^b-1]``).
"""
from __future__ import annotations

import torch

from compress.quant.rounding import round_

MIN_BITS, MAX_BITS = 1, 16


def check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits = {bits!r} is invalid; allowed: an integer from {MIN_BITS} to {MAX_BITS}")
    return bits


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """Integer range of a ``bits``-bit code: signed two's complement or unsigned."""
    check_bits(bits)
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def torch_scale(s: torch.Tensor | float) -> torch.Tensor:
    """PyTorch/ONNX-style scale (real units per level) = 1 / lecture multiplier ``s``."""
    return 1.0 / torch.as_tensor(s, dtype=torch.float32)


def affine_params(x_min, x_max, bits: int, signed: bool = True, symmetric: bool = False, eps: float = 1e-8,
                  include_zero: bool = True, integer_zero_point: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiplier ``s`` and zero point ``z`` (float32 tensors, shape of ``x_min``).

    Asymmetric: ``s = (q_max - q_min)/(x_max - x_min)``, ``z = q_min - s x_min`` (lecture).
    Symmetric:  ``s = q'/max(|x_min|, |x_max|)`` with ``q' = q_max`` (signed, ``z = 0``: the
    restricted range ``[-q_max, q_max]`` used by ONNX Runtime int8 weights) or
    ``q' = q_max - 2^(b-1)`` (unsigned, ``z = 2^(b-1)``).
    ``include_zero`` widens the range to contain 0 (so zero padding / ReLU zeros are exact).
    Degenerate ranges (``x_max == x_min``) are widened so ``s`` and ``z`` stay finite.
    """
    qmin, qmax = qrange(bits, signed)
    lo = torch.as_tensor(x_min, dtype=torch.float32).clone()
    hi = torch.as_tensor(x_max, dtype=torch.float32).clone()
    if lo.shape != hi.shape:
        raise ValueError(f"x_min shape {tuple(lo.shape)} != x_max shape {tuple(hi.shape)}")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError("quantization range is not finite (NaN/inf activations or weights?)")
    if (hi < lo).any():
        raise ValueError("quantization range has x_max < x_min")
    if symmetric:
        if signed and bits < 2:
            raise ValueError("symmetric signed quantization needs bits >= 2 (1 bit: use asymmetric, or compress.quant.binary)")
        # 1. largest magnitude; a zero range gets magnitude 1 (any multiplier represents 0 exactly)
        amax = torch.maximum(lo.abs(), hi.abs())
        amax = torch.where(amax > eps, amax, torch.ones_like(amax))
        half = 0 if signed else 2 ** (bits - 1)
        s = (qmax - half) / amax
        z = torch.full_like(s, float(half))
        return s, z
    if include_zero:
        lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    # 2. degenerate ranges: first widen to include 0, and if still empty (all zeros) use [0, 1]
    flat = (hi - lo) <= eps
    lo = torch.where(flat, torch.minimum(lo, torch.zeros_like(lo)), lo)
    hi = torch.where(flat, torch.maximum(hi, torch.zeros_like(hi)), hi)
    flat = (hi - lo) <= eps
    hi = torch.where(flat, lo + 1.0, hi)
    # 3. lecture formula
    s = (qmax - qmin) / (hi - lo)
    z = qmin - s * lo
    if integer_zero_point:
        z = torch.round(z).clamp(qmin, qmax)
    return s, z


def _along(t: torch.Tensor | float, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if axis is None or t.numel() == 1:
        return t
    shape = [1] * x.ndim
    shape[axis] = -1
    return t.reshape(shape)


def quantize(x: torch.Tensor, s, z, qmin: int, qmax: int, rounding: str = "nearest",
             generator: torch.Generator | None = None, axis: int | None = None) -> torch.Tensor:
    """``clip(round(s x + z), q_min, q_max)`` as an integer-valued float tensor (same shape as x)."""
    s, z = _along(s, x, axis), _along(z, x, axis)
    return round_(s * x + z, rounding, generator).clamp_(qmin, qmax)


def dequantize(q: torch.Tensor, s, z, axis: int | None = None) -> torch.Tensor:
    """Inverse map ``(X_q - z) / s``."""
    q = q.to(torch.float32)
    s, z = _along(s, q, axis), _along(z, q, axis)
    return (q - z) / s


__all__ = ["MAX_BITS", "MIN_BITS", "affine_params", "check_bits", "dequantize", "qrange", "quantize", "torch_scale"]
