"""The ``sparse-eager`` runtime: a compact sparse artifact decoded back to dense weights.

files[0] is a safetensors file written by :func:`compress.prune.sparse_io.save_sparse`.
The weights are expanded to dense fp32 tensors at load time and the model runs in eager
PyTorch, so latency equals the dense model's: the size drops, the compute does not (no
sparse kernels are used).  Structured-pruned variants do not need this runtime: they are
smaller dense models and run on ``torch-eager``.
"""
from __future__ import annotations

from pathlib import Path

from compress.prune.sparse_io import load_sparse
from compress.runtimes import (
    ModulePredictor,
    Predictor,
    model_from_spec,
    register_runtime,
)
from compress.variants import Form, Manifest


@register_runtime("sparse-eager")
def _sparse_eager(folder: Path, manifest: Manifest, form: Form) -> Predictor:
    model = model_from_spec(manifest.model)
    model.load_state_dict(load_sparse(Path(folder) / form.files[0]))
    return ModulePredictor(model.eval(), "PyTorch eager fp32 from compact sparse file (decoded to dense; no sparse-kernel speedup)")
