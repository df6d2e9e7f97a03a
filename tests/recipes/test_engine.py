"""Running recipes on tiny data: masks survive quantize/finetune, the written artifact reloads
through its runtime with the reported accuracy, and the trail reports every step."""
import copy

import pytest
import torch

from compress.data import load_split
from compress.recipes.base import RecipeContext
from compress.recipes.engine import (
    fp32_bytes,
    run_recipe,
    train_baseline,
    validate_recipe,
)
from compress.recipes.tensors import codable, keep_mask
from compress.train import evaluate_model


@pytest.fixture(scope="module")
def data(digits_prepared):
    return load_split(digits_prepared, "train"), load_split(digits_prepared, "val")


FT = {"epochs": 1, "batch_size": 64, "lr": 1e-3}


def _masks(model):
    return {k: keep_mask(m, p) for k, (m, p) in codable(model).items()}


@pytest.mark.parametrize("method", ["kmeans", "uniform"])
def test_masks_stay_intact_through_quantize_and_finetune(data, method):
    train, val = data
    raw = {"model": "lenet300", "baseline": {"epochs": 1},
           "steps": [{"step": "prune", "sparsity": {"net.1": 0.9, "net.3": 0.7}, "schedule": "gradual", "frequency": 3, "finetune": FT},
                     {"step": "quantize", "method": method, "bits": 3},
                     {"step": "finetune", **FT},
                     {"step": "encode", "coder": "zstd", "floats": "float32"}]}
    r = validate_recipe("masks", raw)
    base, _ = train_baseline(r, train, val, seed=0)
    ctx = RecipeContext("masks", copy.deepcopy(base), r.spec(), train, val, seed=0)
    seen = []
    for i, (step, s) in enumerate(r.steps, 1):
        step.run(ctx, s, i)
        seen.append(_masks(ctx.model))
    pruned, quantized, tuned, decoded = seen
    assert 1 - pruned["net.1.weight"].float().mean() == pytest.approx(0.9, abs=1e-3)
    assert pruned["net.5.weight"].all()  # not selected: left dense
    for k in pruned:
        assert torch.equal(quantized[k], pruned[k]) and torch.equal(tuned[k], pruned[k]), k
        assert not (decoded[k] & ~pruned[k]).any(), k  # decoded zeros where pruned (a code may also decode to 0)
    w = dict(codable(ctx.model))["net.1.weight"]
    assert torch.all(getattr(*w)[~pruned["net.1.weight"]] == 0)


def test_recipe_artifact_reloads_through_its_runtime_with_the_reported_accuracy(data, tmp_path):
    from compress.runtimes import load_predictor
    from compress.variants import artifact_bytes

    train, val = data
    raw = {"model": "lenet5", "baseline": {"epochs": 1, "batch_size": 64},
           "steps": [{"step": "prune", "scope": "global", "sparsity": 0.8, "schedule": "rounds", "rounds": 2, "finetune": FT},
                     {"step": "quantize", "method": "kmeans", "bits": {"conv*": 6, "fc*": 4}, "snap_int8": True},
                     {"step": "finetune", **FT, "lr": 1e-4},
                     {"step": "encode", "coder": "lzma"}]}
    r = validate_recipe("tiny", raw)
    base, info = train_baseline(r, train, val, seed=0)
    rows = []
    res = run_recipe(r, base, train, val, seed=0, baseline_seconds=info["seconds"], on_step=rows.append)
    assert [row["step"] for row in rows] == ["baseline", "prune", "quantize", "finetune", "encode"] and rows == res.trail
    assert rows[0]["size_bytes"] == fp32_bytes(base) and rows[0]["ratio"] == 1.0
    assert rows[1]["sparsity"] == pytest.approx(0.8, abs=2e-3)
    assert rows[1]["size_bytes"] > rows[2]["size_bytes"] > rows[4]["size_bytes"]  # prune -> quantize -> coding
    assert all(set(row) >= {"size_bytes", "val_acc", "seconds"} for row in rows)
    # the stage's part: write the file + manifest; the runtime decodes it at load
    from compress.recipes.report import write_recipe_variant
    from dashboards.methods import recipe_trails
    from compress.variants import read_manifest

    write_recipe_variant(tmp_path, res, variant="recipe-tiny", stage="recipes", dataset="digits", seed=0)
    man = read_manifest(tmp_path)
    assert man.deploy.runtime == "recipe-decoded" and man.extra["ratio"] == res.summary["ratio"]
    assert artifact_bytes(tmp_path, man.deploy) == res.summary["size_bytes"] == len(res.artifact)
    assert recipe_trails(rows, tmp_path / "trail.png").stat().st_size > 0
    predict = load_predictor(tmp_path, man)
    acc = float((predict(val[0]).argmax(1) == val[1]).double().mean())
    assert acc == pytest.approx(res.summary["val_acc"], abs=1e-12)
    assert evaluate_model(res.model, *val)[1] == pytest.approx(acc, abs=1e-12)
    # every deploy engine runs the decoded artifact with the runtime's logits
    from compress.deploy.engines import resolve_runtimes
    from compress.deploy.graphs import deploy_predictors

    preds, skipped = deploy_predictors(tmp_path, man, resolve_runtimes(["torch-eager", "onnxruntime", "openvino"])[0])
    assert {"torch-eager", "onnxruntime"} <= set(preds), skipped
    ref = predict(val[0][:64])
    for name, p in preds.items():
        assert (p(val[0][:64]) - ref).abs().max() <= 1e-3 * max(1.0, float(ref.abs().max())), name


def test_monarch_uniform_and_bit_search_run_and_reload(data):
    from compress.recipes.tensors import model_from_bytes

    train, val = data
    raw = {"model": "lenet300", "baseline": {"epochs": 1},
           "steps": [{"step": "monarch", "layers": ["net.1"], "finetune": FT},
                     {"step": "prune", "sparsity": {"net.3": 0.5}, "schedule": "oneshot", "finetune": FT},
                     {"step": "quantize", "method": "uniform", "search": {"candidates": [8, 4, 2], "tolerance": 0.05}},
                     {"step": "encode", "coder": "zstd"}]}
    r = validate_recipe("mq", raw)
    base, _ = train_baseline(r, train, val, seed=0)
    res = run_recipe(r, base, train, val, seed=0)
    q = res.trail[3]
    assert set(q["bits"]) == {"net.1.w1", "net.1.w2", "net.3", "net.5"} and all(b in (8, 4, 2) for b in q["bits"].values())
    assert q["search_trials"] >= 5 and res.monarch["net.1"]["in_features"] == 784
    again = model_from_bytes(res.artifact)
    x = val[0][:16]
    torch.testing.assert_close(again(x), res.model(x))


def test_recipes_are_deterministic(data):
    train, val = data
    raw = {"model": "lenet300", "baseline": {"epochs": 1},
           "steps": [{"step": "prune", "sparsity": 0.7, "scope": "global", "finetune": FT},
                     {"step": "quantize", "bits": 4}, {"step": "encode"}]}
    r = validate_recipe("det", raw)
    runs = []
    for _ in range(2):
        base, _ = train_baseline(r, train, val, seed=3)
        runs.append(run_recipe(r, base, train, val, seed=3).artifact)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("prune", [
    {"method": "obd", "schedule": "oneshot", "scope": "global", "sparsity": 0.8},
    {"method": "gradient", "schedule": "rounds", "rounds": 2, "sparsity": {"net.1": 0.8}},
    {"method": "magnitude", "schedule": "rounds", "rounds": 2, "rewind": True, "sparsity": 0.6},
])
def test_prune_scores_and_schedules_reach_their_sparsity(data, prune):
    train, val = data
    raw = {"model": "lenet300", "baseline": {"epochs": 1},
           "steps": [{"step": "prune", **prune, "finetune": {**FT, "max_iterations": 5}}]}
    r = validate_recipe("p", raw)
    base, _ = train_baseline(r, train, val, seed=0)
    res = run_recipe(r, base, train, val, seed=0)
    masks = _masks(res.model)
    if prune.get("scope") == "global":
        got = 1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        assert got == pytest.approx(0.8, abs=1e-3)
    elif isinstance(prune["sparsity"], dict):
        assert 1 - masks["net.1.weight"].float().mean().item() == pytest.approx(0.8, abs=1e-3)
        assert masks["net.5.weight"].all()
    else:
        for m in masks.values():
            assert 1 - m.float().mean().item() == pytest.approx(0.6, abs=2e-2)
    assert res.trail[-1]["ratio"] > 1.0
