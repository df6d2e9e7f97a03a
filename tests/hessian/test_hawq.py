"""HAWQ: blocks, exact bit allocation, Ω order, block-wise QAT, landscape curvature."""
import itertools

import numpy as np
import pytest
import torch

from compress.hessian import hawq
from compress.hessian.hvp import HessianOperator
from compress.hessian.power import top_eigen
from compress.models import build_model


def brute_force(w, err, n, cand, budget):
    best = (np.inf, None)
    for combo in itertools.product(range(len(cand)), repeat=len(w)):
        size = sum(n[i] * cand[j] for i, j in enumerate(combo))
        if size <= budget * sum(n) + 1e-9:
            obj = sum(max(w[i], 0) * err[i, j] for i, j in enumerate(combo))
            best = min(best, (obj, combo), key=lambda t: t[0])
    return best


@pytest.mark.parametrize("trial", range(6))
def test_milp_allocation_is_the_brute_force_optimum(trial):
    rng = np.random.default_rng(trial)
    cand = [2, 3, 4, 6, 8]
    K = 5
    n = rng.integers(50, 5000, K)
    w = rng.lognormal(0, 1.5, K)
    # quantization error roughly ∝ n 4^{-b}, with noise
    err = n[:, None] * 4.0 ** -np.array(cand)[None, :] * rng.uniform(0.5, 2, (K, len(cand)))
    for budget in (2.0, 2.7, 3.3, 4.0, 5.5):
        alloc = hawq.allocate_bits(w, err, n, cand, budget)
        opt, combo = brute_force(w, err, n, cand, budget)
        assert alloc.avg_bits <= budget + 1e-9
        assert alloc.objective == pytest.approx(opt, rel=1e-7, abs=1e-12)
        assert sum(n * np.array(alloc.bits)) <= budget * n.sum() + 1e-6


def test_milp_beats_greedy_on_a_knapsack_trap():
    # one big block and two small ones: greedy "upgrade the best ratio first" gets stuck
    cand = [2, 4, 8]
    n = np.array([100, 100, 1000])
    w = np.array([1.0, 1.0, 1.0])
    err = np.array([[10, 1, 0], [10, 1, 0], [30, 0, 0]], dtype=float)
    # budget 4.0 avg bits = 4800 bits: big block to 4 (4000) + small ones at 4 (800) -> error 2 ... the
    # alternative (big at 2, small at 8) = 2000 + 1600 -> error 30; exact picks the first
    alloc = hawq.allocate_bits(w, err, n, cand, 4.0)
    assert alloc.bits == [4, 4, 4] and alloc.objective == pytest.approx(2.0)
    opt, _ = brute_force(w, err, n, cand, 4.0)
    assert alloc.objective == pytest.approx(opt)


def test_budget_below_smallest_candidate_is_an_error():
    with pytest.raises(ValueError, match="hawq.budgets_avg_bits.*below 2"):
        hawq.allocate_bits([1.0], np.ones((1, 2)), [10], [2, 4], 1.5)


def test_resolve_blocks_layer_residual_and_named():
    lenet = build_model("lenet5", (1, 28, 28), 10)
    assert [b.name for b in hawq.resolve_blocks(lenet, "layer")] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    res = hawq.resolve_blocks(build_model("resnet20", (3, 32, 32), 10), "residual")
    assert [b.name for b in res][:3] == ["conv1", "layer1.0", "layer1.1"] and res[-1].name == "fc"
    assert len(res) == 11 and all(b.kind == "residual" for b in res[1:-1])
    assert res[4].layers == ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.shortcut.0"]
    named = hawq.resolve_blocks(lenet, {"convs": ["conv*"], "head": ["fc*"]})
    assert [(b.name, b.layers, b.kind) for b in named] == [("convs", ["conv1", "conv2"], "conv"),
                                                           ("head", ["fc1", "fc2", "fc3"], "linear")]


@pytest.mark.parametrize("spec, msg", [
    ({"a": ["conv*", "fc9"], "b": ["fc*"]}, r"hawq.blocks.a = .*'fc9' matches no conv/linear layer"),
    ({"a": ["conv*"]}, r"hawq.blocks is invalid: layers \['fc1', 'fc2', 'fc3'\] are in no block"),
    ({"a": ["conv*", "fc*"], "b": ["fc1"]}, r"hawq.blocks.b is invalid: layer 'fc1' is already in block 'a'"),
])
def test_bad_blocks_are_one_line_errors_naming_the_key(spec, msg):
    lenet = build_model("lenet5", (1, 28, 28), 10)
    with pytest.raises(ValueError, match=msg) as e:
        hawq.resolve_blocks(lenet, spec)
    assert "\n" not in str(e.value)


def test_quant_error_shrinks_with_bits_and_omega_order(tiny):
    model, batches = tiny
    blocks = hawq.resolve_blocks(model, "layer")
    errs = hawq.error_table(model, blocks, [2, 3, 4, 6, 8])
    assert np.all(np.diff(errs, axis=1) < 0)  # more bits, smaller error, every block
    stats = hawq.block_spectra(model, blocks, batches, tol=1e-3, max_iters=200, samples=4)
    order = hawq.finetune_order(model, blocks, stats, [2, 8, 4])
    omegas = [o for _, o in order]
    assert omegas == sorted(omegas, reverse=True)
    expect = {b.name: s.eigenvalue * hawq.quant_error(model, b, bits) for b, s, bits in zip(blocks, stats, [2, 8, 4])}
    assert dict(order) == pytest.approx(expect)
    assert all(s.hvps == s.power_iterations + 4 for s in stats)
    rows = hawq.table_vi(stats, [2, 8, 4], 8)
    assert [r["block"] for r in rows] == ["conv", "fc1", "fc2"] and rows[1]["params"] == 96
    assert rows[0]["S=lambda/n"] == pytest.approx(stats[0].eigenvalue / 18)


def test_landscape_curvature_along_top_eigenvector_is_lambda(tiny):
    model, batches = tiny
    model = model.double()
    batches = [(x.double(), y) for x, y in batches]
    blk = hawq.resolve_blocks(model, "layer")[1]  # fc1
    op = HessianOperator(model, hawq.block_params(model, blk), batches)
    eig = top_eigen(op.matvec, op.dim, tol=1e-6, max_iters=2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = [p.clone() for p in model.parameters()]
    h = 1e-3
    eps, loss = hawq.loss_landscape(model, blk, eig.vector, batches, radius=h, points=3)
    assert eps[1] == 0 and loss[1] == pytest.approx(hawq.mean_loss(model, batches))
    # second difference = vᵀHv = λ (the landscape is curved by exactly the top eigenvalue)
    assert (loss[0] + loss[2] - 2 * loss[1]) / h**2 == pytest.approx(eig.eigenvalue, rel=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # restored


def test_blockwise_finetune_trains_only_the_current_block(tiny):
    from compress.config import FitConfig
    from compress.quant.fakequant import quantize_model

    model, batches = tiny
    blocks = hawq.resolve_blocks(model, "layer")
    q = quantize_model(model, {"conv": 2, "fc1": 4, "fc2": 8}, None)
    (x, y), val = batches[0], batches[1]
    cfg = FitConfig(lr=1e-2, max_iterations=3, batch_size=16)
    seen = []

    def spy(m, tr, va, c, **kw):
        from compress.train import fit
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        h = fit(m, tr, va, c, **kw)
        changed = sorted({n.split(".")[0] for n, p in m.named_parameters() if not torch.equal(p, before[n])})
        seen.append(changed)
        return h

    rows = hawq.blockwise_finetune(q, blocks, ["fc1", "conv"], (x, y), val, cfg, seed=0, fit_fn=spy)
    assert seen == [["fc1"], ["conv"]]
    assert [r["block"] for r in rows] == ["fc1", "conv"] and all(r["iterations"] == 2 for r in rows)
    assert all(p.requires_grad for p in q.parameters())  # flags restored


def test_trace_objective_weights_are_average_trace(tiny):
    model, batches = tiny
    blocks = hawq.resolve_blocks(model, "layer")
    stats = hawq.block_spectra(model, blocks, batches, samples=8)
    w = hawq.block_weights(stats, "trace")
    assert w == pytest.approx([s.trace / s.params for s in stats])
    with pytest.raises(ValueError, match="hawq.objective"):
        hawq.block_weights(stats, "fisher")
    errs = hawq.error_table(model, blocks, [2, 4, 8])
    alloc = hawq.allocate_bits(w, errs, [s.params for s in stats], [2, 4, 8], 4.0)
    opt, _ = brute_force(w, errs, [s.params for s in stats], [2, 4, 8], 4.0)
    assert alloc.objective == pytest.approx(opt)
