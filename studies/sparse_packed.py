"""Artifact of a pruned *and* quantized model (the joint search): bitmask + packed nonzero codes.

Per prunable weight W (shape (O, ...), b bits, per-channel (s, z) from
``compress.quant.fakequant.quantize_weight``):

    mask   1 bit per position (``numpy.packbits``)               n / 8 bytes
    codes  the codes of the kept positions, bit-packed (b bits)  nnz * b / 8 bytes
    s, z   float32 multipliers / int zero points per channel     O * (4 + 1..4) bytes

All other tensors are float32.  One safetensors file; the layout is in its metadata.
``load_sparse_packed`` returns the dequantized state dict (pruned positions exactly 0), the
same tensors the simulated model computes with.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def save_sparse_packed(path: str | Path, state: dict[str, torch.Tensor], wbits: dict[str, int], spec_for) -> dict[str, torch.Tensor]:
    """Write ``state`` with the weights of ``wbits`` (keys ``<layer>.weight``) sparse-packed.

    ``spec_for(bits) -> QuantSpec``.  Returns the dequantized weights stored (for checks).
    """
    from safetensors.torch import save_file

    from compress.quant.fakequant import dequantize_weight, quantize_weight
    from compress.quant.packing import pack

    tensors, layout, deq = {}, {}, {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        layer = k.removesuffix(".weight")
        if k.endswith(".weight") and layer in wbits:
            spec = spec_for(wbits[layer])
            if spec.signed is False or not spec.symmetric:
                raise ValueError("sparse packing needs a symmetric signed spec (zero must map to code 0)")
            q, s, z = quantize_weight(v, spec)  # q: (O, ...) integer-valued; s, z: (O, 1)
            if bool((z != 0).any()):
                raise ValueError(f"{k}: nonzero zero point; sparse packing needs zero -> code 0")
            keep = v != 0  # (O, ...) pruned positions are exactly zero
            codes = (q[keep].to(torch.int64) - spec.qrange[0])  # (nnz,)
            tensors[f"{k}::mask"] = torch.from_numpy(np.packbits(keep.flatten().numpy()))
            tensors[f"{k}::codes"] = torch.from_numpy(pack(codes, spec.bits))
            tensors[f"{k}::s"] = s.float().contiguous()
            layout[k] = {"shape": list(v.shape), "bits": spec.bits, "granularity": spec.granularity,
                         "nnz": int(keep.sum())}
            w = torch.zeros_like(v)
            w[keep] = dequantize_weight(q, s, z, spec)[keep]
            deq[k] = w
        else:
            tensors[f"{k}::data"] = v.float() if v.is_floating_point() else v
            layout[k] = None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"sparse_packed": json.dumps(layout)})
    return deq


def load_sparse_packed(path: str | Path, spec_for) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    from compress.quant.fakequant import dequantize_weight
    from compress.quant.packing import unpack

    with safe_open(str(path), framework="pt") as f:
        layout = json.loads((f.metadata() or {})["sparse_packed"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    out = {}
    for k, info in layout.items():
        if info is None:
            out[k] = tensors[f"{k}::data"]
            continue
        shape = tuple(info["shape"])
        n = int(np.prod(shape))
        spec = spec_for(info["bits"])
        keep = torch.from_numpy(np.unpackbits(tensors[f"{k}::mask"].numpy(), count=n).astype(bool)).view(shape)
        q = torch.zeros(shape, dtype=torch.float32)  # code of 0 in a symmetric signed spec
        q[keep] = (unpack(tensors[f"{k}::codes"].numpy(), spec.bits, info["nnz"]) + spec.qrange[0]).float()
        s = tensors[f"{k}::s"]
        w = dequantize_weight(q, s, torch.zeros_like(s), spec)
        out[k] = torch.where(keep, w, torch.zeros_like(w))
    return out
