"""Runtime for Monarch variants: ``monarch-eager``.

The manifest's ``model`` spec is the dense architecture the Monarch model was projected from;
``form.options`` says which Linear layers are Monarch and their block structure, and the
storage format of ``files[0]``:

    {"layers": {"net.1": {"in_features": 784, "out_features": 1024, "nblocks_in": 28,
                          "nblocks_out": 32, "rank": 1}, ...},
     "format": "fp32" | "packed"}

fp32: a safetensors state dict of the Monarch model.  packed: per-channel integer factors
(compress.structured.quantize, via compress.quant.packing), dequantized to fp32 at load;
inference runs in fp32 eager PyTorch.
"""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from compress.checkpoint import load_into
from compress.runtimes import ModulePredictor, Predictor, model_from_spec, register_runtime
from compress.structured.quantize import load_quantized
from compress.structured.monarch import MonarchShape, monarchize
from compress.variants import Form, Manifest

FORMATS = ("fp32", "packed")


def shapes_from_options(options: dict) -> dict[str, MonarchShape]:
    try:
        return {name: MonarchShape(**d) for name, d in options["layers"].items()}
    except (KeyError, TypeError) as e:
        raise ValueError(f"monarch-eager: form.options must hold 'layers' {{name: MonarchShape fields}} ({e})") from None


def shapes_to_options(shapes: dict[str, MonarchShape], fmt: str, bits: int | None = None) -> dict:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} unknown; allowed: {FORMATS}")
    opts = {"layers": {n: s.as_dict() for n, s in shapes.items()}, "format": fmt}
    if fmt == "packed":
        opts["bits"] = int(bits)
    return opts


def load_monarch_model(folder: Path, manifest: Manifest, form: Form) -> nn.Module:
    fmt = form.options.get("format", "fp32")
    if fmt not in FORMATS:
        raise ValueError(f"{folder}: monarch-eager format {fmt!r} unknown; allowed: {FORMATS}")
    model = monarchize(model_from_spec(manifest.model), shapes_from_options(form.options), project_weights=False)
    path = Path(folder) / form.files[0]
    if fmt == "packed":
        load_quantized(model, path)
    else:
        load_into(model, path)
    return model.eval()


@register_runtime("monarch-eager")
def _monarch_eager(folder: Path, manifest: Manifest, form: Form) -> Predictor:
    fmt = form.options.get("format", "fp32")
    desc = "PyTorch eager, Monarch (2 bmm), fp32"
    if fmt == "packed":
        desc = f"PyTorch eager, Monarch (2 bmm), int{form.options.get('bits', '?')} factors stored, fp32 compute"
    return ModulePredictor(load_monarch_model(folder, manifest, form), desc)
