"""A tiny project on disk (digits data, a small trained MLP, calibrated ranges, params.yaml)
for the search tests: every trial takes milliseconds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def make_project(root: Path, search: dict | None = None, tracking: bool = False) -> Path:

    from compress.checkpoint import save_state_dict
    from compress.config import DataConfig, TrainConfig
    from compress.data import load_split, prepare, save_prepared
    from compress.models import build_model
    from compress.quant.observers import calibrate
    from compress.train import fit, seed_everything
    from compress.variants import model_spec

    root.mkdir(parents=True, exist_ok=True)
    data = root / "data" / "prepared"
    save_prepared(prepare(DataConfig(source="digits", root=str(root / "raw"), download=False, val_size=300,
                                     calib_size=128), seed=0), data)
    meta = json.loads((data / "meta.json").read_text())
    seed_everything(0)
    kwargs = {"hidden": [32, 16]}
    model = build_model("mlp", meta["input_shape"], meta["num_classes"], **kwargs)
    tcfg = TrainConfig(epochs=2, batch_size=64, lr=5e-3, device="cpu")
    fit(model, load_split(data, "train"), load_split(data, "val"), tcfg, seed=0, desc=None)
    base = root / "models" / "baseline"
    base.mkdir(parents=True)
    save_state_dict(model, base / "model.safetensors")
    (base / "spec.json").write_text(json.dumps(model_spec("mlp", kwargs, meta["input_shape"], meta["num_classes"])))
    xc, _ = load_split(data, "calib")
    ranges = calibrate(model.eval(), xc, ["minmax"])
    (root / "calibration").mkdir()
    (root / "calibration" / "ranges.json").write_text(json.dumps({"ranges": {m: {k: list(v) for k, v in r.items()} for m, r in ranges.items()}}))
    params = {
        "seed": 0,
        "data": {"source": "digits", "val_size": 300, "calib_size": 128},
        "model": {"name": "mlp", "kwargs": kwargs},
        "train": {"device": "cpu"},
        "calibrate": {"methods": ["minmax"]},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "test-search", "enabled": tracking},
        "search": {"n_trials": 4, "population_size": 4, "storage": f"journal:{root / 'search' / 'optuna.journal'}",
                   "eval_size": 200, "latency_repeats": 2, **(search or {})},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


def clone_project(params: Path, dest: Path, **search) -> Path:
    """A copy of the tiny project's params.yaml in ``dest`` with its pipeline files linked in (search keys
    overridden); stages and workers run with ``cwd=dest``."""
    src = params.parent
    for rel in ("data", "models", "calibration"):
        if not (dest / rel).exists():
            (dest / rel).symlink_to(src / rel, target_is_directory=True)
    raw = yaml.safe_load(params.read_text())
    raw["search"].update(search)
    (dest / "params.yaml").write_text(yaml.safe_dump(raw))
    return dest / "params.yaml"


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """params.yaml of a tiny project (shared by the tests; they copy or override what they change)."""
    import torch

    torch.set_num_threads(1)
    return make_project(tmp_path_factory.mktemp("proj"))


def worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env
