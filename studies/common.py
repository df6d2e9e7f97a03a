"""The search runner shared by the bits / sparsity / joint studies, and their CLI.

A study is two-objective (accuracy on the validation split: maximise; artifact bytes:
minimise).  ``run_study``:

1. opens the storage (``studies.storage``) and creates or loads the study by name;
2. fails the RUNNING trials of dead local workers and re-enqueues their parameters;
3. enqueues the starting points (uniform allocations, HAWQ's) unless already present;
4. runs trials: ``mode="add"`` runs exactly ``n_trials`` in this worker (k workers x n = k*n);
   ``mode="total"`` runs until the study holds ``n_trials`` COMPLETE trials (re-running resumes:
   finished trials are not redone);
5. logs each trial as a nested MLflow run under the study's parent run, and the Pareto plot.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from stages.preflight import PreflightError, check_tracking_uri
from studies.storage import WORKER_ATTR, StorageError, open_storage, reap_dead_workers, worker_id

DIRECTIONS = ["maximize", "minimize"]
OBJECTIVES = ["accuracy", "size_bytes"]


@dataclass
class SearchSpec:
    """What a study searches: how a trial suggests a config, how a config is evaluated."""

    kind: str
    suggest: Callable[[optuna.Trial], dict[str, Any]]  # trial -> config (JSON-able)
    evaluate: Callable[[dict[str, Any]], dict[str, float]]  # config -> metrics incl. accuracy, size_bytes
    starts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (label, optuna params)
    fingerprint: str = ""  # hash of the inputs (baseline, ranges, candidate sets): a new one = a new study
    mlflow_params: Callable[[dict[str, Any]], dict[str, Any]] = lambda cfg: cfg
    reports: bool = False  # evaluate(cfg, report) reports intermediate values (QAT trials)


def make_sampler(name: str, seed: int | None, population_size: int = 6) -> optuna.samplers.BaseSampler:
    """NSGA-II (Deb et al. 2002), multi-objective TPE (Ozaki et al. 2020) or random."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, population_size), multivariate=True,
                                          constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"search.sampler = {name!r} is not allowed; allowed: nsga2, tpe, random")


def load_study(storage_url: str, study_name: str, sampler: optuna.samplers.BaseSampler | None = None,
               heartbeat_s: int = 10, key: str = "search.storage") -> optuna.Study:
    return _create_or_load(storage_url, study_name, sampler, heartbeat_s, key)[0]


def _create_or_load(storage_url: str, study_name: str, sampler, heartbeat_s: int, key: str) -> tuple[optuna.Study, bool]:
    """(study, created): study creation is atomic in every storage, so exactly one of several
    simultaneous workers gets ``created=True``."""
    storage = open_storage(storage_url, heartbeat_s=heartbeat_s, key=key)
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=DIRECTIONS, sampler=sampler)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=study_name, sampler=sampler)
        created = False
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(OBJECTIVES)
    return study, created


def count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states or (TrialState.COMPLETE,)))


def run_study(spec: SearchSpec, storage_url: str, study_name: str, n_trials: int, mode: str = "total",
              sampler: str = "nsga2", seed: int | None = 0, population_size: int = 6, heartbeat_s: int = 10,
              tracker=None, progress: bool = True, on_done: Callable[[optuna.Study], list[Path]] | None = None,
              pruner=None) -> optuna.Study:
    if n_trials < 1:
        raise ValueError(f"--n-trials = {n_trials} is invalid: the trial count must be a positive integer (>= 1)")
    if mode not in ("add", "total"):
        raise ValueError(f"mode = {mode!r}; allowed: add, total")
    # 1. storage + study (connecting now: an unreachable URL fails before any trial)
    study, created = _create_or_load(storage_url, study_name, make_sampler(sampler, seed, population_size), heartbeat_s,
                                     "search.storage")
    attrs = study.user_attrs
    if attrs.get("kind", spec.kind) != spec.kind or attrs.get("fingerprint", spec.fingerprint) != spec.fingerprint:
        raise ValueError(f"study {study_name!r} in {storage_url} was made for other inputs "
                         f"(kind {attrs.get('kind')}, fingerprint {attrs.get('fingerprint')}; now {spec.kind}, "
                         f"{spec.fingerprint}); pick another --study name")
    if "kind" not in attrs:
        study.set_user_attr("kind", spec.kind)
        study.set_user_attr("fingerprint", spec.fingerprint)
    # 2. dead workers' trials -> FAIL + re-enqueued
    reaped = reap_dead_workers(study)
    if reaped:
        print(f"{study_name}: failed and re-enqueued trials {reaped} of dead workers", file=sys.stderr)
    # 3. starting points: enqueued by the worker that created the study (one of several simultaneous
    #    workers); later runs add only starts that are new (e.g. HAWQ's file appeared), skipping
    #    those already present, so a start is evaluated once
    if created or count(study, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):  # creator done enqueueing
        for label, params in spec.starts:
            study.enqueue_trial(params, user_attrs={"start": label}, skip_if_exists=True)
    # 4. trials
    done = count(study)
    n_run = n_trials if mode == "add" else max(0, n_trials - done)
    callbacks = [] if mode == "add" else [optuna.study.MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE,))]
    if tracker is not None:
        tracker.attach(study)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr(WORKER_ATTR, worker_id())
        cfg = spec.suggest(trial)
        t0 = time.perf_counter()
        if spec.reports:
            report = (lambda step, value, size=None: pruner.report(study, trial, step, value, size)) if pruner else (
                lambda step, value, size=None: trial.set_user_attr(
                    "intermediate", {**trial.user_attrs.get("intermediate", {}), str(step): value}))
            metrics = spec.evaluate(cfg, report)
        else:
            metrics = spec.evaluate(cfg)
        metrics["trial_seconds"] = time.perf_counter() - t0
        trial.set_user_attr("config", cfg)
        trial.set_user_attr("metrics", {k: (float(v) if v is not None else None) for k, v in metrics.items()})
        if tracker is not None:
            tags = {"kind": spec.kind, "accuracy_split": "val", "config": json.dumps(cfg, sort_keys=True)[:7000]}
            if "start" in trial.user_attrs:
                tags["start"] = str(trial.user_attrs["start"])
            tracker.log_trial(study, trial.number, spec.mlflow_params(cfg), metrics, tags)
        return float(metrics["accuracy"]), float(metrics["size_bytes"])

    if n_run:
        print(f"{study_name}: {done} complete trials in storage; running {n_run} more ({mode} mode, sampler {sampler})",
              file=sys.stderr)
        study.optimize(objective, n_trials=n_run, callbacks=callbacks, show_progress_bar=progress and sys.stderr.isatty())
        # total mode: pruned trials are finished but not COMPLETE; run more until the total holds
        for _ in range(10):
            missing = n_trials - count(study) if mode == "total" else 0
            if missing <= 0:
                break
            study.optimize(objective, n_trials=missing, callbacks=callbacks, show_progress_bar=False)
    else:
        print(f"{study_name}: already holds {done} complete trials (>= {n_trials}); nothing to run", file=sys.stderr)
    # 5. end of this worker: plot + parent metrics
    if tracker is not None:
        artifacts = on_done(study) if on_done else []
        front = study.best_trials
        tracker.finish(study, artifacts, {"n_complete": count(study), "front_size": len(front),
                                          "best_accuracy": max(t.values[0] for t in front) if front else 0.0})
    elif on_done:
        on_done(study)
    return study


def trials_frame(study: optuna.Study):
    """One row per COMPLETE trial: number, objectives, metrics, start label, Pareto flag, config JSON."""
    import pandas as pd

    front = {t.number for t in study.best_trials}
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        m = t.user_attrs.get("metrics", {})
        rows.append({"study": study.study_name, "kind": study.user_attrs.get("kind"), "trial": t.number,
                     **{k: m.get(k) for k in ("accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256", "params",
                                              "avg_weight_bits", "act_bits", "sparsity", "trial_seconds")},
                     "start": t.user_attrs.get("start", ""), "pareto": t.number in front,
                     "config": json.dumps(t.user_attrs.get("config", {}), sort_keys=True)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- CLI
def cli(kind: str, build_spec: Callable[[Any], SearchSpec], argv: list[str] | None = None) -> int:
    """``python -m studies.<kind> --storage URL --study NAME --n-trials N`` (one worker)."""

    ap = argparse.ArgumentParser(prog=f"python -m studies.{kind}",
                                 description=f"Run one worker of the {kind} search (Optuna). Start several, on one or "
                                             "many machines, with the same --storage and --study to share the study.")
    ap.add_argument("--params", default="params.yaml", help="params file of the project (inputs, candidate sets, tracking); "
                                                           "the worker runs in its folder, where the pipeline's files are")
    ap.add_argument("--storage", help="storage URL (default: search.storage): journal:PATH, sqlite:///PATH, postgresql://...")
    ap.add_argument("--study", help="study name (default: <search.study_prefix>-<kind>-<inputs hash>, as the search stage)")
    ap.add_argument("--n-trials", type=int, help="trials this worker runs (default: search.n_trials)")
    ap.add_argument("--total", action="store_true", help="run until the study holds --n-trials COMPLETE trials instead")
    ap.add_argument("--sampler", help="nsga2 | tpe | random (default: search.sampler)")
    ap.add_argument("--seed", type=int, help="sampler seed (default: params seed + pid, so parallel workers differ)")
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI as set when the worker starts, else tracking.uri)")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    a = ap.parse_args(argv)
    project = Path(a.params).resolve().parent if Path(a.params).is_file() else Path.cwd()
    with contextlib.chdir(project):  # the pipeline's relative paths (stages/pipeline.py) start there
        return _worker(kind, build_spec, a, Path(a.params).resolve() if Path(a.params).is_file() else a.params,
                       sys.argv[1:] if argv is None else argv)


def _worker(kind: str, build_spec, a, params, argv: list[str]) -> int:
    from compress.config import ConfigError, load_params

    try:
        P = load_params(params)
        S = P.search
        for key, val in (("sampler", a.sampler), ("n_trials", a.n_trials), ("storage", a.storage)):
            if val is not None:
                setattr(S, key, val)  # validate_assignment: same one-line errors as params.yaml
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # pydantic ValidationError on assignment
        from pydantic import ValidationError

        if isinstance(e, ValidationError):
            err = e.errors()[0]
            key = {"n_trials": "--n-trials", "sampler": "--sampler", "storage": "--storage"}[str(err["loc"][0])]
            print(f"error: {key} = {err['input']!r} is invalid: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
            return 2
        raise
    try:
        # connect first: an unreachable storage or tracking server is one line before anything is loaded or run
        open_storage(S.storage, S.heartbeat_s, key="--storage" if a.storage else "search.storage")
        if not (a.no_mlflow or not P.tracking.enabled):
            given = any(arg.split("=", 1)[0] == "--tracking-uri" for arg in argv)
            key = "--tracking-uri" if given else "MLFLOW_TRACKING_URI" if a.tracking_uri else "tracking.uri"
            check_tracking_uri(a.tracking_uri or P.tracking.uri, key=key)
        spec, meta = build_spec(P)
        name = a.study or study_name(P, kind, spec)
        tracker = None if (a.no_mlflow or not P.tracking.enabled) else make_tracker(P, meta, kind, a.tracking_uri)
        seed = a.seed if a.seed is not None else P.seed * 100003 + os.getpid()
        from stages.pipeline import SEARCH_FIGURES

        study = run_study(spec, S.storage, name, S.n_trials, mode="total" if a.total else "add", sampler=S.sampler,
                          seed=seed, population_size=S.population_size, heartbeat_s=S.heartbeat_s, tracker=tracker,
                          on_done=lambda st: plot_study(st, Path(SEARCH_FIGURES)), pruner=make_pruner(S))
    except (StorageError, ValueError, FileNotFoundError, PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{name}: {count(study)} complete, {count(study, TrialState.FAIL)} failed, "
          f"{count(study, TrialState.RUNNING)} running; Pareto front: {len(study.best_trials)} trials")
    return 0


def make_pruner(S):
    from studies.stopping import MedianStoppingRule

    return MedianStoppingRule(S.pruner_warmup_trials) if S.pruner == "median" else None


def study_name(P, kind: str, spec: SearchSpec) -> str:
    return f"{P.search.study_prefix}-{kind}-{spec.fingerprint[:8]}"


def make_tracker(P, meta: dict | None, kind: str, tracking_uri: str | None = None):
    from stages.common import git_commit
    from studies.tracking import StudyTracker

    from compress.config import section_hash

    tags = {"stage": "search", "study_kind": kind, "git_commit": git_commit(), "seed": str(P.seed),
            "params_hash": section_hash({"search": P.search.model_dump(mode="json")})}
    if meta:
        tags["dataset"] = meta["dataset"]
        tags["dataset_substituted"] = str(bool(meta.get("substituted", False))).lower()
    uri = tracking_uri or P.tracking.uri  # not MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes it
    return StudyTracker(uri, P.tracking.experiment, tags)


def plot_study(study: optuna.Study, out_dir: Path) -> list[Path]:
    """The study's accuracy-vs-bytes scatter with its Pareto front (PNG), for the parent run."""
    from dashboards.figures import pareto_figure

    df = trials_frame(study)
    if df.empty:
        return []
    df["method"] = df["start"].where(df["start"] != "", "search")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{study.study_name}.png"
    pareto_figure(df, x="size_bytes", y="accuracy", hue="method", front_col="pareto", path=path,
                  title=f"{study.study_name}: {len(df)} trials (validation accuracy)", logx=True)
    return [path]
