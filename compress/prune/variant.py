"""One pruned variant from a trained model: (optional L1 phase) → prune → fine-tune, in rounds.

Unstructured (``magnitude`` / ``gradient``): the target sparsity s is reached in R rounds on
the geometric schedule s_r = 1 − (1 − s)^{r/R} (each round removes the same fraction of the
remaining weights), with fine-tuning after every round; masks persist through fine-tuning
(``torch.nn.utils.prune``) and are made permanent at the end.  With R > 1 and a retraining
phase long enough to recover after each round this is Han et al.'s (2015) iterative pruning
with retraining (``round_ft``: the retraining knobs, when they differ from the other phases').
Structured: units are removed once and the smaller dense model is fine-tuned.
``prune_variants`` runs several variants in worker processes (bit-identical to running them
one after the other).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from compress.data import batches
from compress.prune.magnitude import l1_penalty, needs_data, prune_model
from compress.prune.masks import remove_masks, select_layers, sparsity
from compress.prune.structured import prune_structured, unit_scores
from compress.train import evaluate_model, fit


@dataclass
class PruneResult:
    model: nn.Module
    spec: dict
    sparsity: float  # fraction of prunable weights that are zero
    history: list[dict] = field(default_factory=list)  # one row per phase
    cpu_seconds: float = 0.0  # process CPU time of the whole variant (set by prune_variants)


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


def prune_variant(model: nn.Module, spec: dict, v, ft, train, val, *, seed: int, key: str = "prune.variants",
                  round_ft=None) -> PruneResult:
    """Apply the variant ``v`` (a PruneVariant) to ``model`` in place; ``ft`` = fine-tune knobs of
    every phase, ``round_ft`` (default ``ft``) those of the retraining after each unstructured
    pruning round."""
    names = check_layers(model, v, key)
    hist: list[dict] = []
    round_ft = ft if round_ft is None else round_ft

    def phase(name: str, m: nn.Module, cfg=ft, **kw) -> None:
        h = fit(m, train, val, cfg, seed=seed, progress=False, **kw)
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
        if needs_data(v.method):
            it = batches(*train, ft.batch_size, shuffle=True, generator=g)
            data = [next(it) for _ in range(v.grad_batches)]
        prune_model(model, names, score=v.method, data=data, criterion=v.criterion, scope=v.scope,
                    sparsity=s, k=v.k, tau=v.tau)
        phase(f"round{r}", model, round_ft)
    remove_masks(model)
    return PruneResult(model, spec, sparsity(model), hist)


def val_accuracy(model: nn.Module, val) -> float:
    return evaluate_model(model, *val)[1]


def drop_claim(baseline_acc: float, acc: float, sparsity: float, *, max_drop_pp: float = 0.3, min_sparsity: float = 0.9) -> dict:
    """Han et al. (2015)'s claim for one pruned variant: at ≥ ``min_sparsity`` of the weights removed,
    accuracy (of the reloaded artifact, on the same split as ``baseline_acc``) within ``max_drop_pp``
    percentage points of the unpruned baseline."""
    drop = 100 * (baseline_acc - acc)
    return {"baseline_acc": baseline_acc, "acc": acc, "sparsity": sparsity, "drop_pp": drop, "max_drop_pp": max_drop_pp,
            "min_sparsity": min_sparsity, "holds": bool(sparsity >= min_sparsity - 1e-9 and drop <= max_drop_pp + 1e-9)}


def prune_variants(base: nn.Module, spec: dict, variants: dict, ft, train, val, *, seed: int, round_ft: dict | None = None,
                   workers: int = 1, threads: int = 1, key: str = "prune.variants", on_result=None) -> dict[str, PruneResult]:
    """:func:`prune_variant` for every ``{name: PruneVariant}`` on a copy of ``base``, in ``workers``
    forked processes of ``threads`` torch threads each (``compress.parallel.map_jobs``).

    Every variant starts from ``seed_everything(seed)``, as when run alone, so the results are
    bit-identical for any ``workers``.  ``round_ft``: ``{name: retraining knobs}`` for the
    variants whose rounds retrain differently from ``ft``.  ``on_result(name, result)`` is called
    in this process as each variant finishes; the longest variants (by optimizer steps) start first.
    Returns ``{name: PruneResult}`` in ``variants``' order,
    each with its model rebuilt here from ``spec`` (a structured variant's smaller spec)."""
    import copy

    from compress.parallel import map_jobs
    from compress.runtimes import model_from_spec
    from compress.train import seed_everything

    names = list(variants)
    round_ft = round_ft or {}

    def one(name: str):
        seed_everything(seed)
        res = prune_variant(copy.deepcopy(base), spec, variants[name], ft, train, val, seed=seed,
                            key=f"{key}.{name}", round_ft=round_ft.get(name))
        return {k: t.detach().clone() for k, t in res.model.state_dict().items()}, res.spec, res.sparsity, res.history

    def rebuild(out) -> PruneResult:
        state, rspec, sp, hist = out
        m = model_from_spec(rspec)
        m.load_state_dict(state)
        return PruneResult(m.eval(), rspec, sp, hist)

    done: dict[str, PruneResult] = {}

    def finished(i, out, cpu, wall):
        done[names[i]] = rebuild(out)
        done[names[i]].cpu_seconds = cpu
        if on_result is not None:
            on_result(names[i], done[names[i]])

    def steps(name: str) -> int:  # rough cost, to start the longest variants first
        v = variants[name]
        cfg = round_ft.get(name, ft)
        per = lambda c: min(c.max_iterations or 10**12, c.epochs * -(-len(train[1]) // c.batch_size))
        return (per(ft) if v.l1_lambda > 0 else 0) + (per(ft) if v.method == "structured" else v.rounds * per(cfg))

    order = sorted(names, key=lambda n: -steps(n))  # stable: ties keep the given order
    map_jobs(one, order, workers=workers, threads=threads,
             on_result=lambda i, out, cpu, wall: finished(names.index(order[i]), out, cpu, wall))
    return {n: done[n] for n in names}


__all__ = ["PruneResult", "check_layers", "drop_claim", "prune_variant", "prune_variants", "schedule", "val_accuracy"]
