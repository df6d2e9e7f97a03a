"""The ``recipe-decoded`` runtime: a recipe artifact (compress.recipes.artifact) decoded at load.

Relative indices, codes and codebooks are expanded once into dense fp32 weights and the model runs
in eager PyTorch: the size drops, the compute does not (no sparse or sub-8-bit kernels are used).
The int8 path (ONNX Runtime / OpenVINO) reads the same file through
:func:`compress.recipes.artifact.read_artifact`: uniform codes and int8-snapped k-means codebooks
give integer weights + per-channel multipliers (``CodedState.int_weight``).
"""
from __future__ import annotations

from pathlib import Path

from compress.recipes.artifact import read_artifact
from compress.recipes.tensors import model_from_artifact
from compress.runtimes import ModulePredictor, Predictor, register_runtime
from compress.variants import Form, Manifest


@register_runtime("recipe-decoded")
def _recipe_decoded(folder: Path, manifest: Manifest, form: Form) -> Predictor:
    art = read_artifact(Path(folder) / form.files[0])
    if art.meta.get("model", {}).get("name") != manifest.model["name"]:
        raise ValueError(f"{folder}: the artifact holds a {art.meta.get('model', {}).get('name')!r} model, "
                         f"the manifest says {manifest.model['name']!r}; rerun the recipes stage")
    return ModulePredictor(model_from_artifact(art), "recipe artifact (indices + codes, entropy-coded) decoded at load "
                                                     "to dense fp32, PyTorch eager (no sparse / int kernels)")
