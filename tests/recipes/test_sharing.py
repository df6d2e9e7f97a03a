"""Trained weight sharing and the masked uniform grid (compress.quant.sharing)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compress.quant import sharing as S


def _layer(seed=0, shape=(16, 40)):
    torch.manual_seed(seed)
    m = nn.Linear(shape[1], shape[0])
    keep = torch.rand(shape, generator=torch.Generator().manual_seed(seed + 1)) > 0.6
    return m, keep


def test_kmeans_1d_reaches_sklearn_lloyd_fixed_point():
    from sklearn.cluster import KMeans

    v = torch.rand(3000, generator=torch.Generator().manual_seed(0)) * 2 - 1  # no empty clusters from a linear init
    for bits in (2, 4):
        c, codes = S.kmeans_1d(v, bits)
        x = v.double().numpy().reshape(-1, 1)
        init = S.initial_centroids(x.ravel(), 2**bits, "linear").reshape(-1, 1)
        ref = np.sort(KMeans(2**bits, init=init, n_init=1, max_iter=1000, tol=0.0, algorithm="lloyd").fit(x).cluster_centers_.ravel())
        np.testing.assert_allclose(c.numpy(), ref, atol=1e-5)
        # every value is coded by its nearest centroid
        d = (v[:, None] - c[None, :]).abs()
        assert torch.all(d.gather(1, codes[:, None]).squeeze(1) <= d.min(1).values + 1e-7)


def test_linear_init_spans_the_range_and_few_distinct_values_are_kept_exactly():
    v = np.array([-3.0, 0.1, 0.2, 5.0])
    np.testing.assert_allclose(S.initial_centroids(v, 5, "linear"), [-3, -1, 1, 3, 5])
    c, codes = S.kmeans_1d(torch.tensor([0.5, -1.0, 0.5, 2.0]), 3)
    assert torch.equal(c[codes], torch.tensor([0.5, -1.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="bits = 9 is invalid"):
        S.kmeans_1d(torch.randn(10), 9)


@pytest.mark.parametrize("bits", [1, 3, 5])
@pytest.mark.parametrize("snap", [False, True])
def test_shared_layer_has_at_most_2_pow_bits_distinct_kept_values_and_keeps_the_mask(bits, snap):
    m, keep = _layer()
    S.share_(m, "weight", keep, bits, snap_int8=snap)
    x = torch.randn(8, 40)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(3):  # fine-tuning moves centroids, never the assignment or the mask
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
    m(x)
    w = m.weight.detach()
    assert torch.all(w[~keep] == 0)
    assert len(torch.unique(w[keep])) <= 2**bits
    st = S.export(m, "weight")
    assert torch.equal(st.keep, keep) and torch.equal(st.dense(), w)
    if snap:  # the codebook is int8 levels / one multiplier: an int8 kernel computes the same weight
        q, s = st.int_weight()
        assert st.levels.dtype == torch.int8 and torch.equal(q / s, w)
    else:
        assert st.int_weight() is None


def test_centroids_move_by_the_summed_gradient_of_their_weights():
    m, keep = _layer(seed=3)
    S.share_(m, "weight", keep, 3)
    codes = m.weight_codes.clone()
    c0 = m.weight_centroids.detach().clone()
    x, y = torch.randn(32, 40), torch.randint(0, 16, (32,))
    out = m(x)
    m.weight.retain_grad()  # the shared weight tensor this forward used
    F.cross_entropy(out, y).backward()
    gw = m.weight.grad  # dL/dW, (16, 40)
    expected = torch.zeros(8).index_add_(0, codes[keep], gw[keep])  # sum over the weights sharing each centroid
    torch.testing.assert_close(m.weight_centroids.grad, expected)
    torch.optim.SGD([m.weight_centroids], lr=0.5).step()
    torch.testing.assert_close(m.weight_centroids.detach(), c0 - 0.5 * expected)
    assert torch.equal(m.weight_codes, codes)


def test_uniform_codes_are_integers_on_a_symmetric_grid_and_pruned_positions_are_code_zero():
    m, keep = _layer(seed=5)
    S.uniform_(m, "weight", keep, 4)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(8, 40)
    for _ in range(3):
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
    m(x)
    st = S.export(m, "weight")
    assert st.codes.abs().max() <= 7 and torch.equal(st.codes.float(), st.codes.float().round())
    q, s = st.int_weight()
    assert torch.all(q[~keep] == 0)
    torch.testing.assert_close(q / s, m.weight.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(st.dense(), m.weight.detach(), rtol=0, atol=1e-6)


def test_uncode_restores_a_plain_parameter_with_the_decoded_values():
    m, keep = _layer()
    S.share_(m, "weight", keep, 2)
    w = m.weight.detach().clone()
    S.uncode_(m, "weight")
    assert isinstance(m.weight, nn.Parameter) and torch.equal(m.weight.detach(), w)
    assert not S.coded_params(m) and not hasattr(m, "weight_codes")
