import pytest
import torch

from compress.quant.formats import (
    FLOAT_FORMATS,
    FloatFormat,
    get_format,
    round_to_format,
    unit_roundoff,
)
from compress.quant.rounding import ROUNDING_MODES


def _wide(n=50000, seed=0):
    g = torch.Generator().manual_seed(seed)
    mag = 10 ** torch.empty(n).uniform_(-12, 12, generator=g)
    return torch.randn(n, generator=g) * mag


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_matches_torch_cast_bit_for_bit(name):
    f = FLOAT_FORMATS[name]
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e30, -1e30, f.xmax, -f.xmax,
                            f.xmin_subnormal / 2, f.xmin_subnormal * 0.75, f.xmin_normal * 0.999, 1.0 + 2.0**-f.t])
    x = torch.cat([_wide(), special])
    ours = round_to_format(x, f, use_torch_cast=False)  # the generic algorithm
    ref = x.to(f.torch_dtype).to(torch.float32)
    assert torch.equal(ours.view(torch.int32), ref.view(torch.int32))
    assert torch.equal(round_to_format(x, f).view(torch.int32), ref.view(torch.int32))  # the fast path


def test_unit_roundoff_table():
    # Higham's table: u = 2^-t with t significand bits (implicit bit included)
    expected = {"fp32": 2.0**-24, "fp16": 2.0**-11, "bf16": 2.0**-8, "fp8_e4m3": 2.0**-4, "fp8_e5m2": 2.0**-3}
    for name, u in expected.items():
        assert unit_roundoff(name) == u
        f = FLOAT_FORMATS[name]
        # the bound |fl(x) - x| <= u |x| holds over the normal range ...
        x = torch.empty(20000, dtype=torch.float64).uniform_(1, 2) * 2.0 ** torch.randint(f.emin, f.emax, (20000,))
        x = x[x.abs() <= f.xmax]
        rel = ((round_to_format(x, f) - x).abs() / x.abs()).max()
        assert rel <= u
        # ... and is attained: 1 + u is a tie halfway between 1 and 1 + 2u
        assert float(round_to_format(torch.tensor([1.0 + 2 * u], dtype=torch.float64), f)) == 1.0 + 2 * u
    assert unit_roundoff("fp16", "down") == 2.0**-10


@pytest.mark.parametrize("name", list(FLOAT_FORMATS) + ["custom"])
@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_every_mode_every_format(name, mode):
    f = FloatFormat("custom", t=5, emin=-4, emax=4, overflow="saturate") if name == "custom" else FLOAT_FORMATS[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5000, generator=g, dtype=torch.float64) * min(f.xmax / 4, 100.0)
    r = round_to_format(x, f, mode, torch.Generator().manual_seed(2))
    assert torch.equal(round_to_format(r, f), r)  # representable
    down, up = round_to_format(x, f, "down"), round_to_format(x, f, "up")
    assert ((r == down) | (r == up)).all()  # one of the two neighbours in the format
    assert (down <= x).all() and (up >= x).all()


def test_stochastic_unbiased_in_format():
    f = FLOAT_FORMATS["fp8_e4m3"]
    x = torch.full((40000,), 1.3, dtype=torch.float64)  # between 1.25 and 1.375
    r = round_to_format(x, f, "stochastic", torch.Generator().manual_seed(0))
    assert set(r.unique().tolist()) == {1.25, 1.375}
    assert abs(float(r.mean()) - 1.3) < 5 * (0.125 * 0.5 / 200)


def test_custom_format_subnormals_overflow():
    f = FloatFormat("tiny", t=3, emin=-2, emax=2)  # normals 0.25..7, subnormal spacing 2^-4
    assert f.xmax == 7.0 and f.xmin_subnormal == 2.0**-4
    x = torch.tensor([0.06, 0.1, 7.4, 7.6, 100.0, -100.0], dtype=torch.float64)
    assert round_to_format(x, f).tolist() == [0.0625, 0.125, 7.0, float("inf"), float("inf"), -float("inf")]
    assert round_to_format(x, f.with_(overflow="saturate")).tolist()[2:] == [7.0, 7.0, 7.0, -7.0]
    assert round_to_format(x, f.with_(subnormals=False)).tolist()[:2] == [0.0, 0.0]
    nan = round_to_format(torch.tensor([100.0]), f.with_(has_inf=False))
    assert torch.isnan(nan).all()


def test_unknown_format():
    with pytest.raises(ValueError, match="allowed: fp32, fp16"):
        get_format("fp4")
    with pytest.raises(ValueError, match="overflow"):
        FloatFormat("x", 3, -2, 2, overflow="wrap")
