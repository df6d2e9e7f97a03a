import warnings

import pytest
import torch

from compress.config import DataConfig
from compress.data import (
    DataUnavailable,
    batches,
    load_meta,
    load_split,
    prepare,
    save_prepared,
)


def _prep(**kw):
    return prepare(DataConfig(**{"source": "digits", "val_size": 200, "calib_size": 100, **kw}), seed=kw.pop("seed", 0) if "seed" in kw else 0)


def _rows(x):
    return {tuple(r.flatten().tolist()) for r in x}


def test_splits_are_disjoint_and_sized():
    p = prepare(DataConfig(source="digits", val_size=200, calib_size=100), seed=0)
    assert p.meta["sizes"] == {"train": 1437 - 200, "val": 200, "calib": 100, "test": 360}
    # calibration is a subset of train, never of val or test
    idx_train = {tuple(r) for r in p.train[0].flatten(1).tolist()}
    assert all(tuple(r) in idx_train for r in p.calib[0].flatten(1).tolist())
    # train / val / test do not share images (digits has a few duplicate images; compare counts of exact matches)
    train_set, val_set = _rows(p.train[0]), _rows(p.val[0])
    assert len(train_set & val_set) <= 2
    assert p.train[0].dtype == torch.uint8 and p.train[0].shape[1:] == (1, 28, 28)


def test_splits_are_seeded():
    a = prepare(DataConfig(source="digits", val_size=200, calib_size=64), seed=1)
    b = prepare(DataConfig(source="digits", val_size=200, calib_size=64), seed=1)
    c = prepare(DataConfig(source="digits", val_size=200, calib_size=64), seed=2)
    assert torch.equal(a.val[0], b.val[0]) and torch.equal(a.calib[1], b.calib[1])
    assert not torch.equal(a.val[0], c.val[0])
    # the test set does not move with the seed
    assert torch.equal(a.test[0], c.test[0])


def test_save_and_load_roundtrip(tmp_path):
    p = prepare(DataConfig(source="digits", val_size=200, calib_size=64), seed=0)
    save_prepared(p, tmp_path)
    x, y = load_split(tmp_path, "val")
    assert x.dtype == torch.float32 and x.shape == (200, 1, 28, 28) and torch.equal(y, p.val[1])
    xt, _ = load_split(tmp_path, "train")
    assert abs(xt.mean().item()) < 1e-3 and abs(xt.std().item() - 1) < 1e-2  # normalised by train stats
    assert load_meta(tmp_path)["dataset"] == "digits"
    with pytest.raises(ValueError, match="unknown split"):
        load_split(tmp_path, "holdout")


def test_offline_mnist_falls_back_loudly_to_mnist5k(tmp_path):
    cfg = DataConfig(source="mnist", root=str(tmp_path), download=False, offline_fallback="mnist5k")
    with pytest.warns(UserWarning, match="DATASET SUBSTITUTED"):
        p = prepare(cfg, seed=0)
    assert p.meta["dataset"] == "mnist5k" and p.meta["substituted"] and p.meta["requested"] == "mnist"
    assert p.meta["sizes"]["test"] == 1000
    # the requested 5000/60000 validation fraction is kept on the 4000-image substitute
    assert p.meta["sizes"]["val"] == round(5000 * 4000 / 60000)


def test_offline_without_fallback_is_a_clear_error(tmp_path):
    cfg = DataConfig(source="mnist", root=str(tmp_path), download=False, offline_fallback=None)
    with pytest.raises(DataUnavailable, match=r"MNIST.*data.root"):
        prepare(cfg, seed=0)


def test_real_mnist_from_local_files(mnist_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no substitution may happen
        p = prepare(DataConfig(source="mnist", root=str(mnist_root), download=False), seed=0)
    assert p.meta["sizes"] == {"train": 55000, "val": 5000, "calib": 1024, "test": 10000}
    assert not p.meta["substituted"] and p.train[0].shape[1:] == (1, 28, 28)


def test_batches_cover_everything_once():
    x, y = torch.arange(10).float().view(10, 1, 1, 1), torch.arange(10)
    got = torch.cat([yb for _, yb in batches(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(got.tolist()) == list(range(10))
