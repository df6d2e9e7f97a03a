"""Hessian tools against explicit Hessians from torch.autograd.functional.hessian."""
import pytest
import torch

from compress.hessian.hutchinson import exact_diagonal, hutchinson
from compress.hessian.hvp import HessianOperator
from compress.hessian.power import top_eigen
from tests.hessian.conftest import explicit_hessian

BLOCKS = {"conv": ["conv.weight", "conv.bias"], "fc1": ["fc1.weight"], "all": None}


def _op(model, batches, names):
    named = dict(model.named_parameters())
    names = names or list(named)
    return HessianOperator(model, [named[n] for n in names], batches), names


@pytest.mark.parametrize("block", list(BLOCKS))
def test_hvp_equals_explicit_block_hessian(tiny, block):
    model, batches = tiny
    op, names = _op(model, batches, BLOCKS[block])
    H = explicit_hessian(model, names, batches)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(op.dim, generator=g)
        torch.testing.assert_close(op.matvec(v).double(), H @ v.double(), rtol=1e-4, atol=1e-6)
    assert op.hvps == 3 and op.seconds > 0


@pytest.mark.parametrize("cache", [True, False])
def test_hvp_graph_cache_gives_same_products(tiny, cache):
    model, batches = tiny
    op, names = _op(model, batches, BLOCKS["fc1"])
    H = explicit_hessian(model, names, batches)
    op.cache_graph = cache
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op.matvec(v).double(), H @ v.double(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("block", list(BLOCKS))
def test_power_iteration_top_eigenvalue_within_1e_3(tiny, block):
    model, batches = tiny
    op, names = _op(model, batches, BLOCKS[block])
    H = explicit_hessian(model, names, batches)
    ev = torch.linalg.eigvalsh(H)
    lam_true = float(ev[ev.abs().argmax()])
    res = top_eigen(op.matvec, op.dim, tol=1e-3, max_iters=500, generator=torch.Generator().manual_seed(0))
    assert res.converged
    assert abs(res.eigenvalue - lam_true) <= 1e-3 * abs(lam_true), (res.eigenvalue, lam_true, res.iterations)
    # the vector is (nearly) an eigenvector: ‖Hv − λv‖ small relative to λ
    resid = (H @ res.vector.double() - lam_true * res.vector.double()).norm()
    assert resid <= 0.1 * abs(lam_true)
    assert res.hvps == op.hvps == res.iterations


def test_power_iteration_seeded_and_reproducible(tiny):
    model, batches = tiny
    op, _ = _op(model, batches, BLOCKS["fc1"])
    a = top_eigen(op.matvec, op.dim, generator=torch.Generator().manual_seed(5))
    b = top_eigen(op.matvec, op.dim, generator=torch.Generator().manual_seed(5))
    assert a.eigenvalue == b.eigenvalue and torch.equal(a.vector, b.vector)


def test_power_iteration_stops_at_max_iters_and_rejects_bad_tol():
    A = torch.diag(torch.tensor([1.0, 0.999, 0.5]))
    res = top_eigen(lambda v: A @ v, 3, tol=1e-12, max_iters=4, generator=torch.Generator().manual_seed(0))
    assert res.iterations == 4 and not res.converged
    for bad in (0.0, -1e-3):
        with pytest.raises(ValueError, match="tol"):
            top_eigen(lambda v: A @ v, 3, tol=bad)


@pytest.mark.parametrize("block", ["conv", "all"])
def test_hutchinson_trace_and_diagonal_within_statistical_bound(tiny, block):
    model, batches = tiny
    op, names = _op(model, batches, BLOCKS[block])
    H = explicit_hessian(model, names, batches)
    n = 200
    res = hutchinson(op.matvec, op.dim, n, generator=torch.Generator().manual_seed(0))
    diag = torch.diagonal(H)
    off2 = (H**2).sum(1) - diag**2  # Σ_{j≠i} H_ij²: exact Rademacher variance of each diagonal sample
    # trace: Var(zᵀHz) = 2 Σ_{i≠j} H_ij²; allow 4 standard errors
    tr_sd = (2 * off2.sum() / n).sqrt()
    assert abs(res.trace - float(diag.sum())) <= 4 * tr_sd
    # diagonal: every entry within 5 of its exact standard errors (seeded; P(fail) < 1e-4 per entry)
    assert torch.all((res.diagonal.double() - diag).abs() <= 5 * (off2 / n).sqrt() + 1e-6)
    # the reported standard errors estimate the true ones
    assert 0.5 < res.trace_stderr / float(tr_sd) < 2.0
    assert res.hvps == n and op.hvps == n
    # the estimator is unbiased but not exact: it differs from the diagonal somewhere
    assert not torch.allclose(res.diagonal.double(), diag, atol=1e-9)


def test_exact_diagonal_and_seeded_hutchinson(tiny):
    model, batches = tiny
    op, names = _op(model, batches, BLOCKS["conv"])
    H = explicit_hessian(model, names, batches)
    torch.testing.assert_close(exact_diagonal(op.matvec, op.dim).double(), torch.diagonal(H), rtol=1e-4, atol=1e-6)
    a = hutchinson(op.matvec, op.dim, 8, generator=torch.Generator().manual_seed(9))
    b = hutchinson(op.matvec, op.dim, 8, generator=torch.Generator().manual_seed(9))
    assert a.trace == b.trace and torch.equal(a.diagonal, b.diagonal)
