"""``prune``: unstructured pruning with retraining; the mask is kept from then on.

Scores (``method``): ``magnitude`` |w| (Han et al. 2015), ``gradient`` |w · ∂L/∂w| (first-order
Taylor), ``obd`` the Optimal Brain Damage saliency ½ H_ii w² with the Gauss-Newton diagonal
(compress.prune.obd).  Selection over ``scope`` ``layer`` (each layer its own sparsity; a
``{layer: sparsity}`` map gives layer-wise rates) or ``global`` (one ranking).

Schedules (``schedule``):
  * ``oneshot``  prune to the target, then retrain for ``finetune``;
  * ``rounds``   R rounds of (prune → retrain), the sparsity following s_r = 1 − (1 − s)^{r/R}
                 (each round removes the same fraction of the remaining weights: iterative pruning);
                 with ``rewind`` the survivors are reset to the step's starting weights before each
                 retraining (IMP with weight rewinding, Frankle & Carbin 2019; Renda et al. 2020);
  * ``gradual``  one retraining run during which the masks are recomputed every ``frequency``
                 iterations between ``start`` and ``end`` (fractions of the run) following the cubic
                 schedule of Zhu & Gupta (2017): s_t = s (1 − (1 − (t − t0)/(t1 − t0))^3); the
                 rest of the run recovers at the final sparsity.
Masks only shrink (compress.prune.masks), so pruned weights stay zero through every later step.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from compress.data import batches
from compress.prune.magnitude import SCORES, compute_masks, needs_data
from compress.prune.masks import (
    apply_masks,
    dense_state_dict,
    get_masks,
    select_layers,
    set_weights,
)
from compress.recipes.base import (
    RecipeContext,
    Step,
    StepFit,
    StepSettings,
    fail,
    fit_step,
)


class PruneSettings(StepSettings):
    method: str = Field("magnitude", description="a registered score (compress.prune.magnitude.SCORES: magnitude, "
                        "gradient, ...) or obd (saliency from the Gauss-Newton diagonal)")
    scope: Literal["layer", "global"] = "layer"
    sparsity: float | dict[str, float] = Field(..., description="fraction of weights removed: one value or {layer glob: value}")
    layers: list[str] | None = Field(None, description="fnmatch patterns of the layers to prune (null: every Conv/Linear)")
    schedule: Literal["oneshot", "rounds", "gradual"] = "gradual"
    rounds: int = Field(3, ge=1, le=50)
    rewind: bool = False
    start: float = Field(0.0, ge=0.0, lt=1.0)
    end: float = Field(0.6, gt=0.0, le=1.0)
    frequency: int = Field(25, ge=1, description="gradual: iterations between mask updates")
    score_batches: int = Field(2, ge=1, description="gradient / obd: training batches the score is estimated on")
    obd_samples: int = Field(8, ge=1, description="obd: Rademacher probes for the Gauss-Newton diagonal")
    finetune: StepFit = Field(default_factory=StepFit)

    @model_validator(mode="after")
    def _check(self) -> PruneSettings:
        if self.method != "obd" and self.method not in SCORES:
            fail("method", f"{self.method!r} is unknown; allowed: obd, {', '.join(sorted(SCORES))}")
        vals = self.sparsity.values() if isinstance(self.sparsity, dict) else [self.sparsity]
        for v in vals:
            if not 0.0 <= v < 1.0:
                fail("sparsity", f"{v!r} is out of range; allowed: a fraction in [0, 1)")
        if isinstance(self.sparsity, dict) and self.scope == "global":
            fail("scope", "a {layer: sparsity} map needs scope: layer (global ranks all layers against one target)")
        if self.end <= self.start:
            fail("end", f"{self.end} must be after start = {self.start}")
        if self.rewind and self.schedule != "rounds":
            fail("rewind", "rewinding needs schedule: rounds (IMP)")
        return self


def layer_targets(model: nn.Module, s: PruneSettings) -> dict[str, float]:
    """{layer: target sparsity} of the selected layers (a map: first matching glob wins; unmatched: 0)."""
    import fnmatch

    names = select_layers(model, s.layers, key="layers")
    if not isinstance(s.sparsity, dict):
        return {n: float(s.sparsity) for n in names}
    for pat in s.sparsity:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            fail("sparsity", f"{pat!r} matches no selected layer; allowed: {', '.join(names)}")
    out = {}
    for n in names:
        out[n] = next((float(v) for pat, v in s.sparsity.items() if fnmatch.fnmatchcase(n, pat)), 0.0)
    return out


class PruneStep(Step):
    name = "prune"
    Settings = PruneSettings
    phase = 1

    def check(self, s: PruneSettings, model: nn.Module, done: list[str]) -> None:
        try:
            layer_targets(model, s)
        except ValueError as e:
            msg = str(e)
            if msg.startswith("@"):
                raise
            fail("layers", msg.split(": ", 1)[-1])

    def _scores(self, ctx: RecipeContext, s: PruneSettings, names: list[str], g: torch.Generator) -> dict[str, torch.Tensor]:
        data = None
        if s.method == "obd" or needs_data(s.method):
            it = batches(*ctx.train, s.finetune.batch_size, shuffle=True, generator=g)
            data = [next(it) for _ in range(s.score_batches)]
        if s.method == "obd":
            from compress.prune.obd import hessian_diagonal, saliency

            d = hessian_diagonal(ctx.model, data, "ggn", s.obd_samples, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=g)),
                                 layers=names)
            return saliency(ctx.model, d.diag)
        return SCORES[s.method](ctx.model, names, data)

    def _prune_to(self, ctx: RecipeContext, s: PruneSettings, targets: dict[str, float], frac: float, g: torch.Generator) -> None:
        """Prune every selected layer to ``frac`` of its target (masks only shrink)."""
        names = list(targets)
        scores = self._scores(ctx, s, names, g)
        current = get_masks(ctx.model)
        if s.scope == "global":
            masks = compute_masks(scores, current, criterion="percentage", scope="global", sparsity=frac * next(iter(targets.values())))
        else:
            masks = {}
            for n in names:
                masks.update(compute_masks({n: scores[n]}, {k: v for k, v in current.items() if k == n},
                                           criterion="percentage", scope="layer", sparsity=frac * targets[n]))
        apply_masks(ctx.model, masks, key="prune")

    def run(self, ctx: RecipeContext, s: PruneSettings, index: int) -> dict:
        targets = layer_targets(ctx.model, s)
        g = torch.Generator().manual_seed(ctx.step_seed(index))
        ft = s.finetune
        if s.schedule == "oneshot":
            self._prune_to(ctx, s, targets, 1.0, g)
            return fit_step(ctx, ft, index, desc="prune+retrain")
        if s.schedule == "rounds":
            dense_start = dense_state_dict(ctx.model) if s.rewind else None
            info = {}
            for r in range(1, s.rounds + 1):
                # s_r = 1 - (1 - s)^(r/R) of every layer's own target
                frac_targets = {n: 1 - (1 - t) ** (r / s.rounds) for n, t in targets.items()}
                self._prune_to(ctx, s, frac_targets, 1.0, g)
                if dense_start is not None:
                    set_weights(ctx.model, dense_start)  # survivors back to the step's starting weights
                info = fit_step(ctx, ft, index * 100 + r, desc=f"prune round {r}/{s.rounds}")
            return {**info, "rounds": s.rounds}
        # gradual: masks recomputed inside one training run (Zhu & Gupta's cubic schedule)
        steps_per_epoch = -(-len(ctx.train[1]) // ft.batch_size)
        total = steps_per_epoch * ft.epochs if ft.max_iterations is None else min(ft.max_iterations, steps_per_epoch * ft.epochs)
        t0, t1 = int(s.start * total), max(int(s.start * total) + 1, int(s.end * total))
        state = {"it": 0, "updates": 0}

        def cubic(t: int) -> float:
            x = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
            return 1.0 - (1.0 - x) ** 3

        def after_step(model: nn.Module) -> None:
            state["it"] += 1
            t = state["it"]
            if t0 <= t <= t1 and ((t - t0) % s.frequency == 0 or t == t1):
                self._prune_to(ctx, s, targets, cubic(t), g)
                state["updates"] += 1

        info = fit_step(ctx, ft, index, desc="gradual prune", after_step=after_step)
        if state["updates"] == 0 or cubic(state["it"]) < 1.0:
            self._prune_to(ctx, s, targets, 1.0, g)  # a run shorter than ``end`` still reaches the target
        return {**info, "mask_updates": state["updates"]}
