"""``quantize``: per-layer codes for the kept weights, on a uniform grid or by trained weight sharing.

``method``:
  * ``kmeans``  Deep Compression's weight sharing (compress.quant.sharing): 2^b centroids per layer by
                k-means over the kept weights (``init`` linear by default), fine-tuned later by summed
                gradients (a ``finetune`` step); ``snap_int8`` keeps the codebook on a per-layer int8 grid;
  * ``uniform`` symmetric per-channel (``granularity``) integer codes, fake-quantized with STE.
Bits per layer, exactly one of:
  * ``bits``       one width, or ``{layer glob: width}`` (first matching glob wins);
  * ``bits_from``  a HAWQ allocation file (hawq/allocation.json: ``{"allocations": [{"name", "bits":
                   {layer: b}}]}`` or ``{"weight_bits": {layer: b}}``), ``allocation`` picks one by name;
  * ``search``     greedy on validation accuracy: starting with every layer at the widest candidate,
                   the largest layers first, lower a layer's width while the accuracy of the quantized
                   model (no fine-tuning) stays within ``tolerance`` of the unquantized model's.
Pruned positions stay pruned: the codes cover the kept weights only.
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils import prune as torch_prune

from compress.prune.masks import is_masked
from compress.quant.fakequant import dequantize_weight, quantize_weight, weight_spec
from compress.quant.sharing import INITS, MAX_BITS, kmeans_1d, share_, uniform_
from compress.recipes.base import RecipeContext, Step, StepSettings, fail
from compress.recipes.tensors import codable, current, keep_mask, layer_of


class SearchSettings(StepSettings):
    candidates: list[int] = Field(default_factory=lambda: [8, 6, 5, 4, 3, 2])
    tolerance: float = Field(0.002, ge=0.0, lt=1.0, description="allowed drop of validation accuracy (fraction)")
    eval_size: int | None = Field(None, ge=1, description="validation images per trial (null: all)")

    @model_validator(mode="after")
    def _bits(self) -> SearchSettings:
        if not self.candidates:
            fail("candidates", "name at least one width")
        for b in self.candidates:
            if not 1 <= b <= MAX_BITS:
                fail("candidates", f"{b!r} is out of range; allowed: integers from 1 to {MAX_BITS}")
        return self


class QuantizeSettings(StepSettings):
    method: Literal["kmeans", "uniform"] = "kmeans"
    bits: int | dict[str, int] | None = None
    bits_from: str | None = None
    allocation: str | None = Field(None, description="bits_from: the allocation's name (null: the first)")
    search: SearchSettings | None = None
    layers: list[str] | None = Field(None, description="fnmatch patterns of the layers to quantize (null: all)")
    init: Literal[INITS] = "linear"  # type: ignore[valid-type]
    snap_int8: bool = False
    granularity: Literal["channel", "tensor"] = "channel"

    @model_validator(mode="after")
    def _check(self) -> QuantizeSettings:
        given = [k for k in ("bits", "bits_from", "search") if getattr(self, k) is not None]
        if len(given) != 1:
            fail("bits", f"give exactly one of bits, bits_from, search (got {', '.join(given) or 'none'})")
        vals = self.bits.values() if isinstance(self.bits, dict) else [self.bits] if self.bits is not None else []
        for b in vals:
            if isinstance(b, bool) or not 1 <= b <= MAX_BITS:
                fail("bits", f"{b!r} is out of range; allowed: integers from 1 to {MAX_BITS}")
        if self.method == "uniform":
            low = [b for b in vals if b < 2] + [b for b in (self.search.candidates if self.search else []) if b < 2]
            if low:
                fail("bits", "the uniform grid is symmetric and needs >= 2 bits; use method: kmeans for 1 bit")
        if self.snap_int8 and self.method != "kmeans":
            fail("snap_int8", "only k-means codebooks are snapped (uniform codes are integers already)")
        return self


def selected(model: nn.Module, s: QuantizeSettings) -> list[str]:
    """Codable tensor keys whose layer matches ``layers`` (all when null); unmatched patterns fail."""
    keys = list(codable(model))
    if s.layers is None:
        return keys
    layers = sorted({layer_of(k) for k in keys})
    for pat in s.layers:
        if not any(fnmatch.fnmatchcase(layer_of(k), pat) for k in keys):
            fail("layers", f"{pat!r} matches no layer; allowed: {', '.join(layers)}")
    return [k for k in keys if any(fnmatch.fnmatchcase(layer_of(k), p) for p in s.layers)]


def read_allocation(path: str, name: str | None) -> dict[str, int]:
    """{layer: bits} from a HAWQ allocation file (the layouts compress.hessian / studies write)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and isinstance(data.get("allocations"), list):
        allocs = data["allocations"]
        if not allocs:
            fail("bits_from", f"{path} holds no allocation")
        labels = [str(a.get("name", a.get("budget", i))) for i, a in enumerate(allocs)]
        pick = allocs[0] if name is None else next((a for a, lab in zip(allocs, labels) if lab == name), None)
        if pick is None:
            fail("allocation", f"{name!r} is not in {path}; allowed: {', '.join(labels)}")
        bits = pick.get("weight_bits") or pick.get("bits") or pick.get("allocation")
    else:
        bits = data.get("weight_bits") or data.get("allocation") or data.get("bits") or data
    if not isinstance(bits, dict):
        fail("bits_from", f"{path}: no {{layer: bits}} allocation found")
    return {str(k): int(v) for k, v in bits.items()}


def fixed_bits(keys: list[str], s: QuantizeSettings) -> dict[str, int]:
    """{tensor key: bits} from ``bits`` or ``bits_from``."""
    if s.bits_from is not None:
        if not Path(s.bits_from).exists():
            fail("bits_from", f"{s.bits_from} not found: run the hawq stage first, or give bits")
        alloc = read_allocation(s.bits_from, s.allocation)
        missing = sorted({layer_of(k) for k in keys} - set(alloc))
        if missing:
            fail("bits_from", f"{s.bits_from} has no width for {', '.join(missing)}; allowed layers: {', '.join(sorted(alloc))}")
        for lay, b in alloc.items():
            if not 1 <= b <= MAX_BITS:
                fail("bits_from", f"{s.bits_from} gives {lay} {b} bits; allowed: 1 to {MAX_BITS}")
        return {k: alloc[layer_of(k)] for k in keys}
    if isinstance(s.bits, dict):
        for pat in s.bits:
            if not any(fnmatch.fnmatchcase(layer_of(k), pat) for k in keys):
                fail("bits", f"{pat!r} matches no quantized layer; allowed: {', '.join(sorted({layer_of(k) for k in keys}))}")
        out = {}
        for k in keys:
            b = next((v for pat, v in s.bits.items() if fnmatch.fnmatchcase(layer_of(k), pat)), None)
            if b is None:
                fail("bits", f"no width for layer {layer_of(k)}; add a glob that matches it")
            out[k] = b
        return out
    return {k: int(s.bits) for k in keys}


def decoded(w: torch.Tensor, keep: torch.Tensor, bits: int, s: QuantizeSettings, seed: int) -> torch.Tensor:
    """The weight after quantization at ``bits`` (no fine-tuning): what ``share_``/``uniform_`` would give."""
    if s.method == "kmeans":
        c, codes = kmeans_1d(w[keep], bits, s.init, seed)
        out = torch.zeros_like(w)
        out[keep] = c[codes]
        return out
    spec = weight_spec(bits, granularity=s.granularity)
    q, sc, z = quantize_weight(w * keep, spec)
    return dequantize_weight(q, sc, z, spec)


@torch.no_grad()
def search_bits(ctx: RecipeContext, keys: list[str], s: QuantizeSettings, seed: int) -> tuple[dict[str, int], list[dict]]:
    """Greedy per-layer widths (see the module docstring); returns (bits, trials)."""
    from compress.train import evaluate_model

    cands = sorted(set(s.search.candidates), reverse=True)
    tensors = codable(ctx.model)
    w = {k: current(*tensors[k]).clone() for k in keys}
    keep = {k: keep_mask(*tensors[k]) for k in keys}
    xv, yv = ctx.val if s.search.eval_size is None else (ctx.val[0][: s.search.eval_size], ctx.val[1][: s.search.eval_size])
    cache: dict[tuple[str, int], torch.Tensor] = {}

    def q(k: str, b: int) -> torch.Tensor:
        if (k, b) not in cache:
            cache[(k, b)] = decoded(w[k], keep[k], b, s, seed)
        return cache[(k, b)]

    # a float copy whose weights are overwritten per trial (prune hooks stay: pruned positions are 0 anyway)
    probe = _plain_copy(ctx.model)
    ptensors = codable(probe)

    def accuracy(bits: dict[str, int]) -> float:
        for k, b in bits.items():
            m, p = ptensors[k]
            getattr(m, p).copy_(q(k, b))
        return evaluate_model(probe, xv, yv)[1]

    ref = evaluate_model(ctx.model, xv, yv)[1]
    bits = {k: cands[0] for k in keys}
    trials = [{"bits": dict(bits), "val_acc": accuracy(bits)}]
    for k in sorted(keys, key=lambda k: -w[k].numel()):
        for b in cands[1:]:
            trial = {**bits, k: b}
            acc = accuracy(trial)
            trials.append({"bits": trial, "val_acc": acc})
            if acc < ref - s.search.tolerance:
                break
            bits = trial
    return bits, trials


def _plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy with every prune reparametrisation made permanent (plain weights)."""
    import copy

    from compress.prune.masks import remove_masks

    return remove_masks(copy.deepcopy(model)).eval()


class QuantizeStep(Step):
    name = "quantize"
    Settings = QuantizeSettings
    phase = 2
    once = True

    def check(self, s: QuantizeSettings, model: nn.Module, done: list[str]) -> None:
        keys = selected(model, s)
        if s.bits_from is None or Path(s.bits_from).exists():  # an allocation produced by an earlier stage is checked at run time
            if s.search is None:
                fixed_bits(keys, s)

    def run(self, ctx: RecipeContext, s: QuantizeSettings, index: int) -> dict:
        keys = selected(ctx.model, s)
        seed = ctx.step_seed(index)
        info: dict = {}
        if s.search is not None:
            bits, trials = search_bits(ctx, keys, s, seed)
            info["search_trials"] = len(trials)
        else:
            bits = fixed_bits(keys, s)
        tensors = codable(ctx.model)
        for k in keys:
            m, p = tensors[k]
            keep = keep_mask(m, p)
            if p == "weight" and is_masked(m):
                torch_prune.remove(m, "weight")  # plain weight holding the zeros; ``keep`` carries the mask on
            if s.method == "kmeans":
                share_(m, p, keep, bits[k], s.init, seed, s.snap_int8)
            else:
                uniform_(m, p, keep, bits[k], s.granularity)
        n = {k: int(keep_mask(*tensors[k]).sum()) for k in keys}
        info["bits"] = {k.removesuffix(".weight"): bits[k] for k in keys}
        info["code_bits_mean"] = round(sum(bits[k] * n[k] for k in keys) / max(sum(n.values()), 1), 3)
        return info
