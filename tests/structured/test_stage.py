"""The monarch stage end to end on tiny data: variants load back through the registered runtime and
reproduce the stage's models; int8 storage is smaller and round-trips; bad params stop it at once."""
from __future__ import annotations

import json
import re
import sys

import pytest
import torch
import yaml

from compress.config import DataConfig
from compress.data import load_split, prepare, save_prepared
from compress.evaluate import accuracy
from compress.runtimes import load_predictor, model_from_spec
from compress.structured.int8 import dequantize, load_int8, quantize_per_channel, save_int8
from compress.structured.monarch import MonarchLinear, MonarchShape, monarchize, plan
from compress.variants import discover


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("prepared")
    save_prepared(prepare(DataConfig(source="digits", val_size=200, calib_size=64), seed=0), d)
    return d


def run_stage(tmp_path, monkeypatch, prepared, monarch: dict):
    params = {"seed": 0, "data": {"source": "digits", "val_size": 200, "calib_size": 64, "out": str(prepared)},
              "tracking": {"enabled": False},
              "monarch": monarch}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["stages.monarch"])
    from stages import monarch as stage

    stage.main()


def test_stage_writes_loadable_variants(tmp_path, monkeypatch, digits_dir):
    tiny = {"epochs": 1, "max_iterations": 8, "batch_size": 64}
    run_stage(tmp_path, monkeypatch, digits_dir,
              {"model": "lenet300", "reference": tiny, "finetune": tiny, "out": "variants/monarch"})
    found = {m.variant: (f, m) for f, m in discover(tmp_path / "variants")}
    assert set(found) == {"monarch-dense-ref", "monarch-projected", "monarch-finetuned", "monarch-finetuned-int8"}
    metrics = json.loads((tmp_path / "metrics/monarch.json").read_text())
    assert metrics["dataset"] == "digits" and metrics["reference"] == "trained here"
    # lenet300 hidden layers 784->300 (k=28, j=15) and 300->100 (k=15, j=10), rank 1
    assert metrics["replaced_weights_dense"] == 784 * 300 + 300 * 100
    assert metrics["replaced_weights_monarch"] == (15 * 784 + 28 * 300) + (10 * 300 + 15 * 100)
    x, y = load_split(digits_dir, "val")
    accs = {}
    for name, (folder, man) in found.items():
        predict = load_predictor(folder, man)
        accs[name] = accuracy(predict, x, y)
        if name != "monarch-dense-ref":
            assert man.deploy.runtime == "monarch-eager"
            assert man.params == metrics["params_monarch"] < metrics["params_dense"]
    # the re-loaded artifacts reproduce what the stage measured on its in-memory models
    assert accs["monarch-dense-ref"] == pytest.approx(metrics["val_acc_dense"])
    assert accs["monarch-projected"] == pytest.approx(metrics["val_acc_projected"])
    assert accs["monarch-finetuned"] == pytest.approx(metrics["val_acc_finetuned"])
    assert accs["monarch-finetuned-int8"] == pytest.approx(metrics["val_acc_finetuned_int8"])
    size = {n: sum(p.stat().st_size for p in f.iterdir() if p.name != "manifest.json") for n, (f, _) in found.items()}
    assert size["monarch-finetuned"] < size["monarch-dense-ref"] / 4
    assert size["monarch-finetuned-int8"] < size["monarch-finetuned"] / 2
    assert (tmp_path / "plots/monarch/history.csv").read_text().count("finetune") >= 1


@pytest.mark.parametrize("monarch, message", [
    ({"model": "lenet300", "nblocks": 7}, r"monarch\.nblocks = 7 does not fit layer net\.1 \(784 -> 300\)"),
    ({"model": "lenet300", "layers": ["fc1"]}, r"monarch\.layers = \['fc1'\]: 'fc1' is not a Linear layer"),
])
def test_stage_rejects_misfits_before_work(tmp_path, monkeypatch, digits_dir, capsys, monarch, message):
    with pytest.raises(SystemExit) as e:
        run_stage(tmp_path, monkeypatch, digits_dir, monarch)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "variants").exists()  # nothing was trained or written


def test_int8_per_channel_roundtrip(tmp_path):
    torch.manual_seed(0)
    w = torch.randn(4, 6, 9) * torch.logspace(-3, 1, 6).view(1, 6, 1)  # rows of very different ranges
    q, s = quantize_per_channel(w)
    assert q.dtype == torch.int8 and s.shape == (4, 6, 1)
    assert q.abs().max() == 127 and (q.abs().amax(-1) == 127).all()  # every row uses the full range
    assert ((dequantize(q, s) - w).abs() <= s / 2 + 1e-7).all()  # error at most half a step, per row
    zq, zs = quantize_per_channel(torch.zeros(2, 3, 4))
    assert (zq == 0).all() and torch.isfinite(zs).all()
    # a whole model: save -> load into a fresh structure gives exactly the dequantized factors
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 36), torch.nn.ReLU(), torch.nn.Linear(36, 4))
    shapes = plan(base, "hidden", "sqrt")
    m = monarchize(base, shapes)
    save_int8(m, tmp_path / "m.safetensors")
    fresh = load_int8(monarchize(base, shapes, project_weights=False), tmp_path / "m.safetensors")
    for name in ("1.w1", "1.w2"):
        ref = dequantize(*quantize_per_channel(m.get_parameter(name)))
        assert torch.equal(fresh.get_parameter(name), ref)
    assert torch.equal(fresh[3].weight, m[3].weight)  # non-Monarch layers stay fp32, exact
