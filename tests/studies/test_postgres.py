"""Scale-out: two workers on a real PostgreSQL server (127.0.0.1) share one study.

Skips, with the reason, only where the PostgreSQL server binaries are not installed.
"""
from __future__ import annotations

import multiprocessing as mp

import optuna
import pytest
from optuna.trial import TrialState

from studies.common import count, load_study, run_study

from .pg import PgServer, pg_bin
from .studies_toy import toy_spec

pytestmark = pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL server binaries (/usr/lib/postgresql/*/bin) not "
                                "installed: apt-get install -y postgresql (done by .ci/run)")
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def pg_url():
    server = PgServer()
    try:
        url = server.start()
    except RuntimeError as e:
        server.stop()
        pytest.fail(str(e))
    yield url
    server.stop()


def _worker(url: str, n: int, seed: int) -> None:
    run_study(toy_spec(), url, "pg-shared", n, mode="add", sampler="random", seed=seed, progress=False)


def test_two_workers_on_postgresql_give_exactly_2n_trials(pg_url):
    n = 5  # the study does not exist yet: both workers race to create it, one wins and enqueues the starts
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(pg_url, n, s)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    st = load_study(pg_url, "pg-shared")
    assert count(st) == 2 * n and len(st.trials) == 2 * n
    assert count(st, TrialState.RUNNING, TrialState.FAIL) == 0
    # both uniform starts ran exactly once, even though both workers enqueued them
    starts = [t.user_attrs.get("start") for t in st.trials if "start" in t.user_attrs]
    assert sorted(starts) == ["uniform w2", "uniform w8"]


@pytest.mark.slow
def test_cli_workers_on_postgresql(pg_url, tiny_project, tmp_path):
    """The documented scale-out command, twice in parallel, against the tiny project."""
    import subprocess
    import sys

    from .conftest import ROOT, worker_env

    cmd = [sys.executable, "-m", "studies.bits", "--params", str(tiny_project), "--storage", pg_url, "--study", "cli-pg",
           "--n-trials", "3", "--no-mlflow"]
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    st = load_study(pg_url, "cli-pg")
    assert count(st) == 6  # the 5 uniform starts are enqueued once; the rest of them still wait
    assert count(st, TrialState.RUNNING, TrialState.FAIL) == 0
    labels = [t.user_attrs["start"] for t in st.trials if "start" in t.user_attrs]
    assert len(labels) == len(set(labels)) == 5
