"""Joint search: per-layer sparsity x per-layer weight/activation bits (prune, then PTQ).

    python -m studies.joint --storage URL --study NAME --n-trials N

Objectives: validation accuracy (max) and the bytes of the sparse-packed artifact (min;
``studies.sparse_packed``: bitmask + bit-packed nonzero codes).  Starting points: each
uniform width of ``search.joint_weight_bits`` dense and at the middle sparsity level, and
HAWQ's allocation dense.
"""
from __future__ import annotations

import sys

from studies.common import SearchSpec, cli
from studies.objectives import eval_joint, load_context
from studies.spaces import (bits_params, default_act, hawq_file, mlflow_params, read_hawq, sparsity_params, suggest_bits,
                            suggest_sparsity)


def build_spec(P, ctx=None) -> tuple[SearchSpec, dict]:
    S = P.search
    ctx = ctx or load_context(P)
    layers = ctx.layers
    a0 = default_act(S.act_bits)
    levels = sorted(S.sparsity_levels)
    mid = levels[len(levels) // 2]
    dense = min(levels)
    starts = []
    if S.enqueue_uniform:
        for b in sorted(S.joint_weight_bits, reverse=True):
            for s in dict.fromkeys((dense, mid)):
                starts.append((f"uniform w{b}a{a0} s{s:g}", {**bits_params({n: b for n in layers}, {n: a0 for n in layers}),
                                                             **sparsity_params({n: s for n in layers})}))
    for label, wb in read_hawq(hawq_file(S), layers, S.joint_weight_bits):
        starts.append((label, {**bits_params(wb, {n: a0 for n in layers}), **sparsity_params({n: dense for n in layers})}))

    def suggest(t):
        return {**suggest_sparsity(t, layers, S.sparsity_levels), **suggest_bits(t, layers, S.joint_weight_bits, S.act_bits)}

    spec = SearchSpec(kind="joint", suggest=suggest, evaluate=lambda cfg: eval_joint(ctx, cfg), starts=starts,
                      fingerprint=ctx.fingerprints["joint"], mlflow_params=mlflow_params)
    return spec, ctx.meta


if __name__ == "__main__":
    sys.exit(cli("joint", build_spec))
