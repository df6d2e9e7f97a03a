"""Write structured models as variants (see compress/variants.py) and summarise their compression."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from compress.checkpoint import save_state_dict
from compress.models import count_params
from compress.structured.base import replaced_params, structured_layers  # noqa: F401  (replaced_params: re-exported)
from compress.structured.quantize import save_quantized, stored_weight_bits
from compress.structured.runtime import shapes_to_options
from compress.variants import Form, Manifest, write_variant


def spec_matches(spec: dict, name: str, kwargs: dict) -> bool:
    """Is the checkpoint spec the architecture (name, kwargs) up to the init scheme?"""
    other = {k: v for k, v in spec.get("kwargs", {}).items() if k != "init"}
    return spec.get("name") == name and other == {k: v for k, v in kwargs.items() if k != "init"}


def write_structured_variant(folder: str | Path, *, variant: str, kind: str, model: nn.Module, base_spec: dict, shapes: dict,
                             bits: int | None, dataset: str, seed: int, notes: str, extra: dict | None = None,
                             stage: str = "structured") -> Manifest:
    """Save ``model`` (``base_spec`` with ``shapes`` replaced by structure ``kind``) as fp32 (``bits`` None) or with
    ``bits``-bit packed factors, and write its manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if set(structured_layers(model)) != set(shapes):
        raise ValueError(f"variant {variant}: model's structured layers {sorted(structured_layers(model))} != {sorted(shapes)}")
    if bits is not None:
        fname, fmt, method = f"model.int{bits}.packed", "packed", f"{kind}+int{bits}"
        save_quantized(model, folder / fname, bits)
        avg_bits = stored_weight_bits(model, bits)
    else:
        fname, fmt, method, avg_bits = "model.safetensors", "fp32", kind, 32.0
        save_state_dict(model, folder / fname)
    man = Manifest(variant=variant, stage=stage, method=method, model=base_spec, dataset=dataset, seed=seed,
                   avg_weight_bits=round(avg_bits, 4), act_bits=None, sparsity=0.0, params=count_params(model, nonzero=True),
                   deploy=Form(runtime="structured-eager", files=[fname], options=shapes_to_options(kind, shapes, fmt, bits)),
                   notes=notes, extra=dict(extra or {}))
    write_variant(folder, man)
    return man
