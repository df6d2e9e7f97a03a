"""Variant folders written by the hawq/obd stages load back through the runtime registry."""
import torch

from compress.prune.export import write_sparse_variant
from compress.prune.masks import apply_masks
from compress.quant.export import write_quant_variant
from compress.quant.fakequant import quantize_model
from compress.runtimes import load_predictor
from compress.variants import read_manifest

SPEC = {"name": "mlp", "kwargs": {"hidden": [16]}, "input_shape": [1, 4, 4], "num_classes": 3}


def _model():
    from compress.runtimes import model_from_spec

    torch.manual_seed(0)
    return model_from_spec(SPEC).eval()


def test_quant_variant_reloads_to_the_simulated_weights(tmp_path):
    m = _model()
    x = torch.randn(8, 1, 4, 4)
    q = quantize_model(m, {"net.1": 2, "net.3": 4}, 8, {"net.1": (float(x.min()), float(x.max())), "net.3": (0.0, 2.0)}).eval()
    size = write_quant_variant(tmp_path / "v", q, "hawq-test", "hawq", "hawq-hawq", SPEC, "digits", 0, 2.1, 8)
    man = read_manifest(tmp_path / "v")
    assert man.avg_weight_bits == 2.1 and man.extra["weight_bits"] == {"net.1": 2, "net.3": 4}
    assert man.deploy.runtime == "packed" and man.sim.runtime == "quant-sim"
    assert size == (tmp_path / "v" / "model.cspk").stat().st_size
    assert size < 4 * (16 * 16 + 16 * 3)  # far below the fp32 weights alone
    with torch.no_grad():
        torch.testing.assert_close(load_predictor(tmp_path / "v", man)(x), q(x))
        torch.testing.assert_close(load_predictor(tmp_path / "v", man, man.sim)(x), q(x))


def test_sparse_variant_keeps_zeros_and_outputs(tmp_path):
    m = _model()
    mask = torch.rand_like(m.net[1].weight) > 0.7
    apply_masks(m, {"net.1": mask})
    write_sparse_variant(tmp_path / "v", m, "obd-test", "obd", "obd", SPEC, "digits", 0, 0.5)
    man = read_manifest(tmp_path / "v")
    assert man.deploy.runtime == "sparse-eager" and man.params == int(mask.sum()) + 3 + 16 + 16 * 3 + 0
    x = torch.randn(8, 1, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(load_predictor(tmp_path / "v", man)(x), m(x))
