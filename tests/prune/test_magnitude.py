import pytest
import torch
import torch.nn.functional as F

from compress.models import build_model, prunable_layers
from compress.prune import masks as M
from compress.prune.magnitude import (
    SCORES,
    compute_masks,
    l1_penalty,
    prune_model,
    rate_masks,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("lenet5", (1, 28, 28), 10)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_pruned_fraction_matches_target_and_masks_are_monotone(scope):
    model = _model()
    names = list(prunable_layers(model))
    prev = None
    for target in (0.3, 0.6, 0.85, 0.95):
        prune_model(model, names, criterion="percentage", scope=scope, sparsity=target)
        assert abs(M.sparsity(model) - target) < 1e-4
        if scope == "layer":  # every layer on its own (fc3 has 840 weights: 1 weight = 1.2e-3)
            for n, s in M.layer_sparsity(model).items():
                numel = prunable_layers(model)[n].weight.numel()
                assert abs(s - target) <= 0.5 / numel + 1e-9
        masks = M.get_masks(model)
        if prev is not None:
            assert all(torch.all(masks[n] <= prev[n]) for n in names)  # never regrows
        prev = masks


def test_global_scope_keeps_the_largest_magnitudes_overall():
    model = _model()
    names = list(prunable_layers(model))
    allw = torch.cat([prunable_layers(model)[n].weight.detach().abs().flatten() for n in names])
    prune_model(model, names, criterion="percentage", scope="global", sparsity=0.9)
    kept = torch.cat([M.effective_weight(prunable_layers(model)[n]).abs().flatten() for n in names])
    kept = kept[kept > 0]
    thr = allw.sort().values[round(0.9 * len(allw))]
    assert kept.min() >= thr - 1e-12
    assert len(set(round(s, 3) for s in M.layer_sparsity(model).values())) > 1  # layers differ


def test_topk_and_threshold_criteria():
    model = _model()
    names = ["fc1", "fc2"]
    prune_model(model, names, criterion="topk", scope="layer", k=100)
    layers = prunable_layers(model)
    assert all(int((M.effective_weight(layers[n]) != 0).sum()) == 100 for n in names)
    model = _model()
    tau = 0.05
    prune_model(model, names, criterion="threshold", scope="global", tau=tau)
    for n in names:
        w = M.effective_weight(prunable_layers(model)[n])
        orig = prunable_layers(model)[n].weight_orig.detach()
        assert torch.equal(w != 0, orig.abs() > tau)
    assert "conv1" not in M.get_masks(model)


def test_rate_masks_prune_fraction_of_remaining():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(100, 50, generator=g), "b": torch.rand(10, 100, generator=g)}
    cur = None
    for r in range(3):
        cur = rate_masks(scores, cur, {"a": 0.2, "b": 0.1})
        assert int(cur["a"].sum()) == round(5000 * 0.8 ** (r + 1)) or abs(int(cur["a"].sum()) - 5000 * 0.8 ** (r + 1)) <= 1
        assert abs(int(cur["b"].sum()) - 1000 * 0.9 ** (r + 1)) <= 1
    with pytest.raises(ValueError, match="must be in"):
        rate_masks(scores, cur, {"a": 1.0})


def test_bad_selection_values():
    s = {"a": torch.rand(4, 4)}
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"sparsity = .* must be in \[0, 1\)"):
            compute_masks(s, sparsity=bad)
    with pytest.raises(ValueError, match="scope"):
        compute_masks(s, sparsity=0.5, scope="net")


def test_gradient_scores_and_l1_penalty():
    model = _model()
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    sc = SCORES["gradient"](model, ["fc1"], [(x, y)])["fc1"]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert torch.allclose(sc, (model.fc1.weight * model.fc1.weight.grad).abs().detach())
    prune_model(model, ["fc1", "fc2"], score="gradient", data=[(x, y)], criterion="percentage", scope="layer", sparsity=0.5)
    assert abs(M.sparsity(model, ["fc1", "fc2"]) - 0.5) < 1e-4
    model(x)  # forward pass refreshes the masked weights
    lam = 1e-3
    expect = lam * sum(M.effective_weight(prunable_layers(model)[n]).abs().sum() for n in ["fc1", "fc2"])
    assert torch.allclose(l1_penalty(model, ["fc1", "fc2"], lam), expect)
