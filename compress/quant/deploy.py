"""Real int8 deployment on this CPU: ONNX Runtime (static QDQ -> QLinearConv / QGemm kernels)
and PT2E (``torchao.quantization.pt2e`` + ``X86InductorQuantizer`` + ``torch.compile`` with
inductor freezing -> oneDNN int8 kernels).  ``torch.ao.quantization`` is deprecated and unused.

Keeping deployed == simulated: the fp32 graph handed to either toolchain already carries the
simulated weights (exactly on the per-channel symmetric int8 grid, ``scale = max|w|/127``), the
weight quantizers use the same restricted range [-127, 127] so they re-derive the same grid,
and each Conv/Gemm input gets the calibrated range of the simulation (ORT:
``TensorQuantOverrides``; PT2E: the input observer's min/max).  What remains different: the
toolchains also quantize tensors the simulation keeps in float (e.g. conv outputs before
max-pool on ONNX Runtime), with min-max ranges over the same calibration batches.

Runtimes registered here: ``onnxruntime-fp32``, ``onnxruntime-int8``, ``pt2e-inductor-int8``.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compress.deploy.pt2e import Pt2eInductorPredictor, first_line
from compress.models import prunable_layers
from compress.quant.affine import affine_params, torch_scale
from compress.runtimes import register_runtime
from compress.variants import Form, Manifest, corrupt, missing


# --------------------------------------------------------------------------- helpers
def simulated_float_model(qmodel: nn.Module, base: nn.Module) -> nn.Module:
    """Copy of the float ``base`` whose prunable weights are ``qmodel``'s fake-quantized weights."""
    out = copy.deepcopy(base).eval()
    qlayers = prunable_layers(qmodel)
    with torch.no_grad():
        for name, layer in prunable_layers(out).items():
            q = qlayers[name]
            layer.weight.copy_(q.weight_fake_quant() if hasattr(q, "weight_fake_quant") else q.weight)
    return out


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor, opset: int = 17) -> Path:
    """fp32 ONNX with a dynamic batch axis (TorchScript exporter: it keeps parameter names
    such as ``conv1.weight`` as initializer names, which map Conv/Gemm nodes to layers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "B"}, "logits": {0: "B"}}, opset_version=opset)
    return path


_SHARED_QPARAM_OPS = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity")


class _Batches:
    """onnxruntime CalibrationDataReader over in-memory calibration batches."""

    def __init__(self, x: torch.Tensor, batch_size: int):
        self._it = iter([{"x": x[i : i + batch_size].numpy()} for i in range(0, len(x), batch_size)])

    def get_next(self):
        return next(self._it, None)


def quantize_onnx_int8(fp32_path: str | Path, int8_path: str | Path, x_calib: torch.Tensor,
                       act_ranges: Mapping[str, tuple[float, float]], batch_size: int = 256) -> Path:
    """Static int8 QDQ model (uint8 activations per tensor, int8 weights per channel, symmetric).

    Each Conv/Gemm input is pinned to the calibrated range of its layer (same (s, z) as the
    simulation); other tensors get ONNX Runtime's min-max over ``x_calib``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if len(x_calib) == 0:
        raise ValueError("the calibration set is empty; set data.calib_size >= 1")
    graph = onnx.load(str(fp32_path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    overrides = {}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
            layer = node.input[1].removesuffix(".weight")
            if layer not in act_ranges:
                raise ValueError(f"no calibrated range for layer {layer!r} (ONNX node {node.name}); rerun calibrate")
            lo, hi = act_ranges[layer]
            s, z = affine_params(lo, hi, 8, signed=False)
            qp = [{"scale": np.array(float(torch_scale(s)), dtype=np.float32), "zero_point": np.array(int(z), dtype=np.uint8)}]
            # ORT gives MaxPool / Flatten outputs their input's (s, z): pin the whole chain back to the
            # producing op (monotone ops commute with quantization, so the result is the same)
            t = node.input[0]
            overrides[t] = qp
            while t in producer and producer[t].op_type in _SHARED_QPARAM_OPS:
                t = producer[t].input[0]
                overrides[t] = qp
    quantize_static(str(fp32_path), str(int8_path), _Batches(x_calib, batch_size), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"TensorQuantOverrides": overrides, "WeightSymmetric": True, "ActivationSymmetric": False})
    return Path(int8_path)


def _x86_config():
    """X86InductorQuantizer's static config with min-max activation observers (ranges are
    overwritten with the calibrated ones) and the restricted weight range [-127, 127]."""
    from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    act = QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine,
                           is_dynamic=False, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    weight = QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_channel_symmetric,
                              ch_axis=0, is_dynamic=False, observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=2**-12))
    return QuantizationConfig(act, act, weight, None, False)


def _dynamic_batch():
    return ({0: torch.export.Dim("B", min=1, max=65536)},)


@torch.no_grad()
def export_pt2e_int8(model: nn.Module, path: str | Path, x_calib: torch.Tensor,
                     act_ranges: Mapping[str, tuple[float, float]], batch_size: int = 256) -> Path:
    """PT2E static int8: export -> prepare (X86InductorQuantizer) -> calibrate -> pin each
    Conv/Linear input observer to the calibrated range -> convert -> save the int8 program."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
    )

    if len(x_calib) == 0:
        raise ValueError("the calibration set is empty; set data.calib_size >= 1")
    example = (x_calib[:2].clone(),)  # clone: a view would serialize the whole calibration tensor
    # 1. capture the graph (dynamic batch), 2. insert observers
    gm = torch.export.export(model.eval(), example, dynamic_shapes=_dynamic_batch()).module()
    quantizer = X86InductorQuantizer().set_global(_x86_config())
    prepared = prepare_pt2e(gm, quantizer)
    # 3. calibrate every observer on the calibration batches
    for i in range(0, len(x_calib), batch_size):
        prepared(x_calib[i : i + batch_size])
    # 4. pin the inputs of conv / linear to the simulation's ranges
    pinned = set()
    for node in prepared.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            obs_in, obs_w = node.args[0], node.args[1]
            w_attr = obs_w.args[0] if obs_w.op == "call_module" else obs_w
            layer = str(w_attr.target).removesuffix(".weight").removesuffix("_weight")
            if layer not in act_ranges or obs_in.op != "call_module":
                raise ValueError(f"cannot map PT2E node {node.name} to a calibrated layer (got {layer!r})")
            obs = prepared.get_submodule(obs_in.target)
            lo, hi = act_ranges[layer]
            obs.min_val.fill_(lo)
            obs.max_val.fill_(hi)
            pinned.add(layer)
    if not pinned:
        raise ValueError("PT2E: no conv/linear input observers were found to pin")
    # 5. int8 program; drop the float parameters the folded int8 constants replaced
    converted = convert_pt2e(prepared)
    used = {n.target for n in converted.graph.nodes if n.op == "get_attr"}
    for name, _ in list(converted.named_parameters()) + list(converted.named_buffers()):
        if name not in used:
            mod, _, leaf = name.rpartition(".")
            delattr(converted.get_submodule(mod) if mod else converted, leaf)
    ep = torch.export.export(converted, example, dynamic_shapes=_dynamic_batch())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(path))
    return path


# --------------------------------------------------------------------------- runtimes
class OrtPredictor:
    def __init__(self, path: Path, description: str):
        import onnxruntime as ort

        from compress.deploy.engines import ort_options

        so = ort_options()  # the engines' threads, no spin-waiting
        if not Path(path).is_file():
            raise missing(path)
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  onnxruntime's InvalidProtobuf / Fail / InvalidGraph
            raise corrupt(path, f"onnxruntime: {first_line(e)}") from None
        self.description = f"ONNX Runtime {ort.__version__} {description}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.detach().contiguous().numpy()})[0])


@register_runtime("onnxruntime-fp32")
def _ort_fp32(folder: Path, manifest: Manifest, form: Form):
    return OrtPredictor(folder / form.files[0], "fp32")


@register_runtime("onnxruntime-int8")
def _ort_int8(folder: Path, manifest: Manifest, form: Form):
    return OrtPredictor(folder / form.files[0], "int8 (static QDQ: QLinearConv/QGemm kernels)")


@register_runtime("pt2e-inductor-int8")
def _pt2e(folder: Path, manifest: Manifest, form: Form):
    return Pt2eInductorPredictor(folder / form.files[0])


__all__ = [
    "OrtPredictor",
    "Pt2eInductorPredictor",
    "export_onnx",
    "export_pt2e_int8",
    "quantize_onnx_int8",
    "simulated_float_model",
]
