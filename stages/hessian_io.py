"""Variant writers shared by the hawq and obd stages."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from compress.variants import Form, Manifest, write_variant


def write_quant_variant(folder: Path, qmodel: nn.Module, variant: str, stage: str, method: str, spec: dict, dataset: str,
                        seed: int, avg_bits: float, act_bits: int | None, notes: str = "") -> int:
    """A fake-quant model (``quantize_model`` wrappers) as a variant of the quant family's forms:
    deploy = bit-packed codes + scales + activation ranges (``packed`` runtime), sim = the float
    shadow weights + the per-layer recipe (``quant-sim``).  Returns the deployed bytes."""
    from compress.models import count_params, prunable_layers
    from compress.quant.fakequant import act_spec, weight_spec
    from compress.quant.packing import load_packed
    from compress.quant.ptq import int_sim_cfg, save_packed_model, write_sim
    from compress.runtimes import model_from_spec

    folder.mkdir(parents=True, exist_ok=True)
    layers = prunable_layers(qmodel)
    wbits = {n: m.wspec.bits for n, m in layers.items()}
    ranges = {n: (float(m.act_lo), float(m.act_hi)) for n, m in layers.items() if m.aspec is not None}
    save_packed_model(qmodel, folder / "model.cspk", {"model": spec})
    qts, _, _ = load_packed(folder / "model.cspk")  # the artifact must hold exactly the simulated weights
    for n, m in layers.items():
        if not (qts[f"{n}.weight"].dequantize() == m.weight_fake_quant().detach()).all():
            raise RuntimeError(f"{variant}: packed {n}.weight does not reload to the simulated weights")
    base = model_from_spec(spec)
    base.load_state_dict({k: v for k, v in qmodel.state_dict().items() if k.rsplit(".", 1)[-1] not in ("act_lo", "act_hi")})
    ws = weight_spec(8).with_bits(8)
    sim = write_sim(folder, base, int_sim_cfg(wbits, act_bits, ranges, ws, act_spec(act_bits) if act_bits else None))
    write_variant(folder, Manifest(
        variant=variant, stage=stage, method=method, model=spec, dataset=dataset, seed=seed, avg_weight_bits=float(avg_bits),
        act_bits=act_bits, sparsity=0.0, params=count_params(qmodel, nonzero=True), deploy=Form("packed", ["model.cspk"]),
        sim=sim, notes=notes, extra={"weight_bits": wbits}))
    return (folder / "model.cspk").stat().st_size


def write_sparse_variant(folder: Path, model: nn.Module, variant: str, stage: str, method: str, spec: dict, dataset: str,
                         seed: int, sparsity: float, notes: str = "", extra: dict | None = None) -> int:
    """A masked model as a variant in the pruning family's compact sparse format (``sparse-eager``)."""
    from compress.models import prunable_layers
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
