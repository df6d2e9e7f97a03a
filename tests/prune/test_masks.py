import pytest
import torch
import torch.nn.functional as F

from compress.models import build_model, prunable_layers
from compress.prune import masks as M


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", (1, 8, 8), 10, hidden=[32, 16])


def test_masked_weights_stay_zero_and_get_no_gradient():
    model = _model()
    layers = prunable_layers(model)
    g = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(m.weight.shape, generator=g) > 0.5 for n, m in layers.items()}
    M.apply_masks(model, masks)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for n, m in layers.items():
            assert torch.all(m.weight_orig.grad[~masks[n]] == 0)
        opt.step()
    for n, m in layers.items():
        w = M.effective_weight(m)
        assert torch.all(w[~masks[n]] == 0)
        assert torch.all(model.state_dict()[f"{n}.weight_orig"][masks[n]] != 0)
    got = M.get_masks(model)
    assert all(torch.equal(got[n], masks[n]) for n in masks)
    expected = sum(int((~m).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert M.sparsity(model) == pytest.approx(expected)


def test_second_mask_intersects_and_remove_keeps_zeros():
    model = _model()
    name = "net.1"
    w = model.net[1].weight
    a = torch.zeros_like(w, dtype=torch.bool); a[:, ::2] = True
    b = torch.zeros_like(w, dtype=torch.bool); b[::2, :] = True
    M.apply_masks(model, {name: a})
    M.apply_masks(model, {name: b})
    assert torch.equal(M.get_masks(model)[name], a & b)
    x = torch.randn(4, 1, 8, 8)
    before = model(x)
    dense = M.dense_state_dict(model)
    M.remove_masks(model)
    assert not M.get_masks(model)
    assert torch.allclose(model(x), before)
    assert torch.equal(model.net[1].weight.detach() == 0, ~(a & b) | (dense[f"{name}.weight"] == 0))
    fresh = _model(5)
    fresh.load_state_dict(dense)
    assert torch.allclose(fresh(x), before)


def test_set_weights_rewinds_surviving_weights_only():
    model = _model()
    w0 = M.dense_state_dict(model)
    mask = torch.rand(model.net[1].weight.shape) > 0.3
    M.apply_masks(model, {"net.1": mask})
    with torch.no_grad():
        model.net[1].weight_orig.add_(1.0)
    M.set_weights(model, w0)
    assert torch.equal(M.effective_weight(model.net[1]), w0["net.1.weight"] * mask)


def test_bad_layer_names_are_one_line_errors():
    model = _model()
    with pytest.raises(ValueError, match=r"prune\.layers.*'conv9'.*matches no prunable layer") as e:
        M.select_layers(model, ["net.*", "conv9"], key="prune.layers")
    assert "\n" not in str(e.value)
    assert M.select_layers(model, ["net.[13]"]) == ["net.1", "net.3"]
    with pytest.raises(ValueError, match="fc9"):
        M.apply_masks(model, {"fc9": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        M.apply_masks(model, {"net.1": torch.ones(3, dtype=torch.bool)})
