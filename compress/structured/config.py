"""params.yaml section ``monarch`` (stage ``monarch``)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from compress.config import Section, fit_config

# The dense models the stage can start from: (registry name, kwargs).  "baseline" = models/baseline.
REFERENCE_MODELS: dict[str, tuple[str, dict]] = {
    "mlp1024": ("mlp", {"hidden": [1024, 1024]}),  # the paper-style 784-1024-1024-10 MLP
    "lenet300": ("lenet300", {}),
    "lenet5": ("lenet5", {}),  # its classifier fc1/fc2 become Monarch
}


MonarchTrain = fit_config("MonarchTrain", "Training knobs for compress.train.fit (as in ``train``).", epochs=5, lr=2e-3,
                          schedule="onecycle")


class MonarchConfig(Section):
    model: Literal["mlp1024", "lenet300", "lenet5", "baseline"] = "mlp1024"
    layers: list[str] | str = "hidden"  # 'hidden' = every Linear but the classifier output
    nblocks: int | str = "sqrt"  # blocks per side; 'sqrt': the divisor nearest sqrt(n) on each side
    rank: int = Field(1, ge=1)  # rank of every (input block, output block) slice; 1 = the paper's Monarch
    reference: MonarchTrain = Field(default_factory=MonarchTrain)
    finetune: MonarchTrain = Field(default_factory=MonarchTrain)
    quant_bits: int | None = Field(8, ge=2, le=8, description="bits of the fine-tuned factors' extra variant; null: none")
    out: str = "variants/monarch"

    @field_validator("nblocks", mode="before")
    @classmethod
    def _nblocks(cls, v):
        if v == "sqrt":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError("allowed: a positive block count that divides the layer sizes, or 'sqrt' (the paper's m = sqrt(n))")
        return v

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v):
        if v == "hidden":
            return v
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v) or len(set(v)) != len(v):
            raise ValueError("allowed: 'hidden' or a non-empty list of distinct Linear layer names (e.g. ['net.1', 'net.3'])")
        return v

SECTIONS = {"monarch": MonarchConfig}
