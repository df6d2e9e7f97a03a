"""End-to-end: the binary, sr and qat stages on a tiny digits config write loadable variants (slow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PARAMS = """
seed: 0
data: {source: digits, download: false, val_size: 200, calib_size: 128}
train: {epochs: 2, batch_size: 64}
tracking: {enabled: false}
calibrate: {methods: [minmax], act_bits: [8, 4]}
qat: {epochs: 1, bits: [w8a8, w2a4]}
binary: {hidden: [64, 64], epochs: 1, modes: [det, stoch], seeds: [0, 1], fp32_seeds: [0]}
sr: {sr_runs: 5, train: {train_size: 500, hidden: [16]}}
"""


def _run(stage: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"stage {stage} failed:\n{r.stderr[-3000:]}"


@pytest.mark.slow
def test_stages_write_variants_that_the_evaluator_loads(tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS)
    for stage in ("prepare", "train", "calibrate", "qat", "binary", "sr"):
        _run(stage, tmp_path)
    from types import SimpleNamespace

    from compress.data import load_split
    from compress.evaluate import evaluate_variant
    from compress.variants import discover

    x, y = load_split(tmp_path / "data/prepared", "test")
    cfg = SimpleNamespace(batch_size=256, latency_batches=[1, 256], warmup=1, repeats=2)
    rows = {m.variant: evaluate_variant(f, m, x, y, cfg) for f, m in discover(tmp_path / "variants") if m.stage in ("qat", "binary")}
    assert {"qat-w8a8-fixed", "qat-w2a4-fixed", "binary-bc-det-s0", "binary-bc-stoch-s1", "binary-fp32-mlp-s0"} <= set(rows)
    ops = rows["qat-w8a8-fixed"]["lowp_ops_b256"]  # "int8 <n>/<total> compute ops (...)" on its fastest b256 engine
    assert ops.startswith("int8 ") and int(ops.split()[1].split("/")[0]) > 0, ops
    # the 1-bit artifact is ~32x smaller than the fp32 MLP of the same widths
    assert rows["binary-bc-det-s0"]["size_bytes"] * 16 < rows["binary-fp32-mlp-s0"]["size_bytes"]
    assert rows["qat-w2a4-fixed"]["accuracy"] == rows["qat-w2a4-fixed"]["accuracy_sim"]
    sr = json.loads((tmp_path / "metrics/sr.json").read_text())
    assert sr["rn_final_error"] > 4 * sr["sr_final_error_mean"]
    assert (tmp_path / "plots/sr/stagnation.png").stat().st_size > 0
    binary = json.loads((tmp_path / "metrics/binary.json").read_text())
    assert set(binary["test_error_pct"]) == {"det", "stoch", "fp32"} and "test split" in binary["note"]
