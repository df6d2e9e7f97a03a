"""Runtime for structured-layer variants: ``structured-eager``.

The manifest's ``model`` spec is the dense architecture the structured model was projected from;
``form.options`` says which structure, which Linear layers it replaced with which shapes, and the
storage format of ``files[0]``:

    {"structure": "monarch",
     "layers": {"net.1": {"in_features": 784, "out_features": 1024, "nblocks_in": 28, "nblocks_out": 32, "rank": 1}, ...},
     "format": "fp32" | "packed", "bits": 8}

fp32: a safetensors state dict of the structured model.  packed: per-channel integer factors
(compress.structured.quantize, via compress.quant.packing), dequantized to fp32 at load; inference runs
in fp32 eager PyTorch (the deploy package builds faster graphs from the same model).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from compress.checkpoint import load_into
from compress.models import model_from_spec
from compress.runtimes import ModulePredictor, Predictor, register_runtime
from compress.structured.base import structure, structurize
from compress.structured.quantize import load_quantized
from compress.variants import Form, Manifest

STORAGE = ("fp32", "packed")  # how the factors are stored in files[0]


def shapes_from_options(options: dict) -> dict:
    kind = options.get("structure", "monarch")
    try:
        cls = structure(kind, key="form.options.structure")
        return {name: cls.shape_from_dict(d) for name, d in options["layers"].items()}
    except (KeyError, TypeError) as e:
        raise ValueError(f"structured-eager: form.options must hold 'layers' {{name: shape fields}} ({e})") from None


def shapes_to_options(kind: str, shapes: dict, fmt: str, bits: int | None = None) -> dict:
    if fmt not in STORAGE:
        raise ValueError(f"storage {fmt!r} unknown; allowed: {STORAGE}")
    opts = {"structure": kind, "layers": {n: s.as_dict() for n, s in shapes.items()}, "format": fmt}
    if fmt == "packed":
        opts["bits"] = int(bits)
    return opts


def load_structured_model(folder: Path, manifest: Manifest, form: Form) -> nn.Module:
    fmt = form.options.get("format", "fp32")
    if fmt not in STORAGE:
        raise ValueError(f"{folder}: structured-eager storage {fmt!r} unknown; allowed: {STORAGE}")
    model = structurize(model_from_spec(manifest.model), form.options.get("structure", "monarch"),
                        shapes_from_options(form.options), project_weights=False)
    path = Path(folder) / form.files[0]
    if fmt == "packed":
        load_quantized(model, path)
    else:
        load_into(model, path)
    return model.eval()


@register_runtime("structured-eager")
def _structured_eager(folder: Path, manifest: Manifest, form: Form) -> Predictor:
    kind = form.options.get("structure", "monarch")
    desc = f"PyTorch eager, {kind} layers, fp32"
    if form.options.get("format") == "packed":
        desc = f"PyTorch eager, {kind} layers, int{form.options.get('bits', '?')} factors stored, fp32 compute"
    return ModulePredictor(load_structured_model(folder, manifest, form), desc)
