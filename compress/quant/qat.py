"""Quantization-aware training (QAT): fine-tune a float model through fake-quant layers.

Forward: every prunable layer sees fake-quantized weights and a fake-quantized input
(compress.quant.fakequant).  Backward: straight-through estimator (Bengio et al. 2013),
    d x^/d x = 1 inside the clipping range, 0 outside.
How the ranges are set is the ``quantizer``, one of :data:`compress.quant.quantizers.QUANTIZERS`:

* ``fixed`` — weights: per-channel min-max of the current weight at every step (the
  :class:`~compress.quant.fakequant.QLinear` default); activations: the calibrated input
  range of each layer (calibration/ranges.json), frozen during training.
* ``lsq`` — Learned Step size Quantization (Esser et al., ICLR 2020, :mod:`compress.quant.lsq`):
  trainable steps of the weights (per channel) and of each layer's input, initialised from the
  weights and the calibrated ranges.

Everything here works through the quantizer interface of
:class:`~compress.quant.fakequant._QuantMixin` (``quant_params``, ``quant_state``, ``weight_codes``,
``act_range``), so a new quantizer needs no change in this file.

``export_quantized`` turns a trained QAT model into integer codes + (s, z) per channel
(:class:`compress.quant.packing.QTensor`) and exact activation ranges, the inputs of the
packed / int8 deployment.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from compress.models import prunable_layers
from compress.quant.fakequant import _QuantMixin, act_spec, quantize_model, weight_spec
from compress.quant.packing import QTensor, save_packed
from compress.quant.quantizers import quantizer as get_quantizer


# --------------------------------------------------------------------------- prepare / train
def prepare_qat(model: nn.Module, wbits: int | Mapping[str, int | None], abits: int | None | Mapping[str, int | None],
                act_ranges: Mapping[str, tuple[float, float]] | None = None, quantizer: str = "fixed",
                granularity: str = "channel", rounding: str = "nearest") -> nn.Module:
    """Deep copy of ``model`` with fake-quant layers ready for QAT (weights shared with nothing).

    ``act_ranges``: calibrated input range per prunable layer (``fixed``: frozen; ``lsq``: init).
    """
    q = get_quantizer(quantizer)
    return quantize_model(model, wbits, abits, act_ranges, weight_spec(8, granularity=granularity, rounding=rounding),
                          act_spec(8, rounding=rounding), module_classes=(q.linear, q.conv))


def qat_layers(model: nn.Module) -> dict[str, _QuantMixin]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _QuantMixin)}


def make_qat_optimizer(model: nn.Module, cfg, lsq_lr: float) -> torch.optim.Optimizer:
    """compress.train.make_optimizer with the quantizers' own parameters (``quant_params``: LSQ step sizes)
    in their own group at ``lsq_lr`` (no weight decay)."""
    from compress.train import make_optimizer

    steps = []
    for m in qat_layers(model).values():
        own = dict(m.named_parameters(recurse=False))
        steps += [own[n] for n in m.quant_params if n in own]
    ids = {id(p) for p in steps}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    opt = make_optimizer(rest, cfg)
    if steps:
        opt.add_param_group({"params": steps, "lr": lsq_lr, "weight_decay": 0.0})
    return opt


def train_qat(model_q: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], cfg, *,
              seed: int, lsq_lr: float = 1e-3, on_eval=None, desc: str = "qat", progress: bool = True,
              restore_best: bool = True):
    """Fine-tune the fake-quant model with compress.train.fit (cfg: fit's knobs).  Returns History.
    With ``restore_best`` the weights (and LSQ steps) of the lowest validation loss are kept.

    Frozen activation ranges (``fixed``) are buffers, so only weights, biases and LSQ steps train.
    """
    from compress.train import fit

    g = torch.Generator().manual_seed(seed)
    for m in qat_layers(model_q).values():
        m.generator = g  # stochastic rounding, when chosen, is seeded
    opt = make_qat_optimizer(model_q, cfg, lsq_lr)
    return fit(model_q, train, val, cfg, seed=seed, optimizer=opt, on_eval=on_eval, desc=desc, progress=progress,
               restore_best=restore_best)


# --------------------------------------------------------------------------- export
@torch.no_grad()
def export_quantized(model_q: nn.Module) -> tuple[dict[str, QTensor], dict[str, torch.Tensor], dict[str, dict]]:
    """(weight codes per layer ``{name}.weight``, every other float tensor of the original model,
    ``{layer: {"lo", "hi", "spec"}}`` activation quantizers) of a QAT model.  The activation entries
    use the layout of :func:`compress.quant.ptq.save_packed_model`; for LSQ, (lo, hi) is the range
    whose lecture parameters are exactly the learned (1/Δ, z).

    Keys are those of the float model's state dict, so :func:`baked_state_dict` loads into it.
    """
    layers = qat_layers(model_q)
    qts, acts = {}, {}
    for name, m in layers.items():
        if m.wspec is not None:
            q, s, z, spec = m.weight_codes()
            qts[f"{name}.weight"] = QTensor(q=q, s=s, z=z, spec=spec)
        if m.aspec is not None:
            lo, hi = m.act_range()
            acts[name] = {"lo": lo, "hi": hi, "spec": dataclasses.asdict(dataclasses.replace(m.aspec, rounding="nearest"))}
    state = {f"{name}.{leaf}" for name, m in layers.items() for leaf in m.quant_state}  # quantizer state
    floats = {k: v.detach().float() for k, v in model_q.state_dict().items() if k not in qts and k not in state}
    return qts, floats, acts


def baked_state_dict(qts: Mapping[str, QTensor], floats: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of the float architecture with every quantized weight replaced by its dequantized value."""
    return {**{k: v for k, v in floats.items()}, **{k: qt.dequantize() for k, qt in qts.items()}}


def save_qat_packed(model_q: nn.Module, path, meta: dict | None = None):
    """Write the QAT result as a bit-packed artifact (``compress.quant.packing``) in the layout of the
    quant core's ``packed`` runtime: codes + (s, z) per channel, float tensors, activation quantizers."""
    qts, floats, acts = export_quantized(model_q)
    return save_packed(path, qts, floats, {**(meta or {}), "acts": acts})


def weight_bits_average(qts: Mapping[str, QTensor], model: nn.Module) -> float:
    """Parameter-weighted mean bits of all prunable-layer weights (float ones count 32)."""
    total, bits = 0, 0.0
    for name, layer in prunable_layers(model).items():
        n = layer.weight.numel()
        b = qts[f"{name}.weight"].spec.bits if f"{name}.weight" in qts else 32
        total, bits = total + n, bits + n * b
    return bits / max(total, 1)


__all__ = [
    "baked_state_dict",
    "export_quantized",
    "make_qat_optimizer",
    "prepare_qat",
    "qat_layers",
    "save_qat_packed",
    "train_qat",
    "weight_bits_average",
]

