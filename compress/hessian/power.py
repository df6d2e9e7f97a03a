"""Matrix-free power iteration for the dominant eigenpair of a block Hessian (HAWQ, Dong et al. 2019).

    v_0 ~ N(0, I), normalised
    for k = 1..max_iters:
        w   = H v_{k-1}                    (one HVP)
        λ_k = v_{k-1}ᵀ w                   (Rayleigh quotient)
        v_k = w / ‖w‖
        stop when ‖w − λ_k v_{k-1}‖ ≤ tol·|λ_k|

The stopping rule is a certificate: for symmetric H and unit v, some eigenvalue lies within the
residual norm ‖Hv − λv‖ of the Rayleigh quotient λ (Weyl / Bauer–Fike), so on convergence an
eigenvalue is within ``tol`` relative of the returned value.  It converges to the eigenvalue of largest *magnitude* (for the cross-entropy Hessian of a
piecewise-linear ReLU network, which equals its Gauss–Newton matrix and is PSD, that is the
largest eigenvalue).  The error of λ_k falls like (λ_2/λ_1)^{2k}.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class EigResult:
    eigenvalue: float
    vector: torch.Tensor  # (D,), unit norm
    iterations: int
    hvps: int
    seconds: float
    converged: bool


def top_eigen(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, tol: float = 1e-3, max_iters: int = 100,
              generator: torch.Generator | None = None, dtype=torch.float32) -> EigResult:
    """Dominant eigenpair of the symmetric operator ``matvec`` on R^dim."""
    if not tol > 0:
        raise ValueError(f"power iteration tol = {tol!r} is invalid: must be > 0")
    if max_iters < 1:
        raise ValueError(f"power iteration max_iters = {max_iters!r} is invalid: must be >= 1")
    t0 = time.perf_counter()
    # 1. random start (seeded)
    v = torch.randn(dim, generator=generator, dtype=dtype)
    v /= v.norm()
    lam, converged, k = 0.0, False, 0
    for k in range(1, max_iters + 1):
        # 2. one HVP and the Rayleigh quotient
        w = matvec(v)  # (D,)
        lam = float(v @ w)
        norm = float(w.norm())
        if norm == 0.0:  # H v = 0: the block has a zero Hessian (e.g. dead ReLUs)
            converged = True
            break
        if float((w - lam * v).norm()) <= tol * abs(lam):
            converged = True
            v = w / norm
            break
        # 3. next iterate
        v = w / norm
    return EigResult(eigenvalue=lam, vector=v, iterations=k, hvps=k, seconds=time.perf_counter() - t0, converged=converged)
