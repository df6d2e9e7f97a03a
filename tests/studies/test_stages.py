"""search -> evaluate -> report on the tiny project, in a scratch working directory."""
from __future__ import annotations

import json
import sys

import pandas as pd
import yaml

from compress.variants import discover
from tests.studies.conftest import clone_project


def _run(monkeypatch, module, params):
    import importlib

    monkeypatch.setattr(sys, "argv", [module, "--params", str(params)])
    importlib.import_module(module).main()


def test_search_evaluate_report_chain(tmp_path, tiny_project, monkeypatch):
    raw = yaml.safe_load(clone_project(tiny_project, tmp_path).read_text())
    raw["search"].update(n_trials=6, export_front=2, storage=f"journal:{tmp_path / 'search' / 'optuna.journal'}",
                         latency_repeats=2)
    raw["evaluate"] = {"warmup": 1, "min_repeats": 2, "max_repeats": 2, "budget_s": 0.001, "threads": 1}
    raw["tracking"]["enabled"] = False
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)

    _run(monkeypatch, "stages.search", params)
    trials = pd.read_csv(tmp_path / "search" / "trials.csv")
    assert sorted(trials.groupby("kind").size().items()) == [("bits", 6), ("sparsity", 6)]
    m = json.loads((tmp_path / "metrics" / "search.json").read_text())
    assert m["dataset"] == "digits" and m["accuracy_split"] == "val"
    assert set(m["studies"]) == {"bits", "sparsity"}
    found = {man.variant: man for _, man in discover(tmp_path / "variants")}
    assert len(found) == 4 and {man.deploy.runtime for man in found.values()} == {"packed", "sparse-eager"}
    # rerunning resumes: nothing new runs, the same trials come back
    _run(monkeypatch, "stages.search", params)
    again = pd.read_csv(tmp_path / "search" / "trials.csv")
    assert again[["study", "trial", "accuracy", "size_bytes"]].equals(trials[["study", "trial", "accuracy", "size_bytes"]])

    _run(monkeypatch, "stages.evaluate", params)
    v = pd.read_csv(tmp_path / "reports" / "variants.csv")
    assert set(v["variant"]) == set(found)
    # the exported variants' test accuracy is measured on the artifact as deployed
    assert v["accuracy"].between(0, 1).all() and (v["size_bytes"] > 0).all()

    _run(monkeypatch, "stages.report", params)
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "**Dataset actually used: digits**" in md and "## Searches (Optuna, multi-objective)" in md
    pts = pd.read_csv(tmp_path / "reports" / "pareto.csv")
    assert len(pts) == len(v) + len(trials) and pts["front_acc_size"].any()
