"""Runtime registry: how a variant's artifact is loaded and run as deployed.

A runtime is a function ``load(folder, manifest, form) -> Predictor``; a Predictor maps a
normalised float batch (B, C, H, W) to logits (B, classes) as a CPU torch tensor.  Method
families register their runtimes in their own modules, listed once in ``RUNTIME_MODULES``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn as nn

from compress.checkpoint import load_into
from compress.models import build_model
from compress.variants import Form, Manifest


class Predictor(Protocol):
    description: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


Loader = Callable[[Path, Manifest, Form], Predictor]
RUNTIMES: dict[str, Loader] = {}

# Modules whose import registers more runtimes (one line per family).
RUNTIME_MODULES = [
    "compress.quant.deploy",
    "compress.quant.runtime",
    "compress.quant.binary",
    "compress.prune.runtime",
    "compress.structured.runtime",
]


def register_runtime(name: str):
    def deco(fn: Loader) -> Loader:
        if name in RUNTIMES and RUNTIMES[name] is not fn:
            raise RuntimeError(f"runtime {name!r} registered twice")
        RUNTIMES[name] = fn
        return fn

    return deco


def _load_families() -> None:
    for mod in RUNTIME_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is not None and mod.startswith(e.name):
                continue  # that family is not part of this checkout
            raise


def get_runtime(name: str) -> Loader:
    if name not in RUNTIMES:
        _load_families()
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r} in a variant manifest; known: {sorted(RUNTIMES)}")
    return RUNTIMES[name]


def load_predictor(folder: str | Path, manifest: Manifest, form: Form | None = None, engine: str | None = None) -> Predictor:
    """The artifact of ``form`` (default: the deploy form) as a Predictor: through its registered
    runtime, or with ``engine`` (e.g. "onnxruntime", "openvino"; see compress.deploy.engines) on the
    graph compress.deploy builds from the same files.  An engine that cannot run it: ValueError
    with the reason."""
    form = form or manifest.deploy
    if engine is not None:
        from compress.deploy import deploy_predictors, get_engine

        preds, skipped = deploy_predictors(folder, manifest, [get_engine(engine, "engine")], form)
        if engine not in preds:
            raise ValueError(f"variant {manifest.variant}: {skipped.get(engine, 'no graph')}")
        return preds[engine]
    return get_runtime(form.runtime)(Path(folder), manifest, form)


def model_from_spec(spec: dict) -> nn.Module:
    return build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec.get("kwargs", {}))


class ModulePredictor:
    """Runs an nn.Module under inference mode on the CPU."""

    def __init__(self, module: Callable[[torch.Tensor], torch.Tensor], description: str):
        self.module = module
        self.description = description

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _eager_module(folder: Path, manifest: Manifest, form: Form) -> nn.Module:
    model = model_from_spec(manifest.model)
    load_into(model, folder / form.files[0])
    return model.eval()


@register_runtime("torch-eager")
def _torch_eager(folder: Path, manifest: Manifest, form: Form) -> Predictor:
    return ModulePredictor(_eager_module(folder, manifest, form), "PyTorch eager, fp32")


@register_runtime("torch-compile")
def _torch_compile(folder: Path, manifest: Manifest, form: Form) -> Predictor:
    model = _eager_module(folder, manifest, form)
    compiled = torch.compile(model, dynamic=False, **form.options)
    return ModulePredictor(compiled, "torch.compile (inductor), fp32")


def load_baseline(folder: str | Path) -> tuple[nn.Module, dict]:
    """The trained baseline written by the train stage: (model in eval mode, its spec).

    A missing or mismatched folder is a CheckpointError that says which stage to run.
    """
    import json

    from compress.checkpoint import CheckpointError

    folder = Path(folder)
    spec_path = folder / "spec.json"
    if not spec_path.exists():
        raise CheckpointError(f"{spec_path} is missing: run the train stage first (dvc repro train)")
    try:
        spec = json.loads(spec_path.read_text())
        model = model_from_spec(spec)
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{spec_path} is not a valid model spec ({e}); rerun the train stage") from None
    load_into(model, folder / "model.safetensors")
    return model.eval(), spec
