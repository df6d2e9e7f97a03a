"""MonarchLinear equals the dense P L P^T R it represents; P is an involution; the projection is
exact on Monarch matrices, optimal (gradient descent cannot beat it) and far from random."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.structured.monarch import (
    MonarchLinear,
    MonarchShape,
    monarch_to_dense,
    monarchize,
    plan,
    project,
    projection_error,
    sqrt_shape,
    transpose_permutation,
)

SHAPES = [
    MonarchShape(16, 16, 4, 4, 1),  # the paper's square case n = m^2
    MonarchShape(12, 20, 3, 5, 2),  # rectangular, rank 2
    MonarchShape(30, 18, 5, 3, 1),  # not perfect squares: rectangular blocks (6 x 3 ... )
    MonarchShape(784, 1024, 28, 32, 1),  # the MLP's first layer under nblocks='sqrt'
]


def perm_matrix(rows: int, cols: int) -> torch.Tensor:
    """The dense permutation matrix of transpose_permutation, from its index formula:
    output position c*rows + r takes input position r*cols + c."""
    n = rows * cols
    P = torch.zeros(n, n, dtype=torch.float64)
    for r in range(rows):
        for c in range(cols):
            P[c * rows + r, r * cols + c] = 1.0
    return P


def dense_from_definition(layer: MonarchLinear) -> torch.Tensor:
    """M = P_out L P_mid R with explicit block-diagonal and permutation matrices (test only)."""
    s = layer.shape
    k, j, r = s.nblocks_in, s.nblocks_out, s.rank
    R = torch.block_diag(*layer.w1.detach().double())  # (k*j*r, n_in)
    L = torch.block_diag(*layer.w2.detach().double())  # (j*l, j*k*r)
    # P_mid: stage-1 outputs ordered (k, j, r) -> stage-2 inputs ordered (j, k, r)
    P_mid = torch.kron(perm_matrix(k, j), torch.eye(r, dtype=torch.float64))
    P_out = perm_matrix(j, s.blk_out)  # stage-2 outputs (j, l) -> (l, j)
    return P_out @ L @ P_mid @ R


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_layer_equals_its_dense_matrix(shape):
    torch.manual_seed(0)
    layer = MonarchLinear(shape).double()
    M = dense_from_definition(layer)
    x = torch.randn(7, 3, shape.in_features, dtype=torch.float64)  # extra leading dims pass through
    torch.testing.assert_close(layer(x), x @ M.T + layer.bias, rtol=1e-12, atol=1e-12)
    xt = torch.randn(shape.in_features, 5, dtype=torch.float64).T  # a non-contiguous input
    torch.testing.assert_close(layer(xt), xt @ M.T + layer.bias, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(monarch_to_dense(layer.w1, layer.w2, shape), M, rtol=1e-12, atol=1e-12)
    assert sum(p.numel() for p in (layer.w1, layer.w2)) == shape.num_weights


def test_square_parameter_count_is_2n_sqrt_n():
    for m in (4, 16, 32):
        n = m * m
        assert MonarchShape(n, n, m, m).num_weights == 2 * n * m
        assert sqrt_shape(n, n) == MonarchShape(n, n, m, m)


def test_permutation_is_its_own_inverse():
    m = 6
    x = torch.arange(m * m).float().reshape(1, -1)
    once = transpose_permutation(x, m, m)
    assert not torch.equal(once, x)  # a real permutation ...
    assert torch.equal(transpose_permutation(once, m, m), x)  # ... that undoes itself
    P = transpose_permutation(torch.eye(m * m), m, m)
    torch.testing.assert_close(P @ P, torch.eye(m * m))
    torch.testing.assert_close(P, P.T)
    # and in the square layer P_mid and P_out are this same matrix
    assert torch.equal(perm_matrix(m, m), P.double().T)


def test_gradients_match_dense():
    torch.manual_seed(1)
    shape = MonarchShape(12, 20, 3, 5, 2)
    layer = MonarchLinear(shape).double()
    x = torch.randn(4, 12, dtype=torch.float64)
    layer(x).square().sum().backward()
    g1, g2 = layer.w1.grad.clone(), layer.w2.grad.clone()
    w1, w2 = layer.w1.detach().clone().requires_grad_(), layer.w2.detach().clone().requires_grad_()
    (x @ monarch_to_dense(w1, w2, shape).T + layer.bias.detach()).square().sum().backward()
    torch.testing.assert_close(g1, w1.grad)
    torch.testing.assert_close(g2, w2.grad)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_projection_recovers_a_monarch_matrix(shape):
    torch.manual_seed(2)
    layer = MonarchLinear(shape)
    M = monarch_to_dense(layer.w1.detach(), layer.w2.detach(), shape)  # float32
    w1, w2 = project(M, shape)
    err = (monarch_to_dense(w1, w2, shape) - M).norm() / M.norm()
    assert err < 1e-5
    assert projection_error(M, shape) < 1e-5


def _fit_by_gradient_descent(W, shape, w1, w2, steps=400, lr=0.02):
    w1, w2 = w1.clone().requires_grad_(), w2.clone().requires_grad_()
    opt = torch.optim.Adam([w1, w2], lr=lr)
    best = float("inf")
    for _ in range(steps):
        loss = (monarch_to_dense(w1, w2, shape) - W).square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        best = min(best, loss.item())
    return best ** 0.5 / W.norm().item()


def test_projection_is_optimal_and_far_better_than_random():
    g = torch.Generator().manual_seed(3)
    shape = MonarchShape(36, 24, 6, 4, 1)
    for _ in range(3):
        W = torch.randn(24, 36, generator=g, dtype=torch.float64)
        w1, w2 = project(W, shape)
        e_proj = projection_error(W, shape)
        # gradient descent started at the projection finds nothing better (it is the optimum) ...
        e_gd_from_proj = _fit_by_gradient_descent(W, shape, w1, w2, steps=200, lr=1e-3)
        assert e_gd_from_proj >= e_proj - 1e-9
        # ... nor does gradient descent from a random start
        r1 = torch.randn(w1.shape, generator=g, dtype=torch.float64) * 0.3
        r2 = torch.randn(w2.shape, generator=g, dtype=torch.float64) * 0.3
        e_gd_random = _fit_by_gradient_descent(W, shape, r1, r2)
        assert e_gd_random >= e_proj - 1e-9
        # a random Monarch matrix, even optimally rescaled, is far worse
        R = monarch_to_dense(r1, r2, shape)
        alpha = (R * W).sum() / R.square().sum()
        e_rand = ((alpha * R - W).norm() / W.norm()).item()
        assert e_rand > e_proj + 0.2, (e_rand, e_proj)


def test_projection_improves_with_rank_and_is_exact_at_full_rank():
    torch.manual_seed(4)
    W = torch.randn(20, 12, dtype=torch.float64)
    errs = [projection_error(W, MonarchShape(12, 20, 3, 5, r)) for r in (1, 2, 3, 4)]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 1e-12  # slices are 4 x 4: rank 4 is the whole matrix


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def test_monarchize_replaces_only_planned_layers_and_keeps_function_of_monarch_weights():
    torch.manual_seed(5)
    model = _mlp()
    shapes = plan(model, "hidden", "sqrt")
    assert list(shapes) == ["1", "3"]  # 'hidden' = every Linear but the classifier output
    assert shapes["1"] == MonarchShape(36, 64, 6, 8, 1)
    mm = monarchize(model, shapes)
    assert isinstance(mm[1], MonarchLinear) and isinstance(mm[3], MonarchLinear) and isinstance(mm[5], nn.Linear)
    assert isinstance(model[1], nn.Linear)  # the original is untouched
    # the projected layer computes x W_proj^T + b with W_proj the projection of the dense weight
    x = torch.randn(5, 36)
    w1, w2 = project(model[1].weight.detach(), shapes["1"])
    torch.testing.assert_close(mm[1](x), x @ monarch_to_dense(w1, w2, shapes["1"]).T + model[1].bias, rtol=1e-4, atol=1e-5)
    n_dense = sum(model[i].weight.numel() for i in (1, 3))
    n_monarch = sum(mm[i].w1.numel() + mm[i].w2.numel() for i in (1, 3))
    assert n_monarch == shapes["1"].num_weights + shapes["3"].num_weights and n_monarch * 2 <= n_dense


def test_bad_block_counts_and_layers_are_one_line_errors():
    model = _mlp()
    with pytest.raises(ValueError, match=r"^monarch\.nblocks = 5 does not fit layer 1 \(36 -> 64\).*allowed: \[1, 2, 4\]") as e:
        plan(model, "hidden", 5)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^monarch\.layers = \['fc9'\]: 'fc9' is not a Linear layer") as e:
        plan(model, ["fc9"], "sqrt")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^monarch\.layers = 'all' is invalid"):
        plan(model, "all", "sqrt")
    with pytest.raises(ValueError, match=r"^monarch\.rank = 8 .*not fewer than"):
        plan(model, "hidden", "sqrt", rank=8)
    with pytest.raises(ValueError, match="nblocks_in = 5 does not divide in_features = 36"):
        MonarchShape(36, 64, 5, 8)
