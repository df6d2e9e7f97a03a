import math

import pytest
import torch

from compress.models import LeNet5, prunable_layers
from compress.quant.fakequant import QuantSpec, quantize_weight, weight_spec
from compress.quant.packing import QTensor, load_packed, pack, save_packed, unpack


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_roundtrip_and_density(bits):
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 2**bits, (1001,), generator=g)
    buf = pack(codes, bits)
    assert len(buf) == math.ceil(1001 * bits / 8)  # two 4-bit / four 2-bit / eight 1-bit per byte
    assert torch.equal(unpack(buf, bits, 1001), codes)


def test_pack_layout_two_nibbles_per_byte():
    assert pack(torch.tensor([0x3, 0xA]), 4).tolist() == [0xA3]  # first value in the low nibble
    assert pack(torch.tensor([1, 2, 3, 0]), 2).tolist() == [0b00111001]


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match="cannot be packed"):
        pack(torch.tensor([16]), 4)


@pytest.mark.parametrize("bits,gran", [(2, "channel"), (4, "channel"), (4, "group"), (8, "tensor"), (3, "channel")])
def test_packed_state_roundtrip_and_size(tmp_path, bits, gran):
    torch.manual_seed(0)
    m = LeNet5()
    spec = weight_spec(bits, granularity=gran, group_size=64)
    if gran == "tensor":
        spec = QuantSpec(bits, signed=True, symmetric=False, granularity="tensor")
    qts, floats = {}, {}
    for name, layer in prunable_layers(m).items():
        q, s, z = quantize_weight(layer.weight, spec)
        qts[name + ".weight"] = QTensor(q, s, z, spec)
        floats[name + ".bias"] = layer.bias
    path = save_packed(tmp_path / "w.cspk", qts, floats, {"model": "lenet5"})
    got_q, got_f, meta = load_packed(path)
    assert meta == {"model": "lenet5"}
    for k, qt in qts.items():
        assert torch.equal(got_q[k].dequantize(), qt.dequantize())  # identical dequantized weights
        assert torch.equal(got_q[k].q, qt.q)
    for k, t in floats.items():
        assert torch.equal(got_f[k], t)
    # size: sum n_i b_i / 8 (weights at b bits, biases at 32) + scale / zero-point metadata, within 2 %
    ideal = sum(qt.q.numel() * bits / 8 for qt in qts.values()) + sum(t.numel() * 4 for t in floats.values())
    meta_bytes = sum(qt.s.numel() * 4 + (qt.z.numel() * (1 if bits < 8 else 2) if (qt.z != 0).any() else 0) for qt in qts.values())
    size = path.stat().st_size
    assert ideal + meta_bytes <= size <= 1.02 * (ideal + meta_bytes)
