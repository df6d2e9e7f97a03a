"""Output helpers shared by the hawq and obd stages: CSV tables and variant folders."""
from __future__ import annotations

import csv
from pathlib import Path

import torch.nn as nn

from compress.variants import Form, Manifest, write_variant


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def _registered(*names: str) -> str | None:
    from compress.runtimes import RUNTIMES, _load_families

    _load_families()
    return next((n for n in names if n in RUNTIMES), None)


def write_quant_variant(folder: Path, qmodel: nn.Module, variant: str, stage: str, method: str, spec: dict, dataset: str,
                        seed: int, avg_bits: float, act_bits: int | None, notes: str = "") -> int:
    """A fake-quant model as a variant: bit-packed codes + scales (``compress.quant.packing``) for the
    quant family's packed runtime, and the simulated form; returns the deployed bytes."""
    from compress.checkpoint import save_state_dict
    from compress.models import count_params
    from compress.quant.packing import load_packed, save_packed
    from compress.quant.qat import baked_state_dict, export_quantized

    folder.mkdir(parents=True, exist_ok=True)
    qts, floats, acts = export_quantized(qmodel)
    save_packed(folder / "model.cspk", qts, floats, meta={"acts": acts, "model": spec})
    back, _, _ = load_packed(folder / "model.cspk")  # the artifact must reload to the simulated weights
    for k, qt in qts.items():
        if not (back[k].dequantize() == qt.dequantize()).all():
            raise RuntimeError(f"{variant}: packed {k} does not reload to the simulated weights")
    packed_rt = _registered("packed-eager", "packed", "int-packed")
    sim_rt = _registered("fakequant", "fake-quant", "quant-sim", "packed-sim")
    extra = {"packed_bytes": (folder / "model.cspk").stat().st_size, "act_ranges": acts}
    if packed_rt is not None:
        deploy = Form(packed_rt, ["model.cspk"])
    else:  # no silent fallback: the manifest says so
        save_state_dict(baked_state_dict(qts, floats), folder / "model.safetensors")
        deploy = Form("torch-eager", ["model.safetensors"])
        notes += "; NO packed runtime registered: deployed as fp32 dequantized weights (size_bytes is fp32; packed_bytes in extra)"
    sim = Form(sim_rt, ["model.cspk"]) if sim_rt is not None else None
    if sim is None and act_bits is not None:
        notes += "; no fake-quant runtime registered: accuracy_sim missing (deployed form has float activations)"
    write_variant(folder, Manifest(
        variant=variant, stage=stage, method=method, model=spec, dataset=dataset, seed=seed, avg_weight_bits=float(avg_bits),
        act_bits=act_bits, sparsity=0.0, params=count_params(qmodel, nonzero=True), deploy=deploy, sim=sim,
        notes=notes.lstrip("; "), extra=extra))
    return sum((folder / f).stat().st_size for f in deploy.files)


def write_sparse_variant(folder: Path, model: nn.Module, variant: str, stage: str, method: str, spec: dict, dataset: str,
                         seed: int, sparsity: float, notes: str = "", extra: dict | None = None) -> int:
    """A masked model as a variant in the pruning family's compact sparse format (``sparse-eager``)."""
    from compress.models import count_params, prunable_layers
    from compress.prune.masks import dense_state_dict
    from compress.prune.sparse_io import load_sparse, save_sparse

    folder.mkdir(parents=True, exist_ok=True)
    state = dense_state_dict(model)
    save_sparse(state, folder / "model.safetensors", [f"{n}.weight" for n in prunable_layers(model)])
    back = load_sparse(folder / "model.safetensors")
    if any(not (back[k] == v).all() for k, v in state.items()):
        raise RuntimeError(f"{variant}: sparse artifact does not reload to the pruned weights")
    write_variant(folder, Manifest(
        variant=variant, stage=stage, method=method, model=spec, dataset=dataset, seed=seed, avg_weight_bits=32.0,
        act_bits=None, sparsity=float(sparsity), params=int(sum((v != 0).sum() for v in state.values())),
        deploy=Form("sparse-eager", ["model.safetensors"]), notes=notes, extra=extra or {}))
    return (folder / "model.safetensors").stat().st_size
