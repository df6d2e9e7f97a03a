"""The hawq / obd stages end to end on a tiny digits setup, and their bad-input exits."""
import json
import sys

import pytest
import torch
import yaml

from compress.checkpoint import save_state_dict
from compress.config import DataConfig
from compress.data import prepare, save_prepared
from compress.models import build_model
from compress.variants import discover

FT = {"max_iterations": 2, "batch_size": 64}
TINY = {
    "hawq": {"hessian": {"batch_size": 32, "batches": 1, "max_iters": 5, "samples": 2}, "budgets_avg_bits": [2.5, 3.0],
             "uniform_bits": [2, 3], "seeds": [0, 1], "finetune": FT, "landscape_points": 3},
    "obd": {"hessian": {"batch_size": 32, "batches": 1, "samples": 2}, "rounds": 2, "retrain": FT, "curve_points": 3,
            "loss_samples": 64},
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    p = prepare(DataConfig(source="digits", train_size=200, val_size=60, test_size=50, calib_size=64, download=False), seed=0)
    save_prepared(p, tmp_path / "data" / "prepared")
    torch.manual_seed(0)
    m = build_model("lenet5", p.meta["input_shape"], p.meta["num_classes"])
    save_state_dict(m, tmp_path / "models" / "baseline" / "model.safetensors")
    spec = {"name": "lenet5", "kwargs": {}, "input_shape": p.meta["input_shape"], "num_classes": p.meta["num_classes"]}
    (tmp_path / "models" / "baseline" / "spec.json").write_text(json.dumps(spec))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _params(workdir, **over):
    raw = {"data": {"source": "digits", "val_size": 60}, "tracking": {"enabled": False}, **TINY}
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v}
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    return str(workdir / "params.yaml")


def _run(monkeypatch, module, params):
    monkeypatch.setattr(sys, "argv", [module, "--params", params])
    __import__(f"stages.{module}", fromlist=["main"]).main()


def test_bad_block_name_exits_before_work_with_one_line(workdir, monkeypatch, capsys):
    params = _params(workdir, hawq={"blocks": {"convs": ["conv*"], "head": ["fc*", "fc9"]}})
    with pytest.raises(SystemExit) as e:
        _run(monkeypatch, "hawq", params)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err
    assert "hawq.blocks.head" in err and "'fc9' matches no conv/linear layer" in err
    assert not (workdir / "variants").exists() and not (workdir / "metrics").exists()


def test_too_few_calibration_images_is_an_error_naming_the_key(workdir, monkeypatch, capsys):
    params = _params(workdir, obd={"hessian": {"batch_size": 64, "batches": 2}})
    with pytest.raises(SystemExit):
        _run(monkeypatch, "obd", params)
    assert "obd.hessian.batches x batch_size = 128 exceeds the 64 calibration images" in capsys.readouterr().err


def test_hawq_and_obd_stages_end_to_end(workdir, monkeypatch):
    params = _params(workdir)
    _run(monkeypatch, "hawq", params)
    _run(monkeypatch, "obd", params)
    found = {m.variant: m for _, m in discover("variants")}
    hawq = [v for v in found if v.startswith("hawq-")]
    assert len(hawq) == 2 * (2 * 2 + 2)  # (allocators x budgets + uniform widths) x seeds
    assert all(found[v].deploy.runtime == "packed" and found[v].sim.runtime == "quant-sim" for v in hawq)
    assert sorted(v for v in found if v.startswith("obd-")) == ["obd-r1-sp50", "obd-r2-sp75"]
    metrics = json.loads((workdir / "metrics" / "hawq.json").read_text())
    comps = metrics["claim"]["comparisons"]
    assert [(c["allocator"], c["budget_avg_bits"]) for c in comps] == [("sensitivity", 2.5), ("sensitivity", 3.0),
                                                                         ("ilp", 2.5), ("ilp", 3.0)]
    assert metrics["hessian_hvps"] > 0 and set(metrics["claim"]["holds"]) >= {"sensitivity_vs_uniform"}
    alloc = json.loads((workdir / "hawq" / "allocation.json").read_text())["allocations"]
    assert all(set(a["weight_bits"]) == {"conv1", "conv2", "fc1", "fc2", "fc3"} and a["avg_bits"] <= a["budget"] for a in alloc)
    for f in ("table_vi.md", "table_vi.csv", "eigenvalues.png", "landscape.png", "hawq_vs_uniform.png"):
        assert (workdir / "reports" / "hawq" / f).stat().st_size > 0
    assert (workdir / "reports" / "obd" / "obd_figure.png").stat().st_size > 0
    curve = (workdir / "plots" / "obd" / "curve.csv").read_text().splitlines()
    # obd, magnitude, the raw Hutchinson diagonal and the same with negative estimates corrected (obd.negative)
    assert curve[0].startswith("method,removed,train_loss") and len(curve) == 1 + 4 * 3
