"""BinaryConnect: binarization, STE, clipping, 1-bit packed storage and its runtime."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from compress.config import ConfigError, validate_params
from compress.quant.binary import (
    BinarizeSTE,
    BinaryLinear,
    BinaryMLP,
    binarize,
    binary_optimizer,
    clip_weights,
    glorot_lr_scales,
    hard_sigmoid,
    load_binary,
    packed_size_bound,
    save_binary,
    train_binaryconnect,
)


def test_det_binarization_is_sign_with_zero_to_plus_one():
    w = torch.tensor([-2.0, -0.3, 0.0, 1e-8, 0.7, 3.0])
    assert binarize(w, "det").tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]


def test_stoch_binarization_frequency_matches_hard_sigmoid():
    w = torch.tensor([-1.5, -0.6, 0.0, 0.4, 0.9, 2.0])
    n = 20000
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([binarize(w, "stoch", g) for _ in range(n)])  # (n, 6)
    assert set(draws.unique().tolist()) <= {-1.0, 1.0}
    p_hat = (draws == 1).double().mean(0)
    p = hard_sigmoid(w).double()
    bound = 5 * torch.sqrt(p * (1 - p) / n) + 1e-12  # 5 binomial standard errors
    assert torch.all((p_hat - p).abs() <= bound), (p_hat, p)
    assert p_hat[0] == 0 and p_hat[-1] == 1  # outside [-1, 1] binarization is deterministic


def test_ste_passes_the_gradient_straight_through():
    w = torch.randn(5, 7, requires_grad=True)
    c = torch.randn(5, 7)
    (BinarizeSTE.apply(w, "det", None) * c).sum().backward()
    assert torch.equal(w.grad, c)


def test_training_forward_uses_binary_weights_and_bias_stays_real():
    torch.manual_seed(0)
    layer = BinaryLinear(6, 4, mode="det")
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.25, -3.0, 1.5, 0.1]))
    x = torch.randn(3, 6)
    expect = F.linear(x, torch.where(layer.weight >= 0, 1.0, -1.0), layer.bias)
    assert torch.allclose(layer.train()(x), expect)
    assert torch.allclose(layer.eval()(x), expect)  # eval_weights="binary"
    layer.eval_weights = "real"
    assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias))


def test_clip_after_update_keeps_real_weights_in_unit_interval_but_not_biases():
    torch.manual_seed(0)
    model = BinaryMLP((1, 4, 4), 3, hidden=[8], mode="det")
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    x, y = torch.randn(16, 1, 4, 4), torch.randint(0, 3, (16,))
    F.cross_entropy(model(x), y).backward()
    opt.step()
    lin = [m for _, m in model.binary_layers()]
    assert max(m.weight.abs().max().item() for m in lin) > 1  # the big step left the box ...
    with torch.no_grad():
        lin[0].bias.fill_(5.0)
    clip_weights(model)
    assert all(m.weight.abs().max().item() <= 1 for m in lin)  # ... and clipping brings it back
    assert torch.all(lin[0].bias == 5.0)  # biases stay full precision and unclipped


def test_glorot_lr_scale_matches_reference_formula():
    """Reference code (mnist.py, H = 1, W_LR_scale = "Glorot"): 1 / sqrt(1.5 / (fan_in + fan_out))."""
    model = BinaryMLP((1, 28, 28), 10, hidden=[1024], mode="det")
    s = glorot_lr_scales(model)
    assert s["net.1"] == pytest.approx(1 / math.sqrt(1.5 / (784 + 1024)))
    assert s["net.1"] == pytest.approx(2 / math.sqrt(6 / (784 + 1024)))  # twice Glorot's uniform-bound inverse
    assert s["net.4"] == pytest.approx(math.sqrt((1024 + 10) / 1.5))
    opt = binary_optimizer(model, "adam", 1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * s["net.1"])
    assert opt.param_groups[-1]["lr"] == pytest.approx(1e-3)


def _trained_like(mode: str) -> BinaryMLP:
    torch.manual_seed(1)
    model = BinaryMLP((1, 16, 16), 4, hidden=[256, 128], mode=mode).seed_binarization(1)
    model.train()
    for _ in range(3):  # populate batch-norm statistics
        model(torch.randn(64, 1, 16, 16))
    return model.eval()


@pytest.mark.parametrize("mode", ["det", "stoch"])
def test_packed_artifact_is_one_bit_per_weight_and_reproduces_the_binary_net(tmp_path, mode):
    model = _trained_like(mode).set_eval_weights("binary")
    path = save_binary(model, tmp_path / "m.safetensors")
    layers = load_binary(path)
    for (_, m), layer in zip(model.binary_layers(), layers):
        assert torch.equal(layer["weight"], torch.where(m.weight >= 0, 1.0, -1.0))
    from compress.quant.binary import PackedBinaryMLP

    x = torch.randn(32, 1, 16, 16)
    assert torch.allclose(PackedBinaryMLP(layers)(x), model(x), atol=1e-4)
    n_w = sum(m.weight.numel() for _, m in model.binary_layers())
    size = path.stat().st_size
    assert size <= packed_size_bound(model) + 1024  # bits + fp32 scale/shift + a small header
    assert size < 4 * n_w / 8  # far below fp32 (4 bytes per weight) and even below 4 bits per weight


def test_binary_packed_runtime_loads_a_variant(tmp_path):
    from compress.runtimes import load_predictor
    from compress.variants import Form, Manifest, write_variant

    model = _trained_like("det")
    save_binary(model, tmp_path / "m.bc1.safetensors")
    man = Manifest(variant="t", stage="binary", method="binaryconnect-det",
                   model={"name": "binaryconnect_mlp", "kwargs": {}, "input_shape": [1, 16, 16], "num_classes": 4},
                   dataset="synthetic", seed=0, avg_weight_bits=1.0, act_bits=None, sparsity=0.0, params=0,
                   deploy=Form("binary-packed", ["m.bc1.safetensors"]))
    write_variant(tmp_path, man)
    pred = load_predictor(tmp_path, man)
    x = torch.randn(8, 1, 16, 16)
    assert "1-bit" in pred.description
    assert torch.allclose(pred(x), model(x), atol=1e-4)


def test_binaryconnect_learns_digits_and_respects_the_box():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # (N, 1, 8, 8)
    y = torch.tensor(d.target)
    cfg = SimpleNamespace(epochs=4, batch_size=64, optimizer="adam", lr=3e-3, momentum=0.9, schedule="cosine",
                          max_iterations=None, eval_every=0)
    model, hist = train_binaryconnect((x[:1400], y[:1400]), (x[1400:], y[1400:]), (1, 8, 8), 10, hidden=[128],
                                      mode="det", seed=0, cfg=cfg, progress=False)
    assert hist.best_val_acc > 0.85  # chance is 0.10
    assert all(m.weight.abs().max().item() <= 1 for _, m in model.binary_layers())


@pytest.mark.parametrize("section,key,bad", [("binary", "modes", ["det", "sto"]), ("binary", "hidden", [])])
def test_bad_binary_params_name_the_key(section, key, bad):
    with pytest.raises(ConfigError) as e:
        validate_params({section: {key: bad}})
    msg = str(e.value)
    assert f"{section}.{key}" in msg and "\n" not in msg


def test_unknown_mode_in_library_names_allowed_modes():
    with pytest.raises(ValueError, match="det, stoch"):
        BinaryLinear(3, 2, mode="ternary")


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # (N, 1, 8, 8)
    y = torch.tensor(d.target)
    return (x[:1000], y[:1000]), (x[1000:1400], y[1000:1400]), (x[1400:], y[1400:])


def test_train_runs_in_workers_match_in_process_and_report_the_protocol_errors():
    from compress.quant.binary import train_runs
    from compress.train import evaluate_model

    train, val, test = _digits()
    cfg = SimpleNamespace(epochs=2, batch_size=100, optimizer="adam", lr=3e-3, momentum=0.9, schedule="cosine",
                          max_iterations=None, eval_every=0)
    runs = [("det", 0), ("stoch", 1), ("fp32", 0)]
    kw = dict(hidden=[64], cfg=cfg, fp32_lr=1e-3)
    seq = train_runs(train, val, test, (1, 8, 8), 10, runs, workers=1, **kw)
    par = train_runs(train, val, test, (1, 8, 8), 10, runs, workers=2, **kw)
    assert [(r["method"], r["seed"]) for r in seq] == runs
    for a, b in zip(seq, par):
        assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
        assert {k: a[k] for k in ("test_error", "test_error_binary", "test_error_real", "best_iteration")} == \
               {k: b[k] for k in ("test_error", "test_error_binary", "test_error_real", "best_iteration")}
    det, stoch, fp32 = seq
    model = BinaryMLP((1, 8, 8), 10, hidden=[64], mode="det")
    model.load_state_dict(det["state"])
    model.eval()
    assert det["test_error"] == det["test_error_binary"] == pytest.approx(100 * (1 - evaluate_model(model, *test)[1]))
    assert det["val_error_deployed"] == pytest.approx(100 * (1 - evaluate_model(model, *val)[1]))
    assert stoch["test_error"] == stoch["test_error_real"] and fp32["test_error_binary"] is None
    assert len(det["history"]) == 2 and det["test_error"] < 50  # it learned (chance: 90 % error)
