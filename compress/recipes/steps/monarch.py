"""``monarch``: replace Linear layers by their Frobenius-nearest Monarch factorisation and fine-tune
(Dao et al. 2022; compress.structured.monarch).  It must come before pruning and quantization: the
factors ``w1`` / ``w2`` are then quantized like any other weight tensor (pruning acts on the
remaining Conv / Linear layers)."""
from __future__ import annotations

from pydantic import Field
from torch import nn

from compress.recipes.base import (
    RecipeContext,
    Step,
    StepFit,
    StepSettings,
    fail,
    fit_step,
)
from compress.structured.monarch import monarchize, plan


class MonarchSettings(StepSettings):
    layers: list[str] | str = Field("hidden", description="'hidden' (every Linear but the classifier) or names")
    nblocks: int | str = Field("sqrt", description="blocks per side: 'sqrt' or an integer dividing both sizes")
    rank: int = Field(1, ge=1)
    finetune: StepFit = Field(default_factory=StepFit)


class MonarchStep(Step):
    name = "monarch"
    Settings = MonarchSettings
    phase = 0
    once = True

    def check(self, s: MonarchSettings, model: nn.Module, done: list[str]) -> None:
        try:
            plan(model, s.layers, s.nblocks, s.rank, keys=("layers", "nblocks", "rank"))
        except ValueError as e:
            key, _, msg = str(e).partition(" = ")
            fail(key if key in ("layers", "nblocks", "rank") else "layers", msg or str(e))

    def run(self, ctx: RecipeContext, s: MonarchSettings, index: int) -> dict:
        shapes = plan(ctx.model, s.layers, s.nblocks, s.rank, keys=("layers", "nblocks", "rank"))
        ctx.model = monarchize(ctx.model, shapes, project_weights=True)
        ctx.monarch = {n: sh.as_dict() for n, sh in shapes.items()}
        return {**fit_step(ctx, s.finetune, index, desc="monarch finetune"),
                "monarch_layers": sorted(shapes)}
