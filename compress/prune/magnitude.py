"""Unstructured pruning: score every weight, keep the best, mask the rest.

Scores (registry ``SCORES``; a new criterion is one function + one line):
  * ``magnitude``  s_ij = |w_ij|                            (Han et al. 2015)
  * ``gradient``   s_ij = |w_ij · E_batch[∂L/∂w_ij]|          first-order Taylor estimate of the
                   loss change when w_ij is removed (Molchanov et al. 2017; SNIP, Lee et al. 2019)

Selection (``criterion``) over ``scope`` = ``layer`` (each layer on its own) or ``global``
(one ranking over all selected layers):
  * ``percentage`` sparsity s ∈ [0, 1): keep n − round(s·n) weights,
  * ``topk``       keep the k highest-scoring weights,
  * ``threshold``  keep weights with score > τ (fixed τ).
Already pruned weights score −∞, so new masks are subsets of old ones (monotone rounds).
Plus ``l1_penalty`` for training with ``loss + λ‖w‖₁``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from compress.models import prunable_layers
from compress.prune.masks import (
    Masks,
    apply_masks,
    effective_weight,
    get_masks,
    split_like,
)

ScoreFn = Callable[..., dict[str, torch.Tensor]]
SCORES: dict[str, ScoreFn] = {}


def register_score(name: str, needs_data: bool = False):
    """Register ``fn(model, names, data) -> {layer: score}`` as criterion ``name``; ``needs_data``:
    callers pass training batches (else ``data`` is None)."""
    def deco(fn: ScoreFn) -> ScoreFn:
        fn.needs_data = needs_data
        SCORES[name] = fn
        return fn
    return deco


def needs_data(score: str) -> bool:
    """Does the registered criterion ``score`` read training batches?"""
    return bool(getattr(SCORES[score], "needs_data", False))


@register_score("magnitude")
def magnitude_scores(model: nn.Module, names: Iterable[str], data=None) -> dict[str, torch.Tensor]:
    layers = prunable_layers(model)
    return {n: effective_weight(layers[n]).abs() for n in names}


@register_score("gradient", needs_data=True)
def gradient_scores(model: nn.Module, names: Iterable[str], data=None) -> dict[str, torch.Tensor]:
    """|w ⊙ ḡ| with ḡ the mean gradient of the cross-entropy over the batches in ``data``."""
    if not data:
        raise ValueError("gradient scores need data: a non-empty list of (x, y) batches")
    names = list(names)
    layers = prunable_layers(model)
    was_training = model.training
    model.eval()  # no dropout / batch-norm updates while probing
    grads = {n: torch.zeros_like(effective_weight(layers[n])) for n in names}
    for x, y in data:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n in names:
            p = layers[n].weight_orig if hasattr(layers[n], "weight_orig") else layers[n].weight
            grads[n] += p.grad.detach()  # masked positions get zero grad; they are dead anyway
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: (effective_weight(layers[n]) * grads[n] / len(data)).abs() for n in names}


def _keep_top(score: torch.Tensor, alive: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Bool mask keeping the ``n_keep`` highest scores among ``alive`` entries (flat)."""
    n_keep = min(max(int(n_keep), 0), int(alive.sum()))
    s = torch.where(alive, score.float(), torch.tensor(float("-inf")))
    keep = torch.zeros(score.numel(), dtype=torch.bool)
    if n_keep:
        keep[torch.topk(s.flatten(), n_keep, sorted=False).indices] = True
    return keep.view_as(score)


def compute_masks(scores: dict[str, torch.Tensor], current: Masks | None = None, *, criterion: str = "percentage",
                  scope: str = "layer", sparsity: float | None = None, k: int | None = None,
                  tau: float | None = None) -> Masks:
    """New masks from ``scores``; a subset of ``current`` masks (missing layer = all alive).

    Percentage: the fraction of *all* weights in the layer (``layer``) or in all scored
    layers (``global``) that is zero afterwards equals ``sparsity`` up to rounding of one
    weight, unless more than that was already pruned (masks never grow back).
    """
    current = current or {}
    alive = {n: current.get(n, torch.ones_like(s, dtype=torch.bool)).cpu() for n, s in scores.items()}
    scores = {n: s.detach().cpu() for n, s in scores.items()}
    if criterion == "threshold":
        if tau is None or tau < 0:
            raise ValueError(f"threshold pruning needs tau >= 0, got {tau!r}")
        return {n: alive[n] & (scores[n] > tau) for n in scores}
    if criterion == "percentage":
        if sparsity is None or not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity = {sparsity!r} must be in [0, 1)")
        n_keep = lambda n_total: n_total - round(sparsity * n_total)
    elif criterion == "topk":
        if k is None or k < 1:
            raise ValueError(f"topk pruning needs k >= 1, got {k!r}")
        n_keep = lambda n_total: min(k, n_total)
    else:
        raise ValueError(f"criterion = {criterion!r} is unknown; allowed: percentage, topk, threshold")
    if scope == "layer":
        return {n: _keep_top(scores[n], alive[n], n_keep(scores[n].numel())) for n in scores}
    if scope != "global":
        raise ValueError(f"scope = {scope!r} is unknown; allowed: layer, global")
    # global: one ranking over the concatenation of all layers
    names = list(scores)
    flat_s = torch.cat([scores[n].flatten() for n in names])  # (N_total,)
    flat_a = torch.cat([alive[n].flatten() for n in names])
    keep = _keep_top(flat_s, flat_a, n_keep(flat_s.numel()))
    return split_like(keep, scores)


def rate_masks(scores: dict[str, torch.Tensor], current: Masks | None, rates: dict[str, float]) -> Masks:
    """Prune the fraction ``rates[name]`` of the *remaining* weights of each layer (IMP rounds)."""
    current = current or {}
    out = {}
    for n, s in scores.items():
        a = current.get(n, torch.ones_like(s, dtype=torch.bool)).cpu()
        r = rates.get(n, 0.0)
        if not 0.0 <= r < 1.0:
            raise ValueError(f"rate for layer {n!r} = {r!r} must be in [0, 1)")
        n_alive = int(a.sum())
        out[n] = _keep_top(s.detach().cpu(), a, n_alive - round(r * n_alive))
    return out


def prune_model(model: nn.Module, names: Iterable[str], *, score: str = "magnitude", data=None, **selection) -> Masks:
    """Score the layers ``names``, compute new masks (see :func:`compute_masks`) and apply them."""
    if score not in SCORES:
        raise ValueError(f"score = {score!r} is unknown; allowed: {sorted(SCORES)}")
    names = list(names)
    scores = SCORES[score](model, names, data)
    masks = compute_masks(scores, get_masks(model), **selection)
    apply_masks(model, masks)
    return masks


def l1_penalty(model: nn.Module, names: Iterable[str], lam: float) -> torch.Tensor:
    """λ · Σ_l ‖W_l‖₁ over the effective weights of ``names`` (add to the loss; Tibshirani 1996)."""
    layers = prunable_layers(model)
    return lam * sum(layers[n].weight.abs().sum() for n in names)


__all__ = ["SCORES", "compute_masks", "l1_penalty", "needs_data", "prune_model", "rate_masks", "register_score"]
