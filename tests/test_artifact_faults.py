"""A missing or corrupt artifact is one line naming the variant, the file and the stage that
rebuilds it -- for every runtime loader -- and the evaluate step measures all the other variants.

Each runtime gets a tiny real artifact written by the library's own writer; the test then deletes
it or cuts it short (to 100 bytes, as a partial copy would, and to half its length) and loads it
through ``compress.runtimes.load_predictor``, as the evaluate stage does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from compress.checkpoint import save_state_dict
from compress.config import EvaluateConfig
from compress.evaluate import COLUMNS, evaluate_all
from compress.models import build_model, prunable_layers
from compress.runtimes import load_predictor
from compress.variants import (
    ArtifactError,
    Form,
    Manifest,
    model_spec,
    read_manifest,
    scan,
    write_variant,
)
from tests.conftest import ROOT, project_layout

SHAPE, CLASSES = (1, 28, 28), 10
SPEC = model_spec("mlp", {"hidden": [16, 16]}, SHAPE, CLASSES)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", SHAPE, CLASSES, hidden=[16, 16]).eval()


def _variant(root: Path, name: str, stage: str, deploy: Form, model_spec_: dict = SPEC, sim: Form | None = None) -> Path:
    folder = root / stage / name
    return write_variant(folder, Manifest(variant=name, stage=stage, method=deploy.runtime, model=model_spec_,
                                          dataset="synthetic", seed=0, avg_weight_bits=32.0, act_bits=None, sparsity=0.0,
                                          params=1, deploy=deploy, sim=sim))


# --------------------------------------------------------------------------- writers, one per runtime
def _torch_eager(folder: Path, x):
    save_state_dict(_model(), folder / "model.safetensors")
    return Form("torch-eager", ["model.safetensors"]), "model.safetensors", "train"


def _quant_sim(folder: Path, x):
    from compress.quant.observers import calibrate
    from compress.quant.ptq import int_sim_cfg, int_specs, write_sim

    m = _model()
    ws, as_ = int_specs(4, 8)
    return write_sim(folder, m, int_sim_cfg(4, 8, calibrate(m, x, ["minmax"])["minmax"], ws, as_)), "sim.json", "ptq"


def _packed(folder: Path, x):
    from compress.quant.observers import calibrate
    from compress.quant.ptq import build_int_sim, int_specs, save_packed_model

    m = _model()
    ws, as_ = int_specs(4, 8)
    save_packed_model(build_int_sim(m, 4, 8, calibrate(m, x, ["minmax"])["minmax"], ws, as_), folder / "model.cspk")
    return Form("packed", ["model.cspk"]), "model.cspk", "ptq"


def _lowp_float(folder: Path, x):
    from compress.quant.ptq import save_float_weights

    save_float_weights(_model(), "fp16", folder / "model.safetensors")
    return Form("lowp-float", ["model.safetensors"], {"format": "fp16", "activations": True}), "model.safetensors", "ptq"


def _sparse(folder: Path, x):
    from compress.prune.sparse_io import save_sparse

    m = _model()
    with torch.no_grad():
        for layer in prunable_layers(m).values():
            layer.weight[layer.weight.abs() < layer.weight.abs().median()] = 0
    save_sparse(m.state_dict(), folder / "model.safetensors", [f"{n}.weight" for n in prunable_layers(m)])
    return Form("sparse-eager", ["model.safetensors"]), "model.safetensors", "prune"


def _binary(folder: Path, x):
    from compress.quant.binary import BinaryMLP, save_binary

    torch.manual_seed(0)
    save_binary(BinaryMLP(SHAPE, CLASSES, hidden=[16]).eval(), folder / "model.bcpk")
    return Form("binary-packed", ["model.bcpk"]), "model.bcpk", "binary"


def _onnx(folder: Path, x):
    from compress.quant.deploy import export_onnx

    export_onnx(_model(), folder / "model.onnx", x[:2])
    return Form("onnxruntime-fp32", ["model.onnx"]), "model.onnx", "ptq"


def _pt2e(folder: Path, x):
    # any saved ExportedProgram exercises the loader (torch.export.load); a plain one is quick to write
    ep = torch.export.export(_model(), (x[:2],))
    torch.export.save(ep, str(folder / "model.pt2"))
    return Form("pt2e-inductor-int8", ["model.pt2"]), "model.pt2", "ptq"


def _monarch(fmt: str):
    def write(folder: Path, x):
        from compress.structured.monarch import monarchize, plan
        from compress.structured.quantize import save_quantized
        from compress.structured.runtime import shapes_to_options

        base = _model()
        shapes = plan(base, "hidden", "sqrt")
        m = monarchize(base, shapes)
        if fmt == "packed":
            save_quantized(m, folder / "model.packed", 8)
            return Form("structured-eager", ["model.packed"], shapes_to_options("monarch", shapes, "packed", 8)), "model.packed", "structured"
        save_state_dict(m, folder / "model.safetensors")
        return Form("structured-eager", ["model.safetensors"], shapes_to_options("monarch", shapes, "fp32")), "model.safetensors", "structured"

    return write


WRITERS = {"torch-eager": _torch_eager, "quant-sim": _quant_sim, "packed": _packed, "lowp-float": _lowp_float,
           "sparse-eager": _sparse, "binary-packed": _binary, "onnxruntime": _onnx, "pt2e": _pt2e,
           "monarch-fp32": _monarch("fp32"), "monarch-packed": _monarch("packed")}


def _cut(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "100 bytes":
        path.write_bytes(data[:100])
    elif how == "half":
        path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def x():
    return torch.randn(32, *SHAPE)


def _make(root: Path, name: str, writer, x) -> tuple[Path, str, str]:
    """Write one variant ``variants/<stage>/<name>`` with ``writer``: (folder, deployed file, stage)."""
    staging = root.parent / ".staging" / name
    staging.mkdir(parents=True)
    form, target, stage = writer(staging, x)
    folder = root / stage / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(folder)
    _variant(root, name, stage, form)
    return folder, target, stage


@pytest.mark.parametrize("how", ["missing", "100 bytes", "half"])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_loader_turns_a_bad_file_into_one_line(tmp_path, x, kind, how):
    name = f"v-{kind}"
    folder, target, stage = _make(tmp_path / "variants", name, WRITERS[kind], x)
    man = read_manifest(folder)
    pred = load_predictor(folder, man)  # the intact artifact loads (and runs, except the compiled program: slow)
    assert kind == "pt2e" or pred(x).shape == (len(x), CLASSES)
    _cut(folder / target, how)
    t0 = time.perf_counter()
    with pytest.raises(ArtifactError) as e:
        load_predictor(folder, man)(x)
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600, msg
    assert msg.startswith(f"variant {name}: {folder / target} "), msg
    assert msg.endswith(f"; rebuild it: dvc repro {stage}"), msg
    assert ("is missing" if how == "missing" else "is corrupt") in msg, msg
    assert e.value.variant == name and e.value.stage == stage and e.value.path == folder / target


def test_unknown_runtime_and_broken_manifest_are_artifact_errors(tmp_path, x):
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    form, _, _ = _torch_eager(folder, x)
    _variant(tmp_path, "a", "train", Form("tpu-magic", form.files))
    with pytest.raises(ArtifactError, match=r"^variant a: .*manifest.json names an unknown runtime 'tpu-magic' \(known: .*"
                                            r"torch-eager.*\); rebuild it: dvc repro train$"):
        load_predictor(folder, read_manifest(folder))
    (folder / "manifest.json").write_text('{"variant": "a", "stage"')
    found, broken = scan(tmp_path)
    assert found == [] and len(broken) == 1
    assert str(broken[0]).startswith(f"variant a: {folder / 'manifest.json'} is not a valid variant manifest (JSONDecodeError")
    assert str(broken[0]).endswith("; rebuild it: dvc repro train")


# --------------------------------------------------------------------------- evaluate: the others are measured
def _tiny_set(root: Path, x) -> dict[str, Path]:
    """Three variants (fp32 eager, 4-bit packed, sparse) -> {name: file that deploys it}."""
    out = {}
    for name, writer in (("base-fp32", _torch_eager), ("ptq-w4a8", _packed), ("prune-50", _sparse)):
        folder, target, _ = _make(root, name, writer, x)
        out[name] = folder / target
    return out


def test_evaluate_all_measures_the_others_and_records_the_failed_row(tmp_path, x):
    files = _tiny_set(tmp_path / "variants", x)
    files["ptq-w4a8"].write_bytes(files["ptq-w4a8"].read_bytes()[:100])
    (tmp_path / "variants" / "prune" / "prune-broken").mkdir()
    (tmp_path / "variants" / "prune" / "prune-broken" / "manifest.json").write_text("{")
    found, broken = scan(tmp_path / "variants")
    y = torch.randint(0, CLASSES, (len(x),))
    seen = []
    t0 = time.perf_counter()
    rows, failures = evaluate_all(found, x, y, EvaluateConfig(warmup=1, min_repeats=2, max_repeats=2, budget_s=0.001, batch_size=16), on_row=seen.append,
                                  broken=broken, progress=False)
    assert time.perf_counter() - t0 < 10
    assert [r["variant"] for r in rows] == [r["variant"] for r in seen] == ["prune-50", "prune-broken", "ptq-w4a8", "base-fp32"]
    by = {r["variant"]: r for r in rows}
    assert set(rows[0]) == set(COLUMNS)
    for good in ("base-fp32", "prune-50"):
        assert by[good]["error"] is None and 0 <= by[good]["accuracy"] <= 1 and by[good]["latency_ms_b256"] > 0
    bad = by["ptq-w4a8"]
    assert bad["accuracy"] is None and bad["size_bytes"] is None and bad["method"] == "packed"
    assert bad["error"] == (f"variant ptq-w4a8: {files['ptq-w4a8']} is corrupt (zlib: incomplete data in the header; "
                            "100 bytes on disk); rebuild it: dvc repro ptq")
    assert by["prune-broken"]["error"].endswith("is not a valid variant manifest (JSONDecodeError: Expecting property name "
                                                "enclosed in double quotes: line 1 column 2 (char 1)); rebuild it: dvc repro prune")
    assert failures == [by["prune-broken"]["error"], bad["error"]]  # in table order


def test_evaluate_stage_writes_the_table_then_exits_nonzero(tmp_path, digits_prepared):
    """The stage as DVC runs it: one truncated artifact -> the other rows in reports/variants.csv,
    one error line on stderr, exit 1 (so DVC does not cache the partial table), within seconds."""
    from compress.data import load_meta

    meta = load_meta(digits_prepared)
    shape, n_cls = tuple(meta["input_shape"]), meta["num_classes"]
    assert shape == SHAPE and n_cls == CLASSES  # the writers above build models for this input
    files = _tiny_set(tmp_path / "variants", torch.randn(32, *SHAPE))
    files["ptq-w4a8"].write_bytes(files["ptq-w4a8"].read_bytes()[:100])
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {**params["data"], "source": "digits", "val_size": 200, "calib_size": 128}
    params["evaluate"] = {**params.get("evaluate", {}), "warmup": 1, "min_repeats": 2, "max_repeats": 2, "budget_s": 0.001}
    project_layout(tmp_path, prepared=digits_prepared)  # the variants are already at tmp_path/variants
    params["tracking"] = {**params["tracking"], "enabled": False}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "stages.evaluate", "--params", str(tmp_path / "params.yaml")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    assert p.returncode == 1, p.stderr[-2000:]
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert err == [f"error: variant ptq-w4a8: {files['ptq-w4a8'].relative_to(tmp_path)} is corrupt (zlib: incomplete data in the header; "
                   "100 bytes on disk); rebuild it: dvc repro ptq"], p.stderr[-2000:]
    import pandas as pd

    df = pd.read_csv(tmp_path / "reports" / "variants.csv")
    assert list(df.columns) == COLUMNS and len(df) == 3
    good = df[df.error.isna()]
    assert sorted(good.variant) == ["base-fp32", "prune-50"] and (good.accuracy > 0).all() and (good.size_bytes > 0).all()
    assert df[df.variant == "ptq-w4a8"].error.item() == err[0].removeprefix("error: ")
    summary = json.loads((tmp_path / "metrics" / "summary.json").read_text())
    assert sorted(summary["variants"]) == ["base-fp32", "prune-50"] and list(summary["failed"]) == ["ptq-w4a8"]
    assert wall < 60  # seconds: python + torch start-up and three tiny models (typically ~10 s on 2 busy cores)
