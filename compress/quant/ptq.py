"""Post-training quantization: build the simulated model and write the artifacts of a PTQ variant.

Integer variants (``wXaY``): weights per-channel symmetric (``QuantSpec`` template), activations
per-tensor asymmetric unsigned with the calibrated ranges of one observer.  Artifacts:

* sim form   ``sim.safetensors`` (fp32 baseline) + ``sim.json`` (bits, specs, ranges): rebuilt by
             the ``quant-sim`` runtime as ``quantize_model(...)`` (fake quantization).
* packed     ``model.cspk``: bit-packed integer weights + scales / zero points + activation
             ranges (runtime ``packed``), the deploy form of sub-8-bit variants.
* int8       ONNX Runtime QDQ / PT2E programs (see :mod:`compress.quant.deploy`).

Float variants (fp16, bf16, fp8): weights stored in the format's torch dtype (``lowp-float``
runtime), simulation = ``quantize_model_float``.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from compress.checkpoint import read_state_dict, save_state_dict
from compress.models import prunable_layers
from compress.quant.fakequant import (
    QConv2d,
    QLinear,
    QuantSpec,
    act_spec,
    quantize_model,
    quantize_model_float,
    quantize_weight,
    weight_spec,
)
from compress.quant.formats import get_format
from compress.quant.packing import QTensor, load_packed, save_packed
from compress.variants import Form, corrupt, missing


def int_specs(wbits: int, abits: int | None, granularity: str = "channel", group_size: int = 128,
              rounding: str = "nearest", symmetric: bool = True) -> tuple[QuantSpec, QuantSpec | None]:
    ws = weight_spec(8, granularity=granularity, group_size=group_size, rounding=rounding,
                     symmetric=symmetric).with_bits(wbits)
    return ws, (act_spec(abits) if abits is not None else None)


def build_int_sim(model: nn.Module, wbits, abits, act_ranges: Mapping[str, tuple[float, float]] | None,
                  wspec: QuantSpec, aspec: QuantSpec | None) -> nn.Module:
    return quantize_model(model, wbits, abits, act_ranges, weight_spec=wspec, act_spec=aspec or act_spec(8)).eval()


# --------------------------------------------------------------------------- sim form
def write_sim(folder: Path, base: nn.Module, cfg: dict) -> Form:
    """The simulated form: fp32 baseline weights + the recipe (``cfg``) to fake-quantize them."""
    save_state_dict(base, folder / "sim.safetensors")
    (folder / "sim.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    return Form(runtime="quant-sim", files=["sim.safetensors", "sim.json"])


def int_sim_cfg(wbits: int, abits: int | None, act_ranges, wspec: QuantSpec, aspec: QuantSpec | None) -> dict:
    return {"kind": "int", "wbits": wbits, "abits": abits, "weight_spec": dataclasses.asdict(wspec),
            "act_spec": dataclasses.asdict(aspec) if aspec else None,
            "act_ranges": {k: list(v) for k, v in (act_ranges or {}).items()}}


def float_sim_cfg(fmt: str, activations: bool) -> dict:
    return {"kind": "float", "format": fmt, "activations": activations}


def sim_from_cfg(base: nn.Module, cfg: dict) -> nn.Module:
    if cfg["kind"] == "float":
        return quantize_model_float(base, cfg["format"], "same" if cfg["activations"] else None).eval()
    ws = QuantSpec(**cfg["weight_spec"])
    as_ = QuantSpec(**cfg["act_spec"]) if cfg["act_spec"] else None
    ranges = {k: tuple(v) for k, v in cfg["act_ranges"].items()}
    return build_int_sim(base, cfg["wbits"], cfg["abits"], ranges, ws, as_)


def load_sim(folder: Path, files: list[str], model: nn.Module) -> nn.Module:
    from compress.checkpoint import load_into

    load_into(model, folder / files[0])
    recipe = folder / files[1]
    try:
        cfg = json.loads(recipe.read_text())
    except FileNotFoundError:
        raise missing(recipe) from None
    except (OSError, ValueError) as e:
        raise corrupt(recipe, f"not a JSON recipe: {e}") from None
    try:
        return sim_from_cfg(model.eval(), cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise corrupt(recipe, f"not a simulation recipe: {type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------- packed form
def save_packed_model(qmodel: nn.Module, path: Path, meta: dict | None = None) -> Path:
    """Bit-pack the integer weights of every wrapped layer; other tensors as float32; the
    activation specs / ranges go into the header so the runtime can rebuild the simulation."""
    qts, floats, acts = {}, {}, {}
    layers = prunable_layers(qmodel)
    wrapped = {n: m for n, m in layers.items() if isinstance(m, (QLinear, QConv2d))}
    for name, m in wrapped.items():
        if m.wspec is not None:
            q, s, z = quantize_weight(m.weight, m.wspec)
            qts[f"{name}.weight"] = QTensor(q, s, z, m.wspec)
        if m.aspec is not None:
            acts[name] = {"lo": float(m.act_lo), "hi": float(m.act_hi), "spec": dataclasses.asdict(m.aspec)}
    for k, v in qmodel.state_dict().items():
        layer, _, leaf = k.rpartition(".")
        if k in qts or (layer in wrapped and leaf in ("act_lo", "act_hi")):
            continue
        floats[k] = v
    return save_packed(path, qts, floats, {**(meta or {}), "acts": acts})


def load_packed_model(path: Path, model: nn.Module) -> nn.Module:
    """Float ``model`` (built from the spec) with the dequantized packed weights; layers with
    activation specs get input fake-quant with the stored ranges (no weight re-quantization)."""
    qts, floats, meta = load_packed(path)
    state = {k: v for k, v in floats.items()}
    state.update({k: qt.dequantize() for k, qt in qts.items()})
    model.load_state_dict(state, strict=True)
    model.eval()
    acts = meta.get("acts", {})
    ranges = {n: (a["lo"], a["hi"]) for n, a in acts.items()}
    abits = {n: a["spec"]["bits"] for n, a in acts.items()}
    if not acts:
        return model
    aspec = QuantSpec(**next(iter(acts.values()))["spec"])
    return quantize_model(model, None, abits, ranges, act_spec=aspec).eval()


# --------------------------------------------------------------------------- float formats
def save_float_weights(base: nn.Module, fmt: str, path: Path) -> Path:
    """Weights and biases of the prunable layers in ``fmt``'s torch dtype (real bytes); other
    tensors float32.  Loaded back and upcast, they equal ``quantize_model_float``'s weights."""
    f = get_format(fmt)
    if f.torch_dtype is None:
        raise ValueError(f"float format {fmt!r} has no torch dtype to store it in")
    rounded = quantize_model_float(base, f, act_fmt=None)
    lowp = {f"{n}.{p}" for n, m in prunable_layers(rounded).items() for p in ("weight", "bias") if getattr(m, p) is not None}
    state = {k: (v.to(f.torch_dtype) if k in lowp else v) for k, v in rounded.state_dict().items()}
    return save_state_dict(state, path, metadata={"format": fmt})


def load_float_weights(path: Path, model: nn.Module, fmt: str, activations: bool) -> nn.Module:
    state = {k: v.to(torch.float32) for k, v in read_state_dict(path).items()}
    model.load_state_dict(state, strict=True)
    # weights are already representable (rounding is idempotent); this adds the activation rounding
    return quantize_model_float(model.eval(), fmt, "same" if activations else None).eval()


__all__ = [
    "build_int_sim",
    "float_sim_cfg",
    "int_sim_cfg",
    "int_specs",
    "load_float_weights",
    "load_packed_model",
    "load_sim",
    "save_float_weights",
    "save_packed_model",
    "sim_from_cfg",
    "write_sim",
]
