"""The lottery claim check (accuracy, #Iter, reinit control, budget flags) on hand-made rows."""
import math

import pytest

from compress.prune.report import claim, summarize


def _rows(ticket_acc=0.982, ticket_es=1500, reinit_acc=0.970, dense_es=3000, budget_hit_at=None, n_seeds=3):
    rows = []
    for s in range(n_seeds):
        jitter = 0.0005 * (s - 1)
        rows.append({"seed": s, "round": 0, "kind": "ticket", "remaining": 1.0, "early_stop_iteration": dense_es + 100 * s,
                     "iterations": dense_es + 1500, "budget_hit": False, "test_acc": 0.977 + jitter})
        for r, rem in ((5, 0.33), (11, 0.087), (15, 0.036)):
            rows.append({"seed": s, "round": r, "kind": "ticket", "remaining": rem, "early_stop_iteration": ticket_es + 100 * s,
                         "iterations": ticket_es + 1500, "budget_hit": budget_hit_at == (s, r), "test_acc": ticket_acc + jitter})
        rows.append({"seed": s, "round": 11, "kind": "reinit", "remaining": 0.087, "early_stop_iteration": 5000,
                     "iterations": 6500, "budget_hit": False, "test_acc": reinit_acc + jitter})
    return rows


def test_claim_holds_when_ticket_is_as_accurate_as_fast_and_reinit_clearly_worse():
    c = claim(summarize(_rows()))
    assert c["holds"] and c["holds_at_remaining_pct"] == [8.7]  # reinit trained at 8.7 % only
    assert c["parts"]["ticket_ge_dense"] == [8.7, 3.6] and c["parts"]["ticket_as_fast"] == [8.7, 3.6]
    assert c["parts"]["reinit_clearly_worse"] == [8.7]
    assert c["dense"]["early_stop"] == pytest.approx(3100) and "claim holds at [8.7]" in c["statement"]


@pytest.mark.parametrize("kw,part", [({"ticket_es": 3500}, "ticket_as_fast"), ({"ticket_acc": 0.9765}, "ticket_ge_dense"),
                                     ({"reinit_acc": 0.9805}, "reinit_clearly_worse")])
def test_each_part_can_fail_on_its_own(kw, part):
    c = claim(summarize(_rows(**kw)))
    assert not c["holds"] and 8.7 not in c["parts"][part]
    others = {"ticket_as_fast", "ticket_ge_dense", "reinit_clearly_worse"} - {part}
    assert all(8.7 in c["parts"][p] for p in others)
    assert "does not hold" in c["statement"]


def test_a_training_stopped_by_the_budget_voids_its_level():
    c = claim(summarize(_rows(budget_hit_at=(1, 11))))
    assert not c["holds"] and c["parts"]["budget_hit"] == [8.7] and "budget hit" in c["statement"]


def test_summary_intervals_over_seeds():
    s = summarize(_rows())
    t = s[(s["kind"] == "ticket") & (s["round"] == 11)].iloc[0]
    assert t["n_seeds"] == 3 and t["test_acc_std"] == pytest.approx(0.0005)
    assert t["test_acc_ci95"] == pytest.approx(4.303 * 0.0005 / math.sqrt(3), rel=1e-3)  # t(0.975, 2 df)
    assert t["budget_hits"] == 0 and t["iterations_mean"] == pytest.approx(1500 + 1500)
    one = summarize(_rows(n_seeds=1))
    assert (one["test_acc_ci95"] == 0).all()
