"""HAWQ: Hessian-aware mixed-precision quantization (Dong et al., ICCV 2019; HAWQ-v2/v3 refinements).

Steps (see the ``hawq`` stage for the wiring):

1. ``resolve_blocks``: blocks of conv/linear layers (one per layer, per residual block, or named
   glob lists).  A block's Hessian is taken w.r.t. the *weights* of its layers (the tensors that
   get quantized; biases stay fp32).
2. ``block_spectra``: per block, the top eigenvalue λ_i of H_i (power iteration on HVPs) and
   Tr(H_i) (Hutchinson), with their cost (HVPs, seconds).
3. Sensitivity S_i = λ_i / n_i orders blocks for relative precision (HAWQ §3.1).
4. ``allocate_bits``: the exact size-constrained allocation (HAWQ-v3's ILP)

       min_{b}  Σ_i w_i ‖Q_{b_i}(W_i) − W_i‖²    s.t.  Σ_i n_i b_i ≤ B · Σ_i n_i,  b_i ∈ candidates

   with w_i = λ_i (HAWQ) or Tr(H_i)/n_i (HAWQ-v2), solved by ``scipy.optimize.milp`` with one
   binary x_{i,c} per (block, candidate) and Σ_c x_{i,c} = 1 — exact, not greedy.
5. ``finetune_order``: Ω_i = λ_i ‖Q(W_i) − W_i‖², highest first (HAWQ §3.3), and
   ``blockwise_finetune``: starting from the fully quantized model, for each block in Ω order
   only that block's parameters are trained (others frozen) with straight-through QAT.
6. ``loss_landscape``: L(W + ε v_i) along the unit top eigenvector v_i of each block (HAWQ Fig. 2).

Q_b is the suite's per-output-channel symmetric weight quantizer
(``compress.quant.fakequant.fake_quant_weight`` with ``weight_spec(b)``).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from compress.hessian.hutchinson import hutchinson
from compress.hessian.hvp import HessianOperator, mean_loss, unflatten
from compress.hessian.power import top_eigen
from compress.models import prunable_layers


# --------------------------------------------------------------------------- blocks
@dataclass
class Block:
    name: str
    layers: list[str]  # prunable-layer names, model order
    kind: str  # "conv" | "linear" | "residual" | "mixed"


def _kind(mods: Sequence[nn.Module]) -> str:
    kinds = {"conv" if isinstance(m, nn.Conv2d) else "linear" for m in mods}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def resolve_blocks(model: nn.Module, spec: str | dict[str, list[str]], key: str = "hawq.blocks") -> list[Block]:
    """Blocks of prunable layers from a ``spec``: "layer", "residual" or {name: [glob, ...]}.

    "residual": every module with a ``shortcut`` (a residual basic block) is one block; the
    layers outside residual blocks (stem, classifier) are one block each.  A named glob list
    must match at least one layer, no layer may sit in two blocks, and every layer must be
    covered; otherwise a one-line ``ValueError`` names ``key``.
    """
    layers = prunable_layers(model)
    if spec == "layer":
        return [Block(n, [n], _kind([m])) for n, m in layers.items()]
    if spec == "residual":
        res = [n for n, m in model.named_modules() if n and hasattr(m, "shortcut")]
        blocks, used = [], set()
        for n in layers:
            owner = next((r for r in res if n.startswith(r + ".")), None)
            if owner is None:
                blocks.append(Block(n, [n], _kind([layers[n]])))
            elif owner not in used:
                used.add(owner)
                members = [m for m in layers if m.startswith(owner + ".")]
                blocks.append(Block(owner, members, "residual"))
        return blocks
    if not isinstance(spec, dict):
        raise ValueError(f"{key} = {spec!r} is invalid: use 'layer', 'residual' or {{name: [layer globs]}}")
    owner: dict[str, str] = {}
    blocks = []
    for bname, pats in spec.items():
        members: list[str] = []
        for pat in pats:
            hit = [n for n in layers if fnmatch.fnmatchcase(n, pat)]
            if not hit:
                raise ValueError(f"{key}.{bname} = {list(pats)!r} is invalid: {pat!r} matches no conv/linear layer of "
                                 f"{type(model).__name__}; layers: {', '.join(layers)}")
            members += [n for n in hit if n not in members]
        for n in members:
            if n in owner and owner[n] != bname:
                raise ValueError(f"{key}.{bname} is invalid: layer {n!r} is already in block {owner[n]!r}")
            owner[n] = bname
        members = [n for n in layers if n in members]
        blocks.append(Block(bname, members, _kind([layers[n] for n in members])))
    missing = [n for n in layers if n not in owner]
    if missing:
        raise ValueError(f"{key} is invalid: layers {missing} are in no block; add them to a block (every layer gets bits)")
    return blocks


def block_params(model: nn.Module, block: Block) -> list[torch.Tensor]:
    layers = prunable_layers(model)
    return [layers[n].weight for n in block.layers]


def block_size(model: nn.Module, block: Block) -> int:
    return sum(p.numel() for p in block_params(model, block))


# --------------------------------------------------------------------------- spectra
@dataclass
class BlockStats:
    name: str
    layers: list[str]
    kind: str
    params: int  # n_i: weights in the block
    eigenvalue: float  # λ_i
    trace: float  # Tr(H_i) (Hutchinson)
    trace_stderr: float
    power_iterations: int
    converged: bool
    hvps: int
    seconds: float
    eigvec: torch.Tensor = field(repr=False, default=None)  # (n_i,) unit top eigenvector

    @property
    def sensitivity(self) -> float:
        """S_i = λ_i / n_i (HAWQ §3.1)."""
        return self.eigenvalue / self.params


def block_spectra(model: nn.Module, blocks: Sequence[Block], batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                  tol: float = 1e-3, max_iters: int = 50, samples: int = 16, seed: int = 0,
                  progress=None) -> list[BlockStats]:
    """λ_i, Tr(H_i) and their cost for each block, on the mean loss over ``batches``."""
    out = []
    for k, b in enumerate(blocks):
        op = HessianOperator(model, block_params(model, b), batches)
        g = torch.Generator().manual_seed(seed * 1000 + k)
        eig = top_eigen(op.matvec, op.dim, tol=tol, max_iters=max_iters, generator=g)
        hut = hutchinson(op.matvec, op.dim, samples, generator=g)
        op.release()
        out.append(BlockStats(b.name, list(b.layers), b.kind, op.dim, eig.eigenvalue, hut.trace, hut.trace_stderr,
                              eig.iterations, eig.converged, op.hvps, op.seconds, eig.vector.clone()))
        if progress is not None:
            progress(out[-1])
    return out


# --------------------------------------------------------------------------- quantization error
def quant_error(model: nn.Module, block: Block, bits: int) -> float:
    """‖Q_b(W_i) − W_i‖² summed over the block's weights (per-channel symmetric quantizer)."""
    from compress.quant.fakequant import fake_quant_weight, weight_spec

    with torch.no_grad():
        return float(sum(((fake_quant_weight(w, weight_spec(bits)) - w) ** 2).sum() for w in block_params(model, block)))


def error_table(model: nn.Module, blocks: Sequence[Block], candidates: Sequence[int]) -> np.ndarray:
    """(K, C) matrix of ‖Q_c(W_i) − W_i‖²."""
    return np.array([[quant_error(model, b, c) for c in candidates] for b in blocks], dtype=np.float64)


def block_weights(stats: Sequence[BlockStats], objective: str = "eigenvalue") -> np.ndarray:
    """w_i of the allocation objective: λ_i (HAWQ) or Tr(H_i)/n_i (HAWQ-v2's average trace)."""
    if objective == "eigenvalue":
        return np.array([s.eigenvalue for s in stats], dtype=np.float64)
    if objective == "trace":
        return np.array([s.trace / s.params for s in stats], dtype=np.float64)
    raise ValueError(f"hawq.objective = {objective!r} is unknown; allowed: eigenvalue, trace")


# --------------------------------------------------------------------------- exact allocation
@dataclass
class Allocation:
    bits: list[int]  # per block
    objective: float  # Σ w_i err_i(b_i)
    avg_bits: float  # Σ n_i b_i / Σ n_i
    budget_avg_bits: float


def allocate_bits(weights: Sequence[float], errors: np.ndarray, sizes: Sequence[int], candidates: Sequence[int],
                  budget_avg_bits: float, key: str = "hawq.budgets_avg_bits") -> Allocation:
    """Exact minimiser of Σ_i w_i·errors[i, c_i] s.t. Σ_i n_i·bits(c_i) ≤ budget·Σ_i n_i (MILP).

    Variables x_{i,c} ∈ {0,1} (K·C of them), row i: Σ_c x_{i,c} = 1; one knapsack row.
    Negative λ (non-convex block) would reward error, so weights are clipped at 0.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)  # (K,)
    err = np.asarray(errors, dtype=np.float64)  # (K, C)
    n = np.asarray(sizes, dtype=np.float64)  # (K,)
    cand = np.asarray(candidates, dtype=np.float64)  # (C,)
    K, C = err.shape
    if budget_avg_bits < cand.min():
        raise ValueError(f"{key}: budget {budget_avg_bits} bits is below {int(cand.min())}, the smallest candidate; no allocation fits")
    # 1. objective vector over x (K·C,), row-major (block, candidate)
    c = (w[:, None] * err).reshape(-1)
    # 2. one-hot rows and the size (knapsack) row
    one_hot = np.kron(np.eye(K), np.ones((1, C)))  # (K, K·C)
    size_row = (n[:, None] * cand[None, :]).reshape(1, -1)  # (1, K·C)
    cons = [LinearConstraint(one_hot, 1, 1), LinearConstraint(size_row, -np.inf, budget_avg_bits * n.sum() + 1e-6)]
    # scale the objective to O(1) for the solver's tolerances; ties broken towards more bits
    scale = c.max() if c.max() > 0 else 1.0
    tiebreak = -1e-9 * np.tile(cand, K) / cand.max()
    res = milp(c / scale + tiebreak, constraints=cons, integrality=np.ones(K * C), bounds=Bounds(0, 1),
               options={"mip_rel_gap": 0.0})
    if not res.success:
        raise ValueError(f"{key}: no allocation within {budget_avg_bits} average bits ({res.message})")
    x = np.round(res.x).reshape(K, C)
    idx = x.argmax(1)
    bits = [int(cand[j]) for j in idx]
    return Allocation(bits=bits, objective=float(sum(w[i] * err[i, j] for i, j in enumerate(idx))),
                      avg_bits=float((n * cand[idx]).sum() / n.sum()), budget_avg_bits=float(budget_avg_bits))


def uniform_allocation(weights, errors, sizes, candidates, bits: int) -> Allocation:
    """Every block at ``bits`` (errors at bits outside ``candidates`` are not needed: objective NaN)."""
    n = np.asarray(sizes, dtype=np.float64)
    obj = math.nan
    if bits in candidates:
        j = list(candidates).index(bits)
        obj = float(sum(max(wi, 0.0) * errors[i, j] for i, wi in enumerate(weights)))
    return Allocation([int(bits)] * len(n), obj, float(bits), float(bits))


def relative_precision_order(stats: Sequence[BlockStats]) -> list[str]:
    """Block names by S_i = λ_i / n_i, most sensitive (most bits) first (HAWQ §3.1)."""
    return [s.name for s in sorted(stats, key=lambda s: s.sensitivity, reverse=True)]


# --------------------------------------------------------------------------- fine-tuning
def finetune_order(model: nn.Module, blocks: Sequence[Block], stats: Sequence[BlockStats], bits: Sequence[int]) -> list[tuple[str, float]]:
    """[(block, Ω_i)] with Ω_i = λ_i ‖Q_{b_i}(W_i) − W_i‖², highest first (HAWQ §3.3)."""
    om = [(b.name, s.eigenvalue * quant_error(model, b, bi)) for b, s, bi in zip(blocks, stats, bits)]
    return sorted(om, key=lambda t: t[1], reverse=True)


def layer_bits(blocks: Sequence[Block], bits: Sequence[int]) -> dict[str, int]:
    return {layer: int(b) for blk, b in zip(blocks, bits) for layer in blk.layers}


def blockwise_finetune(qmodel: nn.Module, blocks: Sequence[Block], order: Sequence[str], train, val, cfg, seed: int,
                       fit_fn=None) -> list[dict]:
    """Multi-stage QAT in Ω order: stage k trains only block order[k] (weights and biases of its
    layers; every other parameter frozen) for ``cfg`` (e.g. ``max_iterations`` steps) on the
    fully quantized model.  Returns one summary row per stage."""
    from compress.train import fit

    fit_fn = fit_fn or fit
    by_name = {b.name: b for b in blocks}
    mods = dict(qmodel.named_modules())
    saved = {id(p): p.requires_grad for p in qmodel.parameters()}
    rows = []
    try:
        for k, name in enumerate(order):
            for p in qmodel.parameters():
                p.requires_grad_(False)
            for layer in by_name[name].layers:
                for p in mods[layer].parameters():
                    p.requires_grad_(True)
            hist = fit_fn(qmodel, train, val, cfg, seed=seed * 100 + k, desc=f"hawq ft {name}", progress=False)
            rows.append({"stage": k + 1, "block": name, "iterations": hist.iterations, "val_loss": hist.rows[-1]["val_loss"],
                         "val_acc": hist.rows[-1]["val_acc"], "seconds": hist.seconds})
    finally:
        for p in qmodel.parameters():
            p.requires_grad_(saved[id(p)])
    return rows


# --------------------------------------------------------------------------- landscape
@torch.no_grad()
def loss_landscape(model: nn.Module, block: Block, direction: torch.Tensor, batches, radius: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """(ε, L(W_i + ε v)) on an even grid of ``points`` in [−radius, radius]; the model is restored."""
    params = block_params(model, block)
    dirs = unflatten(direction.to(params[0].dtype), params)
    orig = [p.detach().clone() for p in params]
    eps = np.linspace(-radius, radius, points)
    losses = []
    try:
        for e in eps:
            for p, o, d in zip(params, orig, dirs):
                p.copy_(o + float(e) * d)
            losses.append(mean_loss(model, batches))
    finally:
        for p, o in zip(params, orig):
            p.copy_(o)
    return eps, np.array(losses)


# --------------------------------------------------------------------------- report
def table_vi(stats: Sequence[BlockStats], bits: Sequence[int], act_bits: int | None) -> list[dict]:
    """Rows like HAWQ's Table VI: block, layers, type, params, weight bits, activation bits, λ_i, trace."""
    return [{"block": s.name, "layers": " ".join(s.layers), "type": s.kind, "params": s.params, "weight_bits": int(b),
             "act_bits": act_bits if act_bits is not None else "fp32", "lambda": s.eigenvalue,
             "trace": s.trace, "trace_stderr": s.trace_stderr, "S=lambda/n": s.sensitivity,
             "power_iters": s.power_iterations, "converged": s.converged, "hvps": s.hvps, "seconds": round(s.seconds, 3)}
            for s, b in zip(stats, bits)]


def markdown_table(rows: list[dict], floatfmt: str = ".4g") -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    fmt = lambda v: format(v, floatfmt) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
