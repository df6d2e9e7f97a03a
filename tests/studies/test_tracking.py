"""MLflow: one parent run per study, one nested run per trial, shared metric names."""
from __future__ import annotations

import multiprocessing as mp

import mlflow
import optuna
import pytest

from compress.config import load_params
from studies import bits as bits_study
from studies.common import count, make_tracker, plot_study, run_study, trials_frame
from studies.tracking import METRICS

from .studies_toy import toy_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)
SHARED = ["accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256", "params", "avg_weight_bits", "sparsity"]


def _runs(uri: str, exp: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[exp])


def test_bits_study_logs_parent_and_nested_trial_runs(tmp_path, tiny_project, monkeypatch):
    monkeypatch.chdir(tiny_project.parent)
    P = load_params(tiny_project)
    P.tracking.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    P.tracking.experiment = "nest"
    P.search.storage = f"journal:{tmp_path / 'j.journal'}"
    spec, meta = bits_study.build_spec(P)
    st = run_study(spec, P.search.storage, "bits-nest", 6, mode="total", sampler="nsga2", seed=0, population_size=4,
                   tracker=make_tracker(P, meta, "bits"), progress=False,
                   on_done=lambda s: plot_study(s, tmp_path / "figs"))
    runs = _runs(P.tracking.uri, "nest")
    parents = runs[runs["tags.run_kind"] == "study"]
    trials = runs[runs["tags.run_kind"] == "trial"]
    assert len(parents) == 1 and len(trials) == count(st) == 6
    pid = parents["run_id"].iloc[0]
    assert (trials["tags.mlflow.parentRunId"] == pid).all()
    # every variant metric name the evaluate stage logs is present on the trial runs
    for m in SHARED:
        assert trials[f"metrics.{m}"].notna().all(), m
    assert set(SHARED) <= set(METRICS)
    # the per-layer bit map is logged as params, and matches the trial's config
    layers = list(trials_frame(st)["config"].map(lambda c: __import__("json").loads(c)["weight_bits"]).iloc[0])
    for n in layers:
        assert trials[f"params.wbits.{n}"].notna().all() and trials[f"params.abits.{n}"].notna().all()
    assert (trials["tags.dataset"] == meta["dataset"]).all()
    # the study's Pareto plot is an artifact of the parent run
    arts = [a.path for a in mlflow.MlflowClient(P.tracking.uri).list_artifacts(pid)]
    assert arts == ["bits-nest.png"]
    # resuming does not create a second parent run
    run_study(spec, P.search.storage, "bits-nest", 7, mode="total", sampler="nsga2", seed=0, population_size=4,
              tracker=make_tracker(P, meta, "bits"), progress=False)
    runs = _runs(P.tracking.uri, "nest")
    assert (runs["tags.run_kind"] == "study").sum() == 1 and (runs["tags.run_kind"] == "trial").sum() == 7


def _tracked_worker(tmp_path, n: int, seed: int) -> None:
    from studies.tracking import StudyTracker

    tr = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "par", {"stage": "search"})
    run_study(toy_spec(), f"journal:{tmp_path / 'j.journal'}", "par", n, mode="add", sampler="random", seed=seed,
              tracker=tr, progress=False)


@pytest.mark.slow
def test_parallel_workers_share_one_parent_run(tmp_path):
    from studies.tracking import StudyTracker

    # the tracking database exists before workers start (as after any stage run or `mlflow server`)
    StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "par")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_tracked_worker, args=(tmp_path, 3, s)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    runs = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "par")
    parents = runs[runs["tags.run_kind"] == "study"]
    trials = runs[runs["tags.run_kind"] == "trial"]
    assert len(parents) == 1, "a worker that lost the parent-run race must delete its empty duplicate"
    assert len(trials) == 6 and (trials["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]).all()
