"""Runtimes for quantized variants that run on float kernels (registered by name):

* ``quant-sim``   the simulated form: fp32 weights fake-quantized on the fly (``sim.json`` recipe).
* ``packed``      the bit-packed artifact (``model.cspk``): integer weights unpacked and
                  dequantized once at load, activations fake-quantized with the stored ranges.
                  It runs fp32 kernels: this CPU and PyTorch have no int4 / int2 (or 3..7-bit)
                  GEMM kernels, so sub-8-bit variants save bytes, not time.
* ``lowp-float``  fp16 / bf16 / fp8 weights stored in that dtype, upcast to fp32 at load, each
                  layer input rounded to the format: fp32 kernels (no fp8 kernels on this CPU).
"""
from __future__ import annotations

from pathlib import Path

from compress.quant.ptq import load_float_weights, load_packed_model, load_sim
from compress.runtimes import ModulePredictor, model_from_spec, register_runtime
from compress.variants import Form, Manifest


@register_runtime("quant-sim")
def _quant_sim(folder: Path, manifest: Manifest, form: Form):
    model = load_sim(folder, form.files, model_from_spec(manifest.model))
    return ModulePredictor(model, "PyTorch eager fp32, fake-quant simulation")


@register_runtime("packed")
def _packed(folder: Path, manifest: Manifest, form: Form):
    model = load_packed_model(folder / form.files[0], model_from_spec(manifest.model))
    return ModulePredictor(model, "bit-packed weights dequantized at load, PyTorch eager fp32 kernels "
                                  "(+ activation fake-quant): no int4/int2 kernels on this CPU")


@register_runtime("lowp-float")
def _lowp(folder: Path, manifest: Manifest, form: Form):
    fmt = form.options["format"]
    model = load_float_weights(folder / form.files[0], model_from_spec(manifest.model), fmt,
                               form.options.get("activations", True))
    return ModulePredictor(model, f"{fmt} weights stored, upcast at load; PyTorch eager fp32 kernels with {fmt}-rounded layer inputs")
