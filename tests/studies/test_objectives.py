"""Trial evaluations on a tiny trained MLP: real artifacts, bytes that track bits and sparsity."""
from __future__ import annotations

import json

import pytest

from compress.config import load_params
from compress.train import evaluate_model
from studies.objectives import eval_bits, eval_joint, eval_sparsity, load_context
from studies.spaces import read_hawq


@pytest.fixture(scope="module")
def ctx(tiny_project):
    import contextlib

    P = load_params(tiny_project)
    P.search.latency = False
    with contextlib.chdir(tiny_project.parent):
        return load_context(P)


def _uniform(ctx, **per_layer):
    return {k: {n: v for n in ctx.layers} for k, v in per_layer.items()}


def test_packed_bytes_track_weight_bits(ctx):
    n_w = sum(ctx.layer_sizes().values())
    sizes = {b: eval_bits(ctx, _uniform(ctx, weight_bits=b, act_bits=8))["size_bytes"] for b in (8, 4, 2)}
    assert sizes[8] > sizes[4] > sizes[2]
    # each bit less per weight saves n_w / 8 bytes (codes are bit-packed); scales are the same
    assert sizes[8] - sizes[4] == pytest.approx(4 * n_w / 8, abs=8)
    assert sizes[4] - sizes[2] == pytest.approx(2 * n_w / 8, abs=8)


def test_w8a8_ptq_is_close_to_fp32_and_w2_is_worse(ctx):
    _, fp32 = evaluate_model(ctx.model, ctx.x, ctx.y)
    w8 = eval_bits(ctx, _uniform(ctx, weight_bits=8, act_bits=8))
    w2 = eval_bits(ctx, _uniform(ctx, weight_bits=2, act_bits=8))
    assert abs(w8["accuracy"] - fp32) <= 0.02
    assert w2["accuracy"] < w8["accuracy"]
    assert w8["avg_weight_bits"] == 8 and w8["act_bits"] == 8


def test_mixed_allocation_reports_parameter_weighted_bits(ctx):
    sizes = ctx.layer_sizes()
    first, *rest = ctx.layers
    cfg = {"weight_bits": {first: 2, **{n: 8 for n in rest}}, "act_bits": {n: None for n in ctx.layers}}
    m = eval_bits(ctx, cfg)
    expect = (2 * sizes[first] + 8 * sum(sizes[n] for n in rest)) / sum(sizes.values())
    assert m["avg_weight_bits"] == pytest.approx(expect)
    assert m["act_bits"] != m["act_bits"]  # NaN: float activations


def test_sparsity_levels_give_that_sparsity_and_fewer_bytes(ctx):
    m0 = eval_sparsity(ctx, _uniform(ctx, sparsity=0.0))
    m9 = eval_sparsity(ctx, _uniform(ctx, sparsity=0.9))
    _, fp32 = evaluate_model(ctx.model, ctx.x, ctx.y)
    assert m0["accuracy"] == fp32 and m0["sparsity"] < 0.01
    assert m9["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert m9["size_bytes"] < 0.4 * m0["size_bytes"]
    assert m9["params"] < 0.15 * m0["params"]


def test_joint_dense_equals_bits_accuracy_and_sparsity_shrinks_the_file(ctx):
    dense = eval_joint(ctx, _uniform(ctx, sparsity=0.0, weight_bits=4, act_bits=8))
    bits = eval_bits(ctx, _uniform(ctx, weight_bits=4, act_bits=8))
    sparse = eval_joint(ctx, _uniform(ctx, sparsity=0.8, weight_bits=4, act_bits=8))
    assert dense["accuracy"] == bits["accuracy"]  # same pruned-nothing, same quantizer
    assert sparse["size_bytes"] < 0.5 * dense["size_bytes"]
    assert sparse["sparsity"] >= 0.8


def test_hawq_allocations_are_read_and_filtered(tmp_path, ctx):
    layers = ctx.layers
    f = tmp_path / "allocation.json"
    assert read_hawq(f, layers, [2, 4, 8]) == []  # no file yet: nothing enqueued
    f.write_text(json.dumps({"allocations": [
        {"name": "hawq-mixed-b4", "budget": 4, "weight_bits": {n: 4 for n in layers}},
        {"name": "hawq-mixed-b3", "budget": 3, "weight_bits": {n: 3 for n in layers}},  # 3 not a candidate
        {"name": "partial", "weight_bits": {layers[0]: 8}}]}))
    got = read_hawq(f, layers, [2, 4, 8])
    assert got == [("hawq-mixed-b4", {n: 4 for n in layers})]
