import pytest
import torch

from compress.checkpoint import CheckpointError, load_into, save_state_dict
from compress.models import MODELS, build_model, count_params, prunable_layers


@pytest.mark.parametrize("name, shape, n_params", [
    ("lenet5", (1, 28, 28), 61706),
    ("lenet300", (1, 28, 28), 266610),
    ("lenet5-caffe", (1, 28, 28), 431080),  # Caffe's LeNet, the "LeNet-5" of Deep Compression
    ("mlp", (1, 28, 28), 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10),
    ("resnet20", (3, 32, 32), None),
])
def test_models_build_and_run(name, shape, n_params):
    m = build_model(name, shape, 10)
    out = m(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    if n_params is not None:
        assert count_params(m) == n_params
    else:  # ResNet-20 has ~0.27M parameters (He et al. 2016)
        assert 0.26e6 < count_params(m) < 0.28e6
    assert prunable_layers(m)


def test_unknown_model_and_bad_kwargs():
    with pytest.raises(ValueError, match="model.name = 'vgg'"):
        build_model("vgg", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="model.kwargs"):
        build_model("lenet5", (1, 28, 28), 10, depth=3)
    assert set(MODELS) >= {"lenet5", "lenet300", "mlp", "resnet20"}


def test_checkpoint_roundtrip_and_clear_errors(tmp_path):
    a, b = build_model("lenet5", (1, 28, 28), 10), build_model("lenet5", (1, 28, 28), 10)
    save_state_dict(a, tmp_path / "m.safetensors")
    load_into(b, tmp_path / "m.safetensors")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(CheckpointError, match="does not match model MLP"):
        load_into(build_model("lenet300", (1, 28, 28), 10), tmp_path / "m.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_into(b, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_into(b, tmp_path / "missing.safetensors")


def test_load_baseline_roundtrip_and_missing_folder(tmp_path):
    import json

    from compress.runtimes import load_baseline

    m = build_model("lenet5", (1, 28, 28), 10)
    save_state_dict(m, tmp_path / "model.safetensors")
    spec = {"name": "lenet5", "kwargs": {}, "input_shape": [1, 28, 28], "num_classes": 10}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    got, got_spec = load_baseline(tmp_path)
    assert got_spec == spec and not got.training
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), got.state_dict().values()))
    with pytest.raises(CheckpointError, match="run the train stage first"):
        load_baseline(tmp_path / "nowhere")
