"""Hutchinson estimators of the trace and the diagonal of a Hessian from HVPs only.

With Rademacher vectors z (entries ±1, E[z zᵀ] = I):

    Tr(H)   = E[zᵀ H z]            Var = 2 Σ_{i≠j} H_ij²          (Hutchinson 1990; HAWQ-v2)
    diag(H) = E[z ⊙ H z]           Var_i = Σ_{j≠i} H_ij²          (Bekas et al. 2007)

Both come from the same samples (the trace sample is the sum of the diagonal sample).  The
returned standard errors are the sample standard deviation / √n.  ``exact_diagonal`` uses the
unit vectors instead (D HVPs): exact, for small layers and tests.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from compress.hessian.hvp import rademacher


@dataclass
class HutchinsonResult:
    trace: float
    trace_stderr: float
    diagonal: torch.Tensor  # (D,)
    diagonal_stderr: torch.Tensor  # (D,)
    samples: int
    hvps: int
    seconds: float


def hutchinson(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, samples: int,
               generator: torch.Generator | None = None, dtype=torch.float32) -> HutchinsonResult:
    """Trace and diagonal estimates from ``samples`` Rademacher probes (one HVP each)."""
    if samples < 1:
        raise ValueError(f"hutchinson samples = {samples!r} is invalid: must be >= 1")
    g = generator or torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    s1 = torch.zeros(dim, dtype=torch.float64)  # Σ z⊙Hz
    s2 = torch.zeros(dim, dtype=torch.float64)  # Σ (z⊙Hz)²
    traces = []
    for _ in range(samples):
        # 1. probe z and its HVP
        z = rademacher(dim, g, dtype)  # (D,)
        d = (z * matvec(z)).double()  # (D,) one diagonal sample
        # 2. accumulate diagonal moments and the trace sample zᵀHz = Σ d
        s1 += d
        s2 += d * d
        traces.append(float(d.sum()))
    n = samples
    mean = s1 / n
    var = (s2 / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))
    tr = torch.tensor(traces, dtype=torch.float64)
    tr_se = float(tr.std(unbiased=True) / n**0.5) if n > 1 else float("inf")
    return HutchinsonResult(trace=float(tr.mean()), trace_stderr=tr_se, diagonal=mean.to(dtype),
                            diagonal_stderr=(var / n).sqrt().to(dtype) if n > 1 else torch.full((dim,), float("inf")),
                            samples=n, hvps=n, seconds=time.perf_counter() - t0)


def exact_diagonal(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, dtype=torch.float32) -> torch.Tensor:
    """diag(H) from the D unit-vector HVPs e_iᵀ H e_i (exact; cost D HVPs)."""
    out = torch.empty(dim, dtype=dtype)
    e = torch.zeros(dim, dtype=dtype)
    for i in range(dim):
        e[i] = 1.0
        out[i] = matvec(e)[i]
        e[i] = 0.0
    return out


def ggn_diagonal(model: torch.nn.Module, params, batches, samples: int, generator: torch.Generator | None = None) -> HutchinsonResult:
    """Non-negative Rademacher estimator of diag(G), G = Σ_b Jᵀ H_out J the Gauss–Newton matrix of the
    mean cross-entropy (LeCun et al.'s OBD used this Levenberg–Marquardt diagonal).  For ReLU /
    max-pool networks the model is piecewise linear, so G equals the Hessian almost everywhere.

    With p = softmax(f) per example, H_out = (diag p − ppᵀ)/N factors as S Sᵀ/N with
    S = diag(√p) − p √pᵀ.  For Rademacher z (per example and class), v = Jᵀ S z /√N has
    E[v vᵀ] = G, so v ⊙ v is an unbiased, never-negative diagonal sample (relative std ≤ √2 per
    sample, versus Σ_{j≠i} H_ij² for the HVP probe, which swamps small H_ii in large layers).
    One backward per batch per sample (the forward graph is kept); ``hvps`` counts those passes.
    """
    import torch.nn.functional as F

    from compress.hessian.hvp import flatten, only_grad_for

    if samples < 1:
        raise ValueError(f"ggn samples = {samples!r} is invalid: must be >= 1")
    g = generator or torch.Generator().manual_seed(0)
    params = list(params)
    dim = sum(p.numel() for p in params)
    n_tot = sum(len(y) for _, y in batches)
    t0 = time.perf_counter()
    was = model.training
    model.eval()
    s1 = torch.zeros(dim, dtype=torch.float64)
    s2 = torch.zeros(dim, dtype=torch.float64)
    passes = 0
    try:
        with only_grad_for(model, params):
            outs = [model(x) for x, _ in batches]  # (B, C) logits, graphs kept
            for _ in range(samples):
                d = torch.zeros(dim, dtype=torch.float64)
                for f in outs:
                    # 1. S z per example: √p ⊙ z − p (√p · z)
                    p = F.softmax(f.detach().double(), dim=1)  # (B, C)
                    z = (torch.randint(0, 2, p.shape, generator=g) * 2 - 1).double()  # (B, C)
                    sp = p.sqrt()
                    u = sp * z - p * (sp * z).sum(1, keepdim=True)  # (B, C)
                    # 2. v_b = J_bᵀ u /√N by one backward; each batch has independent probes
                    v = torch.autograd.grad((u.to(f.dtype) * f).sum() / n_tot**0.5, params, retain_graph=True)
                    d += flatten(v).double() ** 2
                    passes += 1
                s1 += d
                s2 += d * d
    finally:
        model.train(was)
    n = samples
    mean = s1 / n
    var = (s2 / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))
    return HutchinsonResult(trace=float(mean.sum()), trace_stderr=float("nan"), diagonal=mean.float(),
                            diagonal_stderr=(var / n).sqrt().float() if n > 1 else torch.full((dim,), float("inf")),
                            samples=n, hvps=passes, seconds=time.perf_counter() - t0)
