"""Evaluate's kernel profiles: the fp32 reference on its fastest fp32 engine and the fastest integer-grid
variant on its fastest engine, per batch size, from the engines' own profilers; the report renders them."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from compress.checkpoint import save_state_dict
from compress.config import EvaluateConfig
from compress.evaluate import evaluate_all, records
from compress.models import build_model
from compress.variants import Form, Manifest, model_spec, scan, write_variant

SHAPE, CLASSES = (1, 28, 28), 10
SPEC = model_spec("mlp", {"hidden": [64, 32]}, SHAPE, CLASSES)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime (a profiler)")


def _write(root, x):
    from compress.quant.observers import calibrate
    from compress.quant.ptq import build_int_sim, int_specs, save_packed_model

    torch.manual_seed(0)
    m = build_model("mlp", SHAPE, CLASSES, hidden=[64, 32]).eval()
    base = root / "train" / "baseline-fp32"
    base.mkdir(parents=True)
    save_state_dict(m, base / "model.safetensors")
    common = dict(model=SPEC, dataset="synthetic", seed=0, params=1, sparsity=0.0)
    write_variant(base, Manifest(variant="baseline-fp32", stage="train", method="baseline", avg_weight_bits=32.0, act_bits=None,
                                 deploy=Form("torch-eager", ["model.safetensors"]), **common))
    q = root / "ptq" / "ptq-w4a8"
    q.mkdir(parents=True)
    ws, as_ = int_specs(4, 8)
    save_packed_model(build_int_sim(m, 4, 8, calibrate(m, x, ["minmax"])["minmax"], ws, as_), q / "model.cspk")
    write_variant(q, Manifest(variant="ptq-w4a8", stage="ptq", method="ptq", avg_weight_bits=4.0, act_bits=8,
                              deploy=Form("packed", ["model.cspk"]), **common))


def test_profiles_name_the_kernels_of_the_reference_and_the_fastest_int8_variant(tmp_path):
    from dashboards.report import profile_lines

    torch.manual_seed(0)
    x, y = torch.randn(64, *SHAPE), torch.randint(0, CLASSES, (64,))
    _write(tmp_path / "variants", x)
    found, broken = scan(tmp_path / "variants")
    details: dict = {}
    cfg = EvaluateConfig(runtimes=["torch-eager", "onnxruntime"], warmup=1, min_repeats=2, max_repeats=3, budget_s=0.001,
                         batch_size=16)
    rows, failures = evaluate_all(found, x, y, cfg, broken=broken, progress=False, details=details)
    assert not failures
    prof = details["profiles"]
    assert {(p["role"], p["batch"]) for p in prof} <= {(r, b) for r in ("best fp32", "fastest integer-grid") for b in (1, 256)}
    int8 = [p for p in prof if p["role"] == "fastest integer-grid"]
    assert int8, prof  # the W4A8 variant runs on ONNX Runtime's int8 QDQ graph, which has a profiler
    for p in int8:
        assert p["variant"] == "ptq-w4a8" and p["engine"] == "onnxruntime" and p["ms_measured"] > 0
        kinds = {o["op"] for o in p["ops"]}
        assert kinds & {"QGemm", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul"}, kinds  # int8 kernels, named
        assert all(o["ms_per_call"] >= 0 and 0 <= o["share"] <= 1 for o in p["ops"])
    for p in prof:
        if p["role"] == "best fp32":
            assert p["variant"] == "baseline-fp32" and p["engine"] == "onnxruntime"
    _, latency = records(rows, details, {"dataset": "synthetic", "substituted": False}, 1)
    assert latency["profiles"] == prof
    text = "\n".join(profile_lines(prof))
    assert "Where the time goes" in text and "`ptq-w4a8`" in text and "QGemm" in text
    assert profile_lines([{"error": "RuntimeError: boom"}]) == ["Kernel profiles could not be taken: RuntimeError: boom"]
