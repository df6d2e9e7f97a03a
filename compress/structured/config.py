"""params.yaml section ``monarch`` (stage ``monarch``)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from compress.config import Section

# The dense models the stage can start from: (registry name, kwargs).  "baseline" = models/baseline.
REFERENCE_MODELS: dict[str, tuple[str, dict]] = {
    "mlp1024": ("mlp", {"hidden": [1024, 1024]}),  # the paper-style 784-1024-1024-10 MLP
    "lenet300": ("lenet300", {}),
    "lenet5": ("lenet5", {}),  # its classifier fc1/fc2 become Monarch
}


class MonarchTrain(Section):
    """Training knobs for compress.train.fit (same meaning as the ``train`` section)."""

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    max_iterations: int | None = Field(None, ge=1)
    eval_every: int = Field(0, ge=0)


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
