"""The lottery-ticket claim on full MNIST (about 20 minutes on 2 CPU cores: run with -m slow)."""
from types import SimpleNamespace

import pytest
import torch

from compress.config import DataConfig
from compress.data import prepare
from compress.models import build_model
from compress.prune.imp import run_lottery
from compress.prune.report import claim, summarize


@pytest.mark.slow
def test_ticket_at_most_10pct_beats_dense_and_reinit_is_clearly_worse(mnist_root):
    p = prepare(DataConfig(source="mnist", root=str(mnist_root), download=False, offline_fallback=None), seed=0)
    from compress.data import normalize

    split = {k: (normalize(getattr(p, k)[0], p.meta), getattr(p, k)[1]) for k in ("train", "val", "test")}
    cfg = SimpleNamespace(epochs=10**6, batch_size=60, optimizer="adam", lr=1.2e-3, weight_decay=0.0, momentum=0.9,
                          schedule="constant", max_iterations=600, eval_every=50)

    def build(s):
        torch.manual_seed(s)
        return build_model("lenet300", (1, 28, 28), 10, init="glorot")

    torch.set_num_threads(1)
    rows = []
    for seed in (0, 1, 2):
        rows += run_lottery(build, split["train"], split["val"], split["test"], cfg, seed=seed, rate=0.2, output_rate=0.1,
                            target_remaining=0.036, controls=("reinit",), controls_max_remaining=0.1)
    result = claim(summarize(rows))
    assert result["holds"], result
