"""The recipe steps by name: adding a step is one file in compress/recipes/steps/ plus one line here."""
from __future__ import annotations

from compress.recipes.base import Step
from compress.recipes.steps.encode import EncodeStep
from compress.recipes.steps.finetune import FinetuneStep
from compress.recipes.steps.monarch import MonarchStep
from compress.recipes.steps.prune import PruneStep
from compress.recipes.steps.quantize import QuantizeStep

STEPS: dict[str, type[Step]] = {
    "monarch": MonarchStep,
    "prune": PruneStep,
    "quantize": QuantizeStep,
    "finetune": FinetuneStep,
    "encode": EncodeStep,
}
