"""HAWQ: Hessian-aware mixed-precision quantization (Dong et al., ICCV 2019; HAWQ-v2/v3 refinements).

Steps (see the ``hawq`` stage for the wiring):

1. ``resolve_blocks``: blocks of conv/linear layers (one per layer, per residual block, or named
   glob lists).  A block's Hessian is taken w.r.t. the *weights* of its layers (the tensors that
   get quantized; biases stay fp32).
2. ``block_spectra``: per block, the top eigenvalue λ_i of H_i (power iteration on HVPs) and
   Tr(H_i) (Hutchinson), with their cost (HVPs, seconds).
3. Sensitivity S_i = λ_i / n_i orders blocks for relative precision (HAWQ §3.1, Algorithm 2).
4. Bit allocation under a model-size budget B (average weight bits), two allocators:

   * ``allocate_sensitivity`` (``sensitivity``, HAWQ's Algorithm 2): more bits to more sensitive
     blocks — b_i ≥ b_j whenever S_i > S_j — raising blocks one candidate step at a time in
     S-order while the budget allows (the exact rule is in its docstring);
   * ``allocate_bits`` (``ilp``, HAWQ-V3 style): the exact size-constrained minimiser

       min_{b}  Σ_i w_i ‖Q_{b_i}(W_i) − W_i‖²    s.t.  Σ_i n_i b_i ≤ B · Σ_i n_i,  b_i ∈ candidates

     with w_i = λ_i (HAWQ) or Tr(H_i)/n_i (HAWQ-v2), solved by ``scipy.optimize.milp`` with one
     binary x_{i,c} per (block, candidate) and Σ_c x_{i,c} = 1 — exact, not greedy.  Its bits
     need not follow the S-order.
5. ``finetune_order``: Ω_i = λ_i ‖Q(W_i) − W_i‖², highest first (HAWQ §3.3), and
   ``blockwise_finetune``: starting from the fully quantized model, for each block in Ω order
   only that block's parameters are trained (others frozen) with straight-through QAT;
   ``finetune_allocation`` adds an optional joint QAT phase after it, and ``finetune_jobs`` runs
   many (allocation, seed) fine-tunes in worker processes.
6. ``loss_landscape``: L(W + ε v_i) along the unit top eigenvector v_i of each block (HAWQ Fig. 2).
7. ``claim`` (mixed vs every uniform width of the same or smaller size, same fine-tune, over
   seeds; and the drop from fp32 near 2.5 bits), ``table_vi`` and ``report_markdown``.

Q_b is the suite's per-output-channel symmetric weight quantizer
(``compress.quant.fakequant.fake_quant_weight`` with ``weight_spec(b)``).
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

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
    """The ``ilp`` allocator (HAWQ-V3 style): the exact minimiser of Σ_i w_i·errors[i, c_i]
    s.t. Σ_i n_i·bits(c_i) ≤ budget·Σ_i n_i (MILP).

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


def sensitivities(stats: Sequence[BlockStats], objective: str = "eigenvalue") -> np.ndarray:
    """Per-parameter sensitivity that orders blocks for precision: S_i = λ_i / n_i (HAWQ §3.1,
    ``objective="eigenvalue"``) or Tr(H_i) / n_i (HAWQ-v2's average trace, ``"trace"``)."""
    if objective == "eigenvalue":
        return np.array([s.eigenvalue / s.params for s in stats], dtype=np.float64)
    if objective == "trace":
        return np.array([s.trace / s.params for s in stats], dtype=np.float64)
    raise ValueError(f"hawq.objective = {objective!r} is unknown; allowed: eigenvalue, trace")


def sensitivity_order(sens: Sequence[float]) -> list[int]:
    """Block indices by sensitivity, highest first; ties keep model order (stable)."""
    return sorted(range(len(sens)), key=lambda i: -float(sens[i]))


def allocate_sensitivity(sens: Sequence[float], sizes: Sequence[int], candidates: Sequence[int], budget_avg_bits: float,
                         key: str = "hawq.budgets_avg_bits") -> Allocation:
    """HAWQ's Algorithm 2 under a size budget: more bits to more sensitive blocks (S_i = λ_i / n_i).

    The rule (deterministic; ``sens`` ranks, only its order matters):

    1. Sort the blocks by S_i, highest first (ties: model order).
    2. Start every block at the lowest candidate width.
    3. Passes: walk the blocks in S-order; raise a block to its next candidate width when
       (a) the model still fits, Σ_j n_j b_j ≤ B · Σ_j n_j, and (b) the new width is not above
       the width of the block just before it in S-order (the relative-precision constraint
       b_i ≥ b_j whenever S_i > S_j).  Repeat passes until one raises nothing.

    So the budget is spread one candidate step at a time, most sensitive block first, and the
    result satisfies the ordering constraint exactly; it is maximal: no single block can be
    raised one step without breaking (a) or (b).  ``objective`` of the returned allocation is NaN
    (this allocator minimises nothing; :func:`allocate_bits` is the HAWQ-V3 style ILP).
    """
    cand = sorted(int(c) for c in candidates)
    n = np.asarray(sizes, dtype=np.float64)  # (K,)
    if budget_avg_bits < cand[0]:
        raise ValueError(f"{key}: budget {budget_avg_bits} bits is below {cand[0]}, the smallest candidate; no allocation fits")
    cap = budget_avg_bits * n.sum() + 1e-6
    order = sensitivity_order(sens)
    level = [0] * len(n)  # index into cand, per block
    size = float(n.sum() * cand[0])
    raised = True
    while raised:
        raised = False
        for r, i in enumerate(order):
            nxt = level[i] + 1
            if nxt >= len(cand) or (r > 0 and nxt > level[order[r - 1]]):
                continue
            grow = n[i] * (cand[nxt] - cand[level[i]])
            if size + grow <= cap:
                level[i], size, raised = nxt, size + grow, True
    bits = [cand[j] for j in level]
    return Allocation(bits=bits, objective=math.nan, avg_bits=float(size / n.sum()), budget_avg_bits=float(budget_avg_bits))


def respects_order(bits: Sequence[int], sens: Sequence[float]) -> bool:
    """True when b_i ≥ b_j for every pair with S_i > S_j (bits follow the sensitivity order)."""
    return all(bits[i] >= bits[j] for i in range(len(bits)) for j in range(len(bits)) if sens[i] > sens[j])


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


@dataclass
class FinetuneResult:
    bits: list[int]  # per block
    seed: int
    order: list[str]  # Ω order of the block-wise phase
    ptq_val_acc: float  # before fine-tuning
    val_acc: float
    val_loss: float
    rows: list[dict]  # one per phase (block-wise stages, then "joint")
    state: dict = field(repr=False, default_factory=dict)  # the fake-quant model's state dict
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


def finetune_allocation(model: nn.Module, blocks: Sequence[Block], stats: Sequence[BlockStats], bits: Sequence[int],
                        train, val, block_cfg, joint_cfg=None, *, seed: int, act_bits: int | None = None,
                        act_ranges=None, monitor=None, fit_fn=None) -> tuple[nn.Module, FinetuneResult]:
    """Quantize ``model`` to ``bits`` per block (activations ``act_bits`` with ``act_ranges``) and
    fine-tune it: the Ω-ordered block-wise QAT (``block_cfg``, e.g. ``max_iterations`` steps per
    block), then, unless ``joint_cfg`` is None, joint QAT of every parameter (``joint_cfg``).

    ``val`` gives the reported accuracies (before fine-tuning = PTQ, and after); ``monitor``
    (default ``val``) is what each phase validates on as it goes.  Seeds: stage k of the block-wise
    phase uses ``seed·100 + k``, the joint phase ``seed·100 + 99``; the result depends only on the
    arguments (and the torch thread count).  Returns the fine-tuned fake-quant model and a
    :class:`FinetuneResult`.
    """
    import time

    from compress.quant.fakequant import quantize_model
    from compress.train import evaluate_model, fit

    fit_fn = fit_fn or fit
    monitor = val if monitor is None else monitor
    c0, w0 = time.process_time(), time.perf_counter()
    # 1. quantize (PTQ) and measure
    q = quantize_model(model, layer_bits(blocks, bits), act_bits, act_ranges)
    ptq_loss, ptq_acc = evaluate_model(q, *val)
    # 2. Ω order of this allocation, block-wise QAT
    order = [n for n, _ in finetune_order(model, blocks, stats, bits)]
    rows = blockwise_finetune(q, blocks, order, train, monitor, block_cfg, seed, fit_fn=fit_fn)
    # 3. optional joint QAT of all parameters
    if joint_cfg is not None:
        hist = fit_fn(q, train, monitor, joint_cfg, seed=seed * 100 + 99, desc="hawq ft joint", progress=False)
        rows.append({"stage": len(rows) + 1, "block": "joint", "iterations": hist.iterations,
                     "val_loss": hist.rows[-1]["val_loss"], "val_acc": hist.rows[-1]["val_acc"], "seconds": hist.seconds})
    vloss, vacc = evaluate_model(q, *val)
    res = FinetuneResult(bits=[int(b) for b in bits], seed=int(seed), order=order, ptq_val_acc=ptq_acc, val_acc=vacc,
                         val_loss=vloss, rows=rows, state={k: v.detach().clone() for k, v in q.state_dict().items()},
                         cpu_seconds=time.process_time() - c0, wall_seconds=time.perf_counter() - w0)
    return q, res


def restore(model: nn.Module, blocks: Sequence[Block], res: FinetuneResult, act_bits: int | None, act_ranges=None) -> nn.Module:
    """The fine-tuned fake-quant model of ``res`` (e.g. one that came back from a worker process)."""
    from compress.quant.fakequant import quantize_model

    q = quantize_model(model, layer_bits(blocks, res.bits), act_bits, act_ranges)
    q.load_state_dict(res.state)
    return q.eval()


def finetune_jobs(model: nn.Module, blocks: Sequence[Block], stats: Sequence[BlockStats], jobs: Sequence[tuple[Sequence[int], int]],
                  train, val, block_cfg, joint_cfg=None, *, act_bits: int | None = None, act_ranges=None, monitor=None,
                  workers: int = 1, threads: int = 1, on_result=None) -> list[FinetuneResult]:
    """:func:`finetune_allocation` for every ``(bits, seed)`` in ``jobs``, in ``workers`` forked
    processes of ``threads`` torch threads each (``compress.parallel.map_jobs``): the results are
    bit-identical for any ``workers``.  Identical ``(bits, seed)`` pairs are trained once.
    ``on_result(result)`` is called in this process as each distinct job finishes.
    Returns one result per job, in job order."""
    from compress.parallel import map_jobs

    keys = [(tuple(int(b) for b in bits), int(seed)) for bits, seed in jobs]
    distinct = list(dict.fromkeys(keys))

    def one(key):
        return finetune_allocation(model, blocks, stats, list(key[0]), train, val, block_cfg, joint_cfg, seed=key[1],
                                   act_bits=act_bits, act_ranges=act_ranges, monitor=monitor)[1]

    done = map_jobs(one, distinct, workers=workers, threads=threads,
                    on_result=None if on_result is None else (lambda i, r, cpu, wall: on_result(r)))
    by_key = dict(zip(distinct, done))
    return [by_key[k] for k in keys]


# --------------------------------------------------------------------------- plans
ALLOCATORS = ("sensitivity", "ilp")


@dataclass
class Plan:
    name: str  # variant stem, e.g. "hawq-sensitivity-b2.5", "hawq-uniform-w2"
    method: str  # "sensitivity" | "ilp" | "uniform"
    alloc: Allocation


def plan_allocations(stats: Sequence[BlockStats], errors: np.ndarray, candidates: Sequence[int], budgets: Sequence[float],
                     allocators: Sequence[str] = ALLOCATORS, uniform_bits: Sequence[int] = (), objective: str = "eigenvalue",
                     key: str = "hawq.budgets_avg_bits") -> list[Plan]:
    """Every (allocator, budget) allocation plus the uniform baselines, in that order.

    ``sensitivity`` ranks blocks by :func:`sensitivities` (λ_i/n_i or Tr(H_i)/n_i per ``objective``);
    ``ilp`` weighs the errors by :func:`block_weights`."""
    bad = [a for a in allocators if a not in ALLOCATORS]
    if bad:
        raise ValueError(f"hawq.allocator = {bad[0]!r} is unknown; allowed: {', '.join(ALLOCATORS)}")
    sizes = [s.params for s in stats]
    sens, w = sensitivities(stats, objective), block_weights(stats, objective)
    plans = []
    for a in dict.fromkeys(allocators):
        for B in budgets:
            al = (allocate_sensitivity(sens, sizes, candidates, B, key=key) if a == "sensitivity"
                  else allocate_bits(w, errors, sizes, candidates, B, key=key))
            if a == "sensitivity" and list(candidates):  # its Σ w_i err_i for comparison with the ILP
                idx = [list(candidates).index(b) for b in al.bits]
                al.objective = float(sum(max(w[i], 0.0) * errors[i, j] for i, j in enumerate(idx)))
            plans.append(Plan(f"hawq-{a}-b{B:g}", a, al))
    plans += [Plan(f"hawq-uniform-w{b}", "uniform", uniform_allocation(w, errors, sizes, candidates, b)) for b in uniform_bits]
    return plans


# --------------------------------------------------------------------------- claim
def claim(rows: Sequence[dict], fp32_val_acc: float, near_bits: float = 2.5, within_pp: float = 1.0,
          allocator: str = "sensitivity") -> dict:
    """The HAWQ claim on validation accuracy, over seeds, every allocation with the same fine-tune.

    ``rows``: one per (allocation, seed) with keys ``method`` ("sensitivity" | "ilp" | "uniform"),
    ``budget`` (average-bit budget; the width for uniform rows), ``avg_bits`` (actual), ``bits``
    (per block), ``seed`` and ``val_acc``.

    1. For each mixed (allocator, budget): compare with EVERY uniform width u whose model is the
       same size or smaller (u ≤ avg_bits).  ``holds`` = mean val acc ≥ each such uniform mean;
       ``seed_wins`` counts seeds where mixed ≥ uniform on the same seed.  A budget whose
       allocation IS a uniform one (always at integer budgets with a uniform-friendly candidate
       set) is marked ``trivial`` and left out of the verdict, as is one with no uniform width that
       fits (``holds`` None).
    2. Near fp32: the ``allocator``'s mixed model at the budget closest to ``near_bits`` must be
       within ``within_pp`` percentage points of ``fp32_val_acc`` (mean over seeds).
    Returns ``{"split", "fp32_val_acc", "comparisons", "near_fp32", "holds", "holds_all"}``; ``holds``
    maps ``"<allocator>_vs_uniform"`` and ``"<allocator>_within_<pp>pp_at_<bits>"`` to booleans.
    """
    def stats_of(rs):
        v = np.array([r["val_acc"] for r in rs], dtype=np.float64)
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    uni: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["method"] == "uniform":
            uni.setdefault(int(round(r["budget"])), {})[int(r["seed"])] = r["val_acc"]
    comps = []
    mixed = [(m, B) for m, B in dict.fromkeys((r["method"], float(r["budget"])) for r in rows) if m != "uniform"]
    for method, B in mixed:
        rs = [r for r in rows if r["method"] == method and float(r["budget"]) == B]
        mean, std = stats_of(rs)
        avg = float(rs[0]["avg_bits"])
        bits = [int(b) for b in rs[0]["bits"]]
        trivial = len(set(bits)) == 1
        seeds = {int(r["seed"]): r["val_acc"] for r in rs}
        vs = []
        for u in sorted(uni):
            if u > avg + 1e-9:
                continue
            uv = np.array(list(uni[u].values()), dtype=np.float64)
            common = [s for s in seeds if s in uni[u]]
            vs.append({"uniform_bits": u, "uniform_mean": float(uv.mean()), "uniform_std": float(uv.std(ddof=1)) if len(uv) > 1 else 0.0,
                       "delta_pp": 100 * (mean - float(uv.mean())), "seed_wins": sum(seeds[s] >= uni[u][s] for s in common),
                       "seeds": len(common), "holds": bool(mean >= float(uv.mean()))})
        holds = None if trivial or not vs else all(v["holds"] for v in vs)
        comps.append({"allocator": method, "budget_avg_bits": B, "avg_bits": avg, "bits": bits, "integer_budget": float(B).is_integer(),
                      "trivial": trivial, "mean": mean, "std": std, "seeds": len(rs),
                      "drop_pp_vs_fp32": 100 * (fp32_val_acc - mean), "vs_uniform": vs, "holds": holds})
    holds: dict[str, bool] = {}
    for method in dict.fromkeys(c["allocator"] for c in comps):
        verdicts = [c["holds"] for c in comps if c["allocator"] == method and c["holds"] is not None]
        if verdicts:
            holds[f"{method}_vs_uniform"] = all(verdicts)
    near = None
    cands = [c for c in comps if c["allocator"] == allocator]
    if cands:
        c = min(cands, key=lambda c: (abs(c["avg_bits"] - near_bits), c["avg_bits"]))
        near = {"allocator": allocator, "budget_avg_bits": c["budget_avg_bits"], "avg_bits": c["avg_bits"], "mean": c["mean"],
                "fp32_val_acc": fp32_val_acc, "drop_pp": c["drop_pp_vs_fp32"], "within_pp": within_pp,
                "holds": bool(c["drop_pp_vs_fp32"] <= within_pp)}
        holds[f"{allocator}_within_{within_pp:g}pp_at_{near_bits:g}"] = near["holds"]
    return {"split": "val", "fp32_val_acc": fp32_val_acc, "comparisons": comps, "near_fp32": near, "holds": holds,
            "holds_all": bool(holds) and all(holds.values())}


def calib_batches(calib: tuple[torch.Tensor, torch.Tensor], batch_size: int, batches: int,
                  key: str = "hawq.hessian") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The loss's calibration batches (never test): ``batches`` x ``batch_size`` images from the calib split."""
    need = batches * batch_size
    if need > len(calib[1]):
        raise ValueError(f"{key}.batches x batch_size = {need} exceeds the {len(calib[1])} calibration images (data.calib_size)")
    return [(calib[0][i : i + batch_size], calib[1][i : i + batch_size]) for i in range(0, need, batch_size)]


def result_rows(plans: Sequence[Plan], seeds: Sequence[int], results: Sequence[FinetuneResult]) -> list[dict]:
    """One row per (plan, seed) in the order :func:`finetune_jobs` got them (plans outer, seeds inner):
    the input of :func:`claim` plus the variant's name stem."""
    pairs = [(p, s) for p in plans for s in seeds]
    return [{"plan": p.name, "method": p.method, "budget": p.alloc.budget_avg_bits, "avg_bits": p.alloc.avg_bits, "seed": s,
             "bits": list(p.alloc.bits), "objective": p.alloc.objective, "ptq_val_acc": r.ptq_val_acc,
             "val_acc": r.val_acc, "val_loss": r.val_loss, "cpu_seconds": round(r.cpu_seconds, 1)}
            for (p, s), r in zip(pairs, results)]


def allocation_file(plans: Sequence[Plan], blocks: Sequence[Block], allocator: str) -> dict:
    """The allocations of ``allocator`` per layer, for the search stage to enqueue."""
    return {"allocations": [{"name": p.name, "budget": p.alloc.budget_avg_bits, "avg_bits": p.alloc.avg_bits,
                             "weight_bits": layer_bits(blocks, p.alloc.bits)} for p in plans if p.method == allocator]}


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
def table_vi(stats: Sequence[BlockStats], bits, act_bits: int | None, objective: str = "eigenvalue") -> list[dict]:
    """Rows like HAWQ's Table VI, in model order: block, layers, type, params, activation bits, λ_i,
    trace, S_i and its rank (1 = most sensitive), power-iteration cost, then the weight bits.

    ``bits``: one list of per-block widths (a ``weight_bits`` column) or ``{column: bits}`` (one
    column per allocation, e.g. ``{"sensitivity@2.5": [...], "ilp@2.5": [...]}``)."""
    cols = {"weight_bits": bits} if not isinstance(bits, dict) else bits
    sens = sensitivities(stats, objective)
    rank = {i: r + 1 for r, i in enumerate(sensitivity_order(sens))}
    rows = []
    for i, s in enumerate(stats):
        row = {"block": s.name, "layers": " ".join(s.layers), "type": s.kind, "params": s.params,
               "act_bits": act_bits if act_bits is not None else "fp32", "lambda": s.eigenvalue,
               "trace": s.trace, "trace_stderr": s.trace_stderr, "S=lambda/n": s.sensitivity, "S_rank": rank[i],
               "power_iters": s.power_iterations, "converged": s.converged, "hvps": s.hvps, "seconds": round(s.seconds, 3)}
        if objective == "trace":
            row["S=trace/n"] = float(sens[i])
        row.update({c: int(b[i]) for c, b in cols.items()})
        rows.append(row)
    return rows


def order_violations(names: Sequence[str], bits: Sequence[int], sens: Sequence[float]) -> list[str]:
    """Pairs where a more sensitive block got fewer bits: ``"conv1 (6) < fc3 (8)"``."""
    order = sensitivity_order(sens)
    out = []
    for a, i in enumerate(order):
        for j in order[a + 1:]:
            if sens[i] > sens[j] and bits[i] < bits[j]:
                out.append(f"{names[i]} ({bits[i]}) < {names[j]} ({bits[j]})")
    return out


def report_markdown(title: str, stats: Sequence[BlockStats], plans: Sequence[Plan], claim_: dict, act_bits: int | None,
                    objective: str = "eigenvalue", finetune: str = "") -> str:
    """Table VI and the claim as markdown.  The sensitivity order is printed as what it is; for
    each allocation the report says whether its bits follow that order, naming the first
    violations when they do not."""
    names = [s.name for s in stats]
    sens = sensitivities(stats, objective)
    label = "λ_i/n_i" if objective == "eigenvalue" else "Tr(H_i)/n_i"
    mixed = [p for p in plans if p.method != "uniform"]
    table = table_vi(stats, {f"{p.method}@{p.alloc.budget_avg_bits:g}": p.alloc.bits for p in mixed}, act_bits, objective)
    md = [f"# {title}", "", f"Blocks by sensitivity S_i = {label}, highest first: "
          + " > ".join(names[i] for i in sensitivity_order(sens)) + ".", ""]
    for p in mixed:
        v = order_violations(names, p.alloc.bits, sens)
        follows = "bits follow the S order" if not v else f"bits do NOT follow the S order ({'; '.join(v[:3])}{' ...' if len(v) > 3 else ''})"
        md.append(f"- {p.method} @ {p.alloc.budget_avg_bits:g} bits (actual {p.alloc.avg_bits:.3f}): "
                  f"{dict(zip(names, p.alloc.bits))}: {follows}")
    md += ["", markdown_table(table)]
    md += [f"## Mixed precision vs every uniform width of the same or smaller size (validation accuracy, "
           f"{claim_['comparisons'][0]['seeds'] if claim_['comparisons'] else 0} seeds, same fine-tune)", ""]
    if finetune:
        md += [f"Fine-tune of every allocation: {finetune}", ""]
    rows = []
    for c in claim_["comparisons"]:
        for v in c["vs_uniform"] or [{}]:
            rows.append({"allocator": c["allocator"], "budget": c["budget_avg_bits"], "avg_bits": round(c["avg_bits"], 3),
                         "mixed_mean": c["mean"], "mixed_std": c["std"], "uniform_bits": v.get("uniform_bits", "-"),
                         "uniform_mean": v.get("uniform_mean", float("nan")), "delta_pp": v.get("delta_pp", float("nan")),
                         "seed_wins": f"{v.get('seed_wins', 0)}/{v.get('seeds', 0)}",
                         "holds": "trivial" if c["trivial"] else v.get("holds", "no uniform fits")})
    md += [markdown_table(rows)]
    n = claim_.get("near_fp32")
    if n:
        md += [f"fp32 val acc {n['fp32_val_acc']:.4f}; {n['allocator']} at {n['avg_bits']:.3f} bits: {n['mean']:.4f} "
               f"({n['drop_pp']:.2f} pp below fp32; within {n['within_pp']:g} pp: {'yes' if n['holds'] else 'NO'}).", ""]
    md += ["Claim: " + ", ".join(f"{k}: {'holds' if v else 'does NOT hold'}" for k, v in claim_["holds"].items()) + ".", ""]
    return "\n".join(md)


def markdown_table(rows: list[dict], floatfmt: str = ".4g") -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    fmt = lambda v: format(v, floatfmt) if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
