"""End-to-end: the calibrate and ptq stages on a tiny prepared dataset (digits) and an untrained LeNet-5."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.checkpoint import save_state_dict
from compress.config import DataConfig
from compress.data import prepare, save_prepared
from compress.models import LeNet5
from compress.variants import discover


@pytest.mark.slow
def test_calibrate_and_ptq_stages(tmp_path):
    save_prepared(prepare(DataConfig(source="digits", val_size=100, calib_size=64, download=False), seed=0), tmp_path / "data/prepared")
    torch.manual_seed(0)
    save_state_dict(LeNet5(), tmp_path / "models/baseline/model.safetensors")
    (tmp_path / "models/baseline/spec.json").write_text(json.dumps({"name": "lenet5", "kwargs": {}, "input_shape": [1, 28, 28], "num_classes": 10}))
    (tmp_path / "params.yaml").write_text(
        "tracking: {enabled: false}\n"
        "calibrate: {act_bits: [8, 4]}\n"
        "ptq: {bits: [w8a8, w4a4, w3a8], methods: [minmax, kl], floats: [fp16, fp8_e4m3], pt2e_methods: [], val_size: 50}\n")
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    for stage in ("calibrate", "ptq"):
        r = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    ranges = json.loads((tmp_path / "calibration/ranges.json").read_text())
    assert set(ranges["ranges_by_bits"]) == {"8", "4"} and set(ranges["ranges"]["kl"]) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    found = {m.variant: m for _, m in discover(tmp_path / "variants")}
    assert set(found) == {f"ptq-{t}-{m}" for t in ("w8a8", "w4a4", "w3a8") for m in ("minmax", "kl")} | {"ptq-fp16", "ptq-fp8-e4m3"}
    assert found["ptq-w8a8-kl"].deploy.runtime == "onnxruntime-int8" and found["ptq-w3a8-minmax"].deploy.runtime == "packed"
    assert all(m.sim is not None and m.sim.runtime == "quant-sim" for m in found.values())
    metrics = json.loads((tmp_path / "metrics/ptq.json").read_text())
    assert metrics["dataset"] == "digits" and len(metrics["rows"]) == len(found)


def test_ptq_stage_rejects_uncalibrated_width(tmp_path):
    (tmp_path / "params.yaml").write_text("ptq: {bits: [w8a6]}\n")
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "stages.ptq", "--params", str(tmp_path / "params.yaml")], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "calibrate.act_bits" in r.stderr
