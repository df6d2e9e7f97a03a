"""params.yaml section ``structured`` (stage ``structured``): a structured-matrix replacement of Linear layers."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from compress.config import FitConfig, Section, check_known

# The dense models the stage can start from: (registry name, kwargs).  "baseline" = models/baseline.
REFERENCE_MODELS: dict[str, tuple[str, dict]] = {
    "mlp1024": ("mlp", {"hidden": [1024, 1024]}),  # the paper-style 784-1024-1024-10 MLP
    "lenet300": ("lenet300", {}),
    "lenet5": ("lenet5", {}),  # its classifier fc1/fc2 become structured
}




class StructuredConfig(Section):
    """Structured matrices (Monarch: Dao et al. 2022): project a trained dense model's Linear layers, fine-tune,
    quantize the factors."""

    structure: str = Field("monarch", description="a structure of compress.structured.base.STRUCTURE_MODULES: monarch")
    model: Literal["mlp1024", "lenet300", "lenet5", "baseline"] = Field(
        "mlp1024", description="mlp1024 (784-1024-1024-10) | lenet300 | lenet5 | baseline (models/baseline as is); a named "
                               "model other than the baseline's architecture is trained here first (structured.reference)")
    layers: list[str] | str = Field("hidden", description="'hidden' = every Linear but the classifier output, or a list of "
                                                          "Linear layer names, e.g. [net.1, net.3]")
    nblocks: int | str = Field("sqrt", description="blocks per side: 'sqrt' = the divisor nearest sqrt(n) (the paper's m), or "
                                                   "an int dividing both sizes")
    rank: int = Field(1, ge=1, description="rank of each (input block, output block) slice; 1 = Monarch as in the paper")
    reference: FitConfig = Field(default_factory=FitConfig, description="training of the dense reference (a FitConfig block; "
                                                                         "only when the baseline is not structured.model)")
    finetune: FitConfig = Field(default_factory=FitConfig, description="fine-tuning of the projected model, all parameters "
                                                                        "(a FitConfig block)")
    quant_bits: int | None = Field(8, ge=2, le=8, description="also write <structure>-finetuned-int<bits>: per-channel integer "
                                                               "factors; null: skip")

    @field_validator("structure")
    @classmethod
    def _structure(cls, v: str) -> str:
        from compress.structured.base import (
            STRUCTURE_MODULES,  # the registry is the only source of names
        )

        return check_known("structure", v, STRUCTURE_MODULES)

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

SECTIONS = {"structured": StructuredConfig}
