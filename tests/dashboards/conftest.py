"""A synthetic variants table and search-trials table, shaped like the evaluate / search outputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from compress.evaluate import COLUMNS


def synthetic_variants(dataset: str = "mnist") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []

    def add(variant, stage, method, wb, ab, sp, params, size, acc, sim, b1, b256, runtime, seed=0, notes=""):
        rows.append(dict(variant=variant, stage=stage, method=method, model="lenet5", dataset=dataset, seed=seed,
                         avg_weight_bits=wb, act_bits=ab, sparsity=sp, params=params, size_bytes=size, accuracy=acc,
                         accuracy_sim=sim, latency_ms_b1=b1, latency_ms_b256=b256, runtime=runtime, threads=2, notes=notes))

    add("baseline-fp32", "train", "baseline", 32, None, 0.0, 61706, 247_000, 0.990, None, 0.20, 8.0, "PyTorch eager, fp32")
    add("baseline-fp32-compiled", "train", "baseline", 32, None, 0.0, 61706, 247_000, 0.990, None, 0.12, 6.0, "torch.compile (inductor), fp32")
    add("ptq-w8a8-minmax", "ptq", "ptq", 8, 8, 0.0, 61706, 64_000, 0.989, 0.9895, 0.18, 3.0, "ONNX Runtime 1.20 int8 (static QDQ: QLinearConv/QGemm kernels)")
    add("ptq-w4a8-minmax", "ptq", "ptq", 4, 8, 0.0, 61706, 33_000, 0.975, 0.975, 0.21, 8.2, "packed int4 codes decoded to fp32")
    add("ptq-w2a8-minmax", "ptq", "ptq", 2, 8, 0.0, 61706, 18_000, 0.60, 0.60, 0.21, 8.1, "packed int2 codes decoded to fp32")
    add("qat-w4a8", "qat", "qat", 4, 8, 0.0, 61706, 33_000, 0.987, 0.987, 0.21, 8.1, "packed int4 codes decoded to fp32")
    add("prune-s90", "prune", "magnitude", 32, None, 0.9, 6171, 40_000, 0.985, None, 0.20, 8.0,
        "PyTorch eager fp32 from compact sparse file (decoded to dense; no sparse-kernel speedup)")
    for s in range(3):  # replicates
        add(f"hawq-w4-s{s}", "hawq", "hawq", 4.1, 8, 0.0, 61706, 34_000 + s, 0.980 + 0.002 * rng.standard_normal(), 0.98,
            0.2 + 0.01 * s, 8.0 + 0.1 * s, "packed codes decoded to fp32", seed=s)
    return pd.DataFrame(rows, columns=COLUMNS)


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
