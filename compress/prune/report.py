"""Lottery-ticket figures and the claim check (Frankle & Carbin 2019, Fig. 3/4 style)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

KINDS = {"ticket": "winning ticket (reset to w0)", "reinit": "same mask, random reinit", "random_mask": "random mask"}


def summarize(rows: list[dict]) -> pd.DataFrame:
    """Mean / std / min / max over seeds per (kind, round); the dense run (round 0) is every kind's start."""
    df = pd.DataFrame(rows)
    df["remaining_pct"] = 100 * df["remaining"]
    dense = df[df["round"] == 0]
    parts = [df]
    for kind in df["kind"].unique():  # controls trained from round 1 on start from the dense point
        if kind != "ticket" and (df[(df["kind"] == kind)]["round"] == 1).any():
            parts.append(dense.assign(kind=kind))
    df = pd.concat(parts, ignore_index=True)
    agg = df.groupby(["kind", "round"]).agg(
        remaining_pct=("remaining_pct", "mean"), n_seeds=("seed", "nunique"),
        test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std"),
        test_acc_min=("test_acc", "min"), test_acc_max=("test_acc", "max"),
        early_stop_mean=("early_stop_iteration", "mean"), early_stop_std=("early_stop_iteration", "std"),
        early_stop_min=("early_stop_iteration", "min"), early_stop_max=("early_stop_iteration", "max"),
    ).reset_index()
    return agg.fillna({"test_acc_std": 0.0, "early_stop_std": 0.0}).sort_values(["kind", "round"])


def claim(summary: pd.DataFrame, max_remaining_pct: float = 10.0, margin: float = 0.005) -> dict:
    """Does some sparsity level with ≤ ``max_remaining_pct`` % of the weights have a ticket whose mean
    test accuracy ≥ the dense network's, while the reinitialised control is worse by more than
    ``margin`` and by more than the two spreads (std over seeds) together?"""
    t = summary[summary["kind"] == "ticket"].set_index("round")
    dense = float(t.loc[0, "test_acc_mean"])
    r = summary[summary["kind"] == "reinit"].set_index("round")
    levels = []
    for rnd, row in t.iterrows():
        if rnd == 0 or row["remaining_pct"] > max_remaining_pct:
            continue
        entry = {"round": int(rnd), "remaining_pct": round(float(row["remaining_pct"]), 3),
                 "ticket_acc": float(row["test_acc_mean"]), "ticket_std": float(row["test_acc_std"])}
        if rnd in r.index:
            gap = entry["ticket_acc"] - float(r.loc[rnd, "test_acc_mean"])
            entry.update(reinit_acc=float(r.loc[rnd, "test_acc_mean"]), reinit_std=float(r.loc[rnd, "test_acc_std"]),
                         reinit_clearly_worse=bool(gap > margin and gap > entry["ticket_std"] + float(r.loc[rnd, "test_acc_std"])))
        entry["ticket_ge_dense"] = entry["ticket_acc"] >= dense
        levels.append(entry)
    holds = [e for e in levels if e["ticket_ge_dense"] and e.get("reinit_clearly_worse", False)]
    return {"dense_test_acc": dense, "max_remaining_pct": max_remaining_pct, "margin": margin, "levels": levels,
            "holds": bool(holds), "holds_at_remaining_pct": [e["remaining_pct"] for e in holds]}


def plot(summary: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Early-stop iteration and test accuracy vs % weights remaining (log x), mean ± min/max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, label in KINDS.items():
        d = summary[summary["kind"] == kind].sort_values("remaining_pct")
        if d.empty:
            continue
        for ax, y in zip(axes, ("early_stop", "test_acc")):
            line, = ax.plot(d["remaining_pct"], d[f"{y}_mean"], marker="o", ms=3, label=label)
            ax.fill_between(d["remaining_pct"], d[f"{y}_min"], d[f"{y}_max"], alpha=0.2, color=line.get_color())
    from matplotlib.ticker import NullFormatter

    ticks = summary[summary["kind"] == "ticket"].sort_values("round")["remaining_pct"].tolist()[::3]
    for ax, ylab in zip(axes, ("early-stop iteration (min val loss)", "test accuracy at early stop")):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("% of weights remaining (log scale)")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(loc="lower left", fontsize=8)
    n = int(summary["n_seeds"].max())
    fig.suptitle(f"{title} — mean over {n} seeds, band = min..max; reads the test split (paper figure)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["KINDS", "summarize", "claim", "plot"]
