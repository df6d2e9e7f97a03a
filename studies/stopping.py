"""Early stopping of QAT trials in a multi-objective study: the median stopping rule.

Optuna's pruners (and ``Trial.report``) only work on single-objective studies, so the rule is
applied here on the trial's own intermediate values, kept in its user attributes: a trial whose
validation accuracy at step k is below the median of the COMPLETE trials' accuracies at step k
is stopped (``optuna.TrialPruned``) — the median stopping rule of Google Vizier (Golovin et al.
2017), which is what ``optuna.pruners.MedianPruner`` implements for one objective.

Multi-objective twist: a less accurate but *smaller* trial can still be Pareto-optimal, so when
the trial's artifact size is known (it is fixed by the bit widths, before any training) it is
compared only with the complete trials that are at least as small — the ones it must beat.
"""
from __future__ import annotations

import statistics

import optuna
from optuna.trial import TrialState

KEY = "intermediate"


class MedianStoppingRule:
    def __init__(self, n_warmup_trials: int = 4, n_warmup_steps: int = 0):
        self.n_warmup_trials = n_warmup_trials
        self.n_warmup_steps = n_warmup_steps

    def report(self, study: optuna.Study, trial: optuna.Trial, step: int, value: float,
               size_bytes: float | None = None) -> None:
        """Record ``value`` at ``step``; raise ``optuna.TrialPruned`` when the rule says stop."""
        values = dict(trial.user_attrs.get(KEY, {}))
        values[str(step)] = float(value)
        trial.set_user_attr(KEY, values)
        if step < self.n_warmup_steps:
            return
        peers = [t.user_attrs[KEY][str(step)] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if str(step) in t.user_attrs.get(KEY, {}) and (size_bytes is None or t.values[1] <= size_bytes)]
        if len(peers) >= self.n_warmup_trials and value < statistics.median(peers):
            raise optuna.TrialPruned(f"val accuracy {value:.4f} at step {step} < median {statistics.median(peers):.4f} "
                                     f"of {len(peers)} complete trials")
