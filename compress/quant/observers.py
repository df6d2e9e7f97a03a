"""Calibration observers: estimate the activation range ``[lo, hi]`` to quantize with.

* ``minmax``                 running min / max (lecture: "min-max calibration")
* ``moving_average_minmax``  exponential moving average of per-batch min / max (Jacob et al. 2018)
* ``percentile``             the p-th / (100-p)-th percentiles of a histogram (clips outliers)
* ``mse``                    clipping range minimising the expected squared quantization error
                             ``sum_i h_i (c_i - Q(c_i))^2`` over histogram bins (Banner et al. 2019)
* ``kl``                     TensorRT entropy calibration: threshold minimising
                             ``KL(P || Q)`` between the clipped and the quantized histogram (Migacz 2017)

Each observer has ``update(x)`` and ``range() -> (lo, hi)``.  Adding one is one class plus one
``OBSERVERS`` line.  :func:`calibrate` records the INPUT range of every prunable layer.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from compress.quant.affine import affine_params, dequantize, qrange, quantize


class Observer:
    """Base: tracks the running min / max; subclasses refine :meth:`range`."""

    def __init__(self, bits: int = 8, signed: bool = False):
        self.bits, self.signed = bits, signed
        self.lo, self.hi, self.n = math.inf, -math.inf, 0

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        if x.numel() == 0:
            return
        if not torch.isfinite(x).all():
            raise ValueError("observer saw NaN/inf activations; is the baseline model broken?")
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        self.n += x.numel()

    def _check(self) -> None:
        if self.n == 0:
            raise ValueError("observer has seen no data: the calibration set is empty")

    def range(self) -> tuple[float, float]:
        self._check()
        return self.lo, self.hi


class MinMaxObserver(Observer):
    pass


class MovingAverageMinMaxObserver(Observer):
    """``lo <- lo + c (min(x) - lo)`` per batch (torch's ``averaging_constant`` c = 0.01 default)."""

    def __init__(self, bits: int = 8, signed: bool = False, averaging_constant: float = 0.01):
        super().__init__(bits, signed)
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"averaging_constant = {averaging_constant} must be in (0, 1]")
        self.c = averaging_constant
        self.ema_lo: float | None = None
        self.ema_hi: float | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        if x.numel() == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if self.ema_lo is None:
            self.ema_lo, self.ema_hi = lo, hi
        else:
            self.ema_lo += self.c * (lo - self.ema_lo)
            self.ema_hi += self.c * (hi - self.ema_hi)

    def range(self) -> tuple[float, float]:
        self._check()
        return self.ema_lo, self.ema_hi


class HistogramObserver(Observer):
    """Histogram over ``[lo, hi]`` with ``bins`` bins; the range grows by re-binning old counts."""

    def __init__(self, bits: int = 8, signed: bool = False, bins: int = 2048):
        super().__init__(bits, signed)
        self.bins = bins
        self.hist = np.zeros(bins, dtype=np.float64)
        self.h_lo: float | None = None
        self.h_hi: float | None = None

    def set_range(self, lo: float, hi: float) -> None:
        """Fix the histogram range up front (e.g. from a min-max pass) to avoid re-binning."""
        if self.n:
            raise RuntimeError("set_range must be called before update")
        self.h_lo, self.h_hi = float(lo), float(hi) if hi > lo else float(lo) + 1e-8

    def _edges(self) -> np.ndarray:
        return np.linspace(self.h_lo, self.h_hi, self.bins + 1)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        if x.numel() == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if self.h_lo is None:
            self.h_lo, self.h_hi = lo, hi if hi > lo else lo + 1e-8
        elif lo < self.h_lo or hi > self.h_hi:  # grow: move each old bin's count to the new bin of its centre
            old_c = 0.5 * (self._edges()[:-1] + self._edges()[1:])
            self.h_lo, self.h_hi = min(lo, self.h_lo), max(hi, self.h_hi)
            idx = np.clip(((old_c - self.h_lo) / (self.h_hi - self.h_lo) * self.bins).astype(np.int64), 0, self.bins - 1)
            new = np.zeros_like(self.hist)
            np.add.at(new, idx, self.hist)
            self.hist = new
        h = torch.histc(x.float().flatten(), bins=self.bins, min=self.h_lo, max=self.h_hi)
        self.hist += h.double().numpy()

    def centers(self) -> np.ndarray:
        e = self._edges()
        return 0.5 * (e[:-1] + e[1:])


class PercentileObserver(HistogramObserver):
    def __init__(self, bits: int = 8, signed: bool = False, bins: int = 2048, percentile: float = 99.99):
        super().__init__(bits, signed, bins)
        if not 50 < percentile <= 100:
            raise ValueError(f"percentile = {percentile} must be in (50, 100]")
        self.p = percentile

    def range(self) -> tuple[float, float]:
        self._check()
        cdf = np.cumsum(self.hist) / self.hist.sum()
        e = self._edges()
        i_hi = int(np.searchsorted(cdf, self.p / 100.0))
        i_lo = int(np.searchsorted(cdf, 1 - self.p / 100.0))
        hi = min(self.hi, float(e[min(i_hi + 1, self.bins)]))
        lo = max(self.lo, float(e[i_lo]))
        return (lo, hi) if hi > lo else (self.lo, self.hi)


class MSEObserver(HistogramObserver):
    """Search clip factors a in (0, 1]: range ``[a lo, a hi]`` minimising the histogram MSE."""

    def __init__(self, bits: int = 8, signed: bool = False, bins: int = 2048, grid: int = 100):
        super().__init__(bits, signed, bins)
        self.grid = grid

    def range(self) -> tuple[float, float]:
        self._check()
        c = torch.from_numpy(self.centers()).float()  # (bins,)
        w = torch.from_numpy(self.hist).float()  # (bins,)
        qmin, qmax = qrange(self.bits, self.signed)
        best, best_err = (self.lo, self.hi), math.inf
        for a in np.linspace(1.0 / self.grid, 1.0, self.grid):
            lo, hi = a * min(self.lo, 0.0), a * max(self.hi, 0.0)
            s, z = affine_params(lo, hi, self.bits, self.signed)
            err = float((w * (c - dequantize(quantize(c, s, z, qmin, qmax), s, z)) ** 2).sum())
            if err < best_err:
                best, best_err = (lo, hi), err
        return best


class KLObserver(HistogramObserver):
    """TensorRT entropy calibration on the histogram of |x|: threshold T minimising KL(P||Q),
    P = clipped reference distribution (outliers folded into the last bin), Q = P merged into
    ``levels`` quantization bins and expanded back over the non-empty bins."""

    def range(self) -> tuple[float, float]:
        self._check()
        # 1. histogram of |x| over [0, amax]
        amax = max(abs(self.lo), abs(self.hi))
        if amax == 0:
            return self.lo, self.hi
        c = self.centers()
        nb = self.bins
        idx = np.clip((np.abs(c) / amax * nb).astype(np.int64), 0, nb - 1)
        h = np.zeros(nb)
        np.add.at(h, idx, self.hist)
        if self.lo >= 0:  # post-ReLU: the spike of exact zeros is represented exactly by any range; keep it out of P
            h[0] = 0.0
            if h.sum() == 0:
                return self.lo, self.hi
        levels = 2**self.bits if self.lo >= 0 else 2 ** (self.bits - 1)
        if nb <= levels:
            return self.lo, self.hi
        best_i, best_kl = nb, math.inf
        # 2. candidate thresholds: bin counts i = levels..nb (strided to keep it cheap)
        for i in range(levels, nb + 1, max(1, (nb - levels) // 256)):
            p = h[:i].copy()
            p[i - 1] += h[i:].sum()
            nz = p > 0
            # 3. merge the i bins into `levels` groups, spread each group's mass over its non-empty bins
            groups = np.minimum((np.arange(i) * levels) // i, levels - 1)
            mass = np.bincount(groups, weights=h[:i], minlength=levels)
            cnt = np.bincount(groups, weights=nz.astype(np.float64), minlength=levels)
            q = np.where(nz, mass[groups] / np.maximum(cnt[groups], 1), 0.0)
            ps, qs = p / p.sum(), q / max(q.sum(), 1e-300)
            m = nz & (qs > 0)
            kl = float(np.sum(ps[m] * np.log(ps[m] / qs[m]))) + (1e3 if (nz & ~(qs > 0)).any() else 0.0)
            if kl < best_kl:
                best_i, best_kl = i, kl
        t = best_i / nb * amax
        return max(self.lo, -t), min(self.hi, t)


OBSERVERS: dict[str, Callable[..., Observer]] = {
    "minmax": MinMaxObserver,
    "moving_average_minmax": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "kl": KLObserver,
}


def make_observer(method: str, bits: int = 8, **kwargs) -> Observer:
    if method not in OBSERVERS:
        raise ValueError(f"observer {method!r} is unknown; allowed: {', '.join(OBSERVERS)}")
    return OBSERVERS[method](bits=bits, **kwargs)


@torch.no_grad()
def calibrate(model: nn.Module, x_calib: torch.Tensor, methods: list[str] | tuple[str, ...] = ("minmax",),
              batch_size: int = 256, bits: int = 8, layers: list[str] | None = None,
              observer_kwargs: dict[str, dict] | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """Run ``x_calib`` (B, ...) through ``model`` and return ``{method: {layer: (lo, hi)}}``,
    the range of each prunable layer's INPUT activation.  ``bits`` is the activation width the
    MSE / KL searches optimise for.  Histogram observers get their range from a min-max pass
    first (two passes over the calibration set, no re-binning)."""
    from compress.models import prunable_layers

    if x_calib is None or len(x_calib) == 0:
        raise ValueError("the calibration set is empty; set data.calib_size >= 1")
    for m in methods:
        if m not in OBSERVERS:
            raise ValueError(f"observer {m!r} is unknown; allowed: {', '.join(OBSERVERS)}")
    observer_kwargs = observer_kwargs or {}
    names = layers or list(prunable_layers(model))
    mods = dict(model.named_modules())
    was_training = model.training
    model.eval()

    def run(obs: dict[str, list[Observer]]) -> None:
        def hook(n):
            def fn(_m, inp):
                for o in obs[n]:
                    o.update(inp[0])  # returns None: the input is not modified
            return fn

        hooks = [mods[n].register_forward_pre_hook(hook(n)) for n in names]
        try:
            for i in range(0, len(x_calib), batch_size):
                model(x_calib[i : i + batch_size])
        finally:
            for h in hooks:
                h.remove()

    # 1. min-max pass (gives the histogram ranges)
    mm = {n: [MinMaxObserver(bits)] for n in names}
    run(mm)
    # 2. one observer per (layer, method); histogram ones start from the min-max range
    obs: dict[str, list[Observer]] = {n: [] for n in names}
    for n in names:
        for m in methods:
            o = make_observer(m, bits, **observer_kwargs.get(m, {}))
            if isinstance(o, HistogramObserver):
                o.set_range(*mm[n][0].range())
            obs[n].append(o)
    run(obs)
    model.train(was_training)
    return {m: {n: tuple(float(v) for v in obs[n][k].range()) for n in names} for k, m in enumerate(methods)}


__all__ = [
    "OBSERVERS",
    "HistogramObserver",
    "KLObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "calibrate",
    "make_observer",
    "read_ranges",
]


def ranges_rows(by_bits: dict[str, dict[str, dict[str, tuple[float, float]]]]) -> list[dict]:
    """``{act_bits: {method: {layer: (lo, hi)}}}`` as table rows (act_bits, method, layer, lo, hi, width)."""
    return [{"act_bits": b, "method": m, "layer": layer, "lo": f"{lo:.6g}", "hi": f"{hi:.6g}", "width": f"{hi - lo:.6g}"}
            for b, table in by_bits.items() for m, layers in table.items() for layer, (lo, hi) in layers.items()]


def read_ranges(data: dict, method: str, bits: int | None = None, source: str = "calibration/ranges.json") -> dict[str, tuple[float, float]]:
    """One method's ``{layer: (lo, hi)}`` from the calibrate stage's file.

    Layout: ``{"ranges": {method: {layer: [lo, hi]}}`` (the primary width, ``act_bits``) and
    ``"ranges_by_bits": {"<bits>": {method: {...}}}`` (MSE / KL optimise for a width)."""
    table = data.get("ranges", data)
    if bits is not None and "ranges_by_bits" in data:
        if str(bits) not in data["ranges_by_bits"]:
            raise ValueError(f"{source} has no ranges for {bits}-bit activations; add {bits} to calibrate.act_bits "
                             f"(have {sorted(data['ranges_by_bits'], key=int)})")
        table = data["ranges_by_bits"][str(bits)]
    if method not in table:
        raise ValueError(f"{source} has no ranges for observer {method!r}; calibrated: {', '.join(table)}")
    return {k: (float(v[0]), float(v[1])) for k, v in table[method].items()}
