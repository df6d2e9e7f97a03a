"""Stochastic rounding (SR) vs round-to-nearest (RN) when the iterate lives in a low-precision format.

1. The lecture's stagnation example: gradient descent on f(x) = (x - a)^2,
       x_{k+1} = fl(x_k - lr * f'(x_k)),   f'(x) = 2 (x - a),
   with fl = rounding into a float format of unit roundoff u (fp8 e5m2: t = 3, u = 2^-3).
   RN stagnates as soon as |lr f'(x_k)| < ulp(x_k) / 2: the update is rounded away and x_k is
   a fixed point.  SR rounds up with probability equal to the fractional distance, so
   E[fl(y)] = y and the iterate keeps moving towards a in expectation (Connolly, Higham &
   Mary 2021; Croci et al. 2022).
2. Training with weights stored in a low-precision format (Gupta et al. 2015): plain SGD,
   w <- fl(w - lr g), with RN or SR; small updates vanish under RN.

Rounding into the format is :func:`compress.quant.formats.round_to_format`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from compress.quant.formats import (
    FloatFormat,
    get_format,
    round_to_format,
    unit_roundoff,
)

Rounded = Literal["update", "all"]


def gd_step(x: torch.Tensor, fmt: FloatFormat | str, target: float, lr: float, mode: str, rounded: Rounded = "update",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """One GD step on (x - target)^2 for a batch of iterates x (R,) held in ``fmt``.

    ``rounded="update"``: only the new iterate is rounded, x <- fl(x - lr * 2 (x - target)).
    ``rounded="all"``: every operation is rounded: d = fl(x - a), g = fl(2 d), s = fl(lr g), x <- fl(x - s).
    """
    fl = lambda v: round_to_format(v, fmt, mode, generator)
    if rounded == "update":
        return fl(x - lr * 2.0 * (x - target))
    if rounded == "all":
        return fl(x - fl(lr * fl(2.0 * fl(x - target))))
    raise ValueError(f"sr.rounded = {rounded!r} is unknown; allowed: update, all")


def gd_trajectories(fmt: FloatFormat | str, target: float, x0: float, lr: float, steps: int, mode: str, runs: int = 1,
                    rounded: Rounded = "update", seed: int = 0) -> torch.Tensor:
    """Iterates x_0..x_steps for ``runs`` independent runs: (runs, steps + 1), float64."""
    g = torch.Generator().manual_seed(seed)
    x = round_to_format(torch.full((runs,), float(x0), dtype=torch.float64), fmt, "nearest")  # (R,)
    out = [x]
    for _ in range(steps):
        x = gd_step(x, fmt, target, lr, mode, rounded, g)
        out.append(x)
    return torch.stack(out, 1)  # (R, steps + 1)


def exact_trajectory(target: float, x0: float, lr: float, steps: int) -> torch.Tensor:
    """Exact GD in float64: x_k = a + (1 - 2 lr)^k (x_0 - a).  (steps + 1,)"""
    k = torch.arange(steps + 1, dtype=torch.float64)
    return target + (1 - 2 * lr) ** k * (x0 - target)


def representable(fmt: FloatFormat | str, lo: float, hi: float, limit: int = 5_000_000) -> torch.Tensor:
    """All values of ``fmt`` in [lo, hi] (ascending, float64), enumerated binade by binade.

    Normal binade e holds m 2^(e-t+1), m = 2^(t-1)..2^t-1, i.e. [2^e, 2^(e+1)); the subnormals
    (m < 2^(t-1) at e = emin) fill [0, 2^emin).
    """
    f = get_format(fmt)
    amax = max(abs(lo), abs(hi))
    amin = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    binades = [e for e in range(f.emin, f.emax + 1) if 2.0 ** (e + 1) > amin and 2.0**e <= amax]
    if len(binades) * 2 ** (f.t - 1) > limit:
        raise ValueError(f"{f.name}: too many representable values in [{lo}, {hi}] to enumerate")
    vals = [torch.zeros(1, dtype=torch.float64)]
    for e in binades:
        q = 2.0 ** (e - f.t + 1)  # spacing in binade e
        first = 1 if (e == f.emin and f.subnormals) else 2 ** (f.t - 1)
        v = torch.arange(first, 2**f.t, dtype=torch.float64) * q
        vals += [v, -v]
    allv = torch.unique(torch.cat(vals))
    allv = allv[allv.abs() <= f.xmax]
    return allv[(allv >= lo) & (allv <= hi)]


def stagnation_region(fmt: FloatFormat | str, target: float, x0: float, lr: float,
                      rounded: Rounded = "update") -> tuple[float, float] | None:
    """[lo, hi] spanned by the RN fixed points strictly between x0 and the target, None if there are none.

    A representable x != a is a fixed point of RN-GD when fl(x - lr f'(x)) = x, i.e. the update
    is smaller than half the spacing of the format around x.
    """
    lo, hi = sorted((x0, target))
    xs = representable(fmt, lo, hi)
    xs = xs[(xs != target) & (xs != x0)] if len(xs) else xs
    if len(xs) == 0:
        return None
    fixed = xs[gd_step(xs, fmt, target, lr, "nearest", rounded) == xs]
    if len(fixed) == 0:
        return None
    return float(fixed.min()), float(fixed.max())


@dataclass
class StagnationResult:
    steps: torch.Tensor  # (K+1,)
    exact: torch.Tensor  # (K+1,)
    rn: torch.Tensor  # (K+1,)
    sr: torch.Tensor  # (R, K+1)
    region: tuple[float, float] | None
    unit_roundoff: float
    rn_stall_step: int  # first k with x_k = x_{k+1} = ... = x_K under RN

    def summary(self, target: float) -> dict:
        sr_final = self.sr[:, -1]
        return {"unit_roundoff": self.unit_roundoff, "rn_final": float(self.rn[-1]),
                "rn_final_error": abs(float(self.rn[-1]) - target), "rn_stall_step": self.rn_stall_step,
                "sr_final_mean": float(sr_final.mean()), "sr_final_error_mean": float((sr_final - target).abs().mean()),
                "sr_final_error_max": float((sr_final - target).abs().max()), "exact_final": float(self.exact[-1]),
                "stagnation_region": list(self.region) if self.region else None, "sr_runs": int(self.sr.shape[0])}


def stagnation_demo(fmt: FloatFormat | str = "fp8_e5m2", target: float = 1024.0, x0: float = 0.0, lr: float = 0.05,
                    steps: int = 60, sr_runs: int = 20, rounded: Rounded = "update", seed: int = 0) -> StagnationResult:
    """RN vs SR gradient descent on (x - target)^2 in ``fmt`` (the lecture's example by default)."""
    f = get_format(fmt)
    if not abs(target) <= f.xmax or not abs(x0) <= f.xmax:
        raise ValueError(f"sr.target / sr.x0 must lie within the format's range ±{f.xmax}")
    if round_to_format(torch.tensor([target], dtype=torch.float64), f)[0].item() != target:
        raise ValueError(f"sr.target = {target} is not representable in {f.name}; pick a representable minimiser")
    rn = gd_trajectories(f, target, x0, lr, steps, "nearest", 1, rounded, seed)[0]
    sr = gd_trajectories(f, target, x0, lr, steps, "stochastic", sr_runs, rounded, seed + 1)
    changed = (rn[1:] != rn[:-1]).nonzero()
    stall = int(changed.max().item()) + 1 if len(changed) else 0
    return StagnationResult(steps=torch.arange(steps + 1), exact=exact_trajectory(target, x0, lr, steps), rn=rn, sr=sr,
                            region=stagnation_region(f, target, x0, lr, rounded), unit_roundoff=unit_roundoff(f),
                            rn_stall_step=stall)


# --------------------------------------------------------------------------- low-precision weights
def round_parameters(model: nn.Module, fmt: FloatFormat | str, mode: str, generator: torch.Generator | None = None) -> None:
    """Store every parameter as a value of ``fmt`` (in place)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(round_to_format(p, fmt, mode, generator))


def train_low_precision(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                        fmt: FloatFormat | str, mode: str, *, epochs: int, batch_size: int, lr: float, seed: int,
                        progress: bool = False):
    """Plain SGD with weights kept in ``fmt``: w <- fl(w - lr g) rounded with ``mode`` after every step
    (Gupta et al. 2015).  Gradients and activations stay fp32.  Returns compress.train.History."""
    from types import SimpleNamespace

    from compress.train import fit

    g = torch.Generator().manual_seed(seed)
    round_parameters(model, fmt, "nearest")
    cfg = SimpleNamespace(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=lr, weight_decay=0.0, momentum=0.0,
                          schedule="constant", max_iterations=None, eval_every=0)
    return fit(model, train, val, cfg, seed=seed, desc=f"{get_format(fmt).name}-{mode}",
               after_step=lambda m: round_parameters(m, fmt, mode, g), progress=progress)


__all__ = [
    "StagnationResult",
    "exact_trajectory",
    "gd_step",
    "gd_trajectories",
    "representable",
    "round_parameters",
    "stagnation_demo",
    "stagnation_region",
    "train_low_precision",
]


def stagnation_rows(r: StagnationResult) -> list[dict]:
    """The demo as table rows: exact, RN, and the SR mean / band / first run per step."""
    mean, lo, hi = r.sr.mean(0), r.sr.min(0).values, r.sr.max(0).values
    return [{"step": k, "exact": float(r.exact[k]), "rn": float(r.rn[k]), "sr_mean": float(mean[k]), "sr_min": float(lo[k]),
             "sr_max": float(hi[k]), "sr_run0": float(r.sr[0, k])} for k in range(len(r.steps))]


def compare_weight_training(input_shape, num_classes: int, train, val, cfg, seed: int, on_result=None) -> dict:
    """An MLP (``cfg.hidden``) trained three times from the same init with plain SGD: fp32, and with its weights stored in
    ``cfg.format`` updated by round-to-nearest and by stochastic rounding (Gupta et al. 2015). Validation numbers only.
    ``cfg``: format, hidden, epochs, batch_size, lr, train_size. Returns {mode: {val_acc, val_loss}} plus the SR - RN gap."""
    from types import SimpleNamespace

    from compress.models import MLP
    from compress.train import fit, seed_everything

    if cfg.train_size is not None:
        train = (train[0][: cfg.train_size], train[1][: cfg.train_size])
    res = {}
    for mode in ("fp32", "nearest", "stochastic"):
        seed_everything(seed)
        model = MLP(input_shape, num_classes, hidden=cfg.hidden)
        if mode == "fp32":
            knobs = SimpleNamespace(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.lr, weight_decay=0.0,
                                    momentum=0.0, schedule="constant", max_iterations=None, eval_every=0)
            hist = fit(model, train, val, knobs, seed=seed, desc="fp32")
        else:
            hist = train_low_precision(model, train, val, cfg.format, mode, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                       lr=cfg.lr, seed=seed, progress=True)
        res[mode] = {"val_acc": hist.rows[-1]["val_acc"], "val_loss": hist.rows[-1]["val_loss"]}
        if on_result is not None:
            on_result(mode, res[mode])
    return {"format": cfg.format, "hidden": cfg.hidden, "epochs": cfg.epochs, "lr": cfg.lr, "train_size": len(train[1]),
            "optimizer": "sgd (no momentum)", **res,
            "sr_minus_rn_val_acc_pp": 100 * (res["stochastic"]["val_acc"] - res["nearest"]["val_acc"])}
