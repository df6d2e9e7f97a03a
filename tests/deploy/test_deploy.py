"""Deploy graphs built at load from the compact artifacts run the same function as the eager /
simulated model on every engine, on the kernels their number format allows."""
import importlib.util
import math

import numpy as np
import pytest
import torch

from compress.deploy.engines import DeployGraph, resolve_runtimes
from compress.deploy.graphs import build_graphs, deploy_predictors
from compress.deploy.engines import ENGINES, Engine, get_engine
from compress.models import MLP, LeNet5, prunable_layers
from compress.quant.observers import calibrate
from compress.quant.ptq import build_int_sim, int_specs, load_packed_model, save_packed_model
from compress.variants import Form, Manifest, model_spec

LENET = model_spec("lenet5", {}, [1, 28, 28], 10)
ONNX_ENGINES = [n for n in ("onnxruntime", "openvino") if importlib.util.find_spec(n) is not None]


def manifest(spec, deploy, **kw):
    base = dict(variant="t", stage="t", method="t", model=spec, dataset="synthetic", seed=0, avg_weight_bits=32.0,
                act_bits=None, sparsity=0.0, params=1, deploy=deploy)
    return Manifest(**{**base, **kw})


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    m = LeNet5().eval()
    x = torch.randn(384, 1, 28, 28)
    return m, x[:128], x[128:], calibrate(m, x[:128], ["minmax"])["minmax"]


def _engines(names):
    engines, _ = resolve_runtimes(names)
    return engines


# --------------------------------------------------------------------------- integer grid -> int8 kernels
MIXED = {"conv1": 8, "conv2": 4, "fc1": 2, "fc2": 3, "fc3": 6}


@pytest.mark.parametrize("wbits,abits", [(8, 8), (4, 8), (MIXED, 8), (4, 4)], ids=["w8a8", "w4a8", "mixed", "w4a4"])
def test_int8_graph_from_packed_codes_matches_the_simulation(tmp_path, lenet, wbits, abits):
    """Stated tolerance, in units of the logits' standard deviation over the batch: OpenVINO
    (stored codes, float biases added after the int8 product: the simulation's codes) median |diff|
    <= 1e-5, mean <= 0.005 (a .5 tie rounded the other way flips one code); ONNX Runtime (its int8 fusion rounds each bias to int32 at s_x s_w) mean <= 0.1,
    max <= 0.5; argmax agreement >= 99 % for both.  Every conv / gemm runs on an int8 kernel
    (read back from each engine's optimised graph)."""
    m, x_cal, x, ranges = lenet
    ws, as_ = int_specs(8, abits)
    qm = build_int_sim(m, wbits, abits, ranges, ws, as_)
    save_packed_model(qm, tmp_path / "model.cspk")
    man = manifest(LENET, Form("packed", ["model.cspk"]), act_bits=abits)
    graphs = build_graphs(tmp_path, man)
    onnx_graphs = [g for g in graphs if g.kind == "onnx"]
    assert all(g.precision == "int8" for g in onnx_graphs), [g.label for g in onnx_graphs]
    exact = next(g for g in onnx_graphs if "openvino" not in g.exclude)
    # the weight initializers ARE the stored codes (q - z, int8) with the stored scales (OpenVINO's graph);
    # ONNX Runtime's graph, for sub-8-bit codes, holds them times an integer K <= 63 / max|code| per channel
    from onnx import numpy_helper

    from compress.quant.packing import load_packed

    qts, _, _ = load_packed(tmp_path / "model.cspk")
    widened = []
    for g in onnx_graphs:
        inits = {i.name: numpy_helper.to_array(i) for i in g.payload.graph.initializer}
        for name in prunable_layers(m):
            codes = qts[f"{name}.weight"].q.numpy().astype(np.int32)
            got = inits[f"{name}.weight_q"]
            assert got.dtype == np.int8 and f"{name}.weight" not in inits  # no float copy of the weights
            if g is exact:
                assert np.array_equal(got, codes.astype(np.int8))
            else:
                k = np.abs(got).reshape(len(got), -1).max(1) // np.maximum(np.abs(codes).reshape(len(got), -1).max(1), 1)
                assert np.array_equal(got, codes * k.reshape(-1, *[1] * (codes.ndim - 1)))
                assert ((k == 1) | (np.abs(got).reshape(len(got), -1).max(1) <= 63)).all() and (k >= 1).all()
                widened.append(int(k.max()))
    assert len(onnx_graphs) == 2 and (max(widened) > 1) == (wbits != 8)
    ref = load_packed_model(tmp_path / "model.cspk", LeNet5())(x).detach()
    assert torch.equal(ref, qm(x))
    std = float(ref.std())
    preds, skipped = deploy_predictors(tmp_path, man, _engines(ONNX_ENGINES))
    assert set(preds) == set(ONNX_ENGINES), skipped
    for name, p in preds.items():
        out = p(x)
        diff = (out - ref).abs()
        agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
        mean_tol = 0.1 if name == "onnxruntime" else 0.005
        if name == "openvino":  # most logits equal the simulation's to float rounding
            assert float(diff.median()) <= 1e-5 * std + 1e-6, (name, float(diff.median()))
        assert agree >= 0.99, (name, agree)
        assert float(diff.mean()) <= mean_tol * std, (name, float(diff.mean()), std)
        assert float(diff.max()) <= 0.5 * std, (name, float(diff.max()), std)
        ops = p.low_precision_ops()
        assert sum(ops["int8"].values()) == 5 and not ops["fp32"], (name, ops)  # every conv / gemm on int8 kernels


def test_qdq_requantizes_outputs_with_the_next_input_range(tmp_path, lenet):
    """conv -> relu -> maxpool -> conv: the int8 conv output is quantized with the next layer's input
    (s, z), so no float tensor sits between two int8 kernels; the logits stay float."""
    from compress.deploy.onnx_build import ActQuant, fp32_graph, layer_quant, qdq_graph
    from compress.quant.fakequant import QuantSpec
    from compress.quant.packing import load_packed

    m, _, x, ranges = lenet
    ws, as_ = int_specs(4, 8)
    save_packed_model(build_int_sim(m, 4, 8, ranges, ws, as_), tmp_path / "m.cspk")
    qts, floats, meta = load_packed(tmp_path / "m.cspk")
    layers = {n: layer_quant(qts[f"{n}.weight"], ActQuant.from_range(a["lo"], a["hi"], QuantSpec(**a["spec"])))
              for n, a in meta["acts"].items()}
    proto, report = qdq_graph(fp32_graph(m, (1, 28, 28)), layers)
    assert report.int8_layers == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert report.fused_outputs == ["conv1", "conv2", "fc1", "fc2"]
    if "onnxruntime" in ONNX_ENGINES:  # ONNX Runtime keeps uint8 codes from the first Q to the logits
        import onnx

        from compress.deploy.engines import ort_session

        ort_session(proto.SerializeToString(), str(tmp_path / "opt.onnx"))
        ops = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
        assert ops <= {"QuantizeLinear", "Transpose", "QLinearConv", "NhwcMaxPool", "MaxPool", "Flatten", "Reshape", "QGemm"}, ops
    # per-group scales have no int8 kernel: that layer keeps its exact float weights, fp32 kernel
    ws_g, _ = int_specs(4, 8, "group", group_size=32)
    save_packed_model(build_int_sim(m, 4, 8, ranges, ws_g, as_), tmp_path / "g.cspk")
    man = manifest(LENET, Form("packed", ["g.cspk"]))
    g = build_graphs(tmp_path, man)[0]
    assert g.precision == "mixed" and any("group" in n for n in g.notes)
    ref = load_packed_model(tmp_path / "g.cspk", LeNet5())(x).detach()
    preds, _ = deploy_predictors(tmp_path, man, _engines(ONNX_ENGINES))
    for p in preds.values():
        assert float((p(x).argmax(1) == ref.argmax(1)).float().mean()) >= 0.99


def test_sim_form_builds_the_same_int8_graph(tmp_path, lenet):
    from compress.quant.ptq import int_sim_cfg, write_sim

    m, _, x, ranges = lenet
    ws, as_ = int_specs(4, 8)
    sim = write_sim(tmp_path, m, int_sim_cfg(4, 8, ranges, ws, as_))
    save_packed_model(build_int_sim(m, 4, 8, ranges, ws, as_), tmp_path / "model.cspk")
    from onnx import numpy_helper

    a = build_graphs(tmp_path, manifest(LENET, sim))[0].payload
    b = build_graphs(tmp_path, manifest(LENET, Form("packed", ["model.cspk"])))[0].payload
    ia = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    ib = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    assert ia.keys() == ib.keys() and all(np.array_equal(ia[k], ib[k]) for k in ia)


# --------------------------------------------------------------------------- fp32-kernel variants
def _max_diff_all_engines(tmp_path, man, ref_fn, x, names=None):
    graphs = build_graphs(tmp_path, man)
    preds, skipped = deploy_predictors(tmp_path, man, _engines(names or list(ENGINES)), graphs=graphs)
    ref = ref_fn(x).detach()
    return {n: float((p(x) - ref).abs().max()) for n, p in preds.items()}, skipped, graphs


def test_sparse_variant_runs_on_onnx_and_csr(tmp_path):
    from compress.prune.sparse_io import save_sparse

    torch.manual_seed(0)
    m = MLP(hidden=(64, 32)).eval()
    with torch.no_grad():
        for lin in prunable_layers(m).values():
            w = lin.weight
            w[w.abs() < w.abs().flatten().kthvalue(int(0.95 * w.numel())).values] = 0
    save_sparse(m.state_dict(), tmp_path / "model.safetensors", [f"{n}.weight" for n in prunable_layers(m)])
    spec = model_spec("mlp", {"hidden": [64, 32]}, [1, 28, 28], 10)
    man = manifest(spec, Form("sparse-eager", ["model.safetensors"]), sparsity=0.95)
    diffs, skipped, graphs = _max_diff_all_engines(tmp_path, man, m, torch.randn(16, 1, 28, 28))
    assert {"torch-eager", "torch-sparse", *ONNX_ENGINES} <= set(diffs), skipped
    assert max(diffs.values()) <= 1e-4, diffs
    csr = next(g for g in graphs if g.kind == "torch-sparse").payload
    assert sum(type(mod).__name__ == "CSRLinear" for mod in csr.modules()) == 3


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_cast_pair_rounds_exactly_like_torch(fmt):
    """The ONNX Cast pair the lowp graphs use gives torch's rounding bit for bit on ONNX Runtime
    (subnormals, saturation included; e5m2 overflow is NaN there instead of inf)."""
    from onnx import TensorProto, helper

    from compress.deploy.onnx_build import _CAST_TYPES
    from compress.quant.formats import get_format, round_to_format

    torch.manual_seed(0)
    x = torch.cat([torch.randn(2000) * s for s in (1e-8, 1e-5, 1e-3, 1.0, 100.0, 1e4)]
                  + [torch.tensor([0.0, -0.0, 448.0, 449.0, 464.0, 480.0, 1e6, 57344.0])]).reshape(1, 1, 1, -1)
    to = getattr(TensorProto, _CAST_TYPES[fmt])
    kw = {"saturate": int(fmt == "fp8_e4m3")} if fmt.startswith("fp8") else {}
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape))
    g = helper.make_graph([helper.make_node("Cast", ["x"], ["l"], to=to, **kw), helper.make_node("Cast", ["l"], ["y"], to=1)],
                          "cast", [vi("x")], [vi("y")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    out = get_engine("onnxruntime").build(DeployGraph("onnx", model, "cast"))(x)
    ref = round_to_format(x, fmt)
    finite = ref.isfinite() if fmt != "fp8_e5m2" else (x.abs() < 61440)
    assert torch.equal(out[finite], ref[finite])
    assert not out[~finite].isfinite().any()
    assert get_format(fmt).torch_dtype is not None


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
def test_fp8_arithmetic_rounding_is_torchs_bit_for_bit(fmt):
    """The fp8 rounding subgraph (shifted Veltkamp split + range) gives torch's cast on ONNX Runtime for
    every value: random magnitudes over the whole range, every exact tie between two neighbouring fp8
    values (ties to even), subnormals, the lowest and highest fp32 values of each binade, fp32
    subnormals, saturation (e4m3fn) and overflow (e5m2: inf)."""
    from onnx import TensorProto, helper

    from compress.deploy.onnx_build import _FP8, _fp8_round_nodes
    from compress.quant.formats import round_to_format

    p, emin, fmax, _ = _FP8[fmt]
    torch.manual_seed(0)
    rand = torch.cat([torch.randn(20000) * s for s in (1e-9, 1e-6, 1e-4, 1e-2, 1.0, 100.0, 1e4, 1e6)])
    # ties: odd multiples of half a quantum at every exponent, from the subnormal grid to the largest binade
    m = torch.arange(2 ** p + 1, 2 ** (p + 1), 2, dtype=torch.float64)
    e = torch.arange(emin - p, int(math.log2(fmax)) + 1, dtype=torch.float64)
    ties = (m[:, None] * torch.pow(2.0, e[None, :] - p)).flatten().float()
    edges = torch.tensor([0.0, fmax, fmax * 1.03, fmax * 1.1, 61440.0, 65536.0, 1e30, 2.0 ** emin, 2.0 ** (emin - p + 1),
                          1.5 * 2.0 ** emin, 1e-45, 1e-39])
    # binade edges: the 64 lowest and highest fp32 values of every binade (where a shifted split can go wrong)
    bits = torch.arange(-64, 64, dtype=torch.int32)[None, :] + (torch.arange(emin - p - 3, 18, dtype=torch.int32)[:, None] + 127 << 23)
    binade = bits.flatten().view(torch.float32)
    x = torch.cat([rand, ties, edges, binade]).reshape(1, -1)
    x = torch.cat([x, -x], 1)
    nodes, inits = _fp8_round_nodes("x", "y", fmt, "r")
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape))  # noqa: E731
    model = helper.make_model(helper.make_graph(nodes, "fp8", [vi("x")], [vi("y")], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    out = get_engine("onnxruntime").build(DeployGraph("onnx", model, "fp8"))(x)
    ref = round_to_format(x, fmt)
    assert torch.equal(out.isinf(), ref.isinf()) and not out.isnan().any()
    fin = ref.isfinite()
    bad = (out[fin] != ref[fin]).nonzero()
    assert len(bad) == 0, (x[fin][bad[:5, 0]].tolist(), out[fin][bad[:5, 0]].tolist(), ref[fin][bad[:5, 0]].tolist())


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_lowp_float_graph_matches_eager(tmp_path, lenet, fmt):
    """Same function as the eager lowp model.  Tolerance: the Cast rounding is exact (test above), but
    ONNX Runtime's fp32 convolutions sum in another order than torch's, and a sum that lands on the
    other side of a rounding boundary of the next layer's input moves by one unit in the last place of
    ``fmt``: logits agree to 2 u max|logit| (u = 2^-t) and in argmax (measured: bf16 2e-7, fp16 1e-3)."""
    from compress.quant.formats import get_format
    from compress.quant.ptq import load_float_weights, save_float_weights

    m, _, x, _ = lenet
    save_float_weights(m, fmt, tmp_path / "model.safetensors")
    man = manifest(LENET, Form("lowp-float", ["model.safetensors"], {"format": fmt, "activations": True}))
    eager = load_float_weights(tmp_path / "model.safetensors", LeNet5(), fmt, True)
    x = x * 20  # wide enough that fp8 saturation and subnormals occur
    graphs = build_graphs(tmp_path, man)
    ops = [n.op_type for n in graphs[0].payload.graph.node]
    if fmt.startswith("fp8"):  # fp8: rounding in fp32 arithmetic (ONNX Runtime's fp8 Cast is a slow scalar loop)
        assert ops.count("Cast") == 0 and ops.count("Max") == 5
        assert len(ops) == 12 + 5 * (7 if fmt == "fp8_e4m3" else 9)  # the fp32 graph + the rounding ops of 5 layer inputs
    else:
        assert ops.count("Cast") == 10  # a pair per layer input
    preds, skipped = deploy_predictors(tmp_path, man, _engines(ONNX_ENGINES), graphs=graphs)
    if "openvino" in ONNX_ENGINES:  # OpenVINO does not round Cast pairs like torch: skipped with the reason
        if fmt.startswith("fp8"):  # ... but computes the fp8 arithmetic form exactly (measured: 0.0 max |diff|)
            assert "openvino" in preds, skipped
        else:
            assert "openvino" not in preds and "folds f16 Cast pairs" in skipped["openvino"], skipped
    with torch.no_grad():
        ref = eager(x)
    tol = 2 * 2.0 ** -get_format(fmt).t * float(ref.abs().max())
    for name, p in preds.items():
        out = p(x)
        assert float((out - ref).abs().max()) <= tol, (name, float((out - ref).abs().max()), tol)
        assert torch.equal(out.argmax(1), ref.argmax(1))


def test_binaryconnect_graph_folds_bn(tmp_path):
    from compress.quant.binary import BinaryMLP, PackedBinaryMLP, load_binary, save_binary

    torch.manual_seed(0)
    bm = BinaryMLP(hidden=(64, 32)).train()
    bm(torch.randn(64, 1, 28, 28))  # batch-norm statistics
    bm.eval()
    save_binary(bm, tmp_path / "m.bc1.safetensors")
    spec = model_spec("binaryconnect_mlp", {"hidden": [64, 32], "mode": "det"}, [1, 28, 28], 10)
    man = manifest(spec, Form("binary-packed", ["m.bc1.safetensors"]), avg_weight_bits=1.0)
    ref = PackedBinaryMLP(load_binary(tmp_path / "m.bc1.safetensors")).eval()
    diffs, skipped, graphs = _max_diff_all_engines(tmp_path, man, ref, torch.randn(16, 1, 28, 28))
    assert set(ONNX_ENGINES) <= set(diffs), skipped
    assert [n.op_type for n in graphs[0].payload.graph.node].count("Gemm") == 3  # one Gemm per layer: BN folded
    assert max(diffs.values()) <= 1e-4 * max(1.0, float(ref(torch.randn(4, 1, 28, 28)).abs().max())), diffs


@pytest.mark.parametrize("bits", [None, 8])
def test_monarch_exports_to_batched_matmul(tmp_path, bits):
    from compress.structured.export import write_structured_variant
    from compress.structured.monarch import monarchize, plan
    from compress.structured.runtime import load_structured_model
    from compress.variants import read_manifest

    torch.manual_seed(0)
    dense = MLP(hidden=(64, 64)).eval()
    shapes = plan(dense, "hidden")
    mon = monarchize(dense, shapes)
    spec = model_spec("mlp", {"hidden": [64, 64]}, [1, 28, 28], 10)
    write_structured_variant(tmp_path, variant="m", kind="monarch", model=mon, base_spec=spec, shapes=shapes, bits=bits, dataset="s", seed=0,
                          notes="")
    man = read_manifest(tmp_path)
    ref = load_structured_model(tmp_path, man, man.deploy)
    diffs, skipped, graphs = _max_diff_all_engines(tmp_path, man, ref, torch.randn(16, 1, 28, 28))
    assert set(ONNX_ENGINES) <= set(diffs), skipped
    ops = [n.op_type for n in graphs[0].payload.graph.node]
    assert ops.count("MatMul") >= 4 and "Transpose" in ops  # 2 batched matmuls per Monarch layer
    assert max(diffs.values()) <= 1e-4, diffs


# --------------------------------------------------------------------------- registry
def test_registry_skips_missing_engine_with_reason(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    engines, skipped = resolve_runtimes(["torch-eager", "openvino"])
    assert [e.name for e in engines] == ["torch-eager"]
    assert "not installed" in skipped["openvino"]
    with pytest.raises(ValueError, match=r"evaluate\.runtimes: runtime 'tensorrt' is unknown; allowed: torch-eager"):
        resolve_runtimes(["tensorrt"])
    with pytest.raises(ValueError, match=r"evaluate\.runtimes = 'onnxruntime' must be a list"):
        resolve_runtimes("onnxruntime")


def test_engine_that_cannot_build_a_graph_is_skipped_not_fatal(tmp_path, lenet):
    def boom(g):
        raise RuntimeError("cannot compile this\nsecond line")

    broken = Engine("broken", ("onnx",), lambda: None, boom)
    m, _, _, _ = lenet
    from compress.checkpoint import save_state_dict

    save_state_dict(m, tmp_path / "model.safetensors")
    man = manifest(LENET, Form("torch-eager", ["model.safetensors"]))
    preds, skipped = deploy_predictors(tmp_path, man, [broken, get_engine("torch-eager")])
    assert list(preds) == ["torch-eager"]
    assert skipped["broken"] == "broken failed on fp32 weights (ONNX, fp32 kernels): RuntimeError: cannot compile this"
    g = DeployGraph("pt2", tmp_path / "x.pt2", "a program")
    assert "runs onnx graphs, not pt2" in get_engine("onnxruntime").accepts(g)
    _, skipped = deploy_predictors(tmp_path, man, [get_engine("torch-sparse")])
    assert skipped["torch-sparse"] == "n/a: torch-sparse runs torch-sparse graphs; this variant has onnx/torch"


# --------------------------------------------------------------------------- other integer-grid sources
@pytest.mark.parametrize("quantizer,wbits,abits", [("fixed", 4, 8), ("lsq", 8, 8), ("lsq", 3, 4)])
def test_qat_packed_artifact_runs_on_int8_kernels(tmp_path, lenet, quantizer, wbits, abits):
    """QAT exports (fixed and LSQ steps; LSQ codes reach -2^(b-1)) deploy on int8 kernels."""
    from compress.quant.qat import prepare_qat, save_qat_packed

    m, x_cal, x, ranges = lenet
    q = prepare_qat(m, wbits, abits, ranges, quantizer).eval()
    save_qat_packed(q, tmp_path / "model.cspk")
    man = manifest(LENET, Form("packed", ["model.cspk"]), act_bits=abits)
    ref = load_packed_model(tmp_path / "model.cspk", LeNet5())(x).detach()
    preds, skipped = deploy_predictors(tmp_path, man, _engines(ONNX_ENGINES))
    assert set(preds) == set(ONNX_ENGINES), skipped
    for name, p in preds.items():
        out = p(x)
        assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.99, name
        assert float((out - ref).abs().mean()) <= 0.1 * float(ref.std()), name
        assert sum(p.low_precision_ops()["int8"].values()) == 5, (name, p.low_precision_ops())


def test_asymmetric_weights_and_wide_activations(tmp_path, lenet):
    """Asymmetric 4-bit weights: codes minus zero point fit int8 -> int8 kernels.  16-bit activations
    do not fit int8: those layers run fp32 kernels with the simulation's float fake-quant ops, exactly."""
    m, _, x, ranges = lenet
    ws, as_ = int_specs(4, 8, symmetric=False)
    save_packed_model(build_int_sim(m, 4, 8, ranges, ws, as_), tmp_path / "asym.cspk")
    man = manifest(LENET, Form("packed", ["asym.cspk"]), act_bits=8)
    assert build_graphs(tmp_path, man)[0].precision == "int8"
    ref = load_packed_model(tmp_path / "asym.cspk", LeNet5())(x).detach()
    preds, _ = deploy_predictors(tmp_path, man, _engines(ONNX_ENGINES))
    for p in preds.values():
        assert float((p(x).argmax(1) == ref.argmax(1)).float().mean()) >= 0.99
    ws, as_ = int_specs(8, 16)
    save_packed_model(build_int_sim(m, 8, 16, ranges, ws, as_), tmp_path / "a16.cspk")
    man = manifest(LENET, Form("packed", ["a16.cspk"]), act_bits=16)
    g = build_graphs(tmp_path, man)[0]
    assert g.precision == "fp32" and all("16-bit activations" in n for n in g.notes)
    ref = load_packed_model(tmp_path / "a16.cspk", LeNet5())(x).detach()
    preds, _ = deploy_predictors(tmp_path, man, _engines(["onnxruntime"]))
    assert float((preds["onnxruntime"](x) - ref).abs().max()) <= 1e-4 * float(ref.abs().max())


@pytest.mark.slow
def test_pt2e_engines_run_int8_kernels(tmp_path, monkeypatch):
    """PT2E programs: torch.compile (engine pt2e) and AOTInductor (pt2e-aoti, one static package per
    batch size) lower every conv / linear to oneDNN int8 and compute the program's logits.  The
    dynamic-batch package of the conv net (torch 2.14.1: other logits) is what the static packages
    avoid; a package that still computed other logits would be refused with one line.  ~2 min."""
    from compress.deploy.engines import _check_same
    from compress.quant.deploy import export_pt2e_int8

    monkeypatch.setenv("COMPRESS_AOTI_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    x = torch.randn(64, 1, 28, 28)
    for name, m in (("lenet5", LeNet5().eval()), ("mlp", MLP(hidden=(64, 32)).eval())):
        prog = export_pt2e_int8(m, tmp_path / f"{name}.pt2", x, calibrate(m, x, ["minmax"])["minmax"])
        spec = LENET if name == "lenet5" else model_spec("mlp", {"hidden": [64, 32]}, [1, 28, 28], 10)
        man = manifest(spec, Form("pt2e-inductor-int8", [prog.name]), act_bits=8)
        preds, skipped = deploy_predictors(tmp_path, man, _engines(["pt2e", "pt2e-aoti"]))
        assert not skipped, skipped
        with torch.no_grad():
            ref = torch.export.load(str(prog)).module()(x)
        n_int8 = 3 if name == "mlp" else 5
        for engine, p in preds.items():
            for xb, rb in ((x, ref), (x[:1], ref[:1])):
                assert float((p(xb) - rb).abs().max()) <= 0.1 * float(ref.std()), (name, engine)
            ops = p.low_precision_ops()
            assert sum(ops["int8"].values()) == n_int8 and not ops["fp32"], (name, engine, ops)
        assert len(list((tmp_path / "cache").glob(f"{name}-b*.pt2"))) == 2  # batch 1 and 64: one package each
    # a package computing other logits (as torch 2.14.1's dynamic-batch qconv package does) is refused
    _check_same("the AOTInductor package", ref + 0.05 * ref.std(), ref)
    with pytest.raises(RuntimeError, match="computes other logits than the PT2E program"):
        _check_same("the AOTInductor package", ref + 0.2 * ref.std(), ref)
