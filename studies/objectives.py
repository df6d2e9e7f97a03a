"""What a trial measures: one compressed model built from a per-layer config, scored on the
validation split, written as a real artifact whose bytes are the size objective.

Pure PyTorch (no Optuna, no MLflow), so the same evaluation serves the search stage, the CLI
workers and the tests.  Configs (JSON-able, keyed by ``compress.models.prunable_layers`` names):

* bits:      ``{"weight_bits": {layer: b}, "act_bits": {layer: b | None}}``
  PTQ with ``compress.quant.quantize_model`` (weights per-channel symmetric, activations
  per-tensor with the calibrated ranges); artifact = ``compress.quant.packing.save_packed``
  (bit-packed codes + scales), reloaded and checked against the simulated weights.
* sparsity:  ``{"sparsity": {layer: s}}``
  layer-wise magnitude pruning to sparsity s (``compress.prune.magnitude``), no fine-tune;
  artifact = ``compress.prune.sparse_io.save_sparse`` (bitmask or narrow CSR).
* joint:     both keys: prune first, then quantize the survivors; artifact = the packed file
  of the pruned weights (zeros cost their code) plus nothing else — see ``joint_bytes``.

Latency (optional) is measured on the artifact *as deployed*: loaded back and run in eager
PyTorch fp32 (no sub-8-bit or sparse kernels exist here), median of repeats at batch 1 and 256.
"""
from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from compress.checkpoint import load_into
from compress.data import load_meta, load_split
from compress.evaluate import measure_latency
from compress.models import count_params, prunable_layers
from compress.runtimes import model_from_spec
from compress.train import evaluate_model


@dataclass
class Context:
    """Everything a trial needs, loaded once per worker."""

    model: nn.Module  # the fp32 baseline, eval mode
    spec: dict  # compress.variants.model_spec of the baseline
    x: torch.Tensor  # (N, C, H, W) validation images
    y: torch.Tensor  # (N,)
    ranges: dict[str, tuple[float, float]] | None  # input activation range per layer (calibration)
    meta: dict = field(default_factory=dict)  # dataset meta (dataset actually used)
    latency: bool = True
    repeats: int = 5
    fingerprints: dict[str, str] = field(default_factory=dict)  # per study kind: hash of the inputs it reads

    @property
    def layers(self) -> list[str]:
        return list(prunable_layers(self.model))

    def layer_sizes(self) -> dict[str, int]:
        return {n: m.weight.numel() for n, m in prunable_layers(self.model).items()}


# the search settings that change a trial's result, per study kind
FINGERPRINT_KEYS = {"bits": ("weight_bits", "act_bits", "calibration"), "sparsity": ("sparsity_levels",),
                    "joint": ("joint_weight_bits", "act_bits", "sparsity_levels", "calibration")}


def _sha(*blobs: bytes) -> str:
    h = hashlib.sha256()
    for b in blobs:
        h.update(hashlib.sha256(b).digest())
    return h.hexdigest()


def load_context(P, need_ranges: bool = True) -> Context:
    """Baseline + validation subset + calibrated ranges from the files of params ``P``.

    The fingerprints hash those inputs and the search settings that change a trial's result
    (per study kind), so a changed baseline or candidate set starts a new study instead of
    mixing trials, while an unrelated change (another study's candidates) resumes.
    """
    S = P.search
    base = Path(P.train.out)
    spec_path, weights = base / "spec.json", base / "model.safetensors"
    if not spec_path.exists():
        raise FileNotFoundError(f"{spec_path} missing: run the train stage first (dvc repro train)")
    spec = json.loads(spec_path.read_text())
    model = model_from_spec(spec)
    load_into(model, weights)
    model.eval()
    meta = load_meta(P.data.out)
    x, y = load_split(P.data.out, "val")
    if S.eval_size is not None:
        x, y = x[: S.eval_size], y[: S.eval_size]
    ranges, ranges_blob = None, b""
    rpath = Path(S.ranges)
    if need_ranges:
        if not rpath.exists():
            raise FileNotFoundError(f"{rpath} missing: run the calibrate stage first (dvc repro calibrate)")
        ranges_blob = rpath.read_bytes()
        ranges = read_ranges(json.loads(ranges_blob), S.calibration, str(rpath))
    common = _sha(weights.read_bytes(), json.dumps(meta, sort_keys=True).encode(), str(S.eval_size).encode())
    fps = {kind: _sha(common.encode(), json.dumps({k: getattr(S, k) for k in keys}, sort_keys=True).encode(),
                      ranges_blob if kind != "sparsity" else b"")
           for kind, keys in FINGERPRINT_KEYS.items()}
    return Context(model, spec, x, y, ranges, meta, S.latency, S.latency_repeats, fps)


def read_ranges(data: dict, method: str, source: str = "ranges.json") -> dict[str, tuple[float, float]]:
    """``{method: {layer: [lo, hi]}}`` (optionally under a ``"ranges"`` key) -> one method's ranges."""
    table = data.get("ranges", data)
    if method not in table:
        raise ValueError(f"search.calibration = {method!r} is not in {source}; allowed: {', '.join(sorted(table))}")
    return {k: (float(v[0]), float(v[1])) for k, v in table[method].items()}


# --------------------------------------------------------------------------- helpers
def _latency(model: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    out = {}
    with torch.inference_mode():
        for b in (1, 256):
            ex = x[:b] if len(x) >= b else x.repeat((b + len(x) - 1) // len(x), 1, 1, 1)[:b]
            out[f"latency_ms_b{b}"] = measure_latency(model, ex, warmup=2, repeats=repeats)["median_ms"]
    return out


def avg_bits(wbits: dict[str, int], sizes: dict[str, int]) -> float:
    """Parameter-weighted mean weight bits over the prunable layers."""
    return sum(wbits[n] * sizes[n] for n in sizes) / sum(sizes.values())


def _wspec(bits: int):
    from compress.quant.fakequant import weight_spec

    return weight_spec(8).with_bits(bits)  # the template quantize_model uses


def write_packed(model: nn.Module, wbits: dict[str, int], path: Path, meta: dict | None = None) -> dict[str, torch.Tensor]:
    """Bit-packed artifact of ``model`` at ``wbits``; returns the dequantized weights it stores."""
    from compress.quant.fakequant import dequantize_weight, quantize_weight
    from compress.quant.packing import QTensor, save_packed

    layers = prunable_layers(model)
    qts, deq = {}, {}
    for n, layer in layers.items():
        spec = _wspec(wbits[n])
        q, s, z = quantize_weight(layer.weight.detach(), spec)
        qts[f"{n}.weight"] = QTensor(q, s, z, spec)
        deq[f"{n}.weight"] = dequantize_weight(q, s, z, spec)
    floats = {k: v for k, v in model.state_dict().items() if k not in qts}
    save_packed(path, qts, floats, meta=meta or {})
    return deq


def load_packed_model(spec: dict, path: Path) -> nn.Module:
    """The deployed form of a packed artifact: dequantized into the fp32 model (eager)."""
    from compress.quant.packing import load_packed

    qts, floats, _ = load_packed(path)
    model = model_from_spec(spec)
    model.load_state_dict({**floats, **{k: qt.dequantize() for k, qt in qts.items()}})
    return model.eval()


def magnitude_masks(model: nn.Module, levels: dict[str, float]) -> dict[str, torch.Tensor]:
    """Layer-wise magnitude masks, sparsity ``levels[layer]`` (Han et al. 2015)."""
    from compress.prune.magnitude import compute_masks, magnitude_scores

    masks = {}
    for n, s in levels.items():
        if s > 0:
            masks.update(compute_masks(magnitude_scores(model, [n]), criterion="percentage", scope="layer", sparsity=s))
    return masks


def pruned_copy(model: nn.Module, levels: dict[str, float]) -> nn.Module:
    from compress.prune.masks import apply_masks, remove_masks

    m = copy.deepcopy(model)
    apply_masks(m, magnitude_masks(m, levels))
    return remove_masks(m).eval()  # plain weights holding the zeros


def weight_sparsity(model: nn.Module) -> float:
    ws = [m.weight.detach() for m in prunable_layers(model).values()]
    return float(sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws))


# --------------------------------------------------------------------------- evaluators
def eval_bits(ctx: Context, cfg: dict, workdir: Path | None = None, keep: Path | None = None,
              model: nn.Module | None = None) -> dict[str, float]:
    """PTQ at a per-layer allocation: validation accuracy (simulated), packed bytes, latency."""
    from compress.quant.fakequant import quantize_model

    base = model if model is not None else ctx.model
    wbits, abits = cfg["weight_bits"], cfg["act_bits"]
    qm = quantize_model(base, wbits, abits, ctx.ranges).eval()
    _, acc = evaluate_model(qm, ctx.x, ctx.y)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = keep or Path(tmp) / "model.cspk"
        deq = write_packed(base, wbits, path, meta={"weight_bits": wbits, "act_bits": abits})
        size = path.stat().st_size
        deployed = load_packed_model(ctx.spec, path)
    # the artifact must hold exactly the simulated weights
    sim = {f"{n}.weight": m.weight_fake_quant().detach() for n, m in prunable_layers(qm).items()}
    for k, w in deq.items():
        if not torch.equal(w, sim[k]) or not torch.equal(deployed.state_dict()[k], w):
            raise RuntimeError(f"packed artifact of {k} does not reload to the simulated weights")
    sizes = ctx.layer_sizes()
    a = [b for b in abits.values() if b is not None]
    out = {"accuracy": acc, "size_bytes": float(size), "avg_weight_bits": avg_bits(wbits, sizes),
           "act_bits": float(np.mean(a)) if a else float("nan"), "params": float(count_params(deployed, nonzero=True)),
           "sparsity": weight_sparsity(deployed)}
    if ctx.latency:
        out.update(_latency(deployed, ctx.x, ctx.repeats))
    return out


def eval_sparsity(ctx: Context, cfg: dict, workdir: Path | None = None, keep: Path | None = None) -> dict[str, float]:
    """Layer-wise magnitude pruning: validation accuracy, compact sparse bytes, latency."""
    from compress.prune.sparse_io import load_sparse, save_sparse

    pm = pruned_copy(ctx.model, cfg["sparsity"])
    _, acc = evaluate_model(pm, ctx.x, ctx.y)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = keep or Path(tmp) / "model.safetensors"
        save_sparse(pm.state_dict(), path, sparse_keys=[f"{n}.weight" for n in ctx.layers])
        size = path.stat().st_size
        deployed = model_from_spec(ctx.spec)
        deployed.load_state_dict(load_sparse(path))
        deployed.eval()
    for k, v in pm.state_dict().items():
        if not torch.equal(deployed.state_dict()[k], v):
            raise RuntimeError(f"sparse artifact of {k} does not reload to the pruned weights")
    out = {"accuracy": acc, "size_bytes": float(size), "avg_weight_bits": 32.0, "act_bits": float("nan"),
           "params": float(count_params(deployed, nonzero=True)), "sparsity": weight_sparsity(deployed)}
    if ctx.latency:
        out.update(_latency(deployed, ctx.x, ctx.repeats))
    return out


def eval_joint(ctx: Context, cfg: dict, workdir: Path | None = None, keep: Path | None = None) -> dict[str, float]:
    """Prune (layer-wise magnitude), then PTQ the survivors (symmetric: zeros stay exactly 0).

    Artifact: ``studies.sparse_packed`` (bitmask + bit-packed nonzero codes + scales), so
    both the bit widths and the sparsity lower the bytes.
    """
    from compress.quant.fakequant import quantize_model
    from studies.sparse_packed import load_sparse_packed, save_sparse_packed

    pm = pruned_copy(ctx.model, cfg["sparsity"])
    wbits, abits = cfg["weight_bits"], cfg["act_bits"]
    qm = quantize_model(pm, wbits, abits, ctx.ranges).eval()
    _, acc = evaluate_model(qm, ctx.x, ctx.y)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = keep or Path(tmp) / "model.safetensors"
        deq = save_sparse_packed(path, pm.state_dict(), wbits, _wspec)
        size = path.stat().st_size
        deployed = model_from_spec(ctx.spec)
        deployed.load_state_dict(load_sparse_packed(path, _wspec))
        deployed.eval()
    sim = {f"{n}.weight": m.weight_fake_quant().detach() for n, m in prunable_layers(qm).items()}
    for k, w in deq.items():
        if not torch.equal(w, sim[k]) or not torch.equal(deployed.state_dict()[k], w):
            raise RuntimeError(f"sparse packed artifact of {k} does not reload to the simulated weights")
    a = [b for b in abits.values() if b is not None]
    out = {"accuracy": acc, "size_bytes": float(size), "avg_weight_bits": avg_bits(wbits, ctx.layer_sizes()),
           "act_bits": float(np.mean(a)) if a else float("nan"), "params": float(count_params(deployed, nonzero=True)),
           "sparsity": weight_sparsity(deployed)}
    if ctx.latency:
        out.update(_latency(deployed, ctx.x, ctx.repeats))
    return out
