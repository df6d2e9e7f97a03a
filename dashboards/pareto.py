"""Pareto fronts over variants and search trials: ``reports/pareto.csv``.

A point p dominates q when p is at least as good in every objective and strictly better in one
(accuracy: higher is better; bytes and latency: lower is better).  The front is the set of
points no other point dominates.  Three fronts are marked: accuracy x size, accuracy x latency
(batch 1 and batch 256) and the 3-way accuracy x size x latency (batch 1).

``python -m dashboards.pareto`` rebuilds the table and the figures from MLflow alone
(``mlflow.search_runs``), so runs logged from several machines or branches can be compared.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from compress.tables import write_csv

FRONTS = {  # column -> objectives (name, maximise?)
    "front_acc_size": [("accuracy", True), ("size_bytes", False)],
    "front_acc_lat_b1": [("accuracy", True), ("latency_ms_b1", False)],
    "front_acc_lat_b256": [("accuracy", True), ("latency_ms_b256", False)],
    "front_3way": [("accuracy", True), ("size_bytes", False), ("latency_ms_b1", False)],
}
SEED_SUFFIX = r"[-_](?:s|seed)(\d+)$"
POINT_COLUMNS = ["source", "name", "stage", "method", "seed", "accuracy", "accuracy_split", "size_bytes", "latency_ms_b1",
                 "latency_ms_b256", "avg_weight_bits", "act_bits", "sparsity", "params", "runtime"]


def pareto_mask(values: np.ndarray, maximize: list[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (N, K); rows with NaN are never on it.

    1. flip maximised columns so every objective is minimised;
    2. i is dominated iff some j has v_j <= v_i everywhere and v_j < v_i somewhere.
    """
    v = np.asarray(values, dtype=float)  # (N, K)
    if v.ndim != 2 or v.shape[1] != len(maximize):
        raise ValueError(f"values of shape {v.shape} do not match {len(maximize)} objectives")
    v = np.where(np.asarray(maximize)[None, :], -v, v)
    ok = ~np.isnan(v).any(axis=1)  # (N,)
    w = v[ok]  # (M, K)
    le = (w[:, None, :] <= w[None, :, :]).all(axis=2)  # (M, M): j <= i in all objectives, indexed [j, i]
    lt = (w[:, None, :] < w[None, :, :]).any(axis=2)  # (M, M): j < i in one objective
    dominated = (le & lt).any(axis=0)  # (M,)
    mask = np.zeros(len(v), dtype=bool)
    mask[np.flatnonzero(ok)] = ~dominated
    return mask


def points_from_files(variants_csv: str | Path | None, trials_csv: str | Path | None) -> pd.DataFrame:
    """The variants table (test accuracy) and the search trials (validation accuracy) as one frame."""
    parts = []
    if variants_csv and Path(variants_csv).exists():
        v = pd.read_csv(variants_csv)
        v = v.assign(source="variant", name=v["variant"], accuracy_split="test")
        parts.append(v)
    if trials_csv and Path(trials_csv).exists():
        t = pd.read_csv(trials_csv)
        if not t.empty:
            t = t.assign(source="trial", name=t["study"] + "-t" + t["trial"].astype(str).str.zfill(3),
                         stage="search", method="search-" + t["kind"].astype(str), accuracy_split="val", seed=np.nan,
                         runtime="search trial (PTQ/masked, validation split)")
            parts.append(t)
    if not parts:
        return pd.DataFrame(columns=POINT_COLUMNS)
    df = pd.concat(parts, ignore_index=True)
    for c in POINT_COLUMNS:
        if c not in df:
            df[c] = np.nan
    return df[POINT_COLUMNS + [c for c in ("config", "pareto", "start") if c in df]]


def mark_fronts(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col, objs in FRONTS.items():
        names = [o for o, _ in objs]
        df[col] = pareto_mask(df[names].to_numpy(dtype=float), [m for _, m in objs]) if len(df) else []
    return df


def replicate_groups(df: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean and t-confidence interval of accuracy/size/latency over seeds of the same configuration.

    Variants (not trials) are replicates when their names differ only by a seed suffix
    (``hawq-w4-s1``, ``hawq-w4-seed2``) and stage, method and runtime agree.  One row per group: ``n``,
    ``<metric>_mean``, ``<metric>_ci`` (half-width; 0 when n == 1).
    """
    from scipy import stats

    keys = ["base", "stage", "method", "runtime"]
    df = df[(df["source"] == "variant")]
    def base(name: str, seed) -> str:  # strip the suffix only when it is this row's seed (not e.g. "-s90" sparsity)
        m = re.search(SEED_SUFFIX, name)
        return name[: m.start()] if m and not pd.isna(seed) and int(m.group(1)) == int(seed) else name

    df = df.assign(base=[base(str(n), s) for n, s in zip(df["name"], df["seed"])])
    g = df.assign(**{k: df[k].astype(str) for k in keys}).groupby(keys, dropna=False, sort=False)
    rows = []
    for key, sub in g:
        row = dict(zip(keys, key))
        row["n"] = len(sub)
        row["names"] = ";".join(sub["name"].astype(str))
        for m in ("accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256"):
            x = sub[m].to_numpy(dtype=float)
            x = x[~np.isnan(x)]
            row[f"{m}_mean"] = x.mean() if len(x) else np.nan
            row[f"{m}_ci"] = (stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
                              if len(x) > 1 else 0.0)
        rows.append(row)
    return pd.DataFrame(rows)


def build(df: pd.DataFrame, out_csv: str | Path) -> pd.DataFrame:
    out = mark_fronts(df)
    write_csv(out_csv, out, float_format="%.6g")
    return out


# --------------------------------------------------------------------------- MLflow
def points_from_mlflow(tracking_uri: str, experiment: str, keep: str = "latest") -> pd.DataFrame:
    """Variant runs (evaluate stage) and trial runs (studies) of ``experiment`` as points.

    ``keep="latest"``: the newest run per variant / trial name; ``"all"``: every run (e.g. one
    per machine or branch), distinguished by the ``git_commit`` tag in ``name``.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=[experiment], max_results=50000, order_by=["attributes.start_time DESC"])
    if runs.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    col = lambda c: runs[c] if c in runs else pd.Series([None] * len(runs), index=runs.index)
    is_variant = col("tags.variant").notna() & (col("tags.stage") == "evaluate")
    is_trial = col("tags.run_kind") == "trial"
    df = pd.DataFrame({
        "source": np.where(is_trial, "trial", "variant"),
        "name": np.where(is_trial, col("tags.mlflow.runName"), col("tags.variant")),
        "stage": np.where(is_trial, "search", col("tags.variant_stage")),
        "method": np.where(is_trial, "search-" + col("tags.kind").astype(str), col("tags.method")),
        "seed": pd.to_numeric(col("tags.seed"), errors="coerce"),
        "accuracy_split": np.where(is_trial, "val", "test"),
        "runtime": col("tags.runtime"),
        "git_commit": col("tags.git_commit"),
        "act_bits": col("params.act_bits"),
        "config": col("tags.config"),
    })
    for m in ("accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256", "avg_weight_bits", "sparsity", "params"):
        df[m] = col(f"metrics.{m}")
    df = df[(is_variant | is_trial).to_numpy()]
    if keep == "latest":
        df = df.drop_duplicates(subset=["source", "name"], keep="first")
    else:
        df["name"] = df["name"] + "@" + df["git_commit"].astype(str).str[:8]
    return df.reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards.pareto", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", help="MLflow tracking URI (default: tracking.uri of --params)")
    ap.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment of --params)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--keep", choices=["latest", "all"], default="latest", help="runs per variant/trial name")
    ap.add_argument("--out", default="dashboards_out", help="folder for pareto.csv and the figures")
    a = ap.parse_args(argv)
    uri, exp = a.tracking_uri, a.experiment
    if uri is None or exp is None:
        from compress.config import ConfigError, load_params

        try:
            P = load_params(a.params)
        except ConfigError as e:
            print(f"error: {e} (or pass --tracking-uri and --experiment)", file=sys.stderr)
            return 2
        uri, exp = uri or P.tracking.uri, exp or P.tracking.experiment
    try:
        df = points_from_mlflow(uri, exp, a.keep)
    except Exception as e:  # unreachable server, unknown experiment
        print(f"error: --tracking-uri {uri!r}, experiment {exp!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
              file=sys.stderr)
        return 2
    if df.empty:
        print(f"error: experiment {exp!r} at {uri} has no variant or trial runs (run `dvc repro` first)", file=sys.stderr)
        return 2
    from dashboards.figures import all_figures

    out = Path(a.out)
    pts = build(df, out / "pareto.csv")
    figs = all_figures(pts, out)
    print(json.dumps({"points": len(pts), "fronts": {c: int(pts[c].sum()) for c in FRONTS},
                      "figures": [str(f) for f in figs]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
