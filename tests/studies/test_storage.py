"""Storage, resumption and scale-out of the search runner (studies.common / studies.storage).

Workers are real OS processes (fork) sharing one study through the storage; the objective is
the tiny toy spec so each test takes seconds.
"""
from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from studies.common import count, load_study, run_study
from studies.storage import StorageError, open_storage, reap_dead_workers, worker_id

from .studies_toy import CALLS, toy_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)
CTX = mp.get_context("fork")


def _worker(url: str, name: str, n: int, mode: str, seed: int, sleep: float = 0.0) -> None:
    run_study(toy_spec(sleep), url, name, n, mode=mode, sampler="random", seed=seed, progress=False)


def _urls(tmp_path):
    return {"journal": f"journal:{tmp_path / 'optuna.journal'}", "sqlite": f"sqlite:///{tmp_path / 'optuna.db'}"}


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_rerun_resumes_without_redoing_finished_trials(tmp_path, backend):
    url = _urls(tmp_path)[backend]
    CALLS.clear()
    st = run_study(toy_spec(), url, "s", 5, mode="total", sampler="nsga2", seed=0, population_size=4, progress=False)
    assert count(st) == 5 and len(CALLS) == 5
    # the two uniform starts ran first, in order
    first = sorted(st.get_trials(), key=lambda t: t.number)[:2]
    assert [t.user_attrs["start"] for t in first] == ["uniform w8", "uniform w2"]
    # same request again: nothing runs, nothing is lost, the starts are not enqueued twice
    st = run_study(toy_spec(), url, "s", 5, mode="total", sampler="nsga2", seed=0, population_size=4, progress=False)
    assert count(st) == 5 and len(CALLS) == 5
    assert count(st, TrialState.WAITING) == 0
    # a larger request runs only the missing trials
    st = run_study(toy_spec(), url, "s", 8, mode="total", sampler="nsga2", seed=0, population_size=4, progress=False)
    assert count(st) == 8 and len(CALLS) == 8 and len(st.trials) == 8


def test_other_inputs_refuse_to_mix_into_a_study(tmp_path):
    url = _urls(tmp_path)["journal"]
    run_study(toy_spec(), url, "s", 2, progress=False)
    with pytest.raises(ValueError, match="made for other inputs"):
        run_study(toy_spec(fingerprint="toy-v2"), url, "s", 2, progress=False)


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_k_workers_times_n_trials_give_exactly_k_n(tmp_path, backend):
    url, k, n = _urls(tmp_path)[backend], 3, 4
    # the study does not exist yet: the workers race to create it (exactly one does)
    procs = [CTX.Process(target=_worker, args=(url, "shared", n, "add", 100 + i)) for i in range(k)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * k
    st = load_study(url, "shared")
    assert count(st) == k * n
    assert len(st.trials) == k * n  # no failed, running or duplicate trials
    assert len({t.number for t in st.trials}) == k * n
    labels = [t.user_attrs["start"] for t in st.trials if "start" in t.user_attrs]
    assert sorted(labels) == ["uniform w2", "uniform w8"]  # enqueued once, by the creator


def _claimer(url: str, barrier, queue) -> None:
    st = load_study(url, "claims")
    barrier.wait()  # all workers claim at once
    got = []
    while (tid := st._pop_waiting_trial_id()) is not None:  # what Study.ask does with enqueued trials
        got.append(tid)
    queue.put(got)


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_each_enqueued_trial_is_claimed_by_exactly_one_worker(tmp_path, backend):
    """The race behind a rare 'Cannot tell a COMPLETE trial' in a worker: on SQLite, Optuna's claim
    of a WAITING trial (read, check, write) let two workers take the same trial (~25 % of 40 here
    before AtomicClaimRDBStorage made the claim one conditional UPDATE)."""
    url, k, n = _urls(tmp_path)[backend], 3, 40
    st = load_study(url, "claims")
    for i in range(n):
        st.enqueue_trial({"x": i})
    barrier, queue = CTX.Barrier(k), CTX.Queue()
    procs = [CTX.Process(target=_claimer, args=(url, barrier, queue)) for _ in range(k)]
    for p in procs:
        p.start()
    claims = [t for _ in procs for t in queue.get(timeout=120)]
    for p in procs:
        p.join(60)
    assert sorted(claims) == sorted(t._trial_id for t in st.get_trials(deepcopy=False))  # each one exactly once
    assert count(load_study(url, "claims"), TrialState.RUNNING) == n


def test_sigkilled_worker_leaves_a_usable_study(tmp_path):
    url = f"journal:{tmp_path / 'optuna.journal'}"
    p = CTX.Process(target=_worker, args=(url, "k", 6, "total", 0, 0.4))
    p.start()
    st = load_study(url, "k")
    deadline = time.time() + 60

    def mid_trial() -> bool:  # >= 2 done; the current one registered its worker and sleeps (0.4 s)
        running = st.get_trials(states=(TrialState.RUNNING,))
        return (count(st) >= 2 and len(running) == 1 and "worker" in running[0].user_attrs
                and len(running[0].params) == 3
                and (datetime.datetime.now() - running[0].datetime_start).total_seconds() < 0.25)

    while time.time() < deadline and not mid_trial():
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert p.exitcode == -signal.SIGKILL
    st = load_study(url, "k")
    done_before = count(st)
    assert 2 <= done_before < 6 and count(st, TrialState.RUNNING) == 1
    killed = st.get_trials(states=(TrialState.RUNNING,))[0]
    # the next run reaps the dead worker's trial and completes the requested total
    st = run_study(toy_spec(), url, "k", 6, mode="total", sampler="random", seed=1, progress=False)
    assert count(st) == 6
    assert count(st, TrialState.RUNNING) == 0
    assert [t.number for t in st.get_trials(states=(TrialState.FAIL,))] == [killed.number]
    retried = [t for t in st.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("retry_of") == killed.number]
    assert len(retried) == 1  # re-enqueued with the parameters it had drawn before the kill
    assert all(retried[0].params[k] == v for k, v in killed.params.items())


def test_reaper_leaves_live_workers_alone(tmp_path):
    st = load_study(f"journal:{tmp_path / 'j.journal'}", "live")
    t = st.ask()
    t.set_user_attr("worker", worker_id())  # this very process: alive
    assert reap_dead_workers(st) == []
    assert count(st, TrialState.RUNNING) == 1
    t2 = st.ask()
    t2.set_user_attr("worker", {**worker_id(), "start": "0"})  # same pid, other start time: a recycled pid
    assert reap_dead_workers(st) == [t2.number]
    t3 = st.ask()  # killed between creating the trial and recording its worker
    assert reap_dead_workers(st, orphan_grace_s=60) == []
    time.sleep(0.05)
    assert reap_dead_workers(st, orphan_grace_s=0.01) == [t3.number]
    assert count(st, TrialState.RUNNING) == 1 and st.trials[t.number].state == TrialState.RUNNING


def test_unreachable_and_malformed_storage_fail_in_one_line_before_any_trial(tmp_path):
    CALLS.clear()
    with pytest.raises(StorageError) as e:
        run_study(toy_spec(), "postgresql://nobody@127.0.0.1:1/none", "s", 3, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "search.storage" in msg and "unreachable" in msg
    with pytest.raises(StorageError, match="search.storage = 'redis://x' is invalid"):
        open_storage("redis://x")
    with pytest.raises(ValueError, match="--n-trials = 0"):
        run_study(toy_spec(), f"journal:{tmp_path / 'j'}", "s", 0, progress=False)
    assert CALLS == []
