"""Butterfly factors are what they claim to be, and a butterfly product is a Monarch matrix."""
from __future__ import annotations

import pytest
import torch

from compress.structured.butterfly import (
    apply_factor,
    butterfly_apply,
    butterfly_dense,
    butterfly_to_monarch,
    random_butterfly,
)
from compress.structured.monarch import (
    MonarchLinear,
    MonarchShape,
    monarch_to_dense,
    projection_error,
)


def test_factor_structure():
    """B_s touches only pairs (t, t + s/2) inside aligned groups of s, each through a diagonal."""
    g = torch.Generator().manual_seed(0)
    n = 16
    for e, tw in enumerate(random_butterfly(n, g), start=1):
        s = 2**e
        B = apply_factor(torch.eye(n, dtype=torch.float64), tw).T  # dense B_s
        for r in range(n):
            for c in range(n):
                allowed = r // s == c // s and (r - c) % (s // 2) == 0
                if not allowed:
                    assert B[r, c] == 0
        assert (B != 0).sum() == 2 * n  # two nonzeros per row


def test_apply_equals_dense_product():
    g = torch.Generator().manual_seed(1)
    tw = random_butterfly(32, g)
    x = torch.randn(5, 32, generator=g, dtype=torch.float64)
    dense = [apply_factor(torch.eye(32, dtype=torch.float64), t).T for t in tw]
    B = torch.linalg.multi_dot(dense[::-1])  # B_32 ... B_2
    torch.testing.assert_close(butterfly_dense(tw), B)
    torch.testing.assert_close(butterfly_apply(x, tw), x @ B.T)


@pytest.mark.parametrize("n", [16, 64, 256])
def test_butterfly_implies_monarch(n):
    g = torch.Generator().manual_seed(n)
    tw = random_butterfly(n, g)
    B = butterfly_dense(tw)
    w1, w2, shape = butterfly_to_monarch(tw)
    m = int(n**0.5)
    assert shape == MonarchShape(n, n, m, m, 1)
    # 1. the factors read off the butterfly reproduce it exactly, through the Monarch layer
    torch.testing.assert_close(monarch_to_dense(w1, w2, shape), B, rtol=1e-10, atol=1e-12)
    layer = MonarchLinear(shape, bias=False).double()
    with torch.no_grad():
        layer.w1.copy_(w1)
        layer.w2.copy_(w2)
    x = torch.randn(3, n, generator=g, dtype=torch.float64)
    torch.testing.assert_close(layer(x), butterfly_apply(x, tw))
    # 2. independently: the optimal projection onto Monarch loses nothing
    assert projection_error(B, shape) < 1e-10
    # while a generic dense matrix is far from Monarch
    assert projection_error(torch.randn(n, n, generator=g, dtype=torch.float64), shape) > 0.5


def test_bad_sizes():
    with pytest.raises(ValueError, match="power of two"):
        random_butterfly(12)
    with pytest.raises(ValueError, match="not a square"):
        butterfly_to_monarch(random_butterfly(32))
