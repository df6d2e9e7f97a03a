"""Structured pruning: remove whole neurons / conv filters and rebuild a smaller dense model.

Each hidden unit j of a producer layer (row j of a Linear weight, filter j of a Conv2d) is
scored by the L1 or L2 norm of its incoming weights, s_j = ‖W[j, ...]‖_p (Li et al. 2017,
"Pruning Filters for Efficient ConvNets").  The lowest-scoring units are removed together
with everything that depends on them: the producer's row and bias, a following batch-norm
channel, and the consumer's input columns (a block of fh·fw columns per conv channel when
the consumer is the first Linear after a flatten).  The result is a physically smaller
dense model (new ``model`` spec with smaller widths), so bytes and latency really drop.

Supported architectures: ``mlp`` / ``lenet300`` (``hidden`` widths) and ``lenet5``
(``widths`` = conv1, conv2, fc1, fc2).  The output layer is never removed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compress.models import MLP, LeNet5
from compress.prune.masks import dense_state_dict


@dataclass
class Unit:
    """One prunable group of units: the ``producer`` layer's outputs feeding ``consumer``."""

    producer: str
    consumer: str
    bn: str | None = None
    block: int = 1  # consumer input columns per producer unit (fh*fw after a flatten)


def units_of(model: nn.Module) -> list[Unit]:
    if isinstance(model, MLP):
        mods = list(model.net.named_children())
        lin = [i for i, (_, m) in enumerate(mods) if isinstance(m, nn.Linear)]
        out = []
        for a, b in zip(lin[:-1], lin[1:]):
            bn = next((f"net.{i}" for i in range(a + 1, b) if isinstance(mods[i][1], nn.BatchNorm1d)), None)
            out.append(Unit(f"net.{a}", f"net.{b}", bn))
        return out
    if isinstance(model, LeNet5):
        block = model.fc1.in_features // model.conv2.out_channels
        return [Unit("conv1", "conv2"), Unit("conv2", "fc1", block=block), Unit("fc1", "fc2"), Unit("fc2", "fc3")]
    raise ValueError(f"structured pruning supports mlp, lenet300 and lenet5, not {type(model).__name__}")


def unit_scores(model: nn.Module, norm: str = "l1") -> dict[str, torch.Tensor]:
    """Norm of each producer unit's incoming weights: {producer: (n_units,)}."""
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm = {norm!r} is unknown; allowed: l1, l2")
    sd = dense_state_dict(model)
    p = 1 if norm == "l1" else 2
    return {u.producer: sd[f"{u.producer}.weight"].flatten(1).norm(p=p, dim=1) for u in units_of(model)}


def keep_indices(scores: dict[str, torch.Tensor], fraction: dict[str, float]) -> dict[str, torch.Tensor]:
    """Sorted indices of the units kept: the n − round(f·n) highest scores (at least 1)."""
    out = {}
    for name, s in scores.items():
        f = fraction.get(name, 0.0)
        if not 0.0 <= f < 1.0:
            raise ValueError(f"structured sparsity for {name!r} = {f!r} must be in [0, 1)")
        n_keep = max(1, len(s) - round(f * len(s)))
        out[name] = torch.sort(torch.topk(s, n_keep).indices).values
    return out


def _new_spec(spec: dict, model: nn.Module, widths: list[int]) -> dict:
    kwargs = dict(spec.get("kwargs", {}))
    if isinstance(model, MLP):
        name = "mlp"  # lenet300 is mlp(hidden=(300, 100)); the shrunk one needs explicit widths
        kwargs["hidden"] = widths
    else:
        name = spec["name"]
        kwargs["widths"] = widths
    return {**spec, "name": name, "kwargs": kwargs}


def shrink(model: nn.Module, spec: dict, keep: dict[str, torch.Tensor]) -> tuple[nn.Module, dict]:
    """Build the smaller dense model keeping units ``keep[producer]``; returns (model, spec)."""
    from compress.models import model_from_spec

    sd = dense_state_dict(model)
    units = units_of(model)
    widths = []
    for u in units:
        idx = keep.get(u.producer)
        if idx is None:
            idx = torch.arange(sd[f"{u.producer}.weight"].shape[0])
        widths.append(len(idx))
        # 1. producer rows (+ bias, + batch-norm channel)
        for k in ("weight", "bias"):
            if f"{u.producer}.{k}" in sd:
                sd[f"{u.producer}.{k}"] = sd[f"{u.producer}.{k}"][idx]
        if u.bn is not None:
            for k in ("weight", "bias", "running_mean", "running_var"):
                sd[f"{u.bn}.{k}"] = sd[f"{u.bn}.{k}"][idx]
        # 2. consumer input columns: unit j owns columns j*block ... j*block+block-1
        cols = (idx[:, None] * u.block + torch.arange(u.block)[None, :]).flatten()  # (n_keep*block,)
        sd[f"{u.consumer}.weight"] = sd[f"{u.consumer}.weight"][:, cols]
    new_spec = _new_spec(spec, model, widths)
    small = model_from_spec(new_spec)
    small.load_state_dict(sd)
    return small.eval(), new_spec


def prune_structured(model: nn.Module, spec: dict, sparsity: float, norm: str = "l1",
                     producers: list[str] | None = None) -> tuple[nn.Module, dict]:
    """Remove the fraction ``sparsity`` of units (by ``norm``) from each producer layer."""
    scores = unit_scores(model, norm)
    producers = list(scores) if producers is None else producers
    unknown = [p for p in producers if p not in scores]
    if unknown:
        raise ValueError(f"layer {unknown[0]!r} has no removable units; allowed: {', '.join(scores)} (the output layer is kept)")
    keep = keep_indices({p: scores[p] for p in producers}, {p: sparsity for p in producers})
    return shrink(model, spec, keep)


__all__ = ["Unit", "keep_indices", "prune_structured", "shrink", "unit_scores", "units_of"]
