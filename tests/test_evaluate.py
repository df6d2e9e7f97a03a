import json
import time

import pytest
import torch

from compress.checkpoint import save_state_dict
from compress.config import EvaluateConfig
from compress.evaluate import accuracy, evaluate_variant, measure_latency, predict_all
from compress.models import build_model, count_params
from compress.runtimes import load_predictor
from compress.variants import (
    Form,
    Manifest,
    discover,
    model_spec,
    read_manifest,
    write_variant,
)


def _write_baseline(root, name="baseline-fp32", runtime="torch-eager"):
    m = build_model("lenet5", (1, 28, 28), 10).eval()
    vdir = root / "train" / name
    vdir.mkdir(parents=True)
    save_state_dict(m, vdir / "model.safetensors")
    write_variant(vdir, Manifest(variant=name, stage="train", method="baseline",
                                 model=model_spec("lenet5", {}, (1, 28, 28), 10), dataset="digits", seed=0,
                                 avg_weight_bits=32.0, act_bits=None, sparsity=0.0, params=count_params(m),
                                 deploy=Form(runtime, ["model.safetensors"])))
    return m, vdir


def test_variant_roundtrip_size_and_accuracy_of_reloaded_artifact(tmp_path):
    m, vdir = _write_baseline(tmp_path)
    (folder, man), = discover(tmp_path)
    assert man.variant == "baseline-fp32" and folder == vdir
    x, y = torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,))
    row = evaluate_variant(folder, man, x, y, EvaluateConfig(warmup=1, min_repeats=3, max_repeats=3, budget_s=0.001))
    expected = (m(x).argmax(1) == y).double().mean().item()
    assert row["accuracy"] == pytest.approx(expected)
    assert row["size_bytes"] == (vdir / "model.safetensors").stat().st_size
    assert 4 * 61706 <= row["size_bytes"] < 4 * 61706 + 4096  # fp32 weights plus a small header
    assert row["latency_ms_b1"] > 0 and row["latency_ms_b256"] > row["latency_ms_b1"]
    assert row["threads"] == torch.get_num_threads()


def test_predict_all_uses_only_full_static_batches():
    seen = set()

    def predict(x):
        seen.add(x.shape[0])
        return torch.nn.functional.one_hot(torch.arange(len(x)) % 10, 10).float()

    preds = predict_all(predict, torch.zeros(23, 1, 2, 2), batch_size=8)
    assert seen == {8} and preds.tolist() == [i % 10 for i in range(8)] * 2 + [i % 10 for i in range(7)]
    assert accuracy(predict, torch.zeros(8, 1, 2, 2), torch.arange(8) % 10, 8) == 1.0


def test_latency_is_a_median_after_warmup():
    calls = []

    def predict(x):
        calls.append(1)
        time.sleep(0.002 if len(calls) > 3 else 0.05)  # slow first calls must be absorbed by warm-up
        return x

    lat = measure_latency(predict, torch.zeros(1), warmup=3, repeats=9)
    assert len(calls) == 12
    assert 1.5 <= lat["median_ms"] < 20 and lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"]
    assert lat["threads"] >= 1


def test_bad_manifests_are_clear_errors(tmp_path):
    _write_baseline(tmp_path, "a")
    d = tmp_path / "prune" / "a"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text((tmp_path / "train" / "a" / "manifest.json").read_text())
    with pytest.raises(ValueError, match="duplicate variant names"):
        discover(tmp_path)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid variant manifest"):
        read_manifest(d)
    man = json.loads((tmp_path / "train" / "a" / "manifest.json").read_text())
    man["deploy"]["runtime"] = "tpu-magic"
    with pytest.raises(ValueError, match="unknown runtime 'tpu-magic'"):
        load_predictor(d, Manifest.from_dict(man))
    with pytest.raises(FileNotFoundError, match="was not written"):
        write_variant(tmp_path / "train" / "a", Manifest.from_dict({**man, "deploy": {"runtime": "torch-eager", "files": ["gone.bin"]}}))
