"""Pareto fronts, replicate intervals, figures and the MLflow-only rebuild."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboards.figures import all_figures
from dashboards.pareto import (
    FRONTS,
    build,
    mark_fronts,
    pareto_mask,
    points_from_files,
    points_from_mlflow,
    replicate_groups,
)


def _dominates(a, b, maximize):
    a = np.where(maximize, -a, a)
    b = np.where(maximize, -b, b)
    return bool((a <= b).all() and (a < b).any())


@pytest.mark.parametrize("k", [2, 3])
def test_front_is_exactly_the_non_dominated_set(k):
    rng = np.random.default_rng(k)
    v = rng.integers(0, 6, size=(60, k)).astype(float)  # many ties and duplicates
    maximize = [True] + [False] * (k - 1)
    mask = pareto_mask(v, maximize)
    for i in range(len(v)):
        dominated = any(_dominates(v[j], v[i], np.array(maximize)) for j in range(len(v)))
        assert mask[i] == (not dominated)


def test_nan_rows_are_never_on_the_front_and_duplicates_both_are():
    v = np.array([[0.9, 10.0], [0.9, 10.0], [np.nan, 1.0], [0.5, 20.0]])
    assert pareto_mask(v, [True, False]).tolist() == [True, True, False, False]


def test_fronts_over_variants_and_trials(files, tmp_path):
    v, t = files
    pts = build(points_from_files(v, t), tmp_path / "pareto.csv")
    back = pd.read_csv(tmp_path / "pareto.csv")
    assert len(back) == len(pts) == 10 + 5
    assert set(FRONTS) <= set(back.columns)
    by = pts.set_index("name")
    assert by.loc["ptq-w2a8-minmax", "front_acc_size"]  # the smallest point is always on it
    assert not by.loc["baseline-fp32", "front_acc_lat_b1"]  # same accuracy, slower than the structurally pruned one
    assert by.loc["prune-struct-l1-50", "front_acc_lat_b1"]
    assert set(pts.loc[pts.source == "trial", "accuracy_split"]) == {"val"}
    assert set(pts.loc[pts.source == "variant", "accuracy_split"]) == {"test"}
    # the 3-way front contains every 2-way acc x size front point that is not tied on both
    assert (pts["front_3way"] | ~pts["front_acc_size"]).all()


def test_replicates_group_seeds_only(files):
    v, t = files
    g = replicate_groups(points_from_files(v, t)).set_index("base")
    assert g.loc["hawq-w4", "n"] == 3
    acc = pd.read_csv(v).query("method == 'hawq'")["accuracy"].to_numpy()
    assert g.loc["hawq-w4", "accuracy_mean"] == pytest.approx(acc.mean())
    assert 0 < g.loc["hawq-w4", "accuracy_ci"] < 4 * acc.std(ddof=1)
    assert g.loc["prune-s90", "n"] == 1  # "-s90" is a sparsity, not seed 90
    assert "compress-bits-abc-t000" not in g.index  # trials are not replicates


def test_figures_are_written(files, tmp_path):
    v, t = files
    figs = all_figures(mark_fronts(points_from_files(v, t)), tmp_path / "figs")
    assert sorted(f.name for f in figs) == ["acc_vs_latency.png", "acc_vs_size.png", "bits_heatmap.png"]
    for f in figs:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000


def test_dashboard_rebuilds_from_mlflow_alone(tmp_path, files):
    import mlflow

    from dashboards.pareto import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("dash")
    v = pd.read_csv(files[0])
    for rnd, rows in enumerate([v, v.head(2)]):  # two variants logged twice (two `dvc repro`): latest kept
        for _, r in rows.iterrows():
            with mlflow.start_run(run_name=r["variant"], tags={"stage": "evaluate", "variant": r["variant"], "method": r["method"],
                                                               "variant_stage": r["stage"], "runtime": r["runtime"],
                                                               "git_commit": f"c{rnd}", "seed": str(r["seed"])}):
                mlflow.log_metrics({m: float(r[m]) for m in ("accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256",
                                                             "params", "avg_weight_bits", "sparsity")})
    with mlflow.start_run(run_name="compress-bits-x", tags={"run_kind": "study"}) as parent:
        for i in range(3):
            with mlflow.start_run(run_name=f"compress-bits-x-t00{i}", nested=True,
                                  tags={"run_kind": "trial", "kind": "bits", "config": '{"weight_bits": {"fc1": %d}}' % (2 + 2 * i)}):
                mlflow.log_metrics({"accuracy": 0.9 + 0.01 * i, "size_bytes": 1000.0 * (i + 1), "latency_ms_b1": 0.2,
                                    "latency_ms_b256": 8.0})
    pts = points_from_mlflow(uri, "dash")
    assert (pts.source == "variant").sum() == len(v) and (pts.source == "trial").sum() == 3
    assert len(points_from_mlflow(uri, "dash", keep="all")) == len(v) + 2 + 3
    out = tmp_path / "dash"
    assert main(["--tracking-uri", uri, "--experiment", "dash", "--out", str(out)]) == 0
    back = pd.read_csv(out / "pareto.csv")
    assert len(back) == len(v) + 3 and back["front_acc_size"].any()
    assert (out / "acc_vs_size.png").exists() and (out / "bits_heatmap.png").exists()
    assert main(["--tracking-uri", uri, "--experiment", "nope", "--out", str(out)]) == 2
