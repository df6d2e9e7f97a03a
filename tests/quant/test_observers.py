import pytest
import torch

from compress.models import LeNet5, prunable_layers
from compress.quant.affine import affine_params, dequantize, quantize
from compress.quant.observers import OBSERVERS, calibrate, make_observer


def _mse(x, lo, hi, bits):
    s, z = affine_params(lo, hi, bits, signed=False)
    return (dequantize(quantize(x, s, z, 0, 2**bits - 1), s, z) - x).pow(2).mean().item()


def _heavy_tailed(n=20000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.distributions.Laplace(0.0, 1.0).sample((n,)).abs()  # post-ReLU-like
    x[:3] = torch.tensor([40.0, 35.0, 30.0])  # rare outliers
    return x


def test_minmax_and_moving_average():
    o = make_observer("minmax")
    ma = make_observer("moving_average_minmax", averaging_constant=0.5)
    for b in (torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 3.0])):
        o.update(b)
        ma.update(b)
    assert o.range() == (-1.0, 3.0)
    assert ma.range() == (-0.5, 2.0)  # 0 + .5(-1 - 0), 1 + .5(3 - 1)


@pytest.mark.parametrize("method", ["percentile", "mse", "kl"])
def test_histogram_observers_clip_outliers(method):
    x = _heavy_tailed()
    o = make_observer(method, bits=4)
    for chunk in x.split(5000):
        o.update(chunk)  # range grows across batches: re-binning path
    lo, hi = o.range()
    assert 0.0 <= lo and hi < 40.0 and hi > 2.0  # outliers clipped, bulk kept
    if method == "mse":  # the MSE search beats min-max on the objective it optimises
        assert _mse(x, lo, hi, 4) < _mse(x, 0.0, 40.0, 4)


def test_percentile_of_uniform():
    o = make_observer("percentile", percentile=99.0)
    o.update(torch.linspace(0, 1, 100001))
    lo, hi = o.range()
    assert abs(hi - 0.99) < 2e-3 and abs(lo - 0.01) < 2e-3


def test_calibrate_records_layer_inputs():
    torch.manual_seed(0)
    m = LeNet5().eval()
    x = torch.randn(40, 1, 28, 28)
    r = calibrate(m, x, list(OBSERVERS), batch_size=16)
    assert set(r) == set(OBSERVERS) and all(set(v) == set(prunable_layers(m)) for v in r.values())
    assert r["minmax"]["conv1"] == (float(x.min()), float(x.max()))  # conv1's input is the image
    assert r["minmax"]["fc1"][0] == 0.0  # after ReLU + max-pool
    for method, ranges in r.items():
        for name, (lo, hi) in ranges.items():
            mlo, mhi = r["minmax"][name]
            assert mlo - 1e-6 <= lo <= hi <= mhi + 1e-6, (method, name)


def test_bad_calibration_inputs():
    m = LeNet5()
    with pytest.raises(ValueError, match="calibration set is empty"):
        calibrate(m, torch.empty(0, 1, 28, 28), ["minmax"])
    with pytest.raises(ValueError, match="observer 'avg' is unknown"):
        calibrate(m, torch.randn(2, 1, 28, 28), ["avg"])
    with pytest.raises(ValueError, match="no data"):
        make_observer("kl").range()
