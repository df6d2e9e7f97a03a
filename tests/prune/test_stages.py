"""The prune and lottery stages end to end on `digits`, plus the one-line bad-input errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from compress.checkpoint import save_state_dict
from compress.config import ConfigError, validate_params
from compress.models import build_model, count_params
from compress.runtimes import load_predictor
from compress.variants import discover, model_spec
from tests.conftest import project_layout

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw,key", [
    ({"prune": {"variants": {"a": {"sparsity": 1.0}}}}, "prune.variants.a.sparsity = 1.0"),
    ({"prune": {"variants": {"a": {"sparsity": -0.2}}}}, "prune.variants.a.sparsity = -0.2"),
    ({"lottery": {"rate": 1.0}}, "lottery.rate = 1.0"),
    ({"lottery": {"rate": 0}}, "lottery.rate = 0"),
    ({"lottery": {"output_rate": 1.5}}, "lottery.output_rate = 1.5"),
    ({"lottery": {"patience": 30_000}}, "lottery.patience"),
    ({"lottery": {"patience": 50}}, "at least eval_every (100)"),
    ({"lottery": {"controls_at": [0.05, 1.5]}}, "lottery.controls_at"),
    ({"lottery": {"workers": 0}}, "lottery.workers = 0"),
    ({"prune": {"variants": {"a": {"criterion": "topk"}}}}, "k is required"),
    ({"prune": {"storage": "zip"}}, "prune.storage = 'zip'"),
])
def test_bad_values_are_one_line_errors_naming_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        validate_params(raw)
    assert key in str(e.value) and "\n" not in str(e.value)


def _setup(tmp_path, digits_prepared, prune=None, lottery=None):
    torch.manual_seed(0)
    spec = model_spec("lenet5", {}, (1, 28, 28), 10)
    base = tmp_path / "models" / "baseline"
    base.mkdir(parents=True)
    project_layout(tmp_path, prepared=digits_prepared)
    model = build_model("lenet5", (1, 28, 28), 10)
    save_state_dict(model, base / "model.safetensors")
    (base / "spec.json").write_text(json.dumps(spec))
    params = {"data": {"source": "digits", "val_size": 200, "calib_size": 128},
              "tracking": {"enabled": False},
              "prune": {"finetune": {"max_iterations": 5}, **(prune or {})},
              "lottery": {"iterations": 10, "eval_every": 5, "patience": 5, "seeds": [0, 1], "target_remaining": 0.85,
                          "controls": ["reinit", "random_mask"], "model": "mlp", "model_kwargs": {"hidden": [32, 16]}, **(lottery or {})}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path, count_params(model)


def _stage(name, params, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", f"stages.{name}", "--params", str(params)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_unknown_layer_stops_the_stage_before_any_work(tmp_path, digits_prepared):
    params, _ = _setup(tmp_path, digits_prepared, prune={"variants": {"a": {"layers": ["fc*", "conv9"]}}})
    p = _stage("prune", params, tmp_path)
    assert p.returncode == 2
    err = p.stderr.strip()
    assert "prune.variants.a.layers" in err and "'conv9' matches no prunable layer" in err and "\n" not in err
    assert not (tmp_path / "variants").exists()


def test_prune_stage_writes_loadable_compact_variants(tmp_path, digits_prepared):
    variants = {"mag90": {"sparsity": 0.9}, "grad-layer-70": {"method": "gradient", "scope": "layer", "sparsity": 0.7, "rounds": 2},
                "struct50": {"method": "structured", "sparsity": 0.5, "norm": "l2"}}
    params, base_params = _setup(tmp_path, digits_prepared, prune={"variants": variants})
    p = _stage("prune", params, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    found = {m.variant: (f, m) for f, m in discover(tmp_path / "variants")}
    assert set(found) == {"prune-mag90", "prune-grad-layer-70", "prune-struct50"}
    x = torch.randn(4, 1, 28, 28)
    dense_bytes = 4 * base_params
    for name, (folder, man) in found.items():
        out = load_predictor(folder, man)(x)
        assert out.shape == (4, 10) and torch.isfinite(out).all()
        size = sum((folder / f).stat().st_size for f in man.deploy.files)
        assert size < 0.7 * dense_bytes, name  # bytes really drop
    _, mag = found["prune-mag90"]
    assert abs(mag.sparsity - 0.9) < 1e-4 and mag.deploy.runtime == "sparse-eager"
    assert abs(found["prune-grad-layer-70"][1].sparsity - 0.7) < 1e-3
    _, st = found["prune-struct50"]
    assert st.deploy.runtime == "torch-eager" and st.model["kwargs"]["widths"] == [3, 8, 60, 42]
    assert st.params < 0.5 * base_params
    metrics = json.loads((tmp_path / "metrics/prune.json").read_text())
    assert metrics["dataset"] == "digits" and set(metrics["variants"]) == set(found)
    # bit-reproducible: a second run writes byte-identical artifacts and manifests, and the same metrics but timings
    first = {f: f.read_bytes() for f in sorted((tmp_path / "variants").rglob("*")) if f.is_file()}

    def untimed(d):
        return {k: untimed(v) for k, v in d.items() if k not in ("wall_seconds", "cpu_seconds")} if isinstance(d, dict) else d

    before = untimed(json.loads((tmp_path / "metrics/prune.json").read_text()))
    assert _stage("prune", params, tmp_path).returncode == 0
    assert all(f.read_bytes() == b for f, b in first.items())
    assert untimed(json.loads((tmp_path / "metrics/prune.json").read_text())) == before


def test_lottery_stage_outputs_figure_data_and_says_it_reads_test(tmp_path, digits_prepared):
    params, _ = _setup(tmp_path, digits_prepared)
    p = _stage("lottery", params, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads((tmp_path / "metrics/lottery.json").read_text())
    assert m["reads_test_split"] is True and m["dataset"] == "digits" and m["rounds"] == 1
    import pandas as pd

    s = pd.read_csv(tmp_path / "plots/lottery/summary.csv")
    assert set(s["kind"]) == {"ticket", "reinit", "random_mask"} and (s["n_seeds"] == 2).all()
    assert (tmp_path / "plots/lottery/lottery.png").stat().st_size > 10_000
    (folder, man), = discover(tmp_path / "variants")
    assert man.stage == "lottery" and man.deploy.runtime == "sparse-eager"
    assert load_predictor(folder, man)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
