"""Optimal Brain Damage (LeCun, Denker & Solla, NIPS 1989/1990).

Second-order Taylor expansion of the training loss around a (local) minimum, keeping only the
diagonal of the Hessian:

    δL ≈ Σ_i g_i δw_i + ½ Σ_i H_ii δw_i²          (cross terms dropped, g ≈ 0 at a minimum)

Deleting weight w_i (δw_i = −w_i) therefore costs its *saliency*  s_i = ½ H_ii w_i².  The
procedure: 1. train; 2. compute H_ii; 3. compute s_i; 4. delete the lowest-saliency weights;
5. retrain; 6. iterate.  H_ii comes from one of three estimators on calibration batches
(``diag_description`` names the one used, for variant notes and reports):

* ``ggn`` (default): the non-negative Rademacher Gauss–Newton estimator (the Levenberg–Marquardt
  diagonal of the OBD paper; equal to the Hessian for ReLU nets), never negative;
* ``hutchinson``: E[z ⊙ Hz] with Rademacher z (one HVP per probe).  Its per-weight variance is
  Σ_{j≠i} H_ij², which swamps small H_ii: on the MNIST LeNet-5 ~40 % of the 32-probe estimates
  are negative.  Taken raw, a negative estimate gives a negative saliency and that weight is
  deleted first.  See :func:`nonnegative_diagonal` for how they are handled (posterior mean);
* ``exact``: one HVP per weight, for small layers and tests.

Only conv/linear weights are candidates (biases are kept).  Masks go through ``compress.prune.masks``.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from compress.hessian.hutchinson import exact_diagonal, ggn_diagonal, hutchinson
from compress.hessian.hvp import HessianOperator, mean_loss, unflatten
from compress.models import prunable_layers
from compress.prune.masks import (
    apply_masks,
    effective_weight,
    get_masks,
    is_masked,
    split_like,
)

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


def _weight_param(layer: nn.Module) -> torch.Tensor:
    """The trainable tensor behind a layer's weight (``weight_orig`` when masked)."""
    return layer.weight_orig if is_masked(layer) else layer.weight


@dataclass
class DiagResult:
    diag: dict[str, torch.Tensor]  # layer -> H_ii, weight-shaped (after the negative-estimate handling)
    stderr: dict[str, torch.Tensor] | None  # standard errors of the raw estimates (None when exact)
    grad: dict[str, torch.Tensor]  # layer -> ∂L/∂w (OBD assumes ≈ 0)
    hvps: int
    seconds: float
    negative_raw: int = 0  # raw estimates below zero (before handling)
    description: str = ""  # diag_description(method, samples, negative)


NEGATIVE = ("posterior", "clamp", "abs", "keep")


def nonnegative_diagonal(est: torch.Tensor, stderr: torch.Tensor, how: str = "posterior") -> torch.Tensor:
    """Turn noisy diagonal estimates into the non-negative curvatures OBD needs.

    For a ReLU / max-pool network with cross-entropy the Hessian equals the Gauss–Newton matrix
    almost everywhere, so every true H_ii ≥ 0 and a negative estimate is pure probe noise.

    * ``posterior`` (used by ``hessian_diagonal``): the posterior mean of H_ii given the estimate
      d and its standard error σ, with a Gaussian likelihood and a flat prior on H_ii ≥ 0 — the
      mean of N(d, σ²) truncated to [0, ∞):

          E[H_ii | d] = d + σ · φ(d/σ) / Φ(d/σ)

      It is d where d ≫ σ (a well-measured curvature is kept), > 0 everywhere, and of the order of
      σ where d ≲ 0: an unmeasured curvature is "as large as the noise", not zero.  σ = 0 (a
      deleted weight, exactly 0) stays 0.
    * ``clamp``: max(d, 0).  Rejected as the default: it sets ~40 % of the LeNet-5 saliencies to
      exactly 0, and those weights — important ones among them — are deleted first, by position
      (measured one-shot on MNIST: training loss 0.012 -> 1.87 after deleting 10 % of the weights).
    * ``abs``: |d| (one-shot: 0.75 at 90 % deleted vs 0.58 with ``posterior`` and 0.68 with ``ggn``).
    * ``keep``: the raw estimate (for comparison only).
    """
    if how == "keep":
        return est.clone()
    if how == "clamp":
        return est.clamp_min(0)
    if how == "abs":
        return est.abs()
    if how != "posterior":
        raise ValueError(f"negative = {how!r} is unknown; allowed: {', '.join(NEGATIVE)}")
    if not torch.all(torch.isfinite(stderr)):
        raise ValueError("the posterior-mean diagonal needs finite standard errors: use >= 2 probes (obd.hessian.samples)")
    d, se = est.double(), stderr.double()
    pos = se > 0
    z = torch.where(pos, d / torch.where(pos, se, torch.ones_like(se)), torch.zeros_like(d))
    # φ(z)/Φ(z) in log space: stable for very negative z, where it ≈ −z
    ratio = torch.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(z))
    out = torch.where(pos, d + se * ratio, d.clamp_min(0))
    return out.to(est.dtype)


def diag_description(method: str, samples: int, negative: str = "posterior") -> str:
    """One phrase naming the H_ii estimator actually used (variant notes, reports)."""
    if method == "ggn":
        return f"Gauss-Newton diagonal (Rademacher GGN estimator, {samples} probes; never negative)"
    if method == "hutchinson":
        how = {"posterior": "negative estimates replaced by the posterior mean of H_ii >= 0",
               "clamp": "negative estimates clamped at 0", "abs": "absolute values of the estimates",
               "keep": "raw estimates, negative ones included"}[negative]
        return f"Hutchinson diagonal (z*Hz, {samples} Rademacher probes; {how})"
    if method == "exact":
        return "exact Hessian diagonal (one HVP per weight)"
    raise ValueError(f"obd.diag = {method!r} is unknown; allowed: hutchinson, ggn, exact")


def round_notes(round_: int, method: str, samples: int, retrain_iterations: int | None, negative: str = "posterior") -> str:
    """The notes of an OBD round's variant: the round, the estimator used and the retraining length."""
    steps = "retraining for the configured epochs" if retrain_iterations is None else f"{retrain_iterations} retraining steps"
    return f"OBD round {round_}: saliency ½ H_ii w_i² from the {diag_description(method, samples, negative)}, {steps}"


def hessian_diagonal(model: nn.Module, batches: Batches, method: str = "hutchinson", samples: int = 32,
                     seed: int = 0, layers: Sequence[str] | None = None, negative: str = "posterior") -> DiagResult:
    """H_ii of the mean loss over ``batches`` for every weight of the prunable ``layers``.

    With a mask m the forward uses w = w_orig ⊙ m, so the Hessian w.r.t. w_orig is M H M: the
    diagonal is H_ii at kept weights and 0 at deleted ones.  Hutchinson estimates go through
    :func:`nonnegative_diagonal` (``negative``); ``negative_raw`` counts the raw ones below zero.
    """
    all_layers = prunable_layers(model)
    names = list(layers) if layers is not None else list(all_layers)
    params = [_weight_param(all_layers[n]) for n in names]
    t0 = time.perf_counter()
    op = HessianOperator(model, params, batches)
    # 1. diagonal (Hutchinson or exact unit-vector HVPs); 2. gradient for the first-order term
    description = diag_description(method, samples, negative)  # also validates ``method``
    negative_raw = 0
    if method == "hutchinson":
        if negative == "posterior" and samples < 2:
            raise ValueError(f"obd.hessian.samples = {samples}: the Hutchinson diagonal needs >= 2 probes to estimate "
                             "the standard errors its negative estimates are corrected with")
        res = hutchinson(op.matvec, op.dim, samples, generator=torch.Generator().manual_seed(seed))
        negative_raw = int((res.diagonal < 0).sum())
        flat = nonnegative_diagonal(res.diagonal, res.diagonal_stderr, negative)
        se = unflatten(res.diagonal_stderr, params)
    elif method == "ggn":
        res = ggn_diagonal(model, params, batches, samples, generator=torch.Generator().manual_seed(seed))
        flat, se = res.diagonal, unflatten(res.diagonal_stderr, params)
        op.hvps += res.hvps
    else:  # exact
        flat, se = exact_diagonal(op.matvec, op.dim), None
        negative_raw = int((flat < 0).sum())
    op.release()
    grad = op.gradient()
    diag = {n: d.detach().clone() for n, d in zip(names, unflatten(flat, params))}
    return DiagResult(diag=diag, stderr=None if se is None else {n: s.clone() for n, s in zip(names, se)},
                      grad={n: g.clone() for n, g in zip(names, unflatten(grad, params))},
                      hvps=op.hvps, seconds=time.perf_counter() - t0, negative_raw=negative_raw, description=description)


def saliency(model: nn.Module, diag: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """s_i = ½ H_ii w_i² for each layer's effective weight (0 where already deleted)."""
    layers = prunable_layers(model)
    return {n: 0.5 * d * effective_weight(layers[n]) ** 2 for n, d in diag.items()}


def magnitude_scores(model: nn.Module, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    layers = prunable_layers(model)
    return {n: effective_weight(layers[n]).abs() for n in (names or layers)}


def lowest_masks(scores: dict[str, torch.Tensor], keep: dict[str, torch.Tensor], n_remove: int) -> dict[str, torch.Tensor]:
    """Masks deleting the ``n_remove`` lowest-scoring weights among those still kept (global
    ranking over layers; ties broken by position, stable)."""
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1).double() for n in names])  # (N,)
    alive = torch.cat([keep[n].reshape(-1) for n in names])  # (N,) bool
    if n_remove > int(alive.sum()):
        raise ValueError(f"cannot delete {n_remove} weights: only {int(alive.sum())} are left")
    # 1. rank the alive weights by score; 2. drop the lowest n_remove
    flat = torch.where(alive, flat, torch.full_like(flat, float("inf")))
    order = torch.argsort(flat, stable=True)
    new = alive.clone()
    new[order[:n_remove]] = False
    return split_like(new, scores)


def _sum_where(scores: dict[str, torch.Tensor], deleted: dict[str, torch.Tensor]) -> float:
    return float(sum(scores[n][deleted[n]].double().sum() for n in scores))


@torch.no_grad()
def one_shot_curve(model: nn.Module, sal: dict[str, torch.Tensor], grad: dict[str, torch.Tensor], counts: Sequence[int],
                   loss_batches: Batches, extra_scores: dict[str, dict[str, torch.Tensor]] | None = None) -> list[dict]:
    """LeCun et al.'s Fig. 1/2 without retraining: for each number of deleted weights k, the
    training loss after deleting the k lowest by OBD saliency and by |w|, and the predicted
    increase (Σ saliencies of the deleted set; the gradient term Σ −g_i w_i is reported apart).
    ``extra_scores`` adds more deletion orders (e.g. saliencies from another diagonal estimator)."""
    import copy

    layers = prunable_layers(model)
    keep = get_masks(model, all_layers=True)
    keep = {n: keep[n] for n in sal}
    base = mean_loss(model, loss_batches)
    mags = magnitude_scores(model, list(sal))
    rows = []
    for k in counts:
        for method, scores in {"obd": sal, "magnitude": mags, **(extra_scores or {})}.items():
            masks = lowest_masks(scores, keep, int(k))
            deleted = {n: keep[n] & ~masks[n] for n in masks}
            m = copy.deepcopy(model)
            apply_masks(m, masks, key="obd")
            loss = mean_loss(m, loss_batches)
            w = {n: effective_weight(layers[n]) for n in sal}
            rows.append({"method": method, "removed": int(k), "train_loss": loss, "actual_increase": loss - base,
                         "predicted_increase": _sum_where(sal, deleted),
                         "gradient_term": float(sum((-grad[n] * w[n])[deleted[n]].double().sum() for n in sal))})
    return rows


@dataclass
class RoundResult:
    round: int
    removed_total: int
    sparsity: float
    predicted_increase: float
    actual_increase: float
    loss_before: float
    loss_pruned: float
    loss_retrained: float
    val_loss: float
    val_acc: float
    hvps: int
    hessian_seconds: float
    extra: dict = field(default_factory=dict)


def iterative_prune(model: nn.Module, train, val, calib_batches: Batches, loss_batches: Batches, cfg, *, seed: int,
                    scorer: str = "obd", fit_fn: Callable | None = None,
                    on_round: Callable[[RoundResult, nn.Module], None] | None = None) -> list[RoundResult]:
    """The OBD procedure: (saliencies → delete ``cfg.prune_fraction`` of the remaining weights →
    retrain ``cfg.retrain``) × ``cfg.rounds``; ``scorer="magnitude"`` runs the same loop with |w|
    as the control.  Masks are applied in place (``compress.prune.masks``)."""
    from compress.train import fit

    fit_fn = fit_fn or fit
    layers = list(prunable_layers(model))
    total = sum(effective_weight(m).numel() for m in prunable_layers(model).values())
    out = []
    for r in range(1, cfg.rounds + 1):
        keep = get_masks(model, all_layers=True)
        alive = int(sum(int(keep[n].sum()) for n in layers))
        n_remove = int(round(cfg.prune_fraction * alive))
        # 1. saliencies (OBD) at the current weights, or magnitudes
        d = hessian_diagonal(model, calib_batches, cfg.diag, cfg.hessian.samples, seed=seed * 100 + r,
                             negative=getattr(cfg, "negative", "posterior"))
        sal = saliency(model, d.diag)
        scores = sal if scorer == "obd" else magnitude_scores(model, layers)
        # 2. delete the lowest-scoring weights; measure the actual loss increase
        masks = lowest_masks(scores, keep, n_remove)
        deleted = {n: keep[n] & ~masks[n] for n in layers}
        before = mean_loss(model, loss_batches)
        apply_masks(model, masks, key="obd")
        pruned = mean_loss(model, loss_batches)
        # 3. retrain with the mask fixed
        hist = fit_fn(model, train, val, cfg.retrain, seed=seed * 100 + r, desc=f"{scorer} round {r}", progress=False)
        res = RoundResult(round=r, removed_total=total - (alive - n_remove), sparsity=(total - alive + n_remove) / total,
                          predicted_increase=_sum_where(sal, deleted), actual_increase=pruned - before,
                          loss_before=before, loss_pruned=pruned, loss_retrained=mean_loss(model, loss_batches),
                          val_loss=hist.rows[-1]["val_loss"], val_acc=hist.rows[-1]["val_acc"],
                          hvps=d.hvps, hessian_seconds=d.seconds)
        out.append(res)
        if on_round is not None:
            on_round(res, model)
    return out


def iterative_prune_jobs(model: nn.Module, train, val, calib_batches: Batches, loss_batches: Batches, cfg, *, seed: int,
                         scorers: Sequence[str] = ("obd", "magnitude"), workers: int = 1, threads: int = 1,
                         states_for: Sequence[str] = ("obd",)) -> dict[str, tuple[list[RoundResult], list[dict]]]:
    """:func:`iterative_prune` for each scorer on its own copy of ``model``, in ``workers`` forked
    processes (``compress.parallel.map_jobs``; bit-identical for any ``workers``).  Returns
    ``{scorer: (rounds, states)}``, where ``states[r]`` is the dense state dict (deleted weights
    exactly 0) after round r+1 for the scorers in ``states_for`` (an empty list for the others):
    what a caller needs to write each round as a variant."""
    import copy

    from compress.parallel import map_jobs
    from compress.prune.masks import dense_state_dict

    def one(scorer: str):
        m = copy.deepcopy(model)
        states: list[dict] = []
        keep = scorer in states_for
        rounds = iterative_prune(m, train, val, calib_batches, loss_batches, cfg, seed=seed, scorer=scorer,
                                 on_round=(lambda res, mm: states.append(dense_state_dict(mm))) if keep else None)
        return rounds, states

    out = map_jobs(one, list(scorers), workers=workers, threads=threads)
    return dict(zip(scorers, out))


def one_shot(model: nn.Module, calib_batches: Batches, loss_batches: Batches, cfg, *, seed: int) -> dict:
    """LeCun et al.'s Fig. 1-2 from the trained ``model``: saliencies from ``cfg.diag`` (and, with
    ``cfg.compare_hutchinson``, the Hutchinson diagonal as given and as ``cfg.negative`` corrects it),
    then the training loss after deleting the lowest-scoring weights, against magnitude. Returns
    {"diag" (DiagResult), "curve" (rows), "negative_raw" ({estimator: count}), "total", "wins", "points"}."""
    d = hessian_diagonal(model, calib_batches, cfg.diag, cfg.hessian.samples, seed=seed, negative=cfg.negative)
    sal = saliency(model, d.diag)
    total = sum(t.numel() for t in sal.values())
    extra, neg = {}, {cfg.diag: d.negative_raw}
    if cfg.compare_hutchinson and cfg.diag != "hutchinson":
        dh = hessian_diagonal(model, calib_batches, "hutchinson", cfg.hessian.samples, seed=seed, negative="keep")
        extra["obd-hutchinson-raw"] = saliency(model, dh.diag)
        neg["hutchinson"] = dh.negative_raw
        if cfg.negative != "keep":
            dp = hessian_diagonal(model, calib_batches, "hutchinson", cfg.hessian.samples, seed=seed, negative=cfg.negative)
            extra[f"obd-hutchinson-{cfg.negative}"] = saliency(model, dp.diag)
    curve = one_shot_curve(model, sal, d.grad, curve_counts(total, cfg.curve_points, cfg.curve_max_fraction), loss_batches, extra)
    loss = {m: {r["removed"]: r["train_loss"] for r in curve if r["method"] == m} for m in ("obd", "magnitude")}
    wins = sum(loss["obd"][k] <= loss["magnitude"][k] for k in loss["obd"] if k > 0)
    return {"diag": d, "curve": curve, "negative_raw": neg, "total": total, "wins": wins, "points": len(loss["obd"]) - 1}


def curve_counts(total: int, points: int, max_fraction: float) -> list[int]:
    """Evenly spaced numbers of deleted weights from 0 to ``max_fraction``·total."""
    return [int(round(v)) for v in np.linspace(0, max_fraction * total, points)]


__all__ = [
    "NEGATIVE",
    "DiagResult",
    "RoundResult",
    "curve_counts",
    "diag_description",
    "hessian_diagonal",
    "iterative_prune",
    "iterative_prune_jobs",
    "lowest_masks",
    "magnitude_scores",
    "mean_loss",
    "nonnegative_diagonal",
    "one_shot",
    "one_shot_curve",
    "round_notes",
    "saliency",
]
