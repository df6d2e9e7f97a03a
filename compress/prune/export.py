"""Pruned models as variants (compress/variants.py): the one place that writes a sparse artifact.

Unstructured sparsity is stored compactly (bitmask or CSR per tensor, :mod:`compress.prune.sparse_io`) and
checked to reload to exactly the pruned weights; structured pruning yields a smaller dense model (plain fp32).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from compress.models import prunable_layers
from compress.prune.masks import dense_state_dict
from compress.prune.sparse_io import load_sparse, save_sparse
from compress.variants import Form, Manifest, write_variant


def write_sparse_variant(folder: Path, model: nn.Module, variant: str, stage: str, method: str, spec: dict, dataset: str,
                         seed: int, sparsity: float, notes: str | Callable[[list[str]], str] = "", extra: dict | None = None,
                         storage: str = "auto", options: bool = False) -> int:
    """A (masked or already pruned) model as a variant in the compact sparse format (``sparse-eager`` runtime).

    ``storage``: auto | bitmask | csr; ``notes`` may be a function of the layouts used. With ``options`` the
    layouts are recorded in the deploy form. Returns the artifact's bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = dense_state_dict(model)
    keys = [f"{n}.weight" for n in prunable_layers(model)]
    layout = save_sparse(state, folder / "model.safetensors", keys, storage)
    back = load_sparse(folder / "model.safetensors")
    if any(not (back[k] == v).all() for k, v in state.items()):
        raise RuntimeError(f"{variant}: sparse artifact does not reload to the pruned weights")
    fmts = sorted({layout[k]["format"] for k in keys})
    write_variant(folder, Manifest(
        variant=variant, stage=stage, method=method, model=spec, dataset=dataset, seed=seed, avg_weight_bits=32.0,
        act_bits=None, sparsity=float(sparsity), params=int(sum((v != 0).sum() for v in state.values())),
        deploy=Form("sparse-eager", ["model.safetensors"], {"formats": fmts} if options else {}),
        notes=notes(fmts) if callable(notes) else notes,
        extra=extra or {}))
    return (folder / "model.safetensors").stat().st_size


def write_pruned_variant(folder: Path, res, v, *, variant: str, dataset: str, seed: int, storage: str,
                         baseline_params: int) -> dict:
    """One ``prune`` stage variant from its :class:`compress.prune.variant.PruneResult` and config ``v``: a smaller
    dense model (structured) or a compact sparse file (unstructured). Returns its metrics row."""
    from compress.checkpoint import save_state_dict
    from compress.models import count_params

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, nnz, acc = res.model.eval(), count_params(res.model, nonzero=True), res.history[-1]["val_acc"]
    extra = {"config": v.model_dump(mode="json"), "val_acc": acc, "baseline_params": baseline_params,  # no timings: reproducible
             "history": [{k: x for k, x in h.items() if k != "seconds"} for h in res.history]}
    if v.method == "structured":
        save_state_dict(model, folder / "model.safetensors")
        widths = res.spec["kwargs"].get("widths", res.spec["kwargs"].get("hidden"))
        write_variant(folder, Manifest(
            variant=variant, stage="prune", method=f"prune-{v.method}", model=res.spec, dataset=dataset, seed=seed,
            avg_weight_bits=32.0, act_bits=None, sparsity=round(res.sparsity, 6), params=nnz,
            deploy=Form(runtime="torch-eager", files=["model.safetensors"]), extra=extra,
            notes=f"structured ({v.norm} norm): {v.sparsity:.0%} of units removed per layer -> widths {widths}, a smaller dense model"))
        size = (folder / "model.safetensors").stat().st_size
    else:
        size = write_sparse_variant(
            folder, model, variant, "prune", f"prune-{v.method}", res.spec, dataset, seed, round(res.sparsity, 6), extra=extra,
            storage=storage, options=True,
            notes=lambda fmts: (f"{v.method} {v.scope} {v.criterion}, {v.rounds} round(s)"
                                f"{f', L1 lambda {v.l1_lambda:g}' if v.l1_lambda else ''}; stored {'/'.join(fmts)}; "
                                "decoded to dense at load (dense fp32 kernels; torch.sparse CSR for Linear layers >= 90 % zeros)"))
    return {"sparsity": res.sparsity, "params": nnz, "val_acc": acc, "size_bytes": size}


__all__ = ["write_pruned_variant", "write_sparse_variant"]
