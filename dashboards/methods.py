"""The method stages' figures and report files (matplotlib, Agg backend); the cross-method figures (Pareto
fronts, dashboards) are in :mod:`dashboards.figures`. The ``compress`` library draws nothing.

HAWQ: λ bar chart, 1-D loss landscapes, mixed-vs-uniform accuracy and the report folder; OBD: LeCun et
al.'s Fig. 1 and 2; lottery tickets: Frankle & Carbin's Fig. 3/4; BinaryConnect: the paper-table bars."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dashboards.plotting import pyplot, save_figure


def eigen_bar(blocks: Sequence[str], lambdas: Sequence[float], traces_per_param: Sequence[float], path: str | Path) -> Path:
    """λ_i per block (log scale) with Tr(H_i)/n_i beside it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(blocks) + 2), 3.5))
    x = np.arange(len(blocks))
    ax.bar(x - 0.2, np.abs(lambdas), 0.4, label="top eigenvalue |λ_i|")
    ax.bar(x + 0.2, np.abs(traces_per_param), 0.4, label="Tr(H_i) / n_i")
    ax.set_yscale("log")
    ax.set_xticks(x, blocks, rotation=30, ha="right")
    ax.set_ylabel("curvature (log)")
    ax.set_title("HAWQ block sensitivity")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def landscapes(curves: dict[str, tuple[np.ndarray, np.ndarray]], lambdas: dict[str, float], path: str | Path) -> Path:
    """L(W_i + ε v_i) − L(W) for each block, with the quadratic model ½ λ_i ε² dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (eps, loss) in curves.items():
        base = loss[len(loss) // 2]
        line, = ax.plot(eps, loss - base, label=f"{name} (λ={lambdas[name]:.3g})")
        ax.plot(eps, 0.5 * lambdas[name] * eps**2, "--", color=line.get_color(), lw=0.8)
    ax.set_xlabel("ε along the block's top Hessian eigenvector (unit norm)")
    ax.set_ylabel("loss increase (calibration batches)")
    ax.set_title("1-D loss landscape per block (dashed: ½λε²)")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120)


def hawq_vs_uniform(rows: Sequence[dict], path: str | Path, metric: str = "val_acc") -> Path:
    """Mean ± std over seeds of ``metric`` vs average weight bits, one line per method (the HAWQ
    allocators — ``sensitivity``, ``ilp``; older rows say ``hawq`` — and ``uniform``)."""
    plt = pyplot()
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["avg_bits"])].append(r[metric])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    markers = {"sensitivity": "o", "ilp": "D", "hawq": "o", "uniform": "s"}
    for method in dict.fromkeys(m for m, _ in groups):
        marker = markers.get(method, "^")
        pts = sorted((b, np.mean(v), np.std(v)) for (m, b), v in groups.items() if m == method)
        if pts:
            b, mu, sd = map(np.array, zip(*pts))
            ax.errorbar(b, mu, yerr=sd, marker=marker, capsize=3, label=method)
    ax.set_xlabel("average weight bits")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("HAWQ vs uniform precision (mean ± std over seeds)")
    ax.legend()
    return save_figure(fig, path, dpi=120)


def obd_figure(curve: Sequence[dict], rounds: dict[str, Sequence[dict]], path: str | Path) -> Path:
    """(a) training loss vs number of deleted weights: OBD vs magnitude, one-shot (no retraining)
    and iterative with retraining; (b) predicted (Σ saliencies) vs actual loss increase."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"obd": "-", "magnitude": "--", "obd-hutchinson-raw": "-."}
    for method in dict.fromkeys(r["method"] for r in curve):
        style = styles.get(method, ":")
        pts = [r for r in curve if r["method"] == method]
        if not pts:
            continue
        a.plot([r["removed"] for r in pts], [r["train_loss"] for r in pts], style, marker=".", label=f"{method}, one-shot")
        rr = rounds.get(method, [])
        if rr:
            a.plot([0] + [r["removed_total"] for r in rr], [rr[0]["loss_before"]] + [r["loss_retrained"] for r in rr],
                   style, marker="o", label=f"{method}, iterative + retraining")
    a.set_yscale("log")
    a.set_xlabel("weights deleted")
    a.set_ylabel("training loss (cross-entropy, log)")
    a.set_title("OBD vs magnitude deletion")
    a.legend(fontsize=8)
    pts = [r for r in curve if r["method"] == "obd" and r["removed"] > 0]
    pred = np.array([r["predicted_increase"] for r in pts])
    act = np.array([r["actual_increase"] for r in pts])
    b.scatter(pred, act, s=14, label="one-shot OBD deletions")
    rr = rounds.get("obd", [])
    if rr:
        b.scatter([r["predicted_increase"] for r in rr], [r["actual_increase"] for r in rr], marker="^", label="iterative rounds")
    lim = max(1e-6, float(np.nanmax(np.concatenate([pred, act]))) if len(pred) else 1.0)
    b.plot([0, lim], [0, lim], "k:", lw=1, label="predicted = actual")
    b.set_xscale("symlog", linthresh=1e-4)
    b.set_yscale("symlog", linthresh=1e-4)
    b.set_xlabel("predicted increase Σ ½ H_ii w_i² (symlog)")
    b.set_ylabel("actual training-loss increase (symlog)")
    b.set_title("OBD prediction vs reality")
    b.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def hawq_report(folder: str | Path, title: str, stats, plans, claim: dict, rows: Sequence[dict], results, curves: dict,
                act_bits: int | None, objective: str, finetune: str) -> list[dict]:
    """reports/hawq: table_vi.md (S order, each allocation, the claim), table_vi.csv, finetune.csv and the three
    figures. Returns Table VI's rows."""
    from compress.hessian import hawq
    from compress.tables import write_csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table_vi.md").write_text(hawq.report_markdown(title, stats, plans, claim, act_bits, objective, finetune))
    table = hawq.table_vi(stats, {f"{p.method}@{p.alloc.budget_avg_bits:g}": p.alloc.bits for p in plans if p.method != "uniform"},
                          act_bits, objective)
    write_csv(folder / "table_vi.csv", table)
    write_csv(folder / "finetune.csv", [{"variant": r["plan"], "seed": r["seed"], **x} for r, res in zip(rows, results) for x in res.rows])
    eigen_bar([s.name for s in stats], [s.eigenvalue for s in stats], [s.trace / s.params for s in stats], folder / "eigenvalues.png")
    landscapes(curves, {s.name: s.eigenvalue for s in stats}, folder / "landscape.png")
    hawq_vs_uniform(rows, folder / "hawq_vs_uniform.png")
    return table


def sr_stagnation(r, fmt: str, target: float, lr: float, path: str | Path) -> Path:
    """GD on (x - target)^2 with the iterate in ``fmt``: RN stalls in its stagnation region, SR keeps going."""
    from compress.quant.formats import get_format

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if r.region is not None:
        ax.axhspan(r.region[0], r.region[1], color="tab:red", alpha=0.12,
                   label=f"RN stagnation region [{r.region[0]:g}, {r.region[1]:g}]")
    for i in range(r.sr.shape[0]):
        ax.plot(r.steps, r.sr[i], color="tab:green", alpha=0.15, lw=0.8)
    ax.plot(r.steps, r.sr.mean(0), color="tab:green", lw=2, label=f"SR (mean of {r.sr.shape[0]} runs; thin: runs)")
    ax.plot(r.steps, r.rn, color="tab:red", lw=2, drawstyle="steps-post", label="RN (round to nearest)")
    ax.plot(r.steps, r.exact, color="k", ls="--", lw=1, label="exact GD (float64)")
    ax.axhline(target, color="gray", lw=0.8)
    ax.set_xlabel("step k")
    ax.set_ylabel("iterate x_k")
    ax.set_title(f"GD on (x - {target:g})^2 in {fmt} (u = 2^{-get_format(fmt).t}), lr = {lr}")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path, dpi=120)


def lottery_figure(summary, path: str | Path, title: str = "") -> Path:
    """Early-stop iteration and test accuracy vs % weights remaining (log x), mean ± min/max over seeds."""
    from matplotlib.ticker import NullFormatter

    from compress.prune.report import KINDS

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, label in KINDS.items():
        d = summary[summary["kind"] == kind].sort_values("remaining_pct")
        if d.empty:
            continue
        for ax, y in zip(axes, ("early_stop", "test_acc")):
            line, = ax.plot(d["remaining_pct"], d[f"{y}_mean"], marker="o", ms=3, label=label)
            ax.fill_between(d["remaining_pct"], d[f"{y}_min"], d[f"{y}_max"], alpha=0.2, color=line.get_color())
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
    return save_figure(fig, path, dpi=120)


def binary_figure(table: dict, epochs: int, path: str | Path) -> Path:
    """BinaryConnect test error per method, ours (mean ± std over seeds) beside the paper's Table 2."""
    plt = pyplot()
    labels = list(table)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(x - 0.2, [table[m]["mean"] for m in labels], 0.4, yerr=[table[m]["std"] for m in labels],
           capsize=4, label=f"ours ({epochs} epochs)")
    ax.bar(x + 0.2, [table[m]["paper"] for m in labels], 0.4, label="paper (Courbariaux et al. 2015)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("MNIST test error (%)")
    ax.set_title("BinaryConnect, permutation-invariant MNIST (test split)")
    ax.legend()
    return save_figure(fig, path, dpi=120)


def recipe_trails(rows: list[dict], path: str | Path, title: str = "Recipe trails: size and validation accuracy after each step") -> Path:
    """One line per recipe: bytes (log scale) against validation accuracy, one marker per step."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["recipe"] for r in rows):
        rr = [r for r in rows if r["recipe"] == name]
        ax.plot([r["size_bytes"] for r in rr], [100 * r["val_acc"] for r in rr], marker="o", label=name)
        for r in rr:
            ax.annotate(r["step"], (r["size_bytes"], 100 * r["val_acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("artifact bytes after the step (log)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)
