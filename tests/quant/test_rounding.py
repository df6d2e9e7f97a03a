import pytest
import torch

from compress.quant.rounding import ROUNDING_MODES, round_

X = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1.2, -1.2, 3.0])


def test_deterministic_modes():
    assert torch.equal(round_(X, "nearest"), torch.tensor([-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 1.0, -1.0, 3.0]))  # ties to even
    assert torch.equal(round_(X, "down"), torch.tensor([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 1.0, -2.0, 3.0]))
    assert torch.equal(round_(X, "up"), torch.tensor([-2.0, -1.0, -0.0, 1.0, 2.0, 3.0, 2.0, -1.0, 3.0]))


def test_stochastic_unbiased_and_neighbours():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([0.1, 0.5, 0.9, -0.3, 2.75, 7.0])
    n = 20000
    draws = round_(x.expand(n, -1).contiguous(), "stochastic", g)  # (n, 6)
    assert ((draws == x.floor()) | (draws == x.ceil())).all()  # never leaves the two neighbours
    p = x - x.floor()
    sigma = (p * (1 - p) / n).sqrt()
    assert ((draws.mean(0) - x).abs() <= 5 * sigma + 1e-9).all()  # E[SR(x)] = x within 5 sigma
    assert (draws[:, -1] == 7.0).all()  # integers are never moved


def test_stochastic_seeded_reproducible():
    x = torch.rand(100) * 10
    a = round_(x, "stochastic", torch.Generator().manual_seed(3))
    b = round_(x, "stochastic", torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_unknown_mode():
    with pytest.raises(ValueError, match="allowed: " + ", ".join(ROUNDING_MODES)):
        round_(X, "banker")
