"""Per-layer bit allocation search (weights and activations), PTQ-evaluated.

    python -m studies.bits --storage URL --study NAME --n-trials N

Objectives: validation accuracy (max) and the bit-packed artifact's bytes (min).  With
``search.trial_mode: qat`` each trial fine-tunes for ``qat_steps`` steps, reporting validation
accuracy every ``qat_report_every`` steps to the median stopping rule (``search.pruner``).  Uniform
allocations (every layer at b bits, activations at the widest candidate) and HAWQ's
allocation (``search.hawq_allocation``, when the file exists) are enqueued first, so the
search's front can be compared against them.
"""
from __future__ import annotations

import sys

from studies.common import SearchSpec, cli
from studies.objectives import eval_bits, load_context
from studies.spaces import bits_params, default_act, hawq_file, mlflow_params, read_hawq, suggest_bits


def build_spec(P, ctx=None) -> tuple[SearchSpec, dict]:
    S = P.search
    ctx = ctx or load_context(P)
    layers = ctx.layers
    a0 = default_act(S.act_bits)
    starts = []
    if S.enqueue_uniform:
        starts += [(f"uniform w{b}a{a0}", bits_params({n: b for n in layers}, {n: a0 for n in layers}))
                   for b in sorted(S.weight_bits, reverse=True)]
    starts += [(label, bits_params(wb, {n: a0 for n in layers})) for label, wb in read_hawq(hawq_file(S), layers, S.weight_bits)]
    qat = ({"steps": S.qat_steps, "report_every": S.qat_report_every, "lr": S.qat_lr} if S.trial_mode == "qat" else None)
    spec = SearchSpec(kind="bits", suggest=lambda t: suggest_bits(t, layers, S.weight_bits, S.act_bits),
                      evaluate=(lambda cfg, report: eval_bits(ctx, cfg, qat=qat, report=report)) if qat else
                      (lambda cfg: eval_bits(ctx, cfg)),
                      starts=starts, fingerprint=ctx.fingerprints["bits"], mlflow_params=mlflow_params,
                      reports=qat is not None)
    return spec, ctx.meta


if __name__ == "__main__":
    sys.exit(cli("bits", build_spec))
