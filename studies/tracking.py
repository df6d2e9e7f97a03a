"""MLflow nesting for studies: one parent run per study, one nested run per trial.

Workers on several processes or machines share the parent: its run id is kept in the study's
user attributes (the Optuna storage is the shared source of truth).  Each trial run carries the
trial's bit/sparsity map as params and the metric names every variant run uses
(``accuracy``, ``size_bytes``, ``latency_ms_b1``, ``latency_ms_b256``, ``params``,
``avg_weight_bits``, ``sparsity``), so the MLflow compare view lines them up.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

PARENT_ATTR = "mlflow_parent_run_id"
METRICS = ("accuracy", "accuracy_sim", "size_bytes", "latency_ms_b1", "latency_ms_b256", "params", "avg_weight_bits", "sparsity")


class StudyTracker:
    """Logs trials of one Optuna study under one MLflow parent run (MlflowClient, thread/process safe)."""

    def __init__(self, tracking_uri: str, experiment: str, tags: dict[str, str] | None = None):
        import mlflow
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                self.experiment_id = self.client.create_experiment(experiment)
            except Exception:  # created by another worker meanwhile
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = exp.experiment_id
        self.tags = dict(tags or {})
        self.own_parent: str | None = None

    # ------------------------------------------------------------------ parent run
    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except Exception:
            return False

    def attach(self, study) -> str:
        """Find or create the study's parent run; several workers converge on one id."""
        rid = study.user_attrs.get(PARENT_ATTR)
        if rid and self._exists(rid):
            self.client.update_run(rid, status="RUNNING")
            return rid
        run = self.client.create_run(self.experiment_id, run_name=study.study_name,
                                     tags={**self.tags, "study": study.study_name, "run_kind": "study"})
        self.own_parent = run.info.run_id
        study.set_user_attr(PARENT_ATTR, self.own_parent)
        time.sleep(0.3)  # let a concurrent worker's write land, then adopt the stored winner
        return self.parent_id(study)

    def parent_id(self, study) -> str:
        return study.user_attrs.get(PARENT_ATTR) or self.own_parent

    # ------------------------------------------------------------------ trials
    def log_trial(self, study, number: int, params: dict[str, str], metrics: dict[str, float], tags: dict[str, str]) -> str:
        from mlflow.entities import Metric, Param

        parent = self.parent_id(study)
        run = self.client.create_run(self.experiment_id, run_name=f"{study.study_name}-t{number:03d}",
                                     tags={**self.tags, **tags, "mlflow.parentRunId": parent, "study": study.study_name,
                                           "trial": str(number), "run_kind": "trial"})
        now = int(time.time() * 1000)
        rid = run.info.run_id
        self.client.log_batch(rid, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()
                                            if v is not None and math.isfinite(float(v))],
                              params=[Param(k, str(v)[:500]) for k, v in params.items()])
        self.client.set_terminated(rid, "FINISHED")
        return rid

    # ------------------------------------------------------------------ end
    def finish(self, study, artifacts: list[Path], summary: dict[str, float]) -> None:
        parent = self.parent_id(study)
        if self.own_parent and self.own_parent != parent:  # lost the race: drop the empty duplicate
            self.client.delete_run(self.own_parent)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in summary.items()])
        for a in artifacts:
            self.client.log_artifact(parent, str(a))
        self.client.set_terminated(parent, "FINISHED")
