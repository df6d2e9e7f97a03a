"""params.yaml section ``recipes``: named compression recipes (a model and an ordered list of steps).

The whole mapping is validated by :func:`compress.recipes.engine.validate_recipes` before any work; a
problem is one line naming the recipe, the step index and the key
(``recipes.lenet300.steps[1].bits = 12 is invalid: ...``). Each recipe is one item of the ``recipes``
stage (``foreach``), which writes one variant per recipe.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field, RootModel, field_validator


class RecipesConfig(RootModel[dict[str, Any]]):
    """{name: {model, model_kwargs, baseline, steps}}; empty: no recipes (see docs/recipes.md for every step key)."""

    root: dict[str, Any] = Field(default_factory=dict, description="named recipes: {name: {model, model_kwargs, baseline, "
                                                                   "steps: [{step: prune|quantize|finetune|monarch|encode, ...}]}}")

    @field_validator("root")
    @classmethod
    def _recipes(cls, v: dict[str, Any]) -> dict[str, Any]:
        import re

        from compress.recipes.engine import RecipeError, validate_recipes

        for name in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", str(name)):
                raise ValueError(f"!recipes.{name}: a recipe name must match [a-z0-9][a-z0-9.-]* (it names a stage, a folder "
                                 "and an MLflow run)")
        if v:
            try:
                validate_recipes(v)
            except RecipeError as e:
                raise ValueError(f"!{e}") from None
        return v

    def items(self):
        return self.root.items()

    def __getitem__(self, name: str) -> dict:
        return self.root[name]


SECTIONS = {"recipes": RecipesConfig}
