"""QAT trials: intermediate validation accuracy is recorded and the median stopping rule prunes."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from compress.config import load_params
from studies import bits as bits_study
from studies.common import count, load_study, make_pruner, run_study
from studies.objectives import eval_bits, load_context
from studies.stopping import MedianStoppingRule

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_median_rule_prunes_only_below_the_median_of_complete_trials(tmp_path):
    st = load_study(f"journal:{tmp_path / 'j.journal'}", "m")
    rule = MedianStoppingRule(n_warmup_trials=3)
    for v in (0.5, 0.7, 0.9):
        t = st.ask()
        rule.report(st, t, 10, v)
        st.tell(t, [v, 1.0])
    low, high = st.ask(), st.ask()
    with pytest.raises(optuna.TrialPruned, match="< median 0.7000"):
        rule.report(st, low, 10, 0.6)
    rule.report(st, high, 10, 0.8)  # above the median: continues
    rule.report(st, high, 20, 0.1)  # no complete trial reported step 20 yet: continues
    assert high.user_attrs["intermediate"] == {"10": 0.8, "20": 0.1}
    # multi-objective: a small trial is compared only with complete trials at least as small
    st2 = load_study(f"journal:{tmp_path / 'k.journal'}", "m2")
    for v, size in ((0.9, 100.0), (0.5, 10.0)):
        t = st2.ask()
        t.set_user_attr("intermediate", {"10": v})
        st2.tell(t, [v, size])
    rule1 = MedianStoppingRule(n_warmup_trials=1)
    rule1.report(st2, st2.ask(), 10, 0.6, size_bytes=10.0)  # beats the only trial as small as it: continues
    with pytest.raises(optuna.TrialPruned):
        rule1.report(st2, st2.ask(), 10, 0.6, size_bytes=100.0)  # vs both: median 0.7


def test_qat_trials_report_and_fine_tune(tmp_path, tiny_project, monkeypatch):
    monkeypatch.chdir(tiny_project.parent)
    P = load_params(tiny_project)
    S = P.search
    S.trial_mode, S.qat_steps, S.qat_report_every, S.latency = "qat", 6, 2, False
    S.pruner, S.pruner_warmup_trials = "median", 2
    S.storage = f"journal:{tmp_path / 'j.journal'}"
    spec, _ = bits_study.build_spec(P)
    assert spec.reports
    st = run_study(spec, S.storage, "qat", 5, mode="total", sampler="random", seed=0, progress=False, pruner=make_pruner(S))
    assert count(st) == 5  # pruned trials do not count towards the requested total
    for t in st.get_trials(states=(TrialState.COMPLETE,)):
        assert set(t.user_attrs["intermediate"]) == {"2", "4", "6"}
    for t in st.get_trials(states=(TrialState.PRUNED,)):
        assert len(t.user_attrs["intermediate"]) < 3  # stopped before its last report
    # the fine-tune changes the weights (and so the accuracy can move), not the artifact's format or bytes
    ctx = load_context(P)
    cfg = {"weight_bits": {n: 2 for n in ctx.layers}, "act_bits": {n: 8 for n in ctx.layers}}
    ptq = eval_bits(ctx, cfg)
    qat = eval_bits(ctx, cfg, qat={"steps": 6, "report_every": 3, "lr": 1e-3})
    assert qat["size_bytes"] == pytest.approx(ptq["size_bytes"], abs=16)
    assert qat["accuracy"] != ptq["accuracy"] or qat["sparsity"] != ptq["sparsity"]
