"""Matrix-free Hessian-vector products by double backward (Pearlmutter 1994).

For the mean loss L(θ) over a fixed set of (calibration) batches and a subset θ_B of the
parameters (one block), ``HessianOperator.matvec(v)`` returns H_B v with
H_B = ∂²L/∂θ_B² (the diagonal block of the full Hessian), using

    1. g = ∂L/∂θ_B                     (first backward, graph kept: create_graph=True)
    2. H_B v = ∂(gᵀ v)/∂θ_B             (second backward through g)

No Hessian matrix is ever formed.  Vectors are flat (D,) tensors over θ_B in the order of
``params``.  The model is put in eval mode (no dropout, batch-norm running statistics) so
that the operator is a fixed symmetric matrix.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(v: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for t in like:
        out.append(v[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out


@contextlib.contextmanager
def only_grad_for(model: nn.Module, params: Sequence[torch.Tensor]):
    """Temporarily make ``params`` the only parameters that require grad (cheaper graphs)."""
    keep = {id(p) for p in params}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, r in saved:
            p.requires_grad_(r)


class HessianOperator:
    """H_B v for the mean loss over ``batches`` w.r.t. ``params`` (a block's tensors).

    ``cache_graph`` keeps each batch's first-order gradient graph, so every HVP costs one
    backward pass instead of forward + two backwards (memory: one graph per batch).
    ``hvps`` counts products (one product = one pass over all batches); ``seconds`` their time.
    """

    def __init__(self, model: nn.Module, params: Sequence[torch.Tensor],
                 batches: Sequence[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn = F.cross_entropy,
                 cache_graph: bool = True):
        if not params:
            raise ValueError("HessianOperator needs at least one parameter tensor")
        if not batches:
            raise ValueError("HessianOperator needs at least one batch")
        self.model, self.params, self.batches, self.loss_fn = model, list(params), list(batches), loss_fn
        self.dim = sum(p.numel() for p in self.params)
        self.weights = [len(y) / sum(len(yb) for _, yb in self.batches) for _, y in self.batches]
        self.cache_graph = cache_graph
        self._grads: list[tuple[torch.Tensor, ...]] | None = None
        self.hvps, self.seconds = 0, 0.0
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device

    def _grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loss = self.loss_fn(self.model(x), y)  # scalar: mean over the batch
        return torch.autograd.grad(loss, self.params, create_graph=True)

    def gradient(self) -> torch.Tensor:
        """∂L/∂θ_B, flat (D,) (OBD assumes it is ≈ 0 at a trained minimum)."""
        was = self.model.training
        self.model.eval()
        try:
            with only_grad_for(self.model, self.params):
                g = sum(w * flatten(torch.autograd.grad(self.loss_fn(self.model(x), y), self.params))
                        for w, (x, y) in zip(self.weights, self.batches))
        finally:
            self.model.train(was)
        return g.detach()

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H_B v for a flat v of shape (D,); returns (D,)."""
        if v.shape != (self.dim,):
            raise ValueError(f"HVP vector has shape {tuple(v.shape)}, expected ({self.dim},)")
        t0 = time.perf_counter()
        was = self.model.training
        self.model.eval()
        vs = unflatten(v.to(self.device, self.dtype), self.params)
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        try:
            with only_grad_for(self.model, self.params):
                if self.cache_graph and self._grads is None:
                    self._grads = [self._grad(x, y) for x, y in self.batches]
                for k, (w, (x, y)) in enumerate(zip(self.weights, self.batches)):
                    # 1. first-order gradient g (with graph)
                    g = self._grads[k] if self.cache_graph else self._grad(x, y)
                    # 2. second backward of gᵀv
                    dot = sum((gi * vi).sum() for gi, vi in zip(g, vs))
                    hv = torch.autograd.grad(dot, self.params, retain_graph=self.cache_graph)
                    out += w * flatten(hv).detach()
        finally:
            self.model.train(was)
        self.hvps += 1
        self.seconds += time.perf_counter() - t0
        return out

    __call__ = matvec

    def release(self) -> None:
        """Drop the cached gradient graphs."""
        self._grads = None


def rademacher(dim: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """A vector of ±1 entries, each with probability 1/2 (seeded by ``generator``)."""
    return (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(dtype)


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean cross-entropy over ``batches`` in eval mode (the loss whose Hessian the HVPs take)."""
    was = model.training
    model.eval()
    n = sum(len(y) for _, y in batches)
    total = sum(F.cross_entropy(model(x), y, reduction="sum").item() for x, y in batches)
    model.train(was)
    return total / n
