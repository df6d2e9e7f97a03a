from types import SimpleNamespace

import pytest
import torch

from compress.models import build_model, prunable_layers
from compress.prune import masks as M
from compress.prune.imp import (
    ModelBuilder,
    control_rounds,
    layer_rates,
    random_masks,
    rounds_to_target,
    run_imp,
    run_lottery,
    train_to_early_stop,
)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(99)) * 2
    y = torch.randint(0, 4, (n,), generator=g)
    return centers[y] + torch.randn(n, 1, 8, 8, generator=g), y


def _build(init_seed):
    torch.manual_seed(init_seed)
    return build_model("mlp", (1, 8, 8), 4, hidden=[32, 16], init="glorot")


CFG = SimpleNamespace(epochs=100, batch_size=32, optimizer="adam", lr=3e-3, weight_decay=0.0, momentum=0.9,
                      schedule="constant", max_iterations=20, eval_every=5)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared 2-core box
    yield
    torch.set_num_threads(n)


def test_rounds_and_rates_follow_the_paper():
    m = build_model("lenet300", (1, 28, 28), 10)
    rates = layer_rates(m, 0.2, 0.1)
    assert list(rates.values()) == [0.2, 0.2, 0.1]
    assert rounds_to_target(m, 0.2, 0.1, 0.036) == 15  # 0.8^15 of 265,200 + 0.9^15 of 1,000 weights = 3.6 %


def test_random_masks_keep_per_layer_counts():
    like = {"a": torch.rand(20, 30) > 0.7, "b": torch.rand(5, 7) > 0.2}
    r = random_masks(like, torch.Generator().manual_seed(0))
    assert all(int(r[n].sum()) == int(like[n].sum()) and not torch.equal(r[n], like[n]) for n in like)


@pytest.mark.parametrize("rewind", [0, 10])
def test_imp_rounds_masks_and_controls(rewind):
    train, val, test = _data(256, 0), _data(128, 1), _data(128, 2)
    tickets = {}

    def on_ticket(r, model):
        tickets[r] = (M.get_masks(model, all_layers=True), M.dense_state_dict(model))

    w0 = M.dense_state_dict(_build(3))
    rows = run_lottery(_build, train, val, test, CFG, seed=3, rate=0.5, output_rate=0.25, target_remaining=0.2,
                       rewind_iteration=rewind, on_ticket=on_ticket)
    n_rounds = max(r["round"] for r in rows)
    assert n_rounds == rounds_to_target(_build(0), 0.5, 0.25, 0.2) == 3
    assert [r["kind"] for r in rows] == ["ticket"] + ["ticket", "reinit", "random_mask"] * n_rounds
    sizes = {n: m.weight.numel() for n, m in prunable_layers(_build(0)).items()}
    for r in range(1, n_rounds + 1):
        masks = tickets[r][0]
        prev = tickets[r - 1][0]
        assert all(torch.all(masks[n] <= prev[n]) for n in masks)  # monotone
        kept = {n: int(masks[n].sum()) for n in masks}
        expect = {"net.1": sizes["net.1"] * 0.5 ** r, "net.3": sizes["net.3"] * 0.5 ** r, "net.5": sizes["net.5"] * 0.75 ** r}
        assert all(abs(kept[n] - expect[n]) <= 1.5 for n in kept)
        same = [row for row in rows if row["round"] == r]
        assert len({round(row["remaining"], 6) for row in same}) == 1  # controls at the same sparsity
    for row in rows:
        assert 0 < row["early_stop_iteration"] <= 20 and row["early_stop_iteration"] % 5 == 0
        assert 0.0 <= row["test_acc"] <= 1.0
    assert rows[-1]["remaining"] <= 0.2
    # round 0 with rewind=0 starts from w0: the dense run is reproducible from w0
    assert any(not torch.equal(tickets[0][1][k], w0[k]) for k in w0)  # it trained


def test_controls_only_below_the_chosen_level():
    data = _data(64, 0)
    cfg = SimpleNamespace(**{**vars(CFG), "max_iterations": 5})
    rows = run_lottery(_build, data, data, data, cfg, seed=0, rate=0.5, output_rate=0.25, target_remaining=0.2,
                       controls=("reinit",), controls_max_remaining=0.3)
    assert [(r["round"], r["kind"]) for r in rows] == [(0, "ticket"), (1, "ticket"), (2, "ticket"), (2, "reinit"),
                                                        (3, "ticket"), (3, "reinit")]


def test_ticket_restarts_from_masked_w0():
    """With a vanishing learning rate the trained weights are the starting weights: ticket = m * w0."""
    cfg = SimpleNamespace(**{**vars(CFG), "optimizer": "sgd", "lr": 1e-12, "momentum": 0.0, "max_iterations": 2})
    data = _data(64, 0)
    tickets, w0 = {}, M.dense_state_dict(_build(5))
    run_lottery(_build, data, data, data, cfg, seed=5, rate=0.5, output_rate=0.25, target_remaining=0.6,
                controls=("reinit",), on_ticket=lambda r, m: tickets.setdefault(r, (M.get_masks(m), M.dense_state_dict(m))))
    masks, state = tickets[1]
    for n, mask in masks.items():
        assert torch.allclose(state[f"{n}.weight"], w0[f"{n}.weight"] * mask, atol=1e-9)
        # the kept weights are the largest |w0| of each layer (training did not move them)
        assert w0[f"{n}.weight"].abs()[mask].min() >= w0[f"{n}.weight"].abs()[~mask].max()


def test_rewind_uses_the_weights_of_iteration_k(monkeypatch):
    from compress.prune import imp

    data = _data(128, 0)
    k = 3
    starts = []
    real = imp._run_task
    monkeypatch.setattr(imp, "_run_task", lambda task: (starts.append((task["round"], task.get("start"))), real(task))[1])
    imp.run_lottery(_build, data, data, data, CFG, seed=4, rate=0.5, output_rate=0.25, target_remaining=0.6,
                    rewind_iteration=k, controls=())
    # the same dense run by hand, capturing the weights after optimizer step k
    ref = imp.train_to_early_stop(_build(4), data, data, None, CFG, seed=4, capture_iteration=k)[1]["captured"]
    w0 = M.dense_state_dict(_build(4))
    (r0, s0), (r1, s1) = starts
    assert (r0, r1) == (0, 1) and all(torch.equal(s0[n], w0[n]) for n in w0)  # round 0 trains from w0 ...
    assert all(torch.equal(s1[n], ref[n]) for n in ref)  # ... round 1 restarts from θ_k
    assert any(not torch.equal(s1[n], w0[n]) for n in w0)


def _cfg(**kw):
    return SimpleNamespace(**{**vars(CFG), **kw})


def test_patience_rule_stops_and_flags_the_budget():
    """lr = 0: the validation loss never improves after the first evaluation (iteration 5)."""
    data = _data(64, 0)
    res, _ = train_to_early_stop(_build(0), data, data, data, _cfg(optimizer="sgd", lr=0.0, momentum=0.0,
                                        eval_every=5, patience=10, max_iterations=1000), seed=0)
    assert (res["early_stop_iteration"], res["iterations"], res["budget_hit"]) == (5, 15, False)
    res, _ = train_to_early_stop(_build(0), data, data, data, _cfg(optimizer="sgd", lr=0.0, momentum=0.0,
                                    eval_every=5, patience=10, max_iterations=12), seed=0)
    assert (res["early_stop_iteration"], res["iterations"], res["budget_hit"]) == (5, 12, True)  # budget ended it


def test_early_stop_iteration_is_the_validation_minimum_and_test_is_read_there():
    train, val, test = _data(256, 0), _data(128, 1), _data(128, 2)
    seen = []
    from compress.prune import imp

    real = imp.evaluate_model

    def spy(model, x, y, *a, **k):
        out = real(model, x, y, *a, **k)
        seen.append((x is val[0], x is test[0], out))
        return out

    imp.evaluate_model = spy
    try:
        res, states = train_to_early_stop(_build(1), train, val, test, _cfg(max_iterations=200, patience=30), seed=1)
    finally:
        imp.evaluate_model = real
    reloaded = _build(1)
    reloaded.load_state_dict(states["early_stop"])
    assert real(reloaded, *test)[1] == res["test_acc"]  # the early-stop weights are the ones measured
    vals = [o for is_val, _, o in seen if is_val]
    tests = [o for _, is_test, o in seen if is_test]
    best = min(range(len(vals)), key=lambda i: vals[i][0])
    assert res["early_stop_iteration"] == 5 * (best + 1) and res["val_loss"] == vals[best][0]
    assert len(tests) == 1 and res["test_acc"] == tests[0][1]  # the test split is read once, at the early stop
    assert res["iterations"] - res["early_stop_iteration"] >= 30 or res["budget_hit"]


def _manual_masked_training(ref, masks, train, cfg, seed, steps, make_opt):
    """The reference: torch.nn.utils.prune masks (weight_orig * mask in forward) + autograd + torch.optim."""
    import torch.nn.functional as F

    M.apply_masks(ref, masks)
    opt = make_opt(list(ref.parameters()))
    g, it = torch.Generator().manual_seed(seed), 0
    while it < steps:
        perm = torch.randperm(len(train[1]), generator=g)
        for i in range(0, len(train[1]), cfg.batch_size):
            sel = perm[i : i + cfg.batch_size]
            opt.zero_grad()
            F.cross_entropy(ref(train[0][sel]), train[1][sel]).backward()
            opt.step()
            it += 1
            if it == steps:
                break
    return M.dense_state_dict(ref)


def _masks(seed=0):
    return {n: torch.rand(m.weight.shape, generator=torch.Generator().manual_seed(seed + i)) > 0.6
            for i, (n, m) in enumerate(prunable_layers(_build(0)).items())}


def test_gradient_masking_trains_exactly_like_a_forward_mask():
    """Autograd path (SGD + momentum): zeroed weights + masked gradients == weight_orig * mask, bit for bit."""
    train, val = _data(256, 0), _data(64, 1)
    masks = _masks()
    cfg = _cfg(optimizer="sgd", lr=0.05, momentum=0.9, max_iterations=17, eval_every=100)
    model = _build(2)
    train_to_early_stop(model, train, val, None, cfg, seed=2, masks=masks)
    want = _manual_masked_training(_build(2), masks, train, cfg, 2, 17,
                                   lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True))
    got = model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    for n, m in masks.items():
        w = got[f"{n}.weight"]
        assert torch.all(w[~m] == 0) and torch.all(w[m] != 0)  # pruned exactly zero, survivors trained


def test_mlp_step_matches_autograd_and_fused_adam():
    """The hand-written MLP step (used for MLPs under Adam) == autograd + Adam(fused=True) up to rounding."""
    from compress.prune.imp import MLPStep

    train, val = _data(256, 0), _data(64, 1)
    masks = _masks(5)
    cfg = _cfg(max_iterations=30, eval_every=100)
    assert MLPStep.supports(_build(0), cfg) and not MLPStep.supports(_build(0), _cfg(optimizer="sgd"))
    assert not MLPStep.supports(build_model("mlp", (1, 8, 8), 4, hidden=[8], batchnorm=True), cfg)
    model = _build(3)
    train_to_early_stop(model, train, val, None, cfg, seed=3, masks=masks)
    want = _manual_masked_training(_build(3), masks, train, cfg, 3, 30,
                                   lambda ps: torch.optim.Adam(ps, lr=cfg.lr, fused=True))
    got = model.state_dict()
    assert all(torch.allclose(got[k], want[k], rtol=1e-4, atol=1e-6) for k in want)
    moved = sum(float((got[k] - _build(3).state_dict()[k]).abs().max()) for k in want)
    assert moved > 1e-2  # it trained
    for n, m in masks.items():
        assert torch.all(got[f"{n}.weight"][~m] == 0)


def test_fused_adam_kernel_call_equals_the_optimizer():
    """MLPStep calls torch._fused_adam_ the way torch.optim.Adam(fused=True) does: same bits after 3 steps."""
    torch.manual_seed(0)
    p1 = [torch.randn(7, 5, requires_grad=True), torch.randn(5, requires_grad=True)]
    p2 = [p.detach().clone() for p in p1]
    grads = [[torch.randn_like(p) for p in p2] for _ in range(3)]
    opt = torch.optim.Adam(p1, lr=1e-3, weight_decay=1e-4, fused=True)
    m, v, st = [torch.zeros_like(p) for p in p2], [torch.zeros_like(p) for p in p2], [torch.zeros(()) for _ in p2]
    for g in grads:
        for p, gg in zip(p1, g):
            p.grad = gg.clone()
        opt.step()
        torch._foreach_add_(st, 1)
        torch._fused_adam_(p2, [gg.clone() for gg in g], m, v, [], st, lr=1e-3, beta1=0.9, beta2=0.999,
                           weight_decay=1e-4, eps=1e-8, amsgrad=False, maximize=False)
    assert all(torch.equal(a.detach(), b) for a, b in zip(p1, p2))


def test_workers_give_bit_identical_rows():
    train, val, test = _data(256, 0), _data(128, 1), _data(128, 2)
    build = ModelBuilder("mlp", (1, 8, 8), 4, {"hidden": [32, 16], "init": "glorot"})
    kw = dict(seeds=[0, 1], rate=0.5, output_rate=0.25, target_remaining=0.2,
              controls={"reinit": [2, 3], "random_mask": [3]})
    cfg = _cfg(max_iterations=60, patience=15)
    seq = run_imp(build, train, val, test, cfg, workers=1, **kw)
    par = run_imp(build, train, val, test, cfg, workers=2, **kw)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]
    assert strip(seq) == strip(par)
    assert [(r["seed"], r["round"], r["kind"]) for r in seq] == [
        (s, r, k) for s in (0, 1) for r, k in [(0, "ticket"), (1, "ticket"), (2, "ticket"), (2, "reinit"),
                                               (3, "ticket"), (3, "reinit"), (3, "random_mask")]]


def test_control_rounds_pick_the_nearest_levels():
    m = build_model("lenet300", (1, 28, 28), 10)
    assert control_rounds(m, 0.2, 0.1, 15, at_remaining=[0.087, 0.036]) == [11, 15]
    assert control_rounds(m, 0.2, 0.1, 15, at_remaining=[0.056]) == [13]
    assert control_rounds(m, 0.2, 0.1, 15, max_remaining=0.1) == [11, 12, 13, 14, 15]
    assert control_rounds(m, 0.2, 0.1, 15) == list(range(1, 16))
