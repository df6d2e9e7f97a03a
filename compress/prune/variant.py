"""One pruned variant from a trained model: (optional L1 phase) → prune → fine-tune, in rounds.

Unstructured (``magnitude`` / ``gradient``): the target sparsity s is reached in R rounds on
the geometric schedule s_r = 1 − (1 − s)^{r/R} (each round removes the same fraction of the
remaining weights), with fine-tuning after every round; masks persist through fine-tuning
(``torch.nn.utils.prune``) and are made permanent at the end.  Structured: units are removed
once and the smaller dense model is fine-tuned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from compress.data import batches
from compress.prune.magnitude import l1_penalty, prune_model
from compress.prune.masks import remove_masks, select_layers, sparsity
from compress.prune.structured import prune_structured, unit_scores
from compress.train import evaluate_model, fit


@dataclass
class PruneResult:
    model: nn.Module
    spec: dict
    sparsity: float  # fraction of prunable weights that are zero
    history: list[dict] = field(default_factory=list)  # one row per phase


def schedule(target: float, rounds: int) -> list[float]:
    """Geometric sparsity schedule ending exactly at ``target``."""
    return [1 - (1 - target) ** (r / rounds) for r in range(1, rounds)] + [target]


def check_layers(model: nn.Module, v, key: str) -> list[str]:
    """Validate a variant's layer patterns against the model (before any work)."""
    names = select_layers(model, v.layers, key=f"{key}.layers")
    if v.method == "structured":
        removable = list(unit_scores(model, v.norm))  # raises for unsupported architectures
        names = [n for n in names if n in removable]
        if not names:
            raise ValueError(f"{key}.layers = {v.layers!r}: no layer with removable units "
                             f"(the output layer is kept); allowed: {', '.join(removable)}")
    return names


def prune_variant(model: nn.Module, spec: dict, v, ft, train, val, *, seed: int, key: str = "prune.variants") -> PruneResult:
    """Apply the variant ``v`` (a PruneVariant) to ``model`` in place; ``ft`` = fine-tune knobs."""
    names = check_layers(model, v, key)
    hist: list[dict] = []

    def phase(name: str, m: nn.Module, **kw) -> None:
        h = fit(m, train, val, ft, seed=seed, progress=False, **kw)
        hist.append({"phase": name, "val_loss": h.rows[-1]["val_loss"], "val_acc": h.rows[-1]["val_acc"],
                     "iterations": h.iterations, "sparsity": sparsity(m), "seconds": h.seconds})

    # 1. optional L1 phase: loss + λ‖w‖₁ drives small weights towards zero before pruning
    if v.l1_lambda > 0:
        phase("l1", model, loss_extra=lambda m: l1_penalty(m, names, v.l1_lambda))
    # 2. structured: remove units, rebuild a smaller dense model, fine-tune it
    if v.method == "structured":
        model, spec = prune_structured(model, spec, v.sparsity, v.norm, producers=names)
        phase("structured", model)
        return PruneResult(model, spec, sparsity(model), hist)
    # 3. unstructured: prune + fine-tune per round, masks persist through fine-tuning
    targets = schedule(v.sparsity, v.rounds) if v.criterion == "percentage" else [None]
    g = torch.Generator().manual_seed(seed)
    for r, s in enumerate(targets, 1):
        data = None
        if v.method == "gradient":
            it = batches(*train, ft.batch_size, shuffle=True, generator=g)
            data = [next(it) for _ in range(v.grad_batches)]
        prune_model(model, names, score=v.method, data=data, criterion=v.criterion, scope=v.scope,
                    sparsity=s, k=v.k, tau=v.tau)
        phase(f"round{r}", model)
    remove_masks(model)
    return PruneResult(model, spec, sparsity(model), hist)


def val_accuracy(model: nn.Module, val) -> float:
    return evaluate_model(model, *val)[1]


__all__ = ["PruneResult", "schedule", "check_layers", "prune_variant", "val_accuracy"]
