"""Compact storage of pruned weights, so that bytes on disk reflect sparsity.

One safetensors file.  Each prunable weight with zeros is stored in the smaller of
  * ``bitmask``: 1 bit per position (``numpy.packbits``) + the nonzero values,
        bytes ≈ n/8 + 4·nnz
  * ``csr``: the weight viewed as (rows, cols) — (out, in·kh·kw) for a conv — in compressed
        sparse row form (``torch.Tensor.to_sparse_csr``) with the narrowest integer types
        that fit: column indices uint8 (cols ≤ 256) / int16 / int32, row pointers int16 /
        int32, bytes ≈ 4·nnz + idx·nnz + ptr·(rows+1).
Everything else (biases, batch-norm, dense weights) is stored as is.  The layout of each
tensor is recorded in the safetensors metadata; :func:`load_sparse` restores the dense
state dict exactly.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from compress.variants import ArtifactError, corrupt

SPARSE_LAYOUTS = ("auto", "bitmask", "csr", "dense")  # what save_sparse(fmt=) accepts; auto: the smaller per tensor


def _narrow(max_value: int, unsigned_ok: bool = True) -> torch.dtype:
    if unsigned_ok and max_value <= 255:
        return torch.uint8
    if max_value <= 32767:
        return torch.int16
    return torch.int32


def _bitmask(w: torch.Tensor) -> dict[str, torch.Tensor]:
    nz = w != 0
    bits = np.packbits(nz.flatten().numpy())  # (ceil(n/8),) uint8
    return {"bits": torch.from_numpy(bits), "values": w[nz].contiguous()}


def _csr(w: torch.Tensor) -> dict[str, torch.Tensor]:
    m = w.reshape(w.shape[0], -1)  # (rows, cols)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        s = m.to_sparse_csr()
    return {"crow": s.crow_indices().to(_narrow(int(s.crow_indices()[-1]), unsigned_ok=False)),
            "col": s.col_indices().to(_narrow(m.shape[1] - 1)),
            "values": s.values().contiguous()}


def _nbytes(parts: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in parts.values())


def encode(state: dict[str, torch.Tensor], sparse_keys: list[str], fmt: str = "auto") -> tuple[dict, dict]:
    """(tensors, layout) for ``save_sparse``; ``sparse_keys`` are the weights to compress."""
    if fmt not in SPARSE_LAYOUTS:
        raise ValueError(f"sparse layout = {fmt!r} is unknown; allowed: {', '.join(SPARSE_LAYOUTS)}")
    tensors, layout = {}, {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        choice, parts = "dense", {"data": v}
        if k in sparse_keys and fmt != "dense" and v.ndim >= 2:
            cands = {"bitmask": _bitmask(v), "csr": _csr(v)}
            cands = {f: p for f, p in cands.items() if fmt in ("auto", f)}
            f, p = min(cands.items(), key=lambda kv: _nbytes(kv[1]))
            if fmt != "auto" or _nbytes(p) < _nbytes(parts):
                choice, parts = f, p
        layout[k] = {"format": choice, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for part, t in parts.items():
            tensors[f"{k}::{part}"] = t
    return tensors, layout


def decode(tensors: dict[str, torch.Tensor], layout: dict) -> dict[str, torch.Tensor]:
    out = {}
    for k, info in layout.items():
        shape, dtype = tuple(info["shape"]), getattr(torch, info["dtype"])
        fmt = info["format"]
        if fmt == "dense":
            out[k] = tensors[f"{k}::data"]
        elif fmt == "bitmask":
            n = int(np.prod(shape))
            nz = torch.from_numpy(np.unpackbits(tensors[f"{k}::bits"].numpy(), count=n).astype(bool))
            w = torch.zeros(n, dtype=dtype)
            w[nz] = tensors[f"{k}::values"]
            out[k] = w.view(shape)
        elif fmt == "csr":
            rows = shape[0]
            cols = int(np.prod(shape[1:]))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                m = torch.sparse_csr_tensor(tensors[f"{k}::crow"].long(), tensors[f"{k}::col"].long(),
                                            tensors[f"{k}::values"], size=(rows, cols), check_invariants=True)
                out[k] = m.to_dense().view(shape)
        else:
            raise ValueError(f"unknown sparse layout {fmt!r} for {k}")
    return out


def save_sparse(state: dict[str, torch.Tensor], path: str | Path, sparse_keys: list[str], fmt: str = "auto") -> dict:
    """Write ``state`` compactly to ``path`` (safetensors); returns the layout."""
    from safetensors.torch import save_file

    tensors, layout = encode(state, sparse_keys, fmt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"sparse_layout": json.dumps(layout)})
    return layout


def load_sparse(path: str | Path) -> dict[str, torch.Tensor]:
    """The dense state dict stored by :func:`save_sparse`."""
    from safetensors import safe_open

    from compress.checkpoint import read_state_dict

    tensors = read_state_dict(path)  # missing / truncated: CheckpointError naming the file
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "sparse_layout" not in meta:
        raise ArtifactError(path, "is not a sparse artifact (no 'sparse_layout' metadata; was it written by "
                                  "compress.prune.sparse_io?)")
    try:
        return decode(tensors, json.loads(meta["sparse_layout"]))
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:  # layout and tensors disagree
        raise corrupt(path, f"sparse layout: {type(e).__name__}: {e}") from None


__all__ = ["SPARSE_LAYOUTS", "decode", "encode", "load_sparse", "save_sparse"]
