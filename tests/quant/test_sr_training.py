"""Stochastic rounding in low-precision training: the stagnation example and SR weight updates."""
from __future__ import annotations

import pytest
import torch

from compress.config import ConfigError, validate_params
from compress.quant.formats import round_to_format, unit_roundoff
from compress.quant.sr_training import (
    exact_trajectory,
    gd_step,
    gd_trajectories,
    representable,
    stagnation_demo,
    stagnation_region,
    train_low_precision,
)

FMT, A = "fp8_e5m2", 1024.0


def test_lecture_format_has_unit_roundoff_two_to_minus_three():
    assert unit_roundoff(FMT) == 2.0**-3


def test_representable_values_match_torch_float8_e5m2():
    bits = torch.arange(256, dtype=torch.uint8).view(torch.float8_e5m2).to(torch.float64)
    finite = bits[torch.isfinite(bits)]
    want = torch.unique(finite[(finite >= -3000) & (finite <= 3000)])
    got = representable(FMT, -3000, 3000)
    assert torch.equal(got, want)


@pytest.mark.parametrize("rounded", ["update", "all"])
def test_rn_stagnates_while_sr_keeps_progressing(rounded):
    r = stagnation_demo(FMT, A, x0=0.0, lr=0.05, steps=60, sr_runs=20, rounded=rounded, seed=0)
    # 1. RN stops for good well before the target: from the stall step on the iterate never moves
    k = r.rn_stall_step
    assert k < 60 and torch.all(r.rn[k:] == r.rn[k])
    rn_err = abs(float(r.rn[-1]) - A)
    spacing = float(representable(FMT, float(r.rn[-1]), 2 * A)[1] - r.rn[-1])  # gap to the next value up
    assert rn_err >= spacing  # stuck at least one representable value away from the minimiser
    # 2. the stuck iterate is inside the computed stagnation region, and the update there is below half an ulp
    lo, hi = r.region
    assert lo <= float(r.rn[-1]) <= hi
    assert 0.05 * 2 * rn_err < spacing / 2
    # 3. SR keeps moving: most runs end far closer to the minimiser than RN, as exact GD does
    sr_err = (r.sr[:, -1] - A).abs()
    assert sr_err.mean() < 0.1 * rn_err
    assert abs(float(r.exact[-1]) - A) < 0.1 * rn_err


def test_every_point_of_the_stagnation_region_is_an_rn_fixed_point():
    lo, hi = stagnation_region(FMT, A, 0.0, 0.05)
    xs = representable(FMT, lo, hi)
    assert torch.equal(gd_step(xs, FMT, A, 0.05, "nearest"), xs)
    below = representable(FMT, 0.0, lo)[-2:-1]  # the representable value just below the region moves
    assert not torch.equal(gd_step(below, FMT, A, 0.05, "nearest"), below)


def test_sr_gradient_descent_is_unbiased_in_expectation():
    # with only the update rounded, E[x_{k+1} | x_k] = x_k - lr f'(x_k) is affine, so E[x_k] = exact GD
    runs, steps, lr = 4000, 12, 0.05
    sr = gd_trajectories(FMT, A, 0.0, lr, steps, "stochastic", runs=runs, seed=3)  # (R, K+1)
    exact = exact_trajectory(A, 0.0, lr, steps)
    se = sr.std(0) / runs**0.5
    assert torch.all((sr.mean(0) - exact).abs() <= 5 * se + 1e-9)


def test_low_precision_weights_rn_loses_small_updates_sr_keeps_them():
    torch.manual_seed(0)
    x = torch.randn(512, 1, 4, 4)
    y = (x.flatten(1).sum(1) > 0).long()
    from compress.models import MLP

    changed = {}
    for mode in ("nearest", "stochastic"):
        torch.manual_seed(0)
        model = MLP((1, 4, 4), 2, hidden=[32])
        train_low_precision(model, (x, y), (x[:64], y[:64]), "bf16", mode, epochs=1, batch_size=32, lr=1e-4, seed=0)
        torch.manual_seed(0)
        ref = round_to_format(MLP((1, 4, 4), 2, hidden=[32]).net[1].weight.detach(), "bf16")
        w = model.net[1].weight.detach()
        assert torch.equal(round_to_format(w, "bf16"), w)  # weights stay representable in bf16
        changed[mode] = (w != ref).double().mean().item()
    assert changed["stochastic"] > 3 * changed["nearest"]


@pytest.mark.parametrize("key,bad", [("format", "fp7"), ("rounded", "sometimes"), ("lr", 0.7)])
def test_bad_sr_params_name_the_key(key, bad):
    with pytest.raises(ConfigError) as e:
        validate_params({"sr": {key: bad}})
    assert f"sr.{key}" in str(e.value) and "\n" not in str(e.value)
