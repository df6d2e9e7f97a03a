"""One training loop for every stage that trains or fine-tunes (baseline, QAT, pruning, Monarch).

Seeded and bit-reproducible on the CPU; validates every epoch (or every ``eval_every``
iterations) and records the iteration of minimum validation loss (the early-stop
iteration of the lottery-ticket paper).  Hooks let methods add a loss term (L1), act after
each optimizer step (BinaryConnect clipping) or report each evaluation (MLflow, Optuna).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from compress.data import batches


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy as a fraction)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    loss, correct = 0.0, 0
    for xb, yb in batches(x, y, batch_size):
        out = model(xb.to(dev))
        loss += F.cross_entropy(out, yb.to(dev), reduction="sum").item()
        correct += (out.argmax(1).cpu() == yb).sum().item()
    model.train(was_training)
    return loss / len(y), correct / len(y)


@dataclass
class History:
    rows: list[dict] = field(default_factory=list)
    best_iteration: int = 0
    best_val_loss: float = float("inf")
    best_val_acc: float = 0.0
    iterations: int = 0
    seconds: float = 0.0


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in [-max_shift, max_shift] pixels, filling with background.

    out[b, :, i, j] = x[b, :, i + dy_b, j + dx_b] (background outside): one gather from the padded
    batch, the same result as ``grid_sample`` with nearest sampling at a fraction of its cost.
    """
    b, c, h, w = x.shape  # (B, C, H, W)
    s = int(max_shift)
    shifts = torch.randint(-s, s + 1, (b, 2), generator=generator)  # (B, 2): (dx, dy)
    bg = x.amin(dim=(1, 2, 3), keepdim=True)  # the background value of normalised images
    padded = F.pad(x - bg, (s, s, s, s)).reshape(b, c, -1)  # (B, C, (H + 2s)(W + 2s)), zeros outside
    rows = (torch.arange(h) + s).unsqueeze(0) + shifts[:, 1:2]  # (B, H)
    cols = (torch.arange(w) + s).unsqueeze(0) + shifts[:, 0:1]  # (B, W)
    flat = (rows.unsqueeze(2) * (w + 2 * s) + cols.unsqueeze(1)).reshape(b, 1, h * w)  # (B, 1, H W)
    out = padded.gather(2, flat.expand(b, c, h * w).to(x.device)).reshape(b, c, h, w)  # (B, C, H, W)
    return out + bg


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def make_schedule(opt, cfg, total_steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.15)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return None


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], cfg, *,
        seed: int, device: torch.device | None = None, desc: str = "train",
        loss_extra: Callable[[nn.Module], torch.Tensor] | None = None,
        after_step: Callable[[nn.Module], None] | None = None,
        on_eval: Callable[[dict], None] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        restore_best: bool = False, progress: bool = True) -> History:
    """Train ``model`` in place with the knobs of a TrainConfig-like ``cfg``.

    ``cfg`` needs: epochs, batch_size, optimizer, lr, weight_decay, momentum, schedule,
    max_iterations, eval_every (and optionally augment_shift: random translation in pixels).  ``on_eval(row)`` may raise to stop early (e.g. an Optuna
    pruner).  With ``restore_best`` the weights of the early-stop iteration are restored.
    """
    device = device or next(model.parameters()).device
    model.to(device)
    xtr, ytr = train
    # channels-last convolutions (and max-pooling) run ~1.5x faster on CPU for small conv nets; the
    # model is put back into the default layout before returning
    layout = torch.channels_last if xtr.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules()) else None
    if layout is not None:
        model.to(memory_format=layout)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(ytr) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_iterations is not None:
        total = min(total, cfg.max_iterations)
    opt = optimizer or make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    sched = make_schedule(opt, cfg, total)
    hist, best_state = History(), None
    shift = int(getattr(cfg, "augment_shift", 0))
    t0, it = time.perf_counter(), 0
    run_loss, run_correct, run_n = 0.0, 0, 0

    def evaluate(epoch: float) -> None:
        nonlocal run_loss, run_correct, run_n, best_state
        vl, va = evaluate_model(model, *val)
        row = {"epoch": round(epoch, 4), "iteration": it, "train_loss": run_loss / max(run_n, 1),
               "train_acc": run_correct / max(run_n, 1), "val_loss": vl, "val_acc": va,
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        hist.rows.append(row)
        if vl < hist.best_val_loss:
            hist.best_val_loss, hist.best_val_acc, hist.best_iteration = vl, va, it
            if restore_best:
                best_state = copy.deepcopy(model.state_dict())
        run_loss, run_correct, run_n = 0.0, 0, 0
        if on_eval is not None:
            on_eval(row)

    model.train()
    epoch = 0
    while it < total:
        bar = tqdm(batches(xtr, ytr, cfg.batch_size, shuffle=True, generator=g), total=steps_per_epoch,
                   desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False, mininterval=1.0)
        for xb, yb in bar:
            if shift:
                xb = random_shift(xb, shift, g)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if layout is not None:
                xb = xb.contiguous(memory_format=layout)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            total_loss = loss + loss_extra(model) if loss_extra is not None else loss
            opt.zero_grad(set_to_none=True)
            total_loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if after_step is not None:
                after_step(model)
            it += 1
            run_loss += loss.item() * len(yb)
            run_correct += (out.argmax(1) == yb).sum().item()
            run_n += len(yb)
            if cfg.eval_every and it % cfg.eval_every == 0:
                evaluate(epoch + (it - epoch * steps_per_epoch) / steps_per_epoch)
            if it >= total:
                break
        epoch += 1
        if not cfg.eval_every or run_n:
            evaluate(it / steps_per_epoch)
        if progress:
            r = hist.rows[-1]
            tqdm.write(f"{desc}: epoch {epoch} it {it} train_loss {r['train_loss']:.4f} val_loss {r['val_loss']:.4f} val_acc {r['val_acc']:.4f}")
    hist.iterations, hist.seconds = it, time.perf_counter() - t0
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if layout is not None:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return hist
