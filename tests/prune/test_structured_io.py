import pytest
import torch

from compress.models import build_model, count_params, prunable_layers
from compress.prune import masks as M
from compress.prune.magnitude import prune_model
from compress.prune.sparse_io import SPARSE_LAYOUTS, load_sparse, save_sparse
from compress.prune.structured import prune_structured, shrink, unit_scores, units_of
from compress.variants import model_spec


@pytest.mark.parametrize("name,kw", [("lenet5", {}), ("lenet300", {}), ("mlp", {"hidden": [40, 30, 20]})])
def test_shrink_removing_dead_units_is_exact(name, kw):
    """Units whose incoming weights and bias are zero output relu(0)=0: removing them changes nothing."""
    torch.manual_seed(0)
    model = build_model(name, (1, 28, 28), 10, **kw).eval()
    spec = model_spec(name, kw, (1, 28, 28), 10)
    sd = model.state_dict()
    keep = {}
    for u in units_of(model):
        n = sd[f"{u.producer}.weight"].shape[0]
        dead = torch.arange(0, n, 3)
        with torch.no_grad():
            sd[f"{u.producer}.weight"][dead] = 0
            sd[f"{u.producer}.bias"][dead] = 0
        keep[u.producer] = torch.tensor([i for i in range(n) if i % 3])
    x = torch.randn(8, 1, 28, 28)
    small, new_spec = shrink(model, spec, keep)
    assert torch.allclose(small(x), model(x), atol=1e-5)
    assert count_params(small) < count_params(model)
    assert [len(v) for v in keep.values()] == (new_spec["kwargs"].get("hidden") or new_spec["kwargs"]["widths"])


def test_structured_keeps_highest_norm_units():
    torch.manual_seed(1)
    model = build_model("lenet5", (1, 28, 28), 10).eval()
    spec = model_spec("lenet5", {}, (1, 28, 28), 10)
    s = unit_scores(model, "l2")["fc1"]
    small, new_spec = prune_structured(model, spec, 0.5, "l2", producers=["fc1"])
    assert new_spec["kwargs"]["widths"] == [6, 16, 60, 84]
    kept_norms = small.fc1.weight.detach().norm(dim=1)
    assert torch.allclose(kept_norms.sort().values, s.sort().values[60:])
    with pytest.raises(ValueError, match="fc3"):
        prune_structured(model, spec, 0.5, producers=["fc3"])


@pytest.mark.parametrize("fmt", [f for f in SPARSE_LAYOUTS if f != "dense"])
def test_sparse_file_roundtrip_and_shrinks_with_sparsity(tmp_path, fmt):
    torch.manual_seed(0)
    model = build_model("lenet5", (1, 28, 28), 10)
    names = list(prunable_layers(model))
    sizes = []
    for s in (0.5, 0.9, 0.98):
        prune_model(model, names, criterion="percentage", scope="global", sparsity=s)
        state = M.dense_state_dict(model)
        path = tmp_path / f"w{s}.safetensors"
        save_sparse(state, path, [f"{n}.weight" for n in names], fmt)
        back = load_sparse(path)
        assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
        sizes.append(path.stat().st_size)
    dense_bytes = 4 * sum(v.numel() for v in state.values())
    assert sizes[0] < dense_bytes and sizes[0] > sizes[1] > sizes[2]
    nnz = sum(int((v != 0).sum()) for v in state.values())
    n = sum(v.numel() for v in state.values())
    index_bytes = n / 8 if fmt == "bitmask" else 0.5 * 4 * nnz  # bitmask bits, or <= 2-byte column indices
    assert sizes[2] < 4 * nnz + index_bytes + 4096  # values + index + header/row pointers


def test_an_unknown_sparse_layout_is_refused_naming_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="sparse layout = 'coo' is unknown; allowed: auto, bitmask, csr, dense"):
        save_sparse({"w": torch.zeros(2, 2)}, tmp_path / "m.safetensors", ["w"], "coo")
