import pytest
import torch
from torch import nn

from compress.models import LeNet5, prunable_layers
from compress.quant.fakequant import (
    QConv2d,
    QLinear,
    QuantSpec,
    dequantize_weight,
    fake_quant,
    fake_quant_weight,
    quantize_model,
    quantize_model_float,
    quantize_weight,
)
from compress.quant.formats import round_to_format


def _lenet(seed=0):
    torch.manual_seed(seed)
    return LeNet5().eval()


def test_ste_gradient_inside_clip_range_only():
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    y = fake_quant(x, torch.tensor(127.0), torch.tensor(0.0), -127, 127)  # range [-1, 1]
    y.sum().backward()
    inside = (x.detach() >= -1) & (x.detach() <= 1)
    assert torch.equal(x.grad, inside.float())
    assert torch.allclose(y.detach().clamp(-1, 1), y.detach()) and (y.detach()[inside] - x.detach()[inside]).abs().max() <= 0.5 / 127 + 1e-6


@pytest.mark.parametrize("gran,nblocks", [("tensor", 1), ("channel", 16), ("group", 16 * 2)])
def test_weight_granularity_levels(gran, nblocks):
    w = torch.randn(16, 6, 5, 5)  # 150 inputs per channel -> 2 groups of 128 (second zero-padded)
    spec = QuantSpec(bits=3, signed=True, symmetric=False, granularity=gran, group_size=128)
    q, s, z = quantize_weight(w, spec)
    assert s.numel() == nblocks and q.shape == w.shape
    assert q.min() >= -4 and q.max() <= 3
    wq = dequantize_weight(q, s, z, spec)
    assert torch.equal(wq, fake_quant_weight(w, spec))
    rows = wq.reshape(16, -1)
    if gran == "channel":  # at most 2^b distinct values per output channel
        assert max(len(r.unique()) for r in rows) <= 8
    if gran == "group":
        assert max(len(r[:128].unique()) for r in rows) <= 8


def test_finer_granularity_lowers_error():
    torch.manual_seed(0)
    w = torch.randn(32, 256) * torch.logspace(-2, 0, 32).unsqueeze(1)  # channels of very different scale
    err = {g: (fake_quant_weight(w, QuantSpec(4, granularity=g, group_size=32)) - w).pow(2).mean().item()
           for g in ("tensor", "channel", "group")}
    assert err["group"] < err["channel"] < err["tensor"]


def test_quantize_model_wraps_every_layer_and_copies():
    m = _lenet()
    ranges = {n: (-1.0, 4.0) for n in prunable_layers(m)}
    q = quantize_model(m, wbits={"conv1": 8, "fc3": 2}, abits=8, act_ranges=ranges)
    layers = prunable_layers(q)
    assert isinstance(layers["conv1"], QConv2d) and isinstance(layers["fc1"], QLinear)
    assert layers["conv1"].wspec.bits == 8 and layers["fc3"].wspec.bits == 2 and layers["fc1"].wspec is None
    assert float(layers["fc2"].act_lo) == -1.0 and not layers["fc2"].observe
    assert not any(isinstance(x, (QLinear, QConv2d)) for x in m.modules())  # original untouched
    q.fc3.weight.data.zero_()
    assert m.fc3.weight.abs().sum() > 0  # deep copy, no shared storage
    assert set(q.state_dict()) >= set(m.state_dict())


def test_w8a8_close_and_w16_closer_to_float():
    m = _lenet()
    x = torch.randn(64, 1, 28, 28)
    from compress.quant.observers import calibrate

    ranges = calibrate(m, x, ["minmax"])["minmax"]
    ref = m(x)
    d8 = (quantize_model(m, 8, 8, ranges)(x) - ref).abs().max().item()
    d16 = (quantize_model(m, 16, 16, ranges)(x) - ref).abs().max().item()
    d2 = (quantize_model(m, 2, 2, ranges)(x) - ref).abs().max().item()
    assert d16 < d8 < d2 and d16 < 1e-3 * ref.abs().max().item()


def test_observe_mode_tracks_running_range_and_trains():
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    q = quantize_model(m, 4, 8)  # no act ranges: running min/max
    q.train()
    x = torch.randn(8, 1, 28, 28)
    loss = q(x).pow(2).mean()
    loss.backward()
    lin = q[1]
    assert float(lin.act_lo) == float(x.min()) and float(lin.act_hi) == float(x.max())
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_quantize_model_float_rounds_weights_and_inputs():
    m = _lenet()
    q = quantize_model_float(m, "bf16")
    for name, layer in prunable_layers(q).items():
        assert torch.equal(layer.weight, round_to_format(layer.weight, "bf16"))
        assert not torch.equal(layer.weight, prunable_layers(m)[name].weight)
    seen = []
    q.fc1.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0]))
    q(torch.randn(2, 1, 28, 28))
    assert torch.equal(seen[0], seen[0].to(torch.bfloat16).float())


def test_bad_spec():
    with pytest.raises(ValueError, match="granularity"):
        QuantSpec(granularity="row")
    with pytest.raises(ValueError, match="bits"):
        QuantSpec(bits=17)
    with pytest.raises(ValueError, match="rounding"):
        QuantSpec(rounding="odd")
