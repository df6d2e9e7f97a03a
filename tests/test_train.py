import torch

from compress.config import TrainConfig
from compress.data import load_split
from compress.models import build_model
from compress.train import fit, random_shift, seed_everything


def _train_once(prepared, seed=0):
    seed_everything(seed)
    m = build_model("lenet5", (1, 28, 28), 10)
    cfg = TrainConfig(epochs=1, batch_size=64, lr=2e-3, eval_every=5, augment_shift=1)
    h = fit(m, load_split(prepared, "train"), load_split(prepared, "val"), cfg, seed=seed, progress=False)
    return m, h


def test_training_learns_and_is_bit_reproducible(digits_prepared):
    m1, h1 = _train_once(digits_prepared)
    m2, h2 = _train_once(digits_prepared)
    assert h1.rows[-1]["val_acc"] > 0.5  # one epoch on digits: far above chance (0.1)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert [r["val_loss"] for r in h1.rows] == [r["val_loss"] for r in h2.rows]
    # early-stop iteration is the iteration of minimum validation loss
    best = min(h1.rows, key=lambda r: r["val_loss"])
    assert h1.best_iteration == best["iteration"] and h1.iterations == -(-1237 // 64)


def test_random_shift_moves_content_and_keeps_background():
    x = torch.full((4, 1, 28, 28), -0.4)
    x[:, :, 10:14, 10:14] = 2.0
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.isclose(y.min(), torch.tensor(-0.4))
    assert torch.equal((y == 2.0).sum(dim=(1, 2, 3)), torch.full((4,), 16))  # the blob is intact, just moved
