"""Structured replacements of ``nn.Linear``: the base class and the registry.

A structured layer computes y = S x + b where S (out x in) is a structured matrix with far fewer free
weights than a dense one, stored in factors and never materialised for inference (Monarch: two
block-diagonal matrices and two permutations).  Every structure implements the same small interface,
so the ``structured`` stage, its variants, runtime and int-factor quantization work for any of them:

* ``plan(linear, nblocks, rank, name, keys)`` -> the structure's shape for that layer (one-line
  ValueError naming the params key when it does not fit), a frozen dataclass with ``as_dict()``
* ``shape_from_dict(d)``, ``from_dense(linear, shape)`` (the best approximation of the dense
  weight, bias copied), ``empty(shape, bias)`` (to load a state into)
* ``to_dense()`` -> S (out, in), ``num_weights``, ``factor_names`` (the parameters holding S)

Adding a structure (butterfly, low rank, ...): one file with a ``StructuredLinear`` subclass whose module
sets ``STRUCTURE = TheClass``, and one ``STRUCTURE_MODULES`` line below.
"""
from __future__ import annotations

import copy
import importlib
from typing import Any, ClassVar

import torch
from torch import nn

# structure name -> the module that defines it (its STRUCTURE attribute is the class)
STRUCTURE_MODULES: dict[str, str] = {
    "monarch": "compress.structured.monarch",
}


class StructuredLinear(nn.Module):
    """Base of the structured layers (see the module docstring for the interface)."""

    kind: ClassVar[str]
    factor_names: ClassVar[tuple[str, ...]]
    shape: Any

    @classmethod
    def plan(cls, linear: nn.Linear, *, nblocks: int | str, rank: int, name: str, keys: tuple[str, str, str]) -> Any:
        raise NotImplementedError

    @classmethod
    def shape_from_dict(cls, d: dict) -> Any:
        raise NotImplementedError

    @classmethod
    def from_dense(cls, linear: nn.Linear, shape) -> StructuredLinear:
        raise NotImplementedError

    @classmethod
    def empty(cls, shape, bias: bool = True) -> StructuredLinear:
        raise NotImplementedError

    def to_dense(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def num_weights(self) -> int:
        return int(self.shape.num_weights)


def structure(kind: str, key: str = "structured.structure") -> type[StructuredLinear]:
    """The registered class of structure ``kind``."""
    if kind not in STRUCTURE_MODULES:
        raise ValueError(f"{key} = {kind!r} is unknown; allowed: {', '.join(STRUCTURE_MODULES)}")
    return importlib.import_module(STRUCTURE_MODULES[kind]).STRUCTURE


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def resolve_layers(model: nn.Module, layers: list[str] | str, key: str = "structured.layers") -> list[str]:
    """Names of the Linear layers to replace: ``"hidden"`` = every Linear but the last (the classifier
    output), or an explicit list.  Unknown or non-Linear names -> one-line ValueError naming ``key``."""
    lin = linear_layers(model)
    if isinstance(layers, str):
        if layers != "hidden":
            raise ValueError(f"{key} = {layers!r} is invalid; allowed: 'hidden' or a list of Linear layer names {sorted(lin)}")
        names = list(lin)[:-1]
        if not names:
            raise ValueError(f"{key} = 'hidden' selects nothing: {type(model).__name__} has only one Linear layer")
        return names
    if not layers:
        raise ValueError(f"{key} = [] is invalid; name at least one Linear layer: {sorted(lin)}")
    for n in layers:
        if n not in lin:
            raise ValueError(f"{key} = {list(layers)!r}: {n!r} is not a Linear layer of {type(model).__name__}; allowed: {sorted(lin)}")
    return list(layers)


def plan(model: nn.Module, kind: str, layers: list[str] | str, nblocks: int | str = "sqrt", rank: int = 1,
         keys: tuple[str, str, str] = ("structured.layers", "structured.nblocks", "structured.rank")) -> dict[str, Any]:
    """{layer name: shape of structure ``kind``}; every misfit is a one-line ValueError naming the params key."""
    cls, lin = structure(kind), linear_layers(model)
    return {name: cls.plan(lin[name], nblocks=nblocks, rank=rank, name=name, keys=keys)
            for name in resolve_layers(model, layers, keys[0])}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def structurize(model: nn.Module, kind: str, shapes: dict[str, Any], project_weights: bool = True) -> nn.Module:
    """A deep copy of ``model`` with each named Linear replaced by a layer of structure ``kind``: its best
    approximation (``project_weights``) or an uninitialised layer of that shape (to load a state into)."""
    cls, model = structure(kind), copy.deepcopy(model)
    for name, shape in shapes.items():
        lin = model.get_submodule(name)
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"{name} is {type(lin).__name__}, not Linear")
        _set_module(model, name, cls.from_dense(lin, shape) if project_weights else cls.empty(shape, bias=lin.bias is not None))
    return model


def structured_layers(model: nn.Module) -> dict[str, StructuredLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, StructuredLinear)}


def replaced_params(dense: nn.Module, shapes: dict[str, Any]) -> dict:
    """Weights of the replaced layers, dense vs structured (biases are kept as they are and excluded)."""
    n_dense = sum(dense.get_submodule(n).weight.numel() for n in shapes)
    n_struct = sum(s.num_weights for s in shapes.values())
    return {"dense": n_dense, "structured": n_struct, "ratio": n_dense / n_struct}


def projection_error(linear: nn.Linear, kind: str, shape) -> float:
    """Relative Frobenius error ||W - S|| / ||W|| of the best approximation S of ``linear.weight``."""
    w = linear.weight.detach().double()
    s = structure(kind).from_dense(linear, shape).to_dense().detach().double()
    return float((s - w).norm() / w.norm().clamp_min(1e-300))


__all__ = [
    "STRUCTURE_MODULES",
    "StructuredLinear",
    "linear_layers",
    "plan",
    "projection_error",
    "replaced_params",
    "resolve_layers",
    "structure",
    "structured_layers",
    "structurize",
]
