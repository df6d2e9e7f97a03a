"""What a trial measures: one compressed model built from a per-layer config, scored on the
validation split, written as a real artifact whose bytes are the size objective.

Pure PyTorch (no Optuna, no MLflow), so the same evaluation serves the search stage, the CLI
workers and the tests.  Configs (JSON-able, keyed by ``compress.models.prunable_layers`` names):

* bits:      ``{"weight_bits": {layer: b}, "act_bits": {layer: b | None}}``
  PTQ with ``compress.quant.quantize_model`` (weights per-channel symmetric, activations
  per-tensor with the calibrated ranges); artifact = ``compress.quant.ptq.save_packed_model``
  (bit-packed codes + scales + activation ranges; runtime ``packed``), reloaded and checked
  against the simulated weights.
* sparsity:  ``{"sparsity": {layer: s}}``
  layer-wise magnitude pruning to sparsity s (``compress.prune.magnitude``), no fine-tune;
  artifact = ``compress.prune.sparse_io.save_sparse`` (bitmask or narrow CSR).
* joint:     both keys: prune first, then quantize the survivors; artifact =
  ``studies.sparse_packed`` (bitmask + bit-packed nonzero codes); its deployed form carries the
  weights only (no runtime is registered for it, so joint trials are not exported as variants).

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
from compress.models import model_from_spec
from compress.train import evaluate_model


@dataclass
class Context:
    """Everything a trial needs, loaded once per worker."""

    model: nn.Module  # the fp32 baseline, eval mode
    spec: dict  # compress.variants.model_spec of the baseline
    x: torch.Tensor  # (N, C, H, W) validation images
    y: torch.Tensor  # (N,)
    ranges: dict[int | None, dict[str, tuple[float, float]]] | None  # {act bits: {layer: input range}}
    meta: dict = field(default_factory=dict)  # dataset meta (dataset actually used)
    latency: bool = True
    repeats: int = 5
    threads: int | None = 1  # torch threads while timing (1: no spin-waiting thread pools on a shared CPU)
    fingerprints: dict[str, str] = field(default_factory=dict)  # per study kind: hash of the inputs it reads
    train: tuple[torch.Tensor, torch.Tensor] | None = None  # the train split (QAT trials only)

    @property
    def layers(self) -> list[str]:
        return list(prunable_layers(self.model))

    def layer_sizes(self) -> dict[str, int]:
        return {n: m.weight.numel() for n, m in prunable_layers(self.model).items()}


# the search settings that change a trial's result, per study kind
FINGERPRINT_KEYS = {"bits": ("weight_bits", "act_bits", "calibration", "trial_mode", "qat_steps", "qat_lr"), "sparsity": ("sparsity_levels",),
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
    from stages.pipeline import BASELINE, PREPARED, RANGES

    base = Path(BASELINE)
    spec_path, weights = base / "spec.json", base / "model.safetensors"
    if not spec_path.exists():
        raise FileNotFoundError(f"{spec_path} missing: run the train stage first (dvc repro train)")
    spec = json.loads(spec_path.read_text())
    model = model_from_spec(spec)
    load_into(model, weights)
    model.eval()
    meta = load_meta(PREPARED)
    x, y = load_split(PREPARED, "val")
    if S.eval_size is not None:
        x, y = x[: S.eval_size], y[: S.eval_size]
    ranges, ranges_blob = None, b""
    rpath = Path(RANGES)
    if need_ranges:
        if not rpath.exists():
            raise FileNotFoundError(f"{rpath} missing: run the calibrate stage first (dvc repro calibrate)")
        ranges_blob = rpath.read_bytes()
        ranges = ranges_by_width(json.loads(ranges_blob), S.calibration, S.act_bits, str(rpath))
    common = _sha(weights.read_bytes(), json.dumps(meta, sort_keys=True).encode(), str(S.eval_size).encode())
    fps = {kind: _sha(common.encode(), json.dumps({k: getattr(S, k) for k in keys}, sort_keys=True).encode(),
                      ranges_blob if kind != "sparsity" else b"")
           for kind, keys in FINGERPRINT_KEYS.items()}
    train = load_split(PREPARED, "train") if S.trial_mode == "qat" and "bits" in S.studies else None
    return Context(model, spec, x, y, ranges, meta, S.latency, S.latency_repeats, S.latency_threads, fps, train)


def ranges_by_width(data: dict, method: str, widths: list[int | None], source: str) -> dict[int | None, dict]:
    """``{act_bits: {layer: (lo, hi)}}`` for each candidate width, from the calibrate stage's file.

    MSE / KL ranges depend on the width they were optimised for (``ranges_by_bits``); a width
    the calibrate stage did not optimise for uses the primary ranges (min-max style ranges do
    not depend on it).  An unknown observer is a one-line error naming ``search.calibration``.
    """
    from compress.quant.observers import read_ranges

    try:
        primary = read_ranges(data, method, None, source)
    except ValueError as e:
        raise ValueError(f"search.calibration = {method!r}: {e}") from None
    by_bits = data.get("ranges_by_bits", {})
    return {b: (read_ranges(data, method, b, source) if b is not None and str(b) in by_bits else primary) for b in widths}


def layer_ranges(table: dict[int | None, dict], abits: dict[str, int | None]) -> dict[str, tuple[float, float]]:
    """Each layer's input range for the width that layer's activations get."""
    return {n: table[b][n] for n, b in abits.items() if b is not None}


# --------------------------------------------------------------------------- helpers
def _latency(model: nn.Module, x: torch.Tensor, repeats: int, threads: int | None = 1) -> dict[str, float]:
    from compress.evaluate import set_threads

    out, before = {}, torch.get_num_threads()
    set_threads(threads)
    with torch.inference_mode():
        for b in (1, 256):
            ex = x[:b] if len(x) >= b else x.repeat((b + len(x) - 1) // len(x), 1, 1, 1)[:b]
            out[f"latency_ms_b{b}"] = measure_latency(model, ex, warmup=2, repeats=repeats)["median_ms"]
    torch.set_num_threads(before)
    return out


def avg_bits(wbits: dict[str, int], sizes: dict[str, int]) -> float:
    """Parameter-weighted mean weight bits over the prunable layers."""
    return sum(wbits[n] * sizes[n] for n in sizes) / sum(sizes.values())


def _wspec(bits: int):
    from compress.quant.fakequant import weight_spec

    return weight_spec(8).with_bits(bits)  # the template quantize_model uses


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
def qat_finetune(ctx: Context, qm: nn.Module, steps: int, report_every: int, lr: float, seed: int = 0,
                 report=None) -> nn.Module:
    """A short QAT fine-tune of the fake-quantized model (STE; fixed calibrated activation ranges),
    validating every ``report_every`` steps; ``report(step, val_acc)`` may raise to stop it."""
    from compress.config import TrainConfig
    from compress.train import fit

    if ctx.train is None:
        raise ValueError("search.trial_mode = 'qat' needs the train split in the context")
    cfg = TrainConfig(epochs=1, batch_size=128, optimizer="adam", lr=lr, schedule="constant", max_iterations=steps,
                      eval_every=report_every, device="cpu")
    fit(qm, ctx.train, (ctx.x, ctx.y), cfg, seed=seed, desc="qat-trial", progress=False,
        on_eval=(lambda r: report(int(r["iteration"]), float(r["val_acc"]))) if report else None)
    return qm.eval()


def eval_bits(ctx: Context, cfg: dict, workdir: Path | None = None, keep: Path | None = None,
              qat: dict | None = None, report=None) -> dict[str, float]:
    """PTQ (or, with ``qat={"steps", "report_every", "lr"}``, a short QAT fine-tune) at a per-layer
    allocation: validation accuracy (simulated), packed bytes, latency.

    The artifact is the quant family's packed form (``compress.quant.ptq.save_packed_model``:
    bit-packed codes + scales + activation ranges, runtime ``packed``); it must reload to
    exactly the simulated weights.
    """
    from compress.quant.fakequant import quantize_model
    from compress.quant.ptq import load_packed_model, save_packed_model

    wbits, abits = cfg["weight_bits"], cfg["act_bits"]
    qm = quantize_model(ctx.model, wbits, abits, layer_ranges(ctx.ranges, abits)).eval()  # a deep copy: QAT trains it
    if qat:
        if report is not None:  # the bytes are fixed by the bit widths: known before training (for the pruner)
            with tempfile.TemporaryDirectory(dir=workdir) as tmp:
                size0 = save_packed_model(qm, Path(tmp) / "m.cspk").stat().st_size
            report = (lambda step, value, r=report: r(step, value, size0))
        qat_finetune(ctx, qm, qat["steps"], qat["report_every"], qat["lr"], report=report)
    _, acc = evaluate_model(qm, ctx.x, ctx.y)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = keep or Path(tmp) / "model.cspk"
        save_packed_model(qm, path, meta={"search_config": cfg})
        size = path.stat().st_size
        deployed = load_packed_model(path, model_from_spec(ctx.spec))
    dep_layers = prunable_layers(deployed)
    for n, m in prunable_layers(qm).items():
        if not torch.equal(dep_layers[n].weight.detach(), m.weight_fake_quant().detach()):
            raise RuntimeError(f"packed artifact of {n} does not reload to the simulated weights")
    a = [b for b in abits.values() if b is not None]
    out = {"accuracy": acc, "size_bytes": float(size), "avg_weight_bits": avg_bits(wbits, ctx.layer_sizes()),
           "act_bits": float(np.mean(a)) if a else float("nan"), "params": float(count_params(ctx.model, nonzero=True)),
           "sparsity": weight_sparsity(deployed)}
    if ctx.latency:
        out.update(_latency(deployed, ctx.x, ctx.repeats, ctx.threads))
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
        out.update(_latency(deployed, ctx.x, ctx.repeats, ctx.threads))
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
    qm = quantize_model(pm, wbits, abits, layer_ranges(ctx.ranges, abits)).eval()
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
        out.update(_latency(deployed, ctx.x, ctx.repeats, ctx.threads))
    return out
