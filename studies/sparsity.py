"""Per-layer sparsity search: layer-wise magnitude pruning levels, no fine-tune.

    python -m studies.sparsity --storage URL --study NAME --n-trials N

Objectives: validation accuracy (max) and the compact sparse artifact's bytes (min;
``compress.prune.sparse_io``).  Uniform levels (every layer at s) are enqueued first.
"""
from __future__ import annotations

import sys

from studies.common import SearchSpec, cli
from studies.objectives import eval_sparsity, load_context
from studies.spaces import mlflow_params, sparsity_params, suggest_sparsity


def build_spec(P, ctx=None) -> tuple[SearchSpec, dict]:
    S = P.search
    ctx = ctx or load_context(P, need_ranges=False)
    layers = ctx.layers
    starts = ([(f"uniform s{s:g}", sparsity_params({n: s for n in layers})) for s in S.sparsity_levels]
              if S.enqueue_uniform else [])
    spec = SearchSpec(kind="sparsity", suggest=lambda t: suggest_sparsity(t, layers, S.sparsity_levels),
                      evaluate=lambda cfg: eval_sparsity(ctx, cfg), starts=starts, fingerprint=ctx.fingerprints["sparsity"],
                      mlflow_params=mlflow_params)
    return spec, ctx.meta


if __name__ == "__main__":
    sys.exit(cli("sparsity", build_spec))
