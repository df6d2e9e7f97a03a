"""Runtime registry: how a variant's artifact is loaded and run as deployed.

A runtime is a function ``load(folder, manifest, form) -> Predictor``; a Predictor maps a
normalised float batch (B, C, H, W) to logits (B, classes) as a CPU torch tensor.  Method
families register their runtimes in their own modules, listed once in ``RUNTIME_MODULES``.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from compress.checkpoint import load_baseline, load_into  # noqa: F401  (load_baseline: re-exported)
from compress.models import model_from_spec
from compress.variants import MANIFEST, ArtifactError, Form, Manifest, one_line


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
    "compress.recipes.runtime",
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


def load_predictor(folder: str | Path, manifest: Manifest, form: Form | None = None) -> Predictor:
    """The runtime of ``form`` (default: the deployed one) loaded from ``folder`` (the same files on
    another deploy engine: :func:`compress.deploy.graphs.engine_predictor`).

    Every failure to load is one :class:`~compress.variants.ArtifactError` whose message names
    the variant, the file at fault and the stage that rebuilds it: a missing file, an unknown
    runtime, a corrupt or mismatched file (whatever the runtime's own reader raised).
    """
    form = form or manifest.deploy
    folder = Path(folder)
    # 1. the runtime named in the manifest exists
    try:
        loader = get_runtime(form.runtime)
    except ValueError:
        raise ArtifactError(folder / MANIFEST, f"names an unknown runtime {form.runtime!r} (known: {', '.join(sorted(RUNTIMES))})",
                            manifest.variant, manifest.stage) from None
    # 2. every file of the form is there
    for f in form.files:
        if not (folder / f).is_file():
            raise ArtifactError(folder / f, "is missing", manifest.variant, manifest.stage)
    # 3. the runtime's reader: its error, whatever the type, becomes one line about the file
    try:
        return loader(folder, manifest, form)
    except ArtifactError as e:
        raise e.of_variant(manifest.variant, manifest.stage) from None
    except Exception as e:
        raise _blame(e, folder, manifest, form) from e


def _blame(e: Exception, folder: Path, manifest: Manifest, form: Form) -> ArtifactError:
    """The file a reader's exception is about and what is wrong with it, as an ArtifactError."""
    path, problem = getattr(e, "path", None), getattr(e, "problem", None)
    text = one_line(str(e) or type(e).__name__, 400)
    if path is None:  # 1. a file of the form named in the message, 2. the only file, 3. all of them
        named = [f for f in form.files if str(folder / f) in text or f in text]
        path = folder / (named[0] if named else form.files[0]) if (named or len(form.files) == 1) else \
            folder / ("{" + ",".join(form.files) + "}")
    if problem is None:
        reason = text.replace(str(path), "<file>")
        problem = f"cannot be loaded by runtime {form.runtime!r} ({type(e).__name__}: {one_line(reason, 160)})"
    return ArtifactError(path, problem, manifest.variant, manifest.stage)


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
