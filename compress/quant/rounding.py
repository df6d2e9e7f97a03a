"""Rounding modes for quantization (lecture: "rounding", Higham & Pranesh 2019 for SR).

``round_(x, mode)`` maps every element to one of its two integer neighbours
``floor(x)`` / ``ceil(x)``:

* ``nearest``    round to nearest, ties to even (IEEE 754 default; ``torch.round``)
* ``down``       towards -inf (``floor``)
* ``up``         towards +inf (``ceil``)
* ``stochastic`` up with probability equal to the fractional distance ``x - floor(x)``,
                 so ``E[round_(x)] = x`` (unbiased); draws come from ``generator``.
"""
from __future__ import annotations

import torch

ROUNDING_MODES = ("nearest", "down", "up", "stochastic")


def check_mode(mode: str) -> str:
    if mode not in ROUNDING_MODES:
        raise ValueError(f"rounding mode {mode!r} is unknown; allowed: {', '.join(ROUNDING_MODES)}")
    return mode


def round_(x: torch.Tensor, mode: str = "nearest", generator: torch.Generator | None = None) -> torch.Tensor:
    """Round ``x`` to integers (same dtype, integer-valued) with the given mode."""
    check_mode(mode)
    if mode == "nearest":
        return torch.round(x)  # ties to even
    if mode == "down":
        return torch.floor(x)
    if mode == "up":
        return torch.ceil(x)
    # stochastic: 1. lower neighbour, 2. fractional distance p in [0, 1), 3. go up with probability p
    lo = torch.floor(x)
    p = x - lo
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return lo + (u < p).to(x.dtype)


__all__ = ["ROUNDING_MODES", "check_mode", "round_"]
