"""Which tensors a recipe compresses, their current form, and the model <-> artifact conversions.

Weight tensors ("codable"): the ``weight`` of every Conv2d / Linear (``compress.models.prunable_layers``)
and the factors ``w1`` / ``w2`` of every MonarchLinear.  Each is, at any point of a recipe, one of
  * dense float (untouched),
  * masked float (``torch.nn.utils.prune``, after a prune step),
  * coded (k-means shared or uniform codes with a keep mask, after a quantize step).
Every other tensor of the state dict (biases, norms) is stored as float.
"""
from __future__ import annotations

import torch
from torch import nn

from compress.models import build_model, prunable_layers
from compress.prune.masks import is_masked
from compress.quant.sharing import coded_params, export
from compress.recipes.artifact import Artifact, SparseFloat, deserialize
from compress.structured.monarch import MonarchLinear, MonarchShape, monarchize


def codable(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """``{"<layer>.<param>": (module, param)}`` of the weight tensors, in model order."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            out[f"{name}.weight"] = (m, "weight")
        elif isinstance(m, MonarchLinear):
            out[f"{name}.w1"], out[f"{name}.w2"] = (m, "w1"), (m, "w2")
    return out


def layer_of(key: str) -> str:
    return key.rpartition(".")[0]


def current(module: nn.Module, pname: str) -> torch.Tensor:
    """The value the forward pass uses for ``module.<pname>``."""
    if pname == "weight" and is_masked(module):
        return (module.weight_orig * module.weight_mask).detach()
    return getattr(module, pname).detach()


def keep_mask(module: nn.Module, pname: str) -> torch.Tensor:
    """Kept positions: the prune mask, the coded keep buffer, or (a plain tensor) its nonzeros."""
    if hasattr(module, f"{pname}_keep"):
        return getattr(module, f"{pname}_keep").clone()
    if pname == "weight" and is_masked(module):
        return module.weight_mask.detach().bool().clone()
    return getattr(module, pname).detach() != 0


def reference_model(spec: dict, monarch: dict[str, dict] | None = None) -> nn.Module:
    """The architecture a recipe's artifact loads into: the spec's model, Monarch layers swapped in."""
    model = build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec.get("kwargs", {}))
    if monarch:
        model = monarchize(model, {n: MonarchShape(**d) for n, d in monarch.items()}, project_weights=False)
    return model


def to_artifact(model: nn.Module, spec: dict, monarch: dict[str, dict] | None = None) -> Artifact:
    """The model's current compressed form as an :class:`Artifact` (weights in their stored form)."""
    ref_keys = list(reference_model(spec, monarch).state_dict())
    weights = codable(model)
    coded = coded_params(model)
    tensors, floats = {}, {}
    for key in ref_keys:
        if key in coded:
            tensors[key] = export(*coded[key])
        elif key in weights:
            m, p = weights[key]
            if p == "weight" and is_masked(m):
                keep = m.weight_mask.detach().bool()
                tensors[key] = SparseFloat(keep.clone(), current(m, p)[keep].float().clone())
            else:
                tensors[key] = current(m, p).float().clone()
        else:
            mod_name, _, leaf = key.rpartition(".")
            floats[key] = getattr(model.get_submodule(mod_name) if mod_name else model, leaf).detach().float().clone()
    meta = {"model": spec}
    if monarch:
        meta["monarch"] = monarch
    return Artifact(tensors, floats, meta)


def model_from_artifact(art: Artifact) -> nn.Module:
    """A plain fp32 model holding the artifact's decoded weights (eval mode)."""
    model = reference_model(art.meta["model"], art.meta.get("monarch"))
    model.load_state_dict(art.state_dict(), strict=True)
    return model.eval()


def model_from_bytes(raw: bytes, source: str = "artifact") -> nn.Module:
    return model_from_artifact(deserialize(raw, source))


def weight_counts(model: nn.Module) -> tuple[int, int]:
    """(kept weights, all weights) over the codable tensors."""
    kept = total = 0
    for m, p in codable(model).values():
        k = keep_mask(m, p)
        kept, total = kept + int(k.sum()), total + k.numel()
    return kept, total


def prunable_names(model: nn.Module) -> list[str]:
    return list(prunable_layers(model))


__all__ = [
    "codable",
    "current",
    "keep_mask",
    "layer_of",
    "model_from_artifact",
    "model_from_bytes",
    "prunable_names",
    "reference_model",
    "to_artifact",
    "weight_counts",
]
