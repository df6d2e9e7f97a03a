"""A study worker killed with SIGKILL mid-trial, then rerun through the CLI as a user runs it,
ends with exactly the requested number of COMPLETE trials: the killed trial is FAIL and its
parameters ran again (re-enqueued, ``retry_of``)."""
from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from studies.common import count, load_study
from studies.storage import open_storage

from .conftest import ROOT, clone_project, worker_env

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.slow  # two CLI start-ups (torch, optuna) and ~8 trials of ~0.5 s: ~30 s on 2 idle cores
def test_sigkill_mid_trial_then_rerun_through_the_cli(tmp_path, tiny_project):
    # trials of ~0.5 s (latency measured with many repeats) so that the kill lands inside one
    params = clone_project(tiny_project, tmp_path, storage=f"journal:{tmp_path / 'optuna.journal'}", latency_repeats=400)
    raw = yaml.safe_load(params.read_text())
    url, n = raw["search"]["storage"], 6
    cmd = [sys.executable, "-m", "studies.bits", "--params", str(params), "--study", "killed", "--n-trials", str(n),
           "--total", "--no-mlflow"]
    # 1. a worker, killed while a trial runs (>= 2 done, the current one has drawn all its parameters)
    p = subprocess.Popen(cmd, cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, st, killed = time.time() + 240, None, None
    while time.time() < deadline and p.poll() is None:
        try:  # optuna.load_study: only the worker creates the study (and enqueues the starting points)
            st = optuna.load_study(study_name="killed", storage=open_storage(url))
        except KeyError:  # not created yet
            time.sleep(0.1)
            continue
        done = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        running = [t for t in st.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if "worker" in t.user_attrs]
        if (len(done) >= 2 and running and len(running[0].params) == len(done[0].params)  # all parameters drawn
                and (datetime.datetime.now() - running[0].datetime_start).total_seconds() < 0.3):
            p.send_signal(signal.SIGKILL)
            killed = running[0]
            break
        time.sleep(0.03)
    out, err = p.communicate(timeout=60)
    assert killed is not None and p.returncode == -signal.SIGKILL, (p.returncode, err[-2000:])
    st = load_study(url, "killed")
    before = count(st)
    assert 2 <= before < n and [t.number for t in st.get_trials(states=(TrialState.RUNNING,))] == [killed.number]
    # 2. the same command again: it reaps the dead worker's trial and completes the requested total
    r = subprocess.run(cmd, cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"failed and re-enqueued trials [{killed.number}] of dead workers" in r.stderr
    st = load_study(url, "killed")
    assert count(st) == n and count(st, TrialState.RUNNING) == 0
    failed = st.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [killed.number]
    retried = [t for t in st.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("retry_of") == killed.number]
    assert len(retried) == 1  # re-enqueued with the parameters it had drawn before the kill
    assert failed[0].params == retried[0].params
    assert f"killed: {n} complete, 1 failed, 0 running" in r.stdout
