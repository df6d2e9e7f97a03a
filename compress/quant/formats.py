"""Low-precision floating-point formats and rounding into them (Higham, *Accuracy and
Stability of Numerical Algorithms*, ch. 2; Higham & Pranesh 2019, "chop").

A binary format F(t, e_min, e_max) holds ``±m × 2^(e - t + 1)`` with ``t`` significand bits
*including* the implicit leading bit, integer ``m < 2^t`` and ``e_min <= e <= e_max``.
Normal numbers have ``m >= 2^(t-1)``; subnormals (``m < 2^(t-1)`` at ``e = e_min``) are kept or
flushed to zero.  Unit roundoff ``u = 2^-t`` (round to nearest); ``2^(1-t)`` for directed
and stochastic rounding.

Overflow policy: ``saturate`` (clip to ±x_max) or ``inf`` (±inf; NaN for a format without
infinities).  Named formats use the policy of torch's own cast so results match bit for bit:
fp16, bf16 and fp8_e5m2 overflow to inf; fp8_e4m3 (the "fn" variant, no inf, x_max = 448)
saturates.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from compress.quant.rounding import check_mode, round_

OVERFLOW_POLICIES = ("saturate", "inf")


@dataclass(frozen=True)
class FloatFormat:
    name: str
    t: int  # significand bits incl. the implicit bit (fp16: 11)
    emin: int
    emax: int
    subnormals: bool = True
    overflow: str = "inf"
    max_finite: float | None = None  # None: (2 - 2^(1-t)) 2^emax; fp8 e4m3fn: 448
    has_inf: bool = True
    torch_dtype: torch.dtype | None = None  # torch's own dtype, when it has one

    def __post_init__(self):
        if not 1 <= self.t <= 53:
            raise ValueError(f"float format {self.name!r}: t = {self.t} significand bits is invalid; allowed 1..53")
        if not self.emin < 0 < self.emax:
            raise ValueError(f"float format {self.name!r}: need emin < 0 < emax, got emin={self.emin}, emax={self.emax}")
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"float format {self.name!r}: overflow = {self.overflow!r} is unknown; allowed: {', '.join(OVERFLOW_POLICIES)}")

    @property
    def xmax(self) -> float:
        return self.max_finite if self.max_finite is not None else (2 - 2 ** (1 - self.t)) * 2.0**self.emax

    @property
    def xmin_normal(self) -> float:
        return 2.0**self.emin

    @property
    def xmin_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.t + 1)

    @property
    def bits(self) -> int:
        """Storage bits: sign + exponent field + stored significand bits."""
        ebits = (self.emax - self.emin + 2).bit_length() if self.has_inf else (self.emax - self.emin + 1).bit_length()
        return 1 + ebits + self.t - 1

    def with_(self, **kw) -> FloatFormat:
        d = {**self.__dict__, **kw}
        return FloatFormat(**d)


FLOAT_FORMATS: dict[str, FloatFormat] = {
    "fp32": FloatFormat("fp32", 24, -126, 127, torch_dtype=torch.float32),
    "fp16": FloatFormat("fp16", 11, -14, 15, torch_dtype=torch.float16),
    "bf16": FloatFormat("bf16", 8, -126, 127, torch_dtype=torch.bfloat16),
    "fp8_e4m3": FloatFormat("fp8_e4m3", 4, -6, 8, overflow="saturate", max_finite=448.0, has_inf=False,
                            torch_dtype=torch.float8_e4m3fn),
    "fp8_e5m2": FloatFormat("fp8_e5m2", 3, -14, 15, torch_dtype=torch.float8_e5m2),
}


def get_format(fmt: str | FloatFormat) -> FloatFormat:
    if isinstance(fmt, FloatFormat):
        return fmt
    if fmt not in FLOAT_FORMATS:
        raise ValueError(f"float format {fmt!r} is unknown; allowed: {', '.join(FLOAT_FORMATS)} (or a FloatFormat(t, emin, emax))")
    return FLOAT_FORMATS[fmt]


def unit_roundoff(fmt: str | FloatFormat, mode: str = "nearest") -> float:
    """``u = 2^-t`` for round-to-nearest, ``2^(1-t)`` for directed / stochastic rounding."""
    f = get_format(fmt)
    check_mode(mode)
    return 2.0 ** (-f.t) if mode == "nearest" else 2.0 ** (1 - f.t)


def round_to_format(x: torch.Tensor, fmt: str | FloatFormat, mode: str = "nearest",
                    generator: torch.Generator | None = None, use_torch_cast: bool = True) -> torch.Tensor:
    """Round ``x`` to the nearest (or directed / stochastic) value of ``fmt``.

    Returns a tensor of ``x``'s dtype holding representable values of ``fmt``.  Works in
    float64 so scaling by powers of two is exact.  NaN stays NaN.  For a named format with a
    torch dtype, round-to-nearest of a float32 tensor uses torch's cast (``use_torch_cast``):
    the tests show the generic algorithm below gives the same bits, ~100x slower.
    """
    f = get_format(fmt)
    check_mode(mode)
    if (use_torch_cast and mode == "nearest" and x.dtype == torch.float32 and f.torch_dtype is not None
            and FLOAT_FORMATS.get(f.name) == f):
        return x.to(f.torch_dtype).to(torch.float32)
    xd = x.detach().to(torch.float64) if x.dtype != torch.float64 else x.detach()
    # 1. exponent of each element: |x| = m 2^E with m in [0.5, 1)  ->  e = E - 1; clamp below at emin
    _, E = torch.frexp(xd)
    e = torch.clamp(E.to(torch.int64) - 1, min=f.emin)
    e = torch.where(xd == 0, torch.full_like(e, f.emin), e)
    # 2. spacing of the format at that exponent (subnormals share the spacing at emin)
    quantum = torch.pow(torch.tensor(2.0, dtype=torch.float64), (e - f.t + 1).to(torch.float64))
    # 3. round the scaled value to an integer significand, rescale (exact in float64)
    r = round_(xd / quantum, mode, generator) * quantum
    # 4. no subnormals: flush results below the smallest normal to (signed) zero
    if not f.subnormals:
        r = torch.where(r.abs() < f.xmin_normal, torch.zeros_like(r) * torch.sign(xd), r)
    # 5. overflow: beyond x_max either saturate or become inf (NaN if the format has no inf)
    over = r.abs() > f.xmax
    if f.overflow == "saturate":
        r = torch.where(over, torch.sign(r) * f.xmax, r)
    else:
        big = float("inf") if f.has_inf else float("nan")
        r = torch.where(over, torch.sign(r) * big, r)
    r = torch.where(torch.isnan(xd), xd, r)
    return r.to(x.dtype)


__all__ = ["FLOAT_FORMATS", "OVERFLOW_POLICIES", "FloatFormat", "get_format", "round_to_format", "unit_roundoff"]
