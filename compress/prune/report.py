"""Lottery-ticket tables and the claim check (Frankle & Carbin 2019, Fig. 3/4); the figure is
:func:`dashboards.methods.lottery_figure`."""
from __future__ import annotations

import pandas as pd

KINDS = {"ticket": "winning ticket (reset to w0)", "reinit": "same mask, random reinit", "random_mask": "random mask"}


def _ci95(std: pd.Series, n: pd.Series) -> pd.Series:
    """Half-width of the 95 % t-interval of a mean over ``n`` seeds (0 for a single seed)."""
    from scipy.stats import t

    n = n.astype(float)
    half = t.ppf(0.975, (n - 1).clip(lower=1)) * std / n.pow(0.5)
    return half.where(n > 1, 0.0)


def summarize(rows: list[dict]) -> pd.DataFrame:
    """Mean / std / 95 % CI / min / max over seeds per (kind, round); the dense run (round 0) is the
    start of every control trained from round 1 on.  ``budget_hits``: trainings that the iteration
    budget, not the patience rule, stopped (their early-stop iteration is not a validation optimum)."""
    df = pd.DataFrame(rows)
    df["remaining_pct"] = 100 * df["remaining"]
    if "budget_hit" not in df:
        df["budget_hit"] = False
    if "iterations" not in df:
        df["iterations"] = df["early_stop_iteration"]
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
        iterations_mean=("iterations", "mean"), budget_hits=("budget_hit", "sum"),
    ).reset_index()
    agg = agg.fillna({"test_acc_std": 0.0, "early_stop_std": 0.0})
    agg["budget_hits"] = agg["budget_hits"].astype(int)
    agg["test_acc_ci95"] = _ci95(agg["test_acc_std"], agg["n_seeds"])
    agg["early_stop_ci95"] = _ci95(agg["early_stop_std"], agg["n_seeds"])
    return agg.sort_values(["kind", "round"])


def claim(summary: pd.DataFrame, max_remaining_pct: float = 10.0, margin: float = 0.005) -> dict:
    """Frankle & Carbin's winning-ticket claim at the levels with ≤ ``max_remaining_pct`` % of the weights.

    At a level, three parts (means over seeds): the ticket is at least as accurate as the dense
    network (test accuracy at the early stop), it is at least as fast (early-stop iteration
    #Iter(M_s) ≤ #Iter(M)), and the reinitialised control is clearly worse (by more than ``margin``
    and by more than the two standard deviations together).  The claim holds at a level where all
    three hold and no training of that level or of the dense run hit the iteration budget.
    ``parts`` lists, per part, the levels where it holds; ``statement`` says it in one line.
    """
    t = summary[summary["kind"] == "ticket"].set_index("round")
    d = t.loc[0]
    dense = {"test_acc": float(d["test_acc_mean"]), "test_acc_std": float(d["test_acc_std"]),
             "early_stop": float(d["early_stop_mean"]), "early_stop_std": float(d["early_stop_std"]),
             "budget_hits": int(d.get("budget_hits", 0))}
    ctrl = {k: summary[summary["kind"] == k].set_index("round") for k in ("reinit", "random_mask")}
    levels = []
    for rnd, row in t.iterrows():
        if rnd == 0 or row["remaining_pct"] > max_remaining_pct:
            continue
        e = {"round": int(rnd), "remaining_pct": round(float(row["remaining_pct"]), 3),
             "ticket_acc": float(row["test_acc_mean"]), "ticket_std": float(row["test_acc_std"]),
             "ticket_early_stop": float(row["early_stop_mean"]), "ticket_early_stop_std": float(row["early_stop_std"])}
        hits = int(row.get("budget_hits", 0))
        for kind, c in ctrl.items():
            if rnd in c.index:
                e.update({f"{kind}_acc": float(c.loc[rnd, "test_acc_mean"]), f"{kind}_std": float(c.loc[rnd, "test_acc_std"]),
                          f"{kind}_early_stop": float(c.loc[rnd, "early_stop_mean"])})
                hits += int(c.loc[rnd].get("budget_hits", 0))
        e["ticket_ge_dense"] = e["ticket_acc"] >= dense["test_acc"]
        e["ticket_as_fast"] = e["ticket_early_stop"] <= dense["early_stop"]
        if "reinit_acc" in e:
            gap = e["ticket_acc"] - e["reinit_acc"]
            e["reinit_clearly_worse"] = bool(gap > margin and gap > e["ticket_std"] + e["reinit_std"])
        e["budget_hit"] = bool(hits or dense["budget_hits"])
        levels.append(e)
    parts = {"ticket_ge_dense": [e["remaining_pct"] for e in levels if e["ticket_ge_dense"]],
             "ticket_as_fast": [e["remaining_pct"] for e in levels if e["ticket_as_fast"]],
             "reinit_clearly_worse": [e["remaining_pct"] for e in levels if e.get("reinit_clearly_worse", False)],
             "reinit_trained": [e["remaining_pct"] for e in levels if "reinit_acc" in e],
             "budget_hit": [e["remaining_pct"] for e in levels if e["budget_hit"]]}
    holds = [e["remaining_pct"] for e in levels if e["ticket_ge_dense"] and e["ticket_as_fast"]
             and e.get("reinit_clearly_worse", False) and not e["budget_hit"]]
    said = [f"ticket >= dense accuracy at {parts['ticket_ge_dense'] or 'no level'}",
            f"#Iter(ticket) <= #Iter(dense) at {parts['ticket_as_fast'] or 'no level'}",
            f"reinit clearly worse at {parts['reinit_clearly_worse'] or 'no level'} (trained at {parts['reinit_trained'] or 'no level'})"]
    if parts["budget_hit"] or dense["budget_hits"]:
        said.append(f"iteration budget hit at {parts['budget_hit']} (dense: {dense['budget_hits']} trainings)")
    statement = (f"claim holds at {holds} % remaining" if holds else "claim does not hold at any level") + \
        f" (<= {max_remaining_pct:g} % remaining); " + "; ".join(said)
    return {"dense_test_acc": dense["test_acc"], "dense": dense, "max_remaining_pct": max_remaining_pct, "margin": margin,
            "levels": levels, "parts": parts, "holds": bool(holds), "holds_at_remaining_pct": holds, "statement": statement}


__all__ = ["KINDS", "claim", "summarize"]
