"""The lottery-ticket claim on full MNIST in the paper's regime (~4 minutes on 2 idle cores: run with -m slow).

LeNet-300-100, Adam 1.2e-3, batch 60, Glorot init, validation every 100 iterations, every round
trained to its validation early stop (patience), 20 %/10 % per round down to 3.6 %, 3 seeds, the
reinitialised control at 5.6 %.  The params are the `default` preset's (compress.prune.imp.DEFAULT).
"""
from types import SimpleNamespace

import pytest

from compress.config import DataConfig
from compress.data import normalize, prepare
from compress.parallel import default_workers
from compress.prune.imp import (
    DEFAULT,
    ModelBuilder,
    control_rounds,
    rounds_to_target,
    run_imp,
)
from compress.prune.report import claim, summarize


@pytest.mark.slow
def test_paper_regime_ticket_is_as_accurate_and_as_fast_and_reinit_is_clearly_worse(mnist_root):
    p = prepare(DataConfig(source="mnist", root=str(mnist_root), download=False, offline_fallback=None), seed=0)
    split = {k: (normalize(getattr(p, k)[0], p.meta), getattr(p, k)[1]) for k in ("train", "val", "test")}
    cfg = SimpleNamespace(**DEFAULT["trainer"])
    build = ModelBuilder("lenet300", (1, 28, 28), 10, {"init": "glorot"})
    n = rounds_to_target(build(0), DEFAULT["rate"], DEFAULT["output_rate"], DEFAULT["target_remaining"])
    controls = {k: control_rounds(build(0), DEFAULT["rate"], DEFAULT["output_rate"], n, at_remaining=v)
                for k, v in DEFAULT["controls_at"].items()}
    rows = run_imp(build, split["train"], split["val"], split["test"], cfg, seeds=DEFAULT["seeds"], rate=DEFAULT["rate"],
                   output_rate=DEFAULT["output_rate"], target_remaining=DEFAULT["target_remaining"], controls=controls,
                   workers=default_workers(len(DEFAULT["seeds"])))
    assert n == 15 and not any(r["budget_hit"] for r in rows)
    result = claim(summarize(rows))
    assert result["dense_test_acc"] >= 0.975, result["statement"]
    assert result["holds"], result["statement"]
