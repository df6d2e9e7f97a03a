"""``finetune``: retrain the model in its current form; masks and codes stay consistent.

What trains depends on the form each weight is in (compress.recipes.tensors):
  * masked float weights: the kept weights (pruned ones receive zero gradient and stay zero);
  * k-means shared weights: the centroids only, by the summed gradients of the weights sharing
    them (Deep Compression's fine-tuning); the codes (assignments) and the mask are fixed;
  * uniform codes: quantization-aware training of the float shadow weights through the
    fake-quant forward with STE; the codes are read off at export, pruned positions are 0;
  * biases and other float tensors train as usual (``freeze_floats`` keeps them).
"""
from __future__ import annotations

from pydantic import Field

from compress.recipes.base import RecipeContext, Step, StepFit, fit_step


class FinetuneSettings(StepFit):
    freeze_floats: bool = Field(False, description="train only the weights (centroids / kept weights), not biases")


class FinetuneStep(Step):
    name = "finetune"
    Settings = FinetuneSettings
    needs_previous = True

    def run(self, ctx: RecipeContext, s: FinetuneSettings, index: int) -> dict:
        from compress.recipes.tensors import codable

        params = None
        if s.freeze_floats:
            weights = {id(_trainable(m, name)) for m, name in codable(ctx.model).values()}
            params = [p for p in ctx.model.parameters() if id(p) in weights]
        return fit_step(ctx, s, index, desc="finetune", params=params)


def _trainable(module, pname: str):
    """The trainable tensor behind a weight: centroids (k-means), float shadow (uniform), weight_orig (masked) or itself."""
    for suffix in ("_centroids", "_float", "_orig", ""):
        p = module._parameters.get(f"{pname}{suffix}")
        if p is not None:
            return p
    return None
