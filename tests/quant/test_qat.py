"""QAT: STE gradients, LSQ step gradients, frozen calibrated ranges, export, fine-tuning recovers accuracy."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from compress.config import ConfigError, validate_params
from compress.quant.config import parse_bits
from compress.quant.fakequant import quantize_model
from compress.quant.lsq import LSQLinear, lsq_fake_quant
from compress.quant.observers import calibrate
from compress.quant.packing import load_packed
from compress.quant.qat import (
    export_quantized,
    make_qat_optimizer,
    prepare_qat,
    qat_layers,
    save_qat_packed,
    train_qat,
)
from compress.train import evaluate_model


def test_lsq_ste_gradient_is_identity_inside_and_zero_outside_the_clip_range():
    step, z, qmin, qmax = torch.tensor(0.5), 3.0, 0, 15  # representable range [(0-3)*0.5, (15-3)*0.5] = [-1.5, 6]
    x = torch.tensor([-4.0, -1.6, -1.4, 0.0, 0.26, 5.9, 6.1, 9.0], requires_grad=True)
    lsq_fake_quant(x, step, z, qmin, qmax, g=1.0).sum().backward()
    inside = (x.detach() / step + z >= qmin) & (x.detach() / step + z <= qmax)
    assert torch.equal(x.grad, inside.float())
    assert inside.tolist() == [False, False, True, True, True, True, False, False]


def test_fixed_qat_layer_passes_gradient_only_for_inputs_inside_the_calibrated_range():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    q = prepare_qat(nn.Sequential(lin), 8, 8, {"0": (-1.0, 1.0)}, "fixed")[0]
    x = torch.tensor([[-3.0, -0.5, 0.5, 2.0]], requires_grad=True)
    q(x).sum().backward()
    w_q = q.weight_fake_quant().detach()
    expect = w_q.sum(0) * torch.tensor([0.0, 1.0, 1.0, 0.0])  # STE: identity inside [-1, 1], zero outside
    assert torch.allclose(x.grad[0], expect, atol=1e-6)


def test_lsq_step_gradient_matches_the_paper_formula():
    torch.manual_seed(0)
    x = torch.randn(200) * 3
    step = torch.tensor(0.4, requires_grad=True)
    z, qmin, qmax, g = 2.0, 0, 7, 0.37
    lsq_fake_quant(x, step, z, qmin, qmax, g).sum().backward()
    v = x / 0.4 + z
    d = torch.where(v < qmin, qmin - z, torch.where(v > qmax, qmax - z, torch.round(v) - z - x / 0.4))
    assert step.grad.item() == pytest.approx(g * d.sum().item(), rel=1e-4)


def test_fixed_ranges_stay_frozen_and_lsq_steps_are_trained():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(256, 1, 4, 4), torch.randint(0, 3, (256,))
    ranges = calibrate(model, x[:64], ["minmax"])["minmax"]
    cfg = SimpleNamespace(epochs=2, batch_size=32, optimizer="adam", lr=1e-2, weight_decay=0.0, momentum=0.9,
                          schedule="constant", max_iterations=None, eval_every=0)
    fixed = prepare_qat(model, 4, 4, ranges, "fixed")
    w0 = fixed[1].weight.detach().clone()
    train_qat(fixed, (x, y), (x[:32], y[:32]), cfg, seed=0, progress=False)
    for name, m in qat_layers(fixed).items():
        assert (m.act_lo.item(), m.act_hi.item()) == pytest.approx(ranges[name])
    assert not torch.equal(fixed[1].weight, w0)
    assert not torch.equal(model[1].weight, fixed[1].weight)  # the float model is untouched (deep copy)

    lsq = prepare_qat(model, 4, 4, ranges, "lsq")
    assert isinstance(lsq[1], LSQLinear)
    opt = make_qat_optimizer(lsq, cfg, lsq_lr=5e-3)
    assert opt.param_groups[-1]["lr"] == 5e-3 and len(opt.param_groups[-1]["params"]) == 4  # 2 layers x (w, a) steps
    s0 = (lsq[1].w_step.detach().clone(), lsq[1].a_step.detach().clone())
    train_qat(lsq, (x, y), (x[:32], y[:32]), cfg, seed=0, lsq_lr=5e-3, progress=False)
    assert not torch.equal(lsq[1].w_step, s0[0]) and not torch.equal(lsq[1].a_step, s0[1])


@pytest.mark.parametrize("quantizer", ["fixed", "lsq"])
def test_export_packs_losslessly_and_the_packed_runtime_reproduces_the_qat_forward(tmp_path, quantizer):
    torch.manual_seed(0)
    from compress.models import LeNet5
    from compress.quant.ptq import load_packed_model

    model = LeNet5()
    x = torch.randn(32, 1, 28, 28)
    q = prepare_qat(model, {"conv1": 8, "conv2": 4, "fc1": 2, "fc2": 4, "fc3": 8}, 4,
                    calibrate(model, x, ["minmax"])["minmax"], quantizer).eval()
    qts, floats, acts = export_quantized(q)
    for name, qt in qts.items():
        bits = qt.spec.bits
        assert qt.q.min() >= -(2 ** (bits - 1)) and qt.q.max() <= 2 ** (bits - 1) - 1
        assert torch.equal(qt.q, torch.round(qt.q))
    path = save_qat_packed(q, tmp_path / "model.cspk")
    qts2, _, _ = load_packed(path)
    for k in qts:
        assert torch.equal(qts2[k].dequantize(), qts[k].dequantize())
    deployed = load_packed_model(path, LeNet5())  # what the "packed" runtime runs
    assert torch.allclose(deployed(x), q(x), atol=1e-4)
    n_bits = sum(qt.q.numel() * qt.spec.bits for qt in qts.values())
    assert path.stat().st_size < n_bits / 8 + 4 * sum(t.numel() for t in floats.values()) + 4096


def test_qat_recovers_low_bit_accuracy_that_ptq_loses():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # (N, 1, 8, 8)
    y = torch.tensor(d.target)
    tr, va = (x[:1400], y[:1400]), (x[1400:], y[1400:])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    from compress.train import fit

    cfg = SimpleNamespace(epochs=15, batch_size=64, optimizer="adam", lr=1e-2, weight_decay=0.0, momentum=0.9,
                          schedule="cosine", max_iterations=None, eval_every=0)
    fit(model, tr, va, cfg, seed=0, progress=False)
    fp_acc = evaluate_model(model, *va)[1]
    ranges = calibrate(model, tr[0][:256], ["minmax"])["minmax"]
    ptq_acc = evaluate_model(quantize_model(model, 2, 4, ranges), *va)[1]
    q = prepare_qat(model, 2, 4, ranges, "fixed")
    train_qat(q, tr, va, SimpleNamespace(**{**vars(cfg), "epochs": 8, "lr": 3e-3}), seed=0, progress=False)
    qat_acc = evaluate_model(q, *va)[1]
    assert fp_acc > 0.9
    assert qat_acc > ptq_acc + 0.04 and qat_acc > fp_acc - 0.1, (fp_acc, ptq_acc, qat_acc)


def test_parse_bits():
    assert parse_bits("w4a8") == (4, 8) and parse_bits("W2") == (2, None)
    for bad in ("w9a8", "w4a1", "4a4", "w1a8"):
        with pytest.raises(ValueError):
            parse_bits(bad)


@pytest.mark.parametrize("key,bad", [("bits", ["w9a8"]), ("bits", ["w4a1"]), ("bits", ["x4"]), ("quantizer", "pact"),
                                     ("calibration", "median"), ("rounding", "up"), ("bits", [])])
def test_bad_qat_params_are_one_line_naming_the_key(key, bad):
    with pytest.raises(ConfigError) as e:
        validate_params({"qat": {key: bad}})
    msg = str(e.value)
    assert f"qat.{key}" in msg and "\n" not in msg


def test_lsq_with_onecycle_is_refused_naming_the_schedule_key():
    with pytest.raises(ConfigError) as e:
        validate_params({"qat": {"quantizer": "lsq", "schedule": "onecycle"}})
    assert "qat.schedule" in str(e.value) and "\n" not in str(e.value)


def test_unknown_quantizer_in_library():
    with pytest.raises(ValueError, match="qat.quantizer"):
        prepare_qat(nn.Sequential(nn.Linear(2, 2)), 4, 4, None, "pact")


def test_a_registered_quantizer_is_accepted_trained_and_exported_through_its_interface(monkeypatch):
    """Adding a quantizer = layer classes + one QUANTIZERS entry: config, optimizer groups and export follow."""
    from compress.quant import quantizers
    from compress.quant.fakequant import QConv2d, QLinear

    class _Clip:  # a quantizer with one learned parameter of its own, not part of the float model
        quant_params = ("alpha",)
        quant_state = (*QLinear.quant_state, "alpha")

        def _setup(self, wspec, aspec, act_range):
            super()._setup(wspec, aspec, act_range)
            self.alpha = nn.Parameter(torch.tensor(2.0))

    class ClipLinear(_Clip, QLinear):
        pass

    class ClipConv2d(_Clip, QConv2d):
        pass

    monkeypatch.setitem(quantizers.QUANTIZERS, "clip", quantizers.Quantizer(ClipLinear, ClipConv2d, "test"))
    assert validate_params({"qat": {"quantizer": "clip"}}).qat.quantizer == "clip"
    with pytest.raises(ConfigError, match="qat.schedule"):
        validate_params({"qat": {"quantizer": "clip", "schedule": "onecycle"}})
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    q = prepare_qat(model, 4, 8, {"1": (-1.0, 1.0)}, "clip")
    assert isinstance(q[1], ClipLinear)
    cfg = SimpleNamespace(optimizer="adam", lr=1e-2, weight_decay=1e-4, momentum=0.9)
    opt = make_qat_optimizer(q, cfg, lsq_lr=5e-3)
    assert opt.param_groups[-1]["params"] == [q[1].alpha] and opt.param_groups[-1]["lr"] == 5e-3
    assert all(p is not q[1].alpha for p in opt.param_groups[0]["params"])
    qts, floats, _ = export_quantized(q)
    assert set(qts) == {"1.weight"} and set(floats) == {"1.bias"}


def test_every_registered_quantizer_exports_codes_that_dequantize_to_its_forward_weights():
    from compress.quant.quantizers import QUANTIZERS

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(4, 1, 4, 4)
    for name in QUANTIZERS:
        q = prepare_qat(model, 4, 8, calibrate(model, x, ["minmax"])["minmax"], name).eval()
        qts, _, _ = export_quantized(q)
        for layer, m in qat_layers(q).items():
            assert torch.allclose(qts[f"{layer}.weight"].dequantize(), m.weight_fake_quant().detach(), atol=1e-6), name
