"""Quantized weights that keep a pruning mask: trained weight sharing (k-means) and a uniform grid.

Trained weight sharing (Han, Mao & Dally, "Deep Compression", ICLR 2016, Sec. 3):
  1. the kept weights W_i of one layer are clustered into K = 2^b centroids c_k by 1-D k-means
     (scikit-learn's Lloyd iterations), started from the *linear* initialisation
     c_k = min W + k (max W - min W)/(K - 1), which keeps the rare large weights represented;
  2. each kept weight stores only its index I_i; the layer's weight is W_i = c_{I_i} (0 where pruned);
  3. fine-tuning updates the centroids by the summed gradients of the weights that share them,
         ∂L/∂c_k = Σ_{i: I_i = k} ∂L/∂W_i,
     which is exactly the backward of the gather ``c[I]`` (autograd's index backward).
  Optionally (``snap_int8``) the centroids are fake-quantized to a per-layer symmetric int8 grid
  (STE), so that the stored codebook is int8 levels x one scale and int8 kernels apply:
  W_i = levels[I_i] / s.

Uniform grid: the kept weights are fake-quantized per output channel (symmetric, ``bits``) with a
straight-through estimator (compress.quant.fakequant); the stored form is the integer codes.
Pruned positions are exactly zero in both cases (zero is on every symmetric grid), so masks and
codes stay consistent through fine-tuning.

The state lives on the module, like ``torch.nn.utils.prune``: the parameter ``<p>`` is replaced by
``<p>_centroids`` (k-means) or ``<p>_float`` (uniform) plus the buffers ``<p>_codes`` / ``<p>_keep``,
and a forward pre-hook recomputes ``<p>`` before every forward.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compress.quant.fakequant import (
    QuantSpec,
    fake_quant_weight,
    quantize_weight,
    weight_spec,
)

METHODS = ("kmeans", "uniform")
INITS = ("linear", "density", "random")
MAX_BITS = 8  # codes are stored as bytes


def check_code_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits = {bits!r} is invalid; allowed: an integer from 1 to {MAX_BITS}")
    return bits


def initial_centroids(values: np.ndarray, k: int, init: str, seed: int = 0) -> np.ndarray:
    """(k,) starting centroids: ``linear`` (Deep Compression's choice), ``density`` (quantiles of
    the weights) or ``random`` (k distinct weights drawn with ``seed``)."""
    if init == "linear":
        return np.linspace(values.min(), values.max(), k)
    if init == "density":
        return np.quantile(values, (np.arange(k) + 0.5) / k)
    if init == "random":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(values, size=k, replace=False))
    raise ValueError(f"init = {init!r} is unknown; allowed: {', '.join(INITS)}")


def kmeans_1d(values: torch.Tensor, bits: int, init: str = "linear", seed: int = 0,
              max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the 1-D ``values`` into at most 2^bits centroids by Lloyd's algorithm.

    In one dimension each cluster is a contiguous run of the sorted values, so an iteration is
    1. boundaries = midpoints of neighbouring centroids, located in the sorted values (searchsorted);
    2. each centroid = mean of its run, from prefix sums (an empty run keeps its centroid);
    until the runs stop changing: O(K log n) per iteration, exact in float64.  It reaches the same
    fixed point as scikit-learn's ``KMeans(init=..., n_init=1, algorithm="lloyd")`` (checked by a
    test), which takes seconds per layer here because it is written for n-D data.
    Returns (centroids (K,) float32 ascending, codes (n,) int64 in [0, K)); K < 2^bits only when
    there are fewer distinct values (then every distinct value is a centroid).
    """
    check_code_bits(bits)
    v = np.sort(values.detach().double().cpu().numpy().reshape(-1))  # (n,) ascending
    distinct = np.unique(v)
    k = 2**bits
    if len(distinct) <= k:  # nothing to cluster: each distinct value is its own centroid
        c = distinct.astype(np.float32)
        return torch.from_numpy(c), nearest(values.detach().float().reshape(-1), torch.from_numpy(c))
    prefix = np.concatenate([[0.0], np.cumsum(v)])  # (n+1,)
    c = np.sort(initial_centroids(v, k, init, seed).astype(np.float64))
    bounds = None
    for _ in range(max_iter):
        # 1. run boundaries: value i belongs to the first centroid whose upper midpoint is >= v_i
        new_bounds = np.concatenate([[0], np.searchsorted(v, (c[1:] + c[:-1]) / 2, side="right"), [len(v)]])
        if bounds is not None and np.array_equal(new_bounds, bounds):
            break
        bounds = new_bounds
        # 2. means of the runs
        counts = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        c = np.sort(c)
    c32 = torch.from_numpy(c.astype(np.float32))
    return c32, nearest(values.detach().float().reshape(-1), c32)


def nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted ``centroids`` (K,) for every value (n,) (ties: lower)."""
    mids = (centroids[1:] + centroids[:-1]) / 2  # (K-1,) decision boundaries
    return torch.searchsorted(mids, values.contiguous(), right=False).long()


INT8_GRID = weight_spec(8, granularity="tensor")  # the per-layer symmetric int8 grid of ``snap_int8``


# --------------------------------------------------------------------------- module state
_KIND = "_coded_kind"


@dataclass
class CodedState:
    """What one coded parameter stores: kept positions, codes and how codes map to values."""

    kind: str  # kmeans | uniform
    bits: int
    keep: torch.Tensor  # bool, the parameter's shape
    codes: torch.Tensor  # int64 (nnz,): centroid index (kmeans) or signed integer code (uniform), kept positions in flat order
    centroids: torch.Tensor | None = None  # (K,) float32 (kmeans)
    levels: torch.Tensor | None = None  # (K,) int8 levels of the snapped codebook (kmeans + snap_int8)
    multipliers: torch.Tensor | None = None  # (R,) lecture multipliers s (uniform: per row; snapped kmeans: (1,))

    def dense(self) -> torch.Tensor:
        """The weight tensor the forward pass uses."""
        if self.kind == "kmeans":
            table = self.centroids if self.levels is None else self.levels.float() / self.multipliers
            vals = table[self.codes]
        else:
            rows = torch.nonzero(self.keep.reshape(self.keep.shape[0], -1))[:, 0]  # (nnz,) row of each kept weight
            vals = self.codes.float() / self.multipliers[rows]
        out = torch.zeros(self.keep.numel(), dtype=torch.float32)
        out[self.keep.reshape(-1)] = vals.float()
        return out.view(self.keep.shape)

    def int_weight(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(integer weight (shape, int8 values as float32), multipliers (R, 1)) with weight = q / s, or
        None when the codebook is not on an integer grid (k-means without ``snap_int8``).  The input of
        int8 kernels: zero is code 0, so pruned positions stay exact zeros."""
        if self.kind == "kmeans" and self.levels is None:
            return None
        q = torch.zeros(self.keep.numel(), dtype=torch.float32)
        q[self.keep.reshape(-1)] = (self.levels[self.codes] if self.kind == "kmeans" else self.codes).float()
        s = self.multipliers.reshape(-1, 1)
        if s.shape[0] == 1:
            s = s.expand(self.keep.shape[0], 1).clone()
        return q.view(self.keep.shape), s

    def to_qtensor(self):
        """The integer weight as a :class:`compress.quant.packing.QTensor` (symmetric, per channel, z = 0),
        the form the suite's packed / int8 code reads; None when the codebook is not on an integer grid."""
        from compress.quant.packing import QTensor

        iw = self.int_weight()
        if iw is None:
            return None
        q, s = iw
        bits = 8 if self.kind == "kmeans" else self.bits
        return QTensor(q=q, s=s, z=torch.zeros_like(s), spec=QuantSpec(bits=bits, signed=True, symmetric=True, granularity="channel"))


def _hook_kmeans(pname: str, snap: bool):
    def hook(module: nn.Module, _inputs) -> None:
        c = getattr(module, f"{pname}_centroids")  # (K,)
        if snap:
            c = fake_quant_weight(c.reshape(1, -1), INT8_GRID).reshape(-1)
        keep = getattr(module, f"{pname}_keep")
        w = c[getattr(module, f"{pname}_codes")]  # (shape): gather; backward = summed gradients per centroid
        setattr(module, pname, torch.where(keep, w, torch.zeros((), dtype=w.dtype)))
    return hook


def _hook_uniform(pname: str, spec: QuantSpec):
    def hook(module: nn.Module, _inputs) -> None:
        w = getattr(module, f"{pname}_float") * getattr(module, f"{pname}_keep")
        setattr(module, pname, fake_quant_weight(w, spec))
    return hook


def is_coded(module: nn.Module, pname: str = "weight") -> bool:
    return pname in getattr(module, _KIND, {})


def _detach_param(module: nn.Module, pname: str) -> torch.Tensor:
    w = getattr(module, pname).detach().clone()
    if pname in module._parameters:
        del module._parameters[pname]
    elif hasattr(module, pname):
        delattr(module, pname)
    return w


def share_(module: nn.Module, pname: str, keep: torch.Tensor, bits: int, init: str = "linear", seed: int = 0,
           snap_int8: bool = False) -> torch.Tensor:
    """Replace ``module.<pname>`` by k-means shared weights over the kept positions; returns the codes (nnz,)."""
    check_code_bits(bits)
    w = _detach_param(module, pname)
    keep = keep.to(torch.bool).cpu()
    c, codes_kept = kmeans_1d(w[keep], bits, init, seed)
    codes = torch.zeros(w.shape, dtype=torch.long)
    codes[keep] = codes_kept
    module.register_parameter(f"{pname}_centroids", nn.Parameter(c))
    module.register_buffer(f"{pname}_codes", codes)
    module.register_buffer(f"{pname}_keep", keep)
    _register(module, pname, {"kind": "kmeans", "bits": bits, "snap_int8": snap_int8,
                              "handle": module.register_forward_pre_hook(_hook_kmeans(pname, snap_int8))})
    _hook_kmeans(pname, snap_int8)(module, None)
    return codes_kept


def uniform_(module: nn.Module, pname: str, keep: torch.Tensor, bits: int, granularity: str = "channel") -> None:
    """Replace ``module.<pname>`` by its kept weights, fake-quantized symmetrically (per channel or tensor) with STE."""
    check_code_bits(bits)
    w = _detach_param(module, pname)
    spec = weight_spec(bits, granularity=granularity)
    module.register_parameter(f"{pname}_float", nn.Parameter(w))
    module.register_buffer(f"{pname}_keep", keep.to(torch.bool).cpu())
    _register(module, pname, {"kind": "uniform", "bits": bits, "spec": spec,
                              "handle": module.register_forward_pre_hook(_hook_uniform(pname, spec))})
    _hook_uniform(pname, spec)(module, None)


def _register(module: nn.Module, pname: str, info: dict) -> None:
    if not hasattr(module, _KIND):
        setattr(module, _KIND, {})
    getattr(module, _KIND)[pname] = info


@torch.no_grad()
def export(module: nn.Module, pname: str) -> CodedState:
    """The stored form of a coded parameter: exactly the values its forward uses."""
    info = getattr(module, _KIND)[pname]
    keep = getattr(module, f"{pname}_keep").clone()
    if info["kind"] == "kmeans":
        c = getattr(module, f"{pname}_centroids").detach().float().clone()
        codes = getattr(module, f"{pname}_codes")[keep].clone()
        if not info["snap_int8"]:
            return CodedState("kmeans", info["bits"], keep, codes, centroids=c)
        q, s, _ = quantize_weight(c.reshape(1, -1), INT8_GRID)  # (1, K) levels, (1, 1) multiplier
        return CodedState("kmeans", info["bits"], keep, codes, centroids=c, levels=q.reshape(-1).to(torch.int8),
                          multipliers=s.reshape(1).float())
    w = getattr(module, f"{pname}_float").detach() * keep
    q, s, _ = quantize_weight(w, info["spec"])  # q: w's shape, s: (R, 1) per channel or (1, 1)
    s = s.reshape(-1).float()
    if s.numel() == 1:
        s = s.expand(w.shape[0]).clone()
    return CodedState("uniform", info["bits"], keep, q[keep].long(), multipliers=s)


def coded_params(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """``{"<module>.<param>": (module, param)}`` of every coded parameter, in module order."""
    out = {}
    for name, m in model.named_modules():
        for p in getattr(m, _KIND, {}):
            out[f"{name}.{p}" if name else p] = (m, p)
    return out


def uncode_(module: nn.Module, pname: str) -> None:
    """Make the current (decoded) values a plain parameter again and remove the hook and buffers."""
    info = getattr(module, _KIND).pop(pname)
    info["handle"].remove()
    w = getattr(module, pname).detach().clone()
    for suffix in ("centroids", "float", "codes", "keep"):
        key = f"{pname}_{suffix}"
        module._parameters.pop(key, None)
        module._buffers.pop(key, None)
    if hasattr(module, pname):
        delattr(module, pname)
    module.register_parameter(pname, nn.Parameter(w))


def params_of(model: nn.Module, names: Iterable[str]) -> list[nn.Parameter]:
    """The trainable tensors behind coded parameters (centroids or float weights)."""
    out = []
    coded = coded_params(model)
    for n in names:
        m, p = coded[n]
        out.append(getattr(m, f"{p}_centroids" if getattr(m, _KIND)[p]["kind"] == "kmeans" else f"{p}_float"))
    return out


__all__ = [
    "INITS",
    "MAX_BITS",
    "METHODS",
    "CodedState",
    "check_code_bits",
    "coded_params",
    "export",
    "initial_centroids",
    "is_coded",
    "kmeans_1d",
    "nearest",
    "params_of",
    "share_",
    "uncode_",
    "uniform_",
]
