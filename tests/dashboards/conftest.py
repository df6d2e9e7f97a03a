"""A synthetic variants table and search-trials table, shaped like the evaluate / search outputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from compress.evaluate import COLUMNS

# fp32 references (ms): PyTorch eager and the best fp32 engine, per architecture (as metrics/latency.json)
REF_LENET5 = {"eager_b1": 0.20, "eager_b256": 8.0, "best_fp32_b1": 0.05, "best_fp32_b256": 3.0,
              "best_fp32_runtime_b1": "onnxruntime", "best_fp32_runtime_b256": "onnxruntime", "reference": "baseline-fp32"}
REF_STRUCT = {"eager_b1": 0.12, "eager_b256": 5.0, "best_fp32_b1": 0.04, "best_fp32_b256": 2.0,
              "best_fp32_runtime_b1": "onnxruntime", "best_fp32_runtime_b256": "onnxruntime", "reference": "prune-struct-l1-50"}
ARCH_LENET5 = '["lenet5", {}, [1, 28, 28], 10]'
ARCH_STRUCT = '["lenet5", {"widths": [3, 8, 60, 42]}, [1, 28, 28], 10]'
INT8_OPS = "int8 5/5 compute ops (FullyConnected(u8) x3, Convolution(u8) x2)"
FP32_OPS = "int8 0/5 compute ops (Conv x2, Gemm x3)"


def synthetic_variants(dataset: str = "mnist") -> pd.DataFrame:
    """Rows shaped like the evaluate stage's: the fastest engine per batch size and speed-ups computed from
    the planted reference times (REF_LENET5 / REF_STRUCT) exactly as compress.deploy.measure.speedups does."""
    rng = np.random.default_rng(0)
    rows = []

    def add(variant, stage, method, wb, ab, sp, params, size, acc, sim, b1, b256, eng1="onnxruntime", eng256="onnxruntime",
            ops=FP32_OPS, ref=REF_LENET5, seed=0, notes="", model="lenet5"):
        sp_ = {f"speedup_vs_{t}_b{b}": ref[f"{k}_b{b}"] / ms for b, ms in ((1, b1), (256, b256))
               for t, k in (("eager", "eager"), ("best_fp32", "best_fp32"))}
        rows.append(dict(variant=variant, stage=stage, method=method, model=model, dataset=dataset, seed=seed,
                         avg_weight_bits=wb, act_bits=ab, sparsity=sp, params=params, size_bytes=size, accuracy=acc,
                         accuracy_runtime=eng1, accuracy_sim=sim, accuracy_spread_pp=0.0, latency_ms_b1=b1, latency_ms_b256=b256,
                         fastest_b1=eng1, fastest_b256=eng256, runtime=f"{eng256} (description)", runtime_b1=f"{eng1} (description)",
                         reference=ref["reference"], lowp_ops_b256=ops, engines="torch-eager,onnxruntime,openvino", threads=2,
                         notes=notes, error=None, **sp_))

    add("baseline-fp32", "train", "baseline", 32, None, 0.0, 61706, 247_000, 0.990, None, 0.05, 3.0)
    add("prune-struct-l1-50", "prune", "prune-structured", 32, None, 0.0, 15738, 63_000, 0.990, None, 0.04, 2.0, ref=REF_STRUCT)
    add("ptq-w8a8-minmax", "ptq", "ptq", 8, 8, 0.0, 61706, 64_000, 0.989, 0.9895, 0.10, 1.9, eng256="openvino", ops=INT8_OPS)
    add("ptq-w4a8-minmax", "ptq", "ptq", 4, 8, 0.0, 61706, 33_000, 0.975, 0.975, 0.08, 6.0, eng256="openvino", ops=INT8_OPS)
    add("ptq-w2a8-minmax", "ptq", "ptq", 2, 8, 0.0, 61706, 18_000, 0.60, 0.60, 0.06, 3.1, eng256="openvino", ops=INT8_OPS)
    add("qat-w4a8", "qat", "qat", 4, 8, 0.0, 61706, 33_000, 0.987, 0.987, 0.21, 8.1, "torch-eager", "torch-eager",
        ops="int8 0/5 compute ops (QConv2d x2, QLinear x3)")
    add("prune-s90", "prune", "magnitude", 32, None, 0.9, 6171, 40_000, 0.985, None, 0.04, 3.0, eng1="torch-sparse",
        notes="compact sparse file decoded to dense at load")
    for s in range(3):  # replicates
        add(f"hawq-w4-s{s}", "hawq", "hawq", 4.1, 8, 0.0, 61706, 34_000 + s, 0.980 + 0.002 * rng.standard_normal(), 0.98,
            0.07, 2.9 + 0.1 * s, eng256="openvino", ops=INT8_OPS, seed=s)
    return pd.DataFrame(rows, columns=COLUMNS)


def synthetic_latency(v: pd.DataFrame) -> dict:
    """metrics/latency.json of the synthetic table: references, and per variant the engines (the fastest at
    each batch size is the row's; the others planted slower)."""
    by = {}
    for _, r in v.iterrows():
        engines = {}
        for b in (1, 256):
            fast, ms = r[f"fastest_b{b}"], r[f"latency_ms_b{b}"]
            for i, e in enumerate(("torch-eager", "onnxruntime", "openvino")):
                engines.setdefault(e, {"accuracy": r["accuracy"]})[f"latency_ms_b{b}"] = ms if e == fast else ms * (2 + i)
            if fast not in ("torch-eager", "onnxruntime", "openvino"):
                engines.setdefault(fast, {"accuracy": r["accuracy"]})[f"latency_ms_b{b}"] = ms
        by[r["variant"]] = {"by_engine": engines}
    by["baseline-fp32"]["by_engine"] = {"onnxruntime": {"accuracy": 0.99, "latency_ms_b1": 0.05, "latency_ms_b256": 3.0},
                                        "openvino": {"accuracy": 0.99, "latency_ms_b1": 0.15, "latency_ms_b256": 5.0},
                                        "torch-eager": {"accuracy": 0.99, "latency_ms_b1": 0.20, "latency_ms_b256": 8.0}}
    by["ptq-w8a8-minmax"]["by_engine"] = {"onnxruntime": {"accuracy": 0.989, "latency_ms_b1": 0.10, "latency_ms_b256": 4.0},
                                          "openvino": {"accuracy": 0.989, "latency_ms_b1": 0.30, "latency_ms_b256": 1.9}}
    return {"dataset": "mnist", "threads": 2, "references": {ARCH_LENET5: REF_LENET5, ARCH_STRUCT: REF_STRUCT},
            "variants": by, "wall_seconds": 40.0}


def synthetic_trials() -> pd.DataFrame:
    rows = []
    layers = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    for i, (acc, size, start) in enumerate([(0.99, 64_500, "uniform w8a8"), (0.97, 33_500, "uniform w4a8"),
                                            (0.985, 40_000, ""), (0.95, 25_000, ""), (0.96, 50_000, "")]):
        cfg = {"weight_bits": {n: (8 if j % 2 else 4) if not start else int(start[9]) for j, n in enumerate(layers)},
               "act_bits": {n: 8 for n in layers}}
        rows.append(dict(study="compress-bits-abc", kind="bits", trial=i, accuracy=acc, size_bytes=size,
                         latency_ms_b1=0.2, latency_ms_b256=8.0, params=61706, avg_weight_bits=6, act_bits=8, sparsity=0.0,
                         trial_seconds=0.5, start=start, pareto=False, config=json.dumps(cfg)))
    return pd.DataFrame(rows)


@pytest.fixture
def files(tmp_path):
    v = tmp_path / "reports" / "variants.csv"
    v.parent.mkdir()
    synthetic_variants().to_csv(v, index=False)
    t = tmp_path / "search" / "trials.csv"
    t.parent.mkdir()
    synthetic_trials().to_csv(t, index=False)
    return v, t
