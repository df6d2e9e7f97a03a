"""Quantization: number formats and rounding, calibration observers, fake quantization (PTQ
and the modules QAT builds on), bit-packed storage and real int8 deployment.

Shared API (other families import these names):
    affine:     qrange, affine_params, quantize, dequantize, torch_scale
    rounding:   round_, ROUNDING_MODES
    formats:    FloatFormat, FLOAT_FORMATS, round_to_format, unit_roundoff
    fakequant:  QuantSpec, FakeQuantSTE, fake_quant, QLinear, QConv2d, quantize_model, quantize_model_float
    observers:  OBSERVERS, make_observer, calibrate
    packing:    pack, unpack, QTensor, save_packed, load_packed
"""
from compress.quant.affine import (
                                      affine_params,
                                      dequantize,
                                      qrange,
                                      quantize,
                                      torch_scale,
)
from compress.quant.fakequant import (
                                      FakeQuantSTE,
                                      QConv2d,
                                      QLinear,
                                      QuantSpec,
                                      act_spec,
                                      fake_quant,
                                      fake_quant_weight,
                                      quantize_model,
                                      quantize_model_float,
                                      weight_spec,
)
from compress.quant.formats import (
                                      FLOAT_FORMATS,
                                      FloatFormat,
                                      round_to_format,
                                      unit_roundoff,
)
from compress.quant.observers import OBSERVERS, calibrate, make_observer
from compress.quant.packing import QTensor, load_packed, pack, save_packed, unpack
from compress.quant.rounding import ROUNDING_MODES, round_

__all__ = [
                                      "FLOAT_FORMATS",
                                      "OBSERVERS",
                                      "ROUNDING_MODES",
                                      "FakeQuantSTE",
                                      "FloatFormat",
                                      "QConv2d",
                                      "QLinear",
                                      "QTensor",
                                      "QuantSpec",
                                      "act_spec",
                                      "affine_params",
                                      "calibrate",
                                      "dequantize",
                                      "fake_quant",
                                      "fake_quant_weight",
                                      "load_packed",
                                      "make_observer",
                                      "pack",
                                      "qrange",
                                      "quantize",
                                      "quantize_model",
                                      "quantize_model_float",
                                      "round_",
                                      "round_to_format",
                                      "save_packed",
                                      "torch_scale",
                                      "unit_roundoff",
                                      "unpack",
                                      "weight_spec",
]
