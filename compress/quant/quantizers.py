"""QAT quantizers: the registry, the only source of the names ``qat.quantizer`` accepts.

A quantizer is a pair of fake-quant layer classes (a ``QLinear`` and a ``QConv2d`` subclass) that implement
the interface of :class:`compress.quant.fakequant._QuantMixin`: the forward (``weight_fake_quant``,
``input_fake_quant``), what it learns (``quant_params``: own optimizer group at ``qat.lsq_lr``), what is
quantizer state rather than float-model tensors (``quant_state``) and what export stores
(``weight_codes``, ``act_range``).  :mod:`compress.quant.qat` prepares, trains and exports through that
interface only.

Adding a quantizer (PACT, DoReFa, ...): one file with the two layer classes (see :mod:`compress.quant.lsq`)
and one ``QUANTIZERS`` line below.
"""
from __future__ import annotations

from dataclasses import dataclass

from compress.quant.fakequant import QConv2d, QLinear
from compress.quant.lsq import LSQConv2d, LSQLinear


@dataclass(frozen=True)
class Quantizer:
    """One registered QAT quantizer: its layer classes and what callers may say about it."""

    linear: type[QLinear]
    conv: type[QConv2d]
    description: str  # one line for docs/PARAMS.md
    deploy_note: str = ""  # appended to the notes of a variant deployed on ONNX Runtime int8

    @property
    def learns_params(self) -> bool:
        """Whether the quantizer trains parameters of its own (then they get their own learning rate)."""
        return bool(self.linear.quant_params)


QUANTIZERS: dict[str, Quantizer] = {
    "fixed": Quantizer(QLinear, QConv2d, "calibrated activation ranges, per-step min-max weights"),
    "lsq": Quantizer(LSQLinear, LSQConv2d, "learned step sizes",
                     deploy_note="LSQ weight steps are re-derived by ORT as max|w|/127 per channel"),
}


def quantizer(name: str, key: str = "qat.quantizer") -> Quantizer:
    """The registered quantizer ``name``; one-line ValueError naming ``key`` otherwise."""
    if name not in QUANTIZERS:
        raise ValueError(f"{key} = {name!r} is unknown; allowed: {', '.join(QUANTIZERS)}")
    return QUANTIZERS[name]


__all__ = ["QUANTIZERS", "Quantizer", "quantizer"]
