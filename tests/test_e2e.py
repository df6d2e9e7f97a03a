"""End to end: `dvc repro` of the whole pipeline on a tiny configuration in a fresh git repo."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.tiny_params import tiny_params

REQUIRED = ["variant", "stage", "method", "model", "dataset", "seed", "avg_weight_bits", "act_bits", "sparsity", "params",
            "size_bytes", "accuracy", "accuracy_sim", "latency_ms_b1", "latency_ms_b256", "runtime"]


def _env():
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _stage_outputs() -> list[str]:
    """Every path a stage of dvc.yaml writes (outs, metrics, plots)."""
    out = []
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for o in stage.get(kind) or []:
                out.append(next(iter(o)) if isinstance(o, dict) else o)
    return out


def _run(cmd, cwd, env):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout + p.stderr


def _fresh_clone(work: Path, env: dict) -> None:
    """The checkout's files, without any stage's outputs, as a new git repo with the tiny params."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    produced = ("dvc.lock", *_stage_outputs())  # a fresh clone starts without any stage's outputs
    for f in files:
        src = ROOT / f
        if src.is_file() and not any(f == o or f.startswith(o.rstrip("/") + "/") for o in produced):
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / f)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(tiny_params(base, "sqlite:///mlflow.db"), sort_keys=False))
    _run(["git", "init", "-q"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "tiny"], work, env)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work, env = tmp_path_factory.mktemp("clone"), _env()
    _fresh_clone(work, env)
    log = _run([sys.executable, "-m", "dvc", "repro"], work, env)
    return work, env, log


def test_repro_produces_the_variants_table(pipeline):
    work, _, _ = pipeline
    df = pd.read_csv(work / "reports/variants.csv")
    assert list(df.columns[: len(REQUIRED)]) == REQUIRED or set(REQUIRED) <= set(df.columns)
    base = df[df.variant == "baseline-fp32"].iloc[0]
    assert base.dataset == "digits" and base.avg_weight_bits == 32 and 0.3 < base.accuracy <= 1.0
    assert (df.size_bytes > 0).all() and (df.latency_ms_b1 > 0).all() and (df.latency_ms_b256 > 0).all()
    assert df.variant.is_unique
    summary = json.loads((work / "metrics/summary.json").read_text())
    assert summary["dataset"] == "digits" and summary["n_variants"] == len(df)
    for f in (work / "metrics").glob("*.json"):  # every metrics file names the dataset actually used
        ds = json.loads(f.read_text()).get("dataset")
        assert ds == "digits" or (f.name == "sr.json" and ds.startswith("none")), (f.name, ds)
    assert (work / "models/baseline/w0.safetensors").exists() and (work / "models/baseline/model.safetensors").exists()
    hist = pd.read_csv(work / "plots/train/history.csv")
    assert {"iteration", "train_loss", "val_loss", "val_acc"} <= set(hist.columns)


def test_second_repro_reruns_nothing(pipeline):
    work, env, _ = pipeline
    out = _run([sys.executable, "-m", "dvc", "repro"], work, env)
    assert "Running stage" not in out, out
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status"], work, env)


def test_mlflow_runs_are_tagged(pipeline):
    work, _, _ = pipeline
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["compress-suite"])
    stages = set(runs["tags.stage"])
    assert {"prepare", "train", "evaluate"} <= stages
    assert ((runs["tags.dataset"] == "digits") | (runs["tags.stage"] == "sr") & runs["tags.dataset"].str.startswith("none")).all()
    assert runs["tags.git_commit"].str.match(r"^[0-9a-f]{40}").all()
    assert runs["tags.params_hash"].str.len().eq(12).all()
    per_variant = runs[runs["tags.variant"].notna()]
    assert {"metrics.accuracy", "metrics.size_bytes", "metrics.latency_ms_b1", "metrics.latency_ms_b256"} <= set(per_variant.columns)
    train = runs[runs["tags.stage"] == "train"].iloc[0]
    inputs = mlflow.get_run(train.run_id).inputs.dataset_inputs
    assert inputs and inputs[0].dataset.name == "digits"


def test_bad_params_stop_the_stage_with_one_line(pipeline, tmp_path):
    work, env, _ = pipeline
    bad = yaml.safe_load((work / "params.yaml").read_text())
    bad["train"]["epochs"] = 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    p = subprocess.run([sys.executable, "-m", "stages.train", "--params", str(tmp_path / "bad.yaml")], cwd=work, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 2
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert err == [f"error: {tmp_path / 'bad.yaml'}: train.epochs = 0 is invalid: Input should be greater than or equal to 1"]


def test_forced_repro_gives_identical_summary(pipeline):
    """`dvc repro -f` reruns every stage; the deterministic metrics must not move."""
    work, env, _ = pipeline
    first = (work / "metrics/summary.json").read_text()
    _run([sys.executable, "-m", "dvc", "repro", "-f"], work, env)
    assert (work / "metrics/summary.json").read_text() == first


def _stage_pids(work: Path, module: str) -> list[int]:
    """Processes running ``python -m <module>`` in ``work`` (the stage command DVC started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"-m" in cmd and module.encode() in cmd and Path(os.readlink(proc / "cwd")) == work:
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


@pytest.mark.slow
def test_repro_killed_mid_stage_then_rerun_gives_the_same_summary(pipeline, tmp_path):
    """SIGKILL the train stage while it trains (initial weights written, trained ones not yet),
    rerun ``dvc repro``: it completes, and metrics/summary.json equals the uninterrupted run's."""
    import signal
    import time

    work, env = tmp_path / "clone", _env()
    work.mkdir()
    _fresh_clone(work, env)
    repro = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=work, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    # 1. wait for the train stage to be mid-way: w0.safetensors (written before fit) without model.safetensors
    base, killed, deadline = work / "models" / "baseline", [], time.time() + 900
    while time.time() < deadline and repro.poll() is None and not killed:
        if (base / "w0.safetensors").exists() and not (base / "model.safetensors").exists():
            for pid in _stage_pids(work, "stages.train"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.01)
    out = repro.communicate(timeout=900)[0]
    assert killed, f"the train stage was not caught mid-way:\n{out[-3000:]}"
    assert repro.returncode != 0 and not (base / "model.safetensors").exists(), out[-3000:]
    assert "train" in _run([sys.executable, "-m", "dvc", "status"], work, env)  # DVC knows the stage did not finish
    # 2. rerun: everything completes and the deterministic metrics equal the uninterrupted run's
    _run([sys.executable, "-m", "dvc", "repro"], work, env)
    assert (work / "metrics/summary.json").read_text() == (pipeline[0] / "metrics/summary.json").read_text()
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status"], work, env)
