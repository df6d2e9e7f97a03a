"""Bad input: one-line errors naming the key, before any trial runs (params.yaml and the CLI)."""
from __future__ import annotations

import pytest
import yaml

from compress.config import ConfigError, validate_params
from studies import bits as bits_study
from studies.common import cli
from tests.studies.conftest import clone_project


@pytest.mark.parametrize("search, key, value", [
    ({"sampler": "cmaes"}, "search.sampler", "'cmaes'"),
    ({"n_trials": 0}, "search.n_trials", "0"),
    ({"n_trials": -4}, "search.n_trials", "-4"),
    ({"weight_bits": [2, 4, 9]}, "search.weight_bits", "[2, 4, 9]"),
    ({"weight_bits": [0, 4]}, "search.weight_bits", "[0, 4]"),
    ({"act_bits": [8, 12]}, "search.act_bits", "[8, 12]"),
    ({"joint_weight_bits": [4, 4]}, "search.joint_weight_bits", "[4, 4]"),
    ({"storage": "redis://localhost/0"}, "search.storage", "'redis://localhost/0'"),
    ({"storage": "sqlite://relative.db"}, "search.storage", "'sqlite://relative.db'"),
    ({"sparsity_levels": [0.5, 1.0]}, "search.sparsity_levels", "[0.5, 1.0]"),
])
def test_params_errors_are_one_line_naming_key_and_value(search, key, value):
    with pytest.raises(ConfigError) as e:
        validate_params({"search": search})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"params.yaml: {key} = {value}")
    assert "allowed" in msg or "must" in msg or "positive" in msg or "twice" in msg or "outside" in msg


def _params(tmp_path, tiny_project, **search):
    return clone_project(tiny_project, tmp_path, storage=f"journal:{tmp_path / 'j.journal'}", **search)


@pytest.mark.parametrize("args, key", [
    (["--n-trials", "0"], "--n-trials = 0"),
    (["--n-trials", "-2"], "--n-trials = -2"),
    (["--sampler", "grid"], "--sampler = 'grid'"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage = 'postgresql://nobody@127.0.0.1:1/none'"),
    (["--storage", "mongodb://x"], "--storage = 'mongodb://x'"),
])
def test_cli_errors_are_one_line_and_nothing_runs(tmp_path, tiny_project, capsys, args, key):
    p = _params(tmp_path, tiny_project)
    called = []
    rc = cli("bits", lambda P: called.append(P) or bits_study.build_spec(P), ["--params", str(p), "--no-mlflow", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {key}")
    assert called == []  # failed before loading the model or running a trial
    assert not (tmp_path / "j.journal").exists()  # the params' journal storage was never opened


def test_bad_bit_width_in_params_stops_the_cli(tmp_path, tiny_project, capsys):
    raw = yaml.safe_load(tiny_project.read_text())
    raw["search"]["weight_bits"] = [4, 17]
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    assert cli("bits", bits_study.build_spec, ["--params", str(p), "--no-mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "search.weight_bits = [4, 17]" in err and "allowed: integers 1..8" in err


def test_unknown_calibration_observer_names_the_key(tmp_path, tiny_project, capsys):
    p = _params(tmp_path, tiny_project, calibration="kl")  # the tiny project calibrated minmax only
    assert cli("bits", bits_study.build_spec, ["--params", str(p), "--no-mlflow", "--n-trials", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "search.calibration = 'kl'" in err


def test_the_study_cli_checks_its_tracking_uri(tmp_path, tiny_project, capsys):
    """An unreachable --tracking-uri is one line before the model is loaded (not minutes of retries)."""
    import time

    from .pg import free_port

    raw = yaml.safe_load(tiny_project.read_text())
    raw["search"]["storage"] = f"journal:{tmp_path / 'j.journal'}"
    raw["tracking"]["enabled"] = True
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    port = free_port()
    called = []
    t0 = time.perf_counter()
    rc = cli("bits", lambda P: called.append(P) or bits_study.build_spec(P),
             ["--params", str(tmp_path / "p.yaml"), "--tracking-uri", f"http://127.0.0.1:{port}"])
    assert time.perf_counter() - t0 < 10
    assert rc == 2 and called == []
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --tracking-uri = 'http://127.0.0.1:{port}': no MLflow tracking server answers (connection "
                   f"refused); start it (mlflow server --host 127.0.0.1 --port {port}) or set --tracking-uri to the default "
                   "sqlite:///mlflow.db")
