import math

import pytest
import torch

from compress.quant.affine import (
    affine_params,
    dequantize,
    qrange,
    quantize,
    torch_scale,
)

# The lecture's worked example: X in [0, 1] mapped to int8 [-128, 127], so s = 255 and
# X_q = round(255 (X - 0) - 128).  0.5 -> -0.5 is a tie and rounds to the even integer 0.
X = torch.tensor([[0.00, 0.05, 0.15, 0.20],
                  [0.25, 0.35, 0.40, 0.45],
                  [0.50, 0.55, 0.60, 0.65],
                  [0.75, 0.80, 0.85, 1.00]])
XQ = torch.tensor([[-128, -115, -90, -77],
                   [-64, -39, -26, -13],
                   [0, 12, 25, 38],
                   [63, 76, 89, 127]], dtype=torch.float32)


def test_lecture_worked_example():
    qmin, qmax = qrange(8, signed=True)
    assert (qmin, qmax) == (-128, 127)
    s, z = affine_params(0.0, 1.0, 8, signed=True)
    assert float(s) == 255.0 and float(z) == -128.0
    q = quantize(X, s, z, qmin, qmax)
    assert torch.equal(q, XQ)
    # inverse map: error at most half a step 1/(2s)
    assert (dequantize(q, s, z) - X).abs().max() <= 0.5 / 255 + 1e-7


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8, 12, 16])
def test_qrange(bits):
    assert qrange(bits, True) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert qrange(bits, False) == (0, 2**bits - 1)


@pytest.mark.parametrize("bits", [0, 17, -3, 2.5])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits"):
        qrange(bits)


@pytest.mark.parametrize("bits,signed,symmetric", [(2, True, False), (4, False, False), (8, True, True),
                                                   (6, False, True), (16, True, False)])
def test_error_bound_and_range(bits, signed, symmetric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=g) * 3 + 0.5
    qmin, qmax = qrange(bits, signed)
    s, z = affine_params(x.min(), x.max(), bits, signed, symmetric)
    assert float(z) == round(float(z))  # integer zero point: 0.0 is exact
    q = quantize(x, s, z, qmin, qmax)
    assert q.min() >= qmin and q.max() <= qmax and torch.equal(q, q.round())
    assert float(dequantize(quantize(torch.zeros(1), s, z, qmin, qmax), s, z)) == 0.0
    # inside the range every value is within half a step (+ the zero-point shift for asymmetric)
    err = (dequantize(q, s, z) - x).abs().max()
    assert err <= 1.0 / float(s) + 1e-6
    assert torch.allclose(torch_scale(s), 1 / s)


def test_lecture_formula_without_integer_zero_point():
    lo, hi = -0.37, 1.91
    s, z = affine_params(lo, hi, 8, signed=True, include_zero=False, integer_zero_point=False)
    x = torch.linspace(lo, hi, 50)
    expected = torch.round((255 / (hi - lo)) * (x - lo) - 128).clamp(-128, 127)
    assert torch.equal(quantize(x, s, z, -128, 127), expected)


def test_symmetric_signed_zero_point_is_zero():
    s, z = affine_params(-2.0, 1.0, 8, signed=True, symmetric=True)
    assert float(z) == 0 and math.isclose(float(s), 127 / 2.0, rel_tol=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("value", [0.0, 3.0, -1e-3])
def test_degenerate_range_is_finite(value, symmetric):
    s, z = affine_params(value, value, 8, signed=True, symmetric=symmetric)
    assert torch.isfinite(s).all() and torch.isfinite(z).all() and float(s) > 0
    x = torch.full((5,), value)
    xh = dequantize(quantize(x, s, z, -128, 127), s, z)
    assert torch.isfinite(xh).all() and (xh - x).abs().max() <= 1.0 / float(s)


def test_degenerate_range_without_zero():
    s, z = affine_params(2.0, 2.0, 4, signed=False, include_zero=False)
    assert torch.isfinite(s) and torch.isfinite(z)


def test_per_channel_equals_per_tensor_rowwise():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 10, generator=g) * torch.arange(1, 7).unsqueeze(1)
    s, z = affine_params(w.amin(1), w.amax(1), 4, signed=True)
    assert s.shape == (6,)
    q = quantize(w, s, z, -8, 7, axis=0)
    for r in range(6):
        sr, zr = affine_params(w[r].min(), w[r].max(), 4, signed=True)
        assert torch.equal(q[r], quantize(w[r], sr, zr, -8, 7))
    assert torch.allclose(dequantize(q, s, z, axis=0)[2], dequantize(q[2], s[2], z[2]))


def test_bad_ranges():
    with pytest.raises(ValueError, match="x_max < x_min"):
        affine_params(1.0, 0.0, 8)
    with pytest.raises(ValueError, match="not finite"):
        affine_params(0.0, float("inf"), 8)
