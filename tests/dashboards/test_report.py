"""The exercise report: generated from the tables, true to them, sections only for present methods."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from compress.config import validate_params
from dashboards.report import generate, runtime_family

from .conftest import synthetic_trials, synthetic_variants


def _project(tmp_path, variants: pd.DataFrame, substituted: bool = False, trials: bool = True):
    (tmp_path / "reports").mkdir()
    (tmp_path / "metrics").mkdir()
    (tmp_path / "plots" / "prune").mkdir(parents=True)
    variants.to_csv(tmp_path / "reports" / "variants.csv", index=False)
    if trials:
        (tmp_path / "search").mkdir()
        synthetic_trials().to_csv(tmp_path / "search" / "trials.csv", index=False)
    meta = {"dataset": variants["dataset"].iloc[0], "dataset_substituted": substituted}
    if substituted:
        meta.update(requested="mnist", substitution_reason="MNIST not found under data/raw")
    (tmp_path / "metrics" / "prepare.json").write_text(json.dumps(meta))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure()
    plt.plot([0, 1])
    plt.savefig(tmp_path / "plots" / "prune" / "sparsity_curve.png")
    plt.close()
    return validate_params({}).report


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cfg(cwd, variants, **kw):
    return _project(cwd, variants, **kw)  # the default report section, relative to the project (cwd)


def test_report_answers_with_this_runs_numbers(cwd):
    v = synthetic_variants()
    out = generate(_cfg(cwd, v), metrics_dir=str(cwd / "metrics"))
    md = out.read_text()
    assert "**Dataset actually used: mnist**" in md and "SUBSTITUTED" not in md
    # numbers come from the table: baseline accuracy, the int8 speed-up, the smallest size
    base = v.set_index("variant").loc["baseline-fp32"]
    int8 = v.set_index("variant").loc["ptq-w8a8-minmax"]
    assert f"{base['accuracy'] * 100:.2f}%" in md
    assert f"{base['latency_ms_b256'] / int8['latency_ms_b256']:.2f}× at batch 256" in md
    assert f"{int(v['size_bytes'].min()):,} bytes" in md
    for header in ("## Post-training quantization (PTQ)", "## Quantization-aware training (QAT)",
                   "## Does inference time decrease, and why?", "## How much does model size drop?",
                   "## Pareto fronts", "## Searches (Optuna, multi-objective)", "## Replicates"):
        assert header in md
    assert "QAT 98.70% vs best PTQ 97.50% (+1.20 pp)" in md
    # every embedded image exists, relative to the report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert any("acc_vs_size.png" in x for x in links) and any("sparsity_curve.png" in x for x in links)
    for link in links:
        assert (out.parent / link).is_file(), link
    assert (cwd / "reports" / "pareto.csv").is_file()


def test_absent_methods_have_no_section_and_substitution_is_loud(cwd):
    v = synthetic_variants(dataset="mnist5k")
    v = v[~v["stage"].isin(["qat", "hawq"])]
    md = generate(_cfg(cwd, v, substituted=True, trials=False), metrics_dir=str(cwd / "metrics")).read_text()
    assert md.count("DATASET SUBSTITUTED") == 1 and "**mnist5k**" in md and "MNIST not found" in md
    assert "Quantization-aware training" not in md and "QAT vs PTQ" not in md
    assert "## Replicates" not in md and "## Searches" not in md and "hawq" not in md


def test_missing_variants_table_is_a_clear_error(cwd):
    cfg = validate_params({}).report
    with pytest.raises(FileNotFoundError, match="run the evaluate stage first"):
        generate(cfg)


@pytest.mark.parametrize("desc, fam", [
    ("ONNX Runtime 1.20 int8 (static QDQ: QLinearConv/QGemm kernels)", "integer kernels"),
    ("PT2E X86InductorQuantizer int8 + torch.compile (inductor, freezing)", "integer kernels"),
    ("ONNX Runtime 1.20 fp32", "fp32 ONNX Runtime"),
    ("bit-packed weights dequantized at load, PyTorch eager fp32 kernels", "decoded to fp32 at load"),
    ("torch.compile (inductor), fp32", "fp32 compiled"),
    ("PyTorch eager, Monarch (2 bmm), fp32", "structured (Monarch) kernels"),
    ("PyTorch eager, fp32", "fp32 eager"),
])
def test_runtime_families(desc, fam):
    assert runtime_family(desc) == fam


def test_each_variant_is_compared_with_its_own_fp32_reference():
    import pandas as pd

    from dashboards.report import enrich, pick_baseline

    rows = [  # a stage's own fp32 reference comes before the pipeline baseline in the table
        dict(variant="monarch-dense-ref", stage="monarch", method="baseline", model="mlp", accuracy=0.98, size_bytes=8000,
             latency_ms_b1=1.0, latency_ms_b256=8.0, runtime="PyTorch eager, fp32"),
        dict(variant="monarch-finetuned", stage="monarch", method="monarch", model="mlp", accuracy=0.97, size_bytes=1000,
             latency_ms_b1=0.5, latency_ms_b256=2.0, runtime="PyTorch eager, Monarch"),
        dict(variant="lottery-ticket", stage="lottery", method="lottery", model="lenet300", accuracy=0.95, size_bytes=100,
             latency_ms_b1=0.1, latency_ms_b256=1.0, runtime="PyTorch eager fp32"),
        dict(variant="ptq-w8a8", stage="ptq", method="ptq", model="lenet5", accuracy=0.99, size_bytes=250,
             latency_ms_b1=0.5, latency_ms_b256=4.0, runtime="ONNX Runtime int8"),
        dict(variant="baseline-fp32", stage="train", method="baseline", model="lenet5", accuracy=0.992, size_bytes=1000,
             latency_ms_b1=1.0, latency_ms_b256=4.0, runtime="PyTorch eager, fp32"),
    ]
    v = pd.DataFrame(rows).assign(accuracy_sim=float("nan"))
    base = pick_baseline(v)
    assert base["variant"] == "baseline-fp32"
    e = enrich(v, base).set_index("variant")
    assert e.loc["monarch-finetuned", "size_ratio"] == 8.0 and abs(e.loc["monarch-finetuned", "d_acc"] + 0.01) < 1e-12
    assert e.loc["ptq-w8a8", "size_ratio"] == 4.0 and e.loc["ptq-w8a8", "speedup_b1"] == 2.0
    assert pd.isna(e.loc["lottery-ticket", "size_ratio"])  # no fp32 LeNet-300-100 in the table: n/a, not vs LeNet-5
