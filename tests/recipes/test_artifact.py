"""The recipe artifact: exact round trip, size = bytes on disk, relative indices."""
import numpy as np
import pytest
import torch
from torch.nn.utils import prune as torch_prune

from compress.models import build_model
from compress.quant.sharing import share_, uniform_
from compress.recipes import artifact as A
from compress.recipes.tensors import model_from_artifact, to_artifact
from compress.variants import model_spec


@pytest.mark.parametrize("gaps", [[0, 0, 0], [3, 254, 255, 256, 509, 510, 1000], [700]])
def test_relative_indices_round_trip_with_escapes(gaps):
    idx = np.cumsum(np.array(gaps) + 1) - 1
    keep = torch.zeros(int(idx[-1]) + 5, dtype=torch.bool)
    keep[idx] = True
    enc = A.gaps_encode(keep)
    assert enc.dtype == np.uint8 and len(enc) == sum(g // 255 + 1 for g in gaps)
    assert torch.equal(A.gaps_decode(enc, keep.numel()), keep)


def _mixed_model():
    """LeNet-300-100 with one k-means layer (snapped), one uniform layer, one pruned float layer."""
    torch.manual_seed(0)
    m = build_model("lenet300", (1, 28, 28), 10)
    g = torch.Generator().manual_seed(1)
    keep1 = torch.rand(300, 784, generator=g) > 0.93
    keep2 = torch.rand(100, 300, generator=g) > 0.5
    share_(m.net[1], "weight", keep1, 5, snap_int8=True)
    uniform_(m.net[3], "weight", keep2, 6)
    torch_prune.custom_from_mask(m.net[5], "weight", torch.rand(10, 100, generator=g) > 0.3)
    m(torch.zeros(1, 1, 28, 28))  # every hook has run once
    return m


@pytest.mark.parametrize("coder", ["none", "lzma", "zstd"])
@pytest.mark.parametrize("floats", ["float32", "float16"])
def test_artifact_round_trips_exactly_and_its_size_is_the_files_bytes(tmp_path, coder, floats):
    m = _mixed_model()
    spec = model_spec("lenet300", {}, (1, 28, 28), 10)
    art = to_artifact(m, spec)
    assert [type(r).__name__ for r in art.tensors.values()] == ["CodedState", "CodedState", "SparseFloat"]
    size = A.write_artifact(tmp_path / "model.rcz", art, coder=coder, floats=floats)
    assert size == (tmp_path / "model.rcz").stat().st_size == len(A.serialize(art, coder=coder, floats=floats))
    back = A.read_artifact(tmp_path / "model.rcz")
    sd, ref = back.state_dict(), art.state_dict()
    for k in ref:  # weights exact; float tensors exact (float32) or exactly their float16 rounding
        want = ref[k] if floats == "float32" or k.endswith("weight") else ref[k].half().float()
        assert torch.equal(sd[k], want), k
    # the decoded model computes what the coded model computed
    dec = model_from_artifact(back)
    x = torch.randn(4, 1, 28, 28)
    if floats == "float32":
        torch.testing.assert_close(dec(x), m.eval()(x), rtol=0, atol=1e-5)
    # integer weights for int8 kernels: the snapped k-means layer and the uniform layer, exactly
    qts = back.qtensors()
    assert set(qts) == {"net.1.weight", "net.3.weight"}
    for k, qt in qts.items():
        assert qt.q.abs().max() <= 127 and torch.equal(qt.q, qt.q.round())
        assert torch.equal(qt.dequantize(), sd[k])
    # re-encoding the decoded artifact gives the same bytes (codes, indices and codebooks survived)
    assert A.serialize(back, coder=coder, floats=floats) == A.serialize(art, coder=coder, floats=floats)


def test_entropy_coding_shrinks_sparse_codes_and_corrupt_files_fail_clearly(tmp_path):
    art = to_artifact(_mixed_model(), model_spec("lenet300", {}, (1, 28, 28), 10))
    raw = A.serialize(art, coder="none")
    assert len(A.serialize(art, coder="lzma")) < 0.8 * len(raw)
    with pytest.raises(ValueError, match="not a recipe artifact"):
        A.deserialize(b"XXXX" + raw[4:])
    with pytest.raises(ValueError, match="coder = 'brotli' is unknown"):
        A.serialize(art, coder="brotli")
    with pytest.raises(FileNotFoundError, match="run the recipes stage"):
        A.read_artifact(tmp_path / "missing.rcz")
