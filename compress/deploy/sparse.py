"""Sparse kernels for unstructured-pruned Linear layers: torch.sparse CSR (MKL / native SpMM).

Measured on this CPU (benchmarks/bench_deploy.py): at >= 90 % zeros a CSR ``W @ x^T`` beats
every dense fp32 runtime at batch 256 on the MLPs (LeNet-300-100 at 96 %: ~2x ONNX Runtime), but
not at batch 1, where the eager per-op call overhead (~10 us per layer) exceeds the dense work
that ONNX Runtime does in one call.  Conv layers stay dense (no sparse conv kernel here).
The evaluate measurement times both and records the faster one per batch size.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


class CSRLinear(nn.Module):
    """y = x W^T + b with W stored as a CSR tensor: ``(W @ x^T)^T`` by sparse-dense matmul."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.weight = linear.weight.detach().to_sparse_csr()  # (out, in), nnz values
        self.bias = None if linear.bias is None else linear.bias.detach().clone()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        y = torch.sparse.mm(self.weight, x.t())  # (out, B)
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.t()

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={nnz}"


def sparse_linear_layers(model: nn.Module, min_sparsity: float = 0.9) -> dict[str, float]:
    """{Linear layer name: fraction of zero weights} for the layers at or above ``min_sparsity``."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            z = float((m.weight == 0).double().mean())
            if z >= min_sparsity:
                out[name] = z
    return out


def csr_model(model: nn.Module, layers) -> nn.Module:
    """Deep copy of ``model`` with each named Linear replaced by a :class:`CSRLinear`."""
    out = copy.deepcopy(model).eval()
    for name in layers:
        parent, _, leaf = name.rpartition(".")
        owner = out.get_submodule(parent) if parent else out
        setattr(owner, leaf, CSRLinear(getattr(owner, leaf)))
    return out


__all__ = ["CSRLinear", "csr_model", "sparse_linear_layers"]
