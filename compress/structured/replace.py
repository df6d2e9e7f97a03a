"""Replace a trained dense model's Linear layers by a structure and fine-tune it (the ``structured`` stage's work).

1. the dense reference: the train stage's baseline when it is the requested architecture, else one trained
   here; 2. every misfit of the layer plan is checked before any training; 3. the best structured
   approximation of each layer (Monarch: per-block SVD) and 4. fine-tuning of all parameters.  The library
   writes nothing: the stage writes the variants (compress.structured.export) and the metrics.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from compress.models import build_model, count_params
from compress.structured.base import (
    plan,
    projection_error,
    replaced_params,
    structurize,
)
from compress.structured.config import REFERENCE_MODELS
from compress.structured.export import spec_matches
from compress.structured.quantize import fake_quantized
from compress.train import evaluate_model, fit
from compress.variants import model_spec


def reference(model: str, baseline_spec: dict | None, input_shape, num_classes: int) -> tuple[dict, str]:
    """(spec of the dense reference, "baseline" | "trained here") for ``structured.model``."""
    if model == "baseline":
        if baseline_spec is None:
            raise FileNotFoundError("structured.model = 'baseline' but models/baseline/spec.json is missing: run the train stage first")
        return baseline_spec, "baseline"
    name, kwargs = REFERENCE_MODELS[model]
    if baseline_spec is not None and spec_matches(baseline_spec, name, kwargs):
        return baseline_spec, "baseline"
    return model_spec(name, kwargs, input_shape, num_classes), "trained here"


@dataclass
class Replaced:
    dense: nn.Module
    projected: nn.Module
    tuned: nn.Module
    shapes: dict
    errors: dict[str, float]  # relative Frobenius error of each layer's projection
    replaced: dict  # {"dense", "structured", "ratio"}: weights of the replaced layers
    val_acc: dict[str, float] = field(default_factory=dict)  # dense, projected, finetuned (, finetuned_quant)
    finetune_seconds: float = 0.0
    reference_steps: int = 0


def check_plan(spec: dict, kind: str, layers, nblocks, rank) -> dict:
    """The per-layer shapes on the (untrained) architecture: every misfit is one line naming the key."""
    return plan(build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec["kwargs"]), kind, layers, nblocks, rank)


def replace_and_finetune(dense: nn.Module, kind: str, shapes: dict, train, val, finetune_cfg, *, seed: int,
                         reference_cfg=None, quant_bits: int | None = None, device: torch.device | None = None,
                         on_eval: Callable[[str, int, dict], None] | None = None) -> Replaced:
    """Train ``dense`` first when ``reference_cfg`` is given, then project its ``shapes`` layers onto ``kind``
    and fine-tune all parameters. ``on_eval(phase, step_offset, row)`` sees every validation row."""
    log = (lambda phase, off: (lambda r: on_eval(phase, off, r))) if on_eval else (lambda phase, off: None)
    steps = 0
    if reference_cfg is not None:
        steps = fit(dense, train, val, reference_cfg, seed=seed, device=device, desc="dense reference",
                    on_eval=log("reference", 0)).iterations
    dense.cpu().eval()
    # 3. the best approximation of every replaced layer, 4. fine-tuning of all parameters
    errors = {n: projection_error(dense.get_submodule(n), kind, s) for n, s in shapes.items()}
    projected, tuned = structurize(dense, kind, shapes), structurize(dense, kind, shapes)
    if on_eval is not None:  # the curve's two points between the reference and the fine-tuning
        for phase, m in (("dense", dense), ("projected", projected)):
            vl, va = evaluate_model(m, *val)
            on_eval(phase, steps, {"iteration": 0, "val_loss": vl, "val_acc": va})
    hist = fit(tuned, train, val, finetune_cfg, seed=seed, device=device, desc=f"{kind} fine-tune", on_eval=log("finetune", steps))
    tuned.cpu().eval()
    res = Replaced(dense, projected, tuned, shapes, errors, replaced_params(dense, shapes), finetune_seconds=hist.seconds,
                   reference_steps=steps)
    models = [("dense", dense), ("projected", projected), ("finetuned", tuned)]
    if quant_bits:  # the quantization round trip of the factors: what the packed artifact holds
        models.append(("finetuned_quant", fake_quantized(copy.deepcopy(tuned), quant_bits)))
    res.val_acc = {name: evaluate_model(m, *val)[1] for name, m in models}
    return res


def summary(res: Replaced, kind: str, model: str, source: str) -> dict:
    rp = res.replaced
    return {"structure": kind, "model": model, "reference": source, "replaced_weights_dense": rp["dense"],
            "replaced_weights_structured": rp["structured"], "replaced_compression": rp["ratio"],
            "params_dense": count_params(res.dense), "params_structured": count_params(res.tuned),
            "projection_rel_error": res.errors, "finetune_seconds": res.finetune_seconds,
            **{f"val_acc_{k}": v for k, v in res.val_acc.items()},
            "val_acc_drop_pp": 100 * (res.val_acc["dense"] - res.val_acc["finetuned"])}


__all__ = ["Replaced", "check_plan", "reference", "replace_and_finetune", "summary"]
