"""seaborn figures (PNG): methods coloured, Pareto fronts drawn, replicates as mean +- CI.

- ``acc_vs_size.png``     accuracy vs artifact bytes (log x), front of accuracy x size
- ``acc_vs_latency.png``  accuracy vs latency at batch 1 and batch 256, fronts drawn
- ``bits_heatmap.png``    weight bits per layer of the best bit-allocation trials
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from dashboards.pareto import pareto_mask, replicate_groups
from dashboards.plotting import save_figure


def _front_line(ax, df: pd.DataFrame, x: str, y: str, mask, label: str = "Pareto front") -> None:
    f = df[mask].sort_values(x)
    if len(f):
        # staircase: accuracy reachable at this cost or less
        ax.step(f[x], f[y], where="post", color="black", lw=1.2, ls="--", label=label, zorder=1)
        ax.scatter(f[x], f[y], s=90, facecolors="none", edgecolors="black", lw=1.2, zorder=3)


def pareto_figure(df: pd.DataFrame, x: str, y: str, hue: str, path: str | Path, front_col: str | None = None,
                  title: str = "", logx: bool = False, ax=None) -> Path | None:
    """Scatter of ``y`` vs ``x`` coloured by ``hue`` with the front (``front_col`` or computed) drawn."""
    d = df.dropna(subset=[x, y])
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7.5, 5))
    sns.scatterplot(data=d, x=x, y=y, hue=hue, style="source" if "source" in d and d["source"].nunique() > 1 else None,
                    ax=ax, s=45, zorder=2)
    mask = d[front_col].astype(bool).to_numpy() if front_col else pareto_mask(d[[y, x]].to_numpy(float), [True, False])
    _front_line(ax, d, x, y, mask)
    if logx:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if own:
        return save_figure(fig, path, dpi=110)
    return None


def _errorbars(ax, pts: pd.DataFrame, x: str, y: str) -> None:
    """Replicated configurations (n > 1): mean marker with confidence-interval bars."""
    g = replicate_groups(pts)
    g = g[g["n"] > 1]
    for _, r in g.iterrows():
        ax.errorbar(r[f"{x}_mean"], r[f"{y}_mean"], xerr=r[f"{x}_ci"], yerr=r[f"{y}_ci"], fmt="D", ms=6, color="0.2",
                    capsize=3, zorder=4, label=None)
    if len(g):
        ax.plot([], [], "D", color="0.2", label="mean ± 95% CI (seeds)")


def acc_vs_size(pts: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    pareto_figure(pts, "size_bytes", "accuracy", "method", path, front_col="front_acc_size", logx=True, ax=ax,
                  title="accuracy vs artifact size (variants: test split; trials: validation split)")
    _errorbars(ax, pts, "size_bytes", "accuracy")
    ax.set_xlabel("size (bytes, log scale)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return save_figure(fig, path, dpi=110)


def acc_vs_latency(pts: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(16, 5.2))
    for ax, b in zip(axes, ("b1", "b256")):
        x = f"latency_ms_{b}"
        pareto_figure(pts, x, "accuracy", "method", path, front_col=f"front_acc_lat_{b}", logx=True, ax=ax,
                      title=f"accuracy vs latency, batch {b[1:]} (median ms)")
        _errorbars(ax, pts, x, "accuracy")
        ax.set_xlabel(f"latency at batch {b[1:]} (ms, log scale)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return save_figure(fig, path, dpi=110)


def bits_heatmap(pts: pd.DataFrame, path: Path, top: int = 10) -> Path | None:
    """Weight bits per layer (rows: the most accurate Pareto-optimal bit trials, plus starts)."""
    if "config" not in pts:
        return None
    t = pts[(pts["source"] == "trial") & pts["config"].notna() & pts["method"].astype(str).str.endswith(("bits", "joint"))]
    rows = {}
    for _, r in t.sort_values("accuracy", ascending=False).iterrows():
        cfg = json.loads(r["config"]) if isinstance(r["config"], str) else {}
        wb = cfg.get("weight_bits")
        if not wb:
            continue
        on_front = bool(r.get("front_acc_size", False))
        start = str(r.get("start", "") or "")
        if on_front or start not in ("", "nan"):
            short = str(r["name"]).rsplit("-", 1)[-1]  # t008
            label = f"{short} {r['accuracy'] * 100:.1f}% {r['size_bytes'] / 1024:.1f} KiB" + (f" [{start}]" if start not in ("", "nan") else "")
            rows[label] = wb
        if len(rows) >= top:
            break
    if not rows:
        return None
    hm = pd.DataFrame(rows).T  # (trials, layers)
    fig, ax = plt.subplots(figsize=(4.5 + 0.8 * hm.shape[1], 1.5 + 0.45 * hm.shape[0]))
    sns.heatmap(hm.astype(float), annot=True, fmt=".0f", cmap="viridis", cbar_kws={"label": "weight bits"}, ax=ax)
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_title("weight bits per layer: Pareto-optimal and starting trials", fontsize=10)
    ax.set_xlabel("layer")
    return save_figure(fig, path, dpi=110)


def all_figures(pts: pd.DataFrame, out_dir: str | Path, heatmap_top: int = 10) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = [acc_vs_size(pts, out_dir / "acc_vs_size.png"), acc_vs_latency(pts, out_dir / "acc_vs_latency.png"),
            bits_heatmap(pts, out_dir / "bits_heatmap.png", heatmap_top)]
    return [f for f in figs if f is not None]
