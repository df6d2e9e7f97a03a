"""prune_variant's retraining knobs per round, and prune_variants in worker processes (bit-identical)."""
import pytest
import torch

from compress.config import FitConfig
from compress.models import build_model
from compress.parallel import map_jobs
from compress.prune.config import PruneVariant
from compress.prune.masks import sparsity
from compress.prune.variant import prune_variant, prune_variants


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    base = build_model("lenet5", (1, 28, 28), 10)
    spec = {"name": "lenet5", "kwargs": {}, "input_shape": (1, 28, 28), "num_classes": 10}
    return base, spec, _data(96, 0), _data(32, 1)


def test_round_ft_sets_the_retraining_length_of_each_round(setup):
    base, spec, train, val = setup
    ft = FitConfig(max_iterations=2, batch_size=32, lr=1e-3)
    long = FitConfig(max_iterations=3, batch_size=32, lr=1e-3)
    v = PruneVariant(method="magnitude", scope="global", sparsity=0.9, rounds=3, l1_lambda=1e-4)
    res = prune_variant(base, spec, v, ft, train, val, seed=0, round_ft=long)
    assert [h["phase"] for h in res.history] == ["l1", "round1", "round2", "round3"]
    assert [h["iterations"] for h in res.history] == [2, 3, 3, 3]  # L1 phase: ft; every round: round_ft
    assert [round(h["sparsity"], 3) for h in res.history[1:]] == [round(1 - 0.1 ** (r / 3), 3) for r in (1, 2, 3)]
    assert sparsity(res.model) == pytest.approx(0.9, abs=1e-4)


def test_prune_variants_in_processes_equal_the_serial_run(setup):
    base, spec, train, val = setup
    ft = FitConfig(max_iterations=2, batch_size=32, lr=1e-3)
    variants = {"grad": PruneVariant(method="gradient", scope="layer", sparsity=0.5, grad_batches=2),
                "mag": PruneVariant(method="magnitude", scope="global", sparsity=0.9, rounds=2),
                "struct": PruneVariant(method="structured", sparsity=0.5)}
    round_ft = {"mag": FitConfig(max_iterations=3, batch_size=32, lr=1e-3)}
    seen = []
    a = prune_variants(base, spec, variants, ft, train, val, seed=0, round_ft=round_ft, workers=1, on_result=lambda n, r: seen.append(n))
    b = prune_variants(base, spec, variants, ft, train, val, seed=0, round_ft=round_ft, workers=2)
    assert list(a) == list(b) == ["grad", "mag", "struct"]  # the given order ...
    assert seen == ["mag", "grad", "struct"]  # ... but the longest (mag: 2 rounds x 3 steps) ran first
    for n in a:
        assert a[n].spec == b[n].spec and a[n].sparsity == b[n].sparsity
        sa, sb = a[n].model.state_dict(), b[n].model.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert [h["val_acc"] for h in a[n].history] == [h["val_acc"] for h in b[n].history]
    assert [h["iterations"] for h in a["mag"].history] == [3, 3]
    assert a["struct"].spec["kwargs"]["widths"] == [3, 8, 60, 42] and sparsity(a["mag"].model) == pytest.approx(0.9, abs=1e-4)
    # the base model is untouched
    assert sparsity(base) == 0


def test_map_jobs_order_errors_and_bad_arguments():
    assert map_jobs(lambda x: x * x, [3, 1, 2], workers=2) == [9, 1, 4]
    assert map_jobs(lambda x: torch.get_num_threads(), [0, 1], workers=2, threads=1) == [1, 1]
    with pytest.raises(ZeroDivisionError):
        map_jobs(lambda x: 1 // x, [1, 0], workers=2)
    with pytest.raises(ValueError, match="workers = 0 is invalid"):
        map_jobs(abs, [1], workers=0)
    with pytest.raises(ValueError, match="threads = 2 with workers = 2: forked workers run 1 torch thread each"):
        map_jobs(abs, [1, 2], workers=2, threads=2)
    assert map_jobs(lambda x: torch.get_num_threads(), [0], workers=1, threads=2) == [2]


def test_drop_claim():
    from compress.prune.variant import drop_claim

    c = drop_claim(0.9926, 0.9905, 0.9)
    assert c["holds"] and c["drop_pp"] == pytest.approx(0.21)
    assert not drop_claim(0.9926, 0.9890, 0.9)["holds"]  # 0.36 pp
    assert not drop_claim(0.9926, 0.9926, 0.8)["holds"]  # not sparse enough


def test_map_jobs_runs_inline_with_a_warning_once_torch_compile_poisoned_forked_autograd():
    # In its own interpreter: after torch.compile, autograd refuses to run in forked children
    # (the CI failure of the HAWQ slow test, which ran after the PT2E engine tests).
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import warnings, torch
        from compress.parallel import fork_autograd_ok, map_jobs
        def grad(k):
            x = torch.full((3,), float(k), requires_grad=True)
            (x * x).sum().backward()
            return x.grad.tolist()
        assert fork_autograd_ok()
        assert map_jobs(grad, [1, 2], workers=2) == [[2.0] * 3, [4.0] * 3]
        torch.compile(torch.nn.Linear(4, 4))(torch.randn(2, 4))
        print("ok after compile:", fork_autograd_ok())
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert map_jobs(grad, [1, 2], workers=2) == [[2.0] * 3, [4.0] * 3]
        print("warned:", [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)])
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ok after compile: False" in out.stdout
    assert "running 2 jobs inline on one process instead of 2 workers" in out.stdout
