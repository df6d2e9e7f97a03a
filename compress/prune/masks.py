"""Weight masks that persist through training, on top of ``torch.nn.utils.prune``.

This is the one masking mechanism of the suite (magnitude, structured scoring, lottery
tickets and OBD all go through it).  A mask is a ``BoolTensor`` of a layer's weight shape,
keyed by the layer's qualified name from :func:`compress.models.prunable_layers`;
``True`` = kept.  ``torch.nn.utils.prune`` reparametrises ``weight = weight_orig * weight_mask``
in a forward pre-hook, so pruned weights are exactly zero in every forward pass and the
gradient reaching ``weight_orig`` at a pruned position is exactly zero.  Applying a second
mask intersects it with the first (``PruningContainer``): masks only ever shrink.

Public API::

    apply_masks(model, masks)        # prune (intersect with any existing mask)
    get_masks(model)                 # {name: BoolTensor} of the currently pruned layers
    sparsity(model)                  # fraction of prunable weights that are zero
    remove_masks(model)              # make permanent: plain ``weight`` parameters again
    dense_state_dict(model)          # state dict with effective weights under standard keys
    select_layers(model, patterns)   # fnmatch patterns -> layer names, errors naming the key
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from compress.models import prunable_layers

Masks = dict[str, torch.Tensor]


def is_masked(layer: nn.Module) -> bool:
    return prune.is_pruned(layer) and hasattr(layer, "weight_mask")


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the forward pass uses (``weight_orig * weight_mask`` when masked)."""
    if is_masked(layer):
        return (layer.weight_orig * layer.weight_mask).detach()
    return layer.weight.detach()


def select_layers(model: nn.Module, patterns: Iterable[str] | None = None, key: str = "layers") -> list[str]:
    """Prunable layer names matching any of the fnmatch ``patterns`` (None: all of them).

    A pattern that matches no prunable layer is an error naming ``key`` and the valid names.
    """
    layers = prunable_layers(model)
    if patterns is None:
        return list(layers)
    patterns = list(patterns)
    chosen: list[str] = []
    for pat in patterns:
        hit = [n for n in layers if fnmatch.fnmatchcase(n, pat)]
        if not hit:
            raise ValueError(f"{key} = {patterns!r}: {pat!r} matches no prunable layer of {type(model).__name__}; "
                             f"allowed: {', '.join(layers)}")
        chosen += [n for n in hit if n not in chosen]
    return [n for n in layers if n in chosen]  # model order


def _check_names(model: nn.Module, names: Iterable[str], key: str) -> dict[str, nn.Module]:
    layers = prunable_layers(model)
    bad = [n for n in names if n not in layers]
    if bad:
        raise ValueError(f"{key}: {bad[0]!r} matches no prunable layer of {type(model).__name__}; allowed: {', '.join(layers)}")
    return layers


def apply_masks(model: nn.Module, masks: Masks, key: str = "masks") -> nn.Module:
    """Mask the weights of the named layers in place; an existing mask is intersected.

    Pruned positions are zero in the forward pass from now on and get zero gradient.
    """
    layers = _check_names(model, masks, key)
    for name, mask in masks.items():
        layer = layers[name]
        if tuple(mask.shape) != tuple(layer.weight.shape):
            raise ValueError(f"{key}[{name!r}]: mask shape {tuple(mask.shape)} != weight shape {tuple(layer.weight.shape)}")
        prune.custom_from_mask(layer, "weight", mask.to(device=layer.weight.device, dtype=torch.bool))
    return model


def get_masks(model: nn.Module, all_layers: bool = False) -> Masks:
    """``{name: BoolTensor}`` of the masked layers (``all_layers``: all-True for the others)."""
    out: Masks = {}
    for name, layer in prunable_layers(model).items():
        if is_masked(layer):
            out[name] = layer.weight_mask.detach().bool().clone()
        elif all_layers:
            out[name] = torch.ones_like(layer.weight, dtype=torch.bool)
    return out


def counts(model: nn.Module, names: Iterable[str] | None = None) -> tuple[int, int]:
    """(zero weights, total weights) over the prunable layers ``names`` (default: all)."""
    layers = prunable_layers(model)
    names = list(layers) if names is None else list(names)
    zeros = total = 0
    for n in names:
        w = effective_weight(layers[n])
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros, total


def sparsity(model: nn.Module, names: Iterable[str] | None = None) -> float:
    """Fraction of the prunable weights (biases excluded) that are exactly zero."""
    zeros, total = counts(model, names)
    return zeros / max(total, 1)


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    return {n: float((effective_weight(m) == 0).double().mean()) for n, m in prunable_layers(model).items()}


def remove_masks(model: nn.Module) -> nn.Module:
    """Make the pruning permanent: ``weight`` becomes a plain parameter holding the zeros."""
    for layer in prunable_layers(model).values():
        if is_masked(layer):
            prune.remove(layer, "weight")
    return model


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict under the unmasked model's keys (``x.weight``), effective weights."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if k.endswith(".weight_mask"):
            continue
        if k.endswith(".weight_orig"):
            base = k[: -len("_orig")]
            v = v * model.state_dict()[base + "_mask"]
            k = base
        out[k] = v.detach().clone()
    return out


def set_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load plain weights (``x.weight`` keys, e.g. w0) into a possibly masked model, keeping masks.

    Used to rewind a ticket: the surviving weights get their values from ``state``, pruned
    positions stay zero because the mask still multiplies them.
    """
    layers = dict(model.named_modules())
    with torch.no_grad():
        for k, v in state.items():
            mod_name, _, pname = k.rpartition(".")
            mod = layers[mod_name]
            if pname == "weight" and is_masked(mod):
                mod.weight_orig.copy_(v)
            else:
                getattr(mod, pname).copy_(v)
    return model


def split_like(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> Masks:
    """Cut a flat (N_total,) tensor back into per-layer tensors shaped like ``like`` (in its order)."""
    out, i = {}, 0
    for n, t in like.items():
        out[n] = flat[i : i + t.numel()].view_as(t)
        i += t.numel()
    return out


__all__ = [
    "Masks",
    "apply_masks",
    "counts",
    "dense_state_dict",
    "effective_weight",
    "get_masks",
    "is_masked",
    "layer_sparsity",
    "remove_masks",
    "select_layers",
    "set_weights",
    "sparsity",
    "split_like",
]
