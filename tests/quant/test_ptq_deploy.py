"""PTQ artifacts load back to exactly the simulated model; int8 deployment uses the same ranges."""

import numpy as np
import pytest
import torch

from compress.models import LeNet5, prunable_layers
from compress.quant.affine import affine_params
from compress.quant.deploy import export_onnx, quantize_onnx_int8, simulated_float_model
from compress.quant.fakequant import quantize_model_float
from compress.quant.observers import calibrate
from compress.quant.ptq import (
    build_int_sim,
    float_sim_cfg,
    int_sim_cfg,
    int_specs,
    load_float_weights,
    load_packed_model,
    save_float_weights,
    save_packed_model,
    write_sim,
)
from compress.runtimes import load_predictor
from compress.variants import Form, Manifest, model_spec

SPEC = model_spec("lenet5", {}, [1, 28, 28], 10)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    m = LeNet5().eval()
    x = torch.randn(64, 1, 28, 28)
    ranges = calibrate(m, x, ["minmax", "mse"], bits=8)
    return m, x, ranges


def _manifest(deploy, sim=None):
    return Manifest(variant="t", stage="ptq", method="ptq", model=SPEC, dataset="synthetic", seed=0, avg_weight_bits=4,
                    act_bits=8, sparsity=0.0, params=1, deploy=deploy, sim=sim)


@pytest.mark.parametrize("wbits,abits,gran", [(4, 8, "channel"), (2, 8, "channel"), (3, 4, "group"), (8, 8, "tensor"),
                                              ({"conv1": 8, "conv2": 4, "fc1": 2, "fc2": 3, "fc3": 8}, 8, "channel")])
def test_packed_artifact_runs_exactly_the_simulation(tmp_path, setup, wbits, abits, gran):
    m, x, ranges = setup
    ws, as_ = int_specs(8, abits, gran, group_size=32)
    qm = build_int_sim(m, wbits, abits, ranges["mse"], ws, as_)
    path = save_packed_model(qm, tmp_path / "model.cspk")
    # bytes: bit-packed weights, not float
    n_w = {n: l.weight.numel() for n, l in prunable_layers(m).items()}
    bits = wbits if isinstance(wbits, dict) else {n: wbits for n in n_w}
    assert path.stat().st_size < 1.1 * sum(n_w[k] * bits[k] / 8 for k in n_w) + 4 * 2000
    loaded = load_packed_model(path, LeNet5())
    assert torch.equal(loaded(x), qm(x))
    pred = load_predictor(tmp_path, _manifest(Form("packed", ["model.cspk"])))
    assert torch.equal(pred(x), qm(x)) and "fp32 kernels" in pred.description


def test_sim_form_roundtrip(tmp_path, setup):
    m, x, ranges = setup
    ws, as_ = int_specs(4, 4)
    qm = build_int_sim(m, 4, 4, ranges["minmax"], ws, as_)
    sim = write_sim(tmp_path, m, int_sim_cfg(4, 4, ranges["minmax"], ws, as_))
    assert torch.equal(load_predictor(tmp_path, _manifest(sim))(x), qm(x))


@pytest.mark.parametrize("fmt,ratio", [("fp16", 0.5), ("bf16", 0.5), ("fp8_e4m3", 0.25), ("fp8_e5m2", 0.25)])
def test_float_format_artifact(tmp_path, setup, fmt, ratio):
    m, x, _ = setup
    path = save_float_weights(m, fmt, tmp_path / "model.safetensors")
    fp32_bytes = sum(p.numel() * 4 for p in m.parameters())
    assert path.stat().st_size <= ratio * fp32_bytes + 1500  # real low-precision storage (+ safetensors header)
    ref = quantize_model_float(m, fmt)
    assert torch.equal(load_float_weights(path, LeNet5(), fmt, True)(x), ref(x))
    write_sim(tmp_path, m, float_sim_cfg(fmt, True))
    pred = load_predictor(tmp_path, _manifest(Form("lowp-float", ["model.safetensors"], {"format": fmt, "activations": True}),
                                              Form("quant-sim", ["sim.safetensors", "sim.json"])))
    assert torch.equal(pred(x), ref(x))


def test_onnx_int8_uses_simulation_ranges_and_matches(tmp_path, setup):
    import onnx
    from onnx import numpy_helper

    m, x, ranges = setup
    r = ranges["mse"]
    ws, as_ = int_specs(8, 8)
    qm = build_int_sim(m, 8, 8, r, ws, as_)
    fp32 = export_onnx(simulated_float_model(qm, m), tmp_path / "fp32.onnx", x[:2])
    path = quantize_onnx_int8(fp32, tmp_path / "int8.onnx", x, r)
    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    assert inits["conv1.weight_quantized"].dtype == np.int8 and inits["fc1.weight_quantized"].dtype == np.int8
    # the weight grid is the simulation's: int8 codes times ORT's scale equal the simulated weights
    w_sim = prunable_layers(qm)["fc1"].weight_fake_quant().detach().numpy()
    w_ort = inits["fc1.weight_quantized"].astype(np.float32) * inits["fc1.weight_scale"].reshape(-1, 1)
    assert np.allclose(w_ort, w_sim, rtol=1e-5, atol=1e-7)
    # every conv / gemm input is quantized with the calibrated (s, z) -- through MaxPool / Flatten too
    producer = {o: n for n in g.node for o in n.output}
    qparams = {n.input[0]: (float(inits[n.input[1]]), int(inits[n.input[2]])) for n in g.node if n.op_type == "QuantizeLinear"}
    for node in g.node:
        if node.op_type in ("Conv", "Gemm"):
            dq = producer[node.input[0]]
            assert dq.op_type == "DequantizeLinear"
            scale, zp = float(inits[dq.input[1]]), int(inits[dq.input[2]])
            wname = producer[node.input[1]].input[0].removesuffix("_quantized")
            lo, hi = r[wname.removesuffix(".weight")]
            s, z = affine_params(lo, hi, 8, signed=False)
            assert np.isclose(scale, 1 / float(s), rtol=1e-6) and zp == int(z)
    assert qparams  # the graph really has QuantizeLinear nodes
    pred = load_predictor(tmp_path, _manifest(Form("onnxruntime-int8", ["int8.onnx"])))
    out, ref = pred(x), qm(x)
    assert "int8" in pred.description
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95


@pytest.mark.slow
def test_pt2e_int8_matches_simulation(tmp_path, setup):
    """The saved PT2E program runs on oneDNN int8 kernels in a fresh process too, bit-identical
    to the exporting process.

    A fresh process (as the evaluate stage) once compiled the reference graph instead (dequantize
    -> fp32 conv -> quantize, no int8 kernel): torchao registers inductor's int8 passes only when
    ``x86_inductor_quantizer`` is imported, which the exporter had done and the loader had not.
    The outputs then differed by ~4e-4 (the reference graph's fp32 rounding vs the int8
    kernels'), and the pattern-match counters were zero.  Both are checked here.
    """
    from compress.quant.deploy import export_pt2e_int8

    m, x, ranges = setup
    ws, as_ = int_specs(8, 8)
    qm = build_int_sim(m, 8, 8, ranges["minmax"], ws, as_)
    path = export_pt2e_int8(simulated_float_model(qm, m), tmp_path / "m.pt2", x, ranges["minmax"])
    assert path.stat().st_size < 4 * sum(p.numel() for p in m.parameters())  # int8 weights, not fp32 + inputs
    pred = load_predictor(tmp_path, _manifest(Form("pt2e-inductor-int8", ["m.pt2"])))
    out, ref = pred(x), qm(x)
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()
    # a fresh process (as the evaluate stage) must load the saved program, compile it to the int8
    # kernels (inductor's qconv / qlinear weight-prepack passes fire) and give the same outputs
    import json
    import subprocess
    import sys

    torch.save(x, tmp_path / "x.pt")
    code = ("import json, torch; from torch._dynamo.utils import counters; "
            "from compress.quant.deploy import Pt2eInductorPredictor as P; "
            f"p = P(__import__('pathlib').Path({str(path)!r})); x = torch.load({str(tmp_path / 'x.pt')!r}); "
            f"torch.save(p(x), {str(tmp_path / 'out.pt')!r}); print(json.dumps(dict(counters['inductor'])))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-1500:]
    fired = json.loads(r.stdout.strip().splitlines()[-1])
    assert fired.get("qconv_weight_prepack_matcher_count", 0) == 2, fired  # conv1, conv2
    assert fired.get("qlinear_weight_prepack_matcher_count", 0) == 3, fired  # fc1, fc2, fc3
    assert torch.equal(torch.load(tmp_path / "out.pt"), out)


def test_two_bit_symmetric_has_three_levels_asymmetric_four(setup):
    m, _, _ = setup
    w = m.fc1.weight.detach()
    from compress.quant.fakequant import fake_quant_weight

    sym, _ = int_specs(2, None, symmetric=True)
    asym, _ = int_specs(2, None, symmetric=False)
    levels = lambda spec: max(len(r.unique()) for r in fake_quant_weight(w, spec))
    assert levels(sym) == 3 and levels(asym) == 4
    err = lambda spec: (fake_quant_weight(w, spec) - w).pow(2).mean()
    assert err(asym) < err(sym)
