"""HAWQ's sensitivity allocator (Algorithm 2 under a budget), the claim, Table VI and the fine-tune jobs."""

import numpy as np
import pytest
import torch

from compress.hessian import hawq

CAND = [2, 3, 4, 6, 8]
LENET = [150, 2400, 48000, 10080, 840]  # conv1, conv2, fc1, fc2, fc3 weights
LENET_S = [3.22 / 150, 3.40 / 2400, 1.066 / 48000, 0.6235 / 10080, 1.723 / 840]  # λ_i / n_i of the MNIST baseline


def test_sensitivity_allocation_on_lenet5_by_hand():
    # S order conv1 > fc3 > conv2 > fc2 > fc1.  Budget 2.5 = 153,675 bits, all-2 = 122,940.
    # pass 1: conv1, fc3, conv2, fc2 -> 3 (136,410); fc1 -> 3 would need +48,000: no
    # pass 2: the same four -> 4 (149,880); pass 3: conv1 -> 6 (150,180), fc3 -> 6 (151,860),
    # conv2 -> 6 needs +4,800: no; fc2 is capped by conv2 (4); pass 4: conv1 -> 8 (152,160); fc3 -> 8 needs
    # +1,680: no.  Nothing else moves.
    a = hawq.allocate_sensitivity(LENET_S, LENET, CAND, 2.5)
    assert a.bits == [8, 4, 2, 4, 6]
    assert a.avg_bits == pytest.approx(152160 / 61470) and np.isnan(a.objective)
    assert hawq.allocate_sensitivity(LENET_S, LENET, CAND, 3.5).bits == [8, 8, 3, 4, 8]
    assert hawq.allocate_sensitivity(LENET_S, LENET, CAND, 2.0).bits == [2] * 5
    assert hawq.allocate_sensitivity(LENET_S, LENET, CAND, 8.0).bits == [8] * 5
    with pytest.raises(ValueError, match="hawq.budgets_avg_bits.*below 2"):
        hawq.allocate_sensitivity(LENET_S, LENET, CAND, 1.9)


@pytest.mark.parametrize("trial", range(8))
def test_sensitivity_allocation_follows_the_order_fits_and_is_maximal(trial):
    rng = np.random.default_rng(trial)
    K = 5
    n = rng.integers(10, 3000, K)
    s = rng.lognormal(0, 2, K)
    if trial == 0:
        s[3] = s[1]  # a tie: model order decides, the result is still ordered
    for budget in (2.0, 2.3, 2.9, 3.6, 5.1, 7.9):
        a = hawq.allocate_sensitivity(s, n, CAND, budget)
        assert hawq.respects_order(a.bits, s)  # b_i >= b_j whenever S_i > S_j
        assert (n * np.array(a.bits)).sum() <= budget * n.sum() + 1e-6
        assert a.avg_bits == pytest.approx((n * np.array(a.bits)).sum() / n.sum())
        # maximal: no single block can go one candidate up without breaking the budget or the order
        for i in range(K):
            if a.bits[i] == CAND[-1]:
                continue
            up = list(a.bits)
            up[i] = CAND[CAND.index(up[i]) + 1]
            fits = (n * np.array(up)).sum() <= budget * n.sum() + 1e-6
            assert not (fits and hawq.respects_order(up, s)), (budget, a.bits, i)
        assert hawq.allocate_sensitivity(s, n, CAND, budget).bits == a.bits  # deterministic


def test_sensitivity_allocation_never_beats_the_ilp_objective_which_may_break_the_order():
    rng = np.random.default_rng(5)
    n = np.array(LENET)
    lam = np.array([3.22, 3.40, 1.066, 0.6235, 1.723])
    err = n[:, None] * 4.0 ** -np.array(CAND)[None, :] * rng.uniform(0.5, 2, (5, len(CAND)))
    for budget in (2.5, 3.5):
        s_alloc = hawq.allocate_sensitivity(lam / n, n, CAND, budget)
        ilp = hawq.allocate_bits(lam, err, n, CAND, budget)
        s_obj = sum(lam[i] * err[i, CAND.index(b)] for i, b in enumerate(s_alloc.bits))
        assert ilp.objective <= s_obj + 1e-12


def _stats(names, sizes, lams):
    return [hawq.BlockStats(n, [n], "linear", p, l, 1.0, 0.1, 3, True, 4, 0.01) for n, p, l in zip(names, sizes, lams)]


def test_plan_allocations_names_methods_and_objectives():
    stats = _stats(["conv1", "conv2", "fc1", "fc2", "fc3"], LENET, [3.22, 3.40, 1.066, 0.6235, 1.723])
    err = np.array(LENET)[:, None] * 4.0 ** -np.array(CAND)[None, :]
    plans = hawq.plan_allocations(stats, err, CAND, [2.5, 3.5], ["sensitivity", "ilp"], [2, 3])
    assert [p.name for p in plans] == ["hawq-sensitivity-b2.5", "hawq-sensitivity-b3.5", "hawq-ilp-b2.5", "hawq-ilp-b3.5",
                                       "hawq-uniform-w2", "hawq-uniform-w3"]
    assert plans[0].alloc.bits == [8, 4, 2, 4, 6] and not np.isnan(plans[0].alloc.objective)
    assert plans[2].alloc.objective <= plans[0].alloc.objective + 1e-12  # the ILP minimises it
    with pytest.raises(ValueError, match="hawq.allocator = 'greedy' is unknown"):
        hawq.plan_allocations(stats, err, CAND, [2.5], ["greedy"])


def _rows(method, budget, avg, bits, accs):
    return [{"method": method, "budget": budget, "avg_bits": avg, "bits": bits, "seed": s, "val_acc": a} for s, a in enumerate(accs)]


def test_claim_compares_with_every_uniform_width_that_is_not_larger():
    rows = (_rows("sensitivity", 2.5, 2.475, [8, 4, 2, 4, 6], [0.985, 0.987, 0.986])
            + _rows("ilp", 2.5, 2.49, [6, 4, 2, 4, 8], [0.986, 0.984, 0.985])
            + _rows("sensitivity", 3.5, 3.44, [8, 8, 3, 4, 8], [0.9915, 0.9905, 0.9910])
            + _rows("sensitivity", 3.0, 3.0, [3] * 5, [0.990, 0.991, 0.989])  # integer budget: the uniform allocation
            + _rows("uniform", 2, 2.0, [2] * 5, [0.97, 0.971, 0.969])
            + _rows("uniform", 3, 3.0, [3] * 5, [0.991, 0.992, 0.993]))
    c = hawq.claim(rows, fp32_val_acc=0.9922)
    by = {(x["allocator"], x["budget_avg_bits"]): x for x in c["comparisons"]}
    s25 = by[("sensitivity", 2.5)]
    assert [v["uniform_bits"] for v in s25["vs_uniform"]] == [2]  # W3 is larger than 2.475 bits
    assert s25["holds"] and s25["vs_uniform"][0]["seed_wins"] == 3
    assert s25["mean"] == pytest.approx(0.986) and s25["drop_pp_vs_fp32"] == pytest.approx(0.62)
    s35 = by[("sensitivity", 3.5)]
    assert [v["uniform_bits"] for v in s35["vs_uniform"]] == [2, 3]
    assert s35["vs_uniform"][1]["seed_wins"] == 1 and s35["holds"] is False  # 0.9910 < 0.9920
    assert by[("sensitivity", 3.0)]["trivial"] and by[("sensitivity", 3.0)]["holds"] is None  # left out of the verdict
    assert c["holds"] == {"sensitivity_vs_uniform": False, "ilp_vs_uniform": True, "sensitivity_within_1pp_at_2.5": True}
    assert c["near_fp32"]["budget_avg_bits"] == 2.5 and not c["holds_all"]
    c2 = hawq.claim(rows, fp32_val_acc=0.9990)
    assert c2["near_fp32"]["holds"] is False  # 1.3 pp below


def test_table_vi_and_report_say_whether_bits_follow_the_s_order():
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    stats = _stats(names, LENET, [3.22, 3.40, 1.066, 0.6235, 1.723])
    plans = [hawq.Plan("s", "sensitivity", hawq.allocate_sensitivity([s.sensitivity for s in stats], LENET, CAND, 2.5)),
             hawq.Plan("i", "ilp", hawq.Allocation([6, 4, 2, 4, 8], 0.0, 2.498, 2.5))]
    rows = hawq.table_vi(stats, {"sensitivity@2.5": plans[0].alloc.bits, "ilp@2.5": [6, 4, 2, 4, 8]}, 8)
    assert [r["S_rank"] for r in rows] == [1, 3, 5, 4, 2]
    assert [r["ilp@2.5"] for r in rows] == [6, 4, 2, 4, 8] and rows[0]["sensitivity@2.5"] == 8
    claim = hawq.claim(_rows("sensitivity", 2.5, plans[0].alloc.avg_bits, plans[0].alloc.bits, [0.985, 0.986])
                       + _rows("ilp", 2.5, 2.498, [6, 4, 2, 4, 8], [0.985, 0.985]) + _rows("uniform", 2, 2.0, [2] * 5, [0.97, 0.96]), 0.992)
    md = hawq.report_markdown("HAWQ on mnist", stats, plans, claim, 8, finetune="40 steps per block")
    assert "highest first: conv1 > fc3 > conv2 > fc2 > fc1." in md
    assert "sensitivity @ 2.5 bits (actual 2.475): {'conv1': 8, 'conv2': 4, 'fc1': 2, 'fc2': 4, 'fc3': 6}: bits follow the S order" in md
    assert "ilp @ 2.5 bits (actual 2.498)" in md and "bits do NOT follow the S order (conv1 (6) < fc3 (8))" in md
    assert "40 steps per block" in md and "sensitivity_vs_uniform: holds" in md
    assert hawq.order_violations(names, [8, 4, 2, 4, 6], LENET_S) == []


def test_finetune_jobs_are_identical_inline_and_in_worker_processes(tiny):
    from compress.config import FitConfig as FinetuneConfig

    model, batches = tiny
    blocks = hawq.resolve_blocks(model, "layer")
    stats = hawq.block_spectra(model, blocks, batches, samples=2, max_iters=5)
    train, val = batches[0], batches[1]
    block_cfg = FinetuneConfig(lr=1e-2, max_iterations=2, batch_size=16)
    joint_cfg = FinetuneConfig(lr=1e-2, max_iterations=3, batch_size=16)
    jobs = [([2, 4, 8], 0), ([2, 4, 8], 1), ([3, 3, 3], 0), ([2, 4, 8], 0)]  # the last repeats the first
    seen = []
    a = hawq.finetune_jobs(model, blocks, stats, jobs, train, val, block_cfg, joint_cfg, act_bits=None, workers=1,
                           on_result=seen.append)
    b = hawq.finetune_jobs(model, blocks, stats, jobs, train, val, block_cfg, joint_cfg, act_bits=None, workers=2)
    assert len(seen) == 3  # distinct jobs only
    for x, y in zip(a, b):
        assert (x.bits, x.seed, x.val_acc, x.ptq_val_acc) == (y.bits, y.seed, y.val_acc, y.ptq_val_acc)
        for k in x.state:  # bit-reproducible across processes (act ranges are NaN without activation quantization)
            torch.testing.assert_close(x.state[k], y.state[k], rtol=0, atol=0, equal_nan=True)
    assert a[3] is a[0] and [r["block"] for r in a[0].rows][-1] == "joint" and len(a[0].rows) == 4
    assert a[0].order == [n for n, _ in hawq.finetune_order(model, blocks, stats, [2, 4, 8])]
    assert not torch.equal(a[0].state["fc1.weight"], a[1].state["fc1.weight"])  # the seed matters
    q = hawq.restore(model, blocks, a[2], None)
    from compress.train import evaluate_model
    assert evaluate_model(q, *val)[1] == a[2].val_acc
    assert dict(zip(("conv", "fc1", "fc2"), [m.wspec.bits for m in [q.conv, q.fc1, q.fc2]])) == {"conv": 3, "fc1": 3, "fc2": 3}
