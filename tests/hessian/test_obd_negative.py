"""OBD: negative Hutchinson diagonal estimates are handled, and notes name the estimator used."""
import numpy as np
import pytest
import torch
from scipy.stats import truncnorm

from compress.prune import obd
from tests.hessian.test_obd import relu  # noqa: F401  (fixture)


def test_posterior_mean_is_the_truncated_normal_mean():
    d = torch.tensor([-3.0, -0.5, 0.0, 0.2, 5.0, -40.0, 0.0], dtype=torch.float64)
    se = torch.tensor([1.0, 0.3, 2.0, 0.1, 0.5, 1.0, 0.0], dtype=torch.float64)
    got = obd.nonnegative_diagonal(d, se, "posterior")
    for i in range(6):  # N(d, se^2) restricted to [0, inf)
        want = truncnorm.mean(a=(0 - d[i].item()) / se[i].item(), b=np.inf, loc=d[i].item(), scale=se[i].item())
        assert got[i].item() == pytest.approx(want, rel=1e-6)
    assert got[6] == 0  # exactly known zero (a deleted weight) stays zero
    assert torch.all(got[:6] > 0) and torch.isfinite(got).all()  # stable far in the tail (d = -40 sigma)
    assert got[4].item() == pytest.approx(5.0, rel=1e-6)  # a well-measured curvature is kept
    assert obd.nonnegative_diagonal(d, se, "clamp").min() == 0 and obd.nonnegative_diagonal(d, se, "abs")[0] == 3.0
    assert torch.equal(obd.nonnegative_diagonal(d, se, "keep"), d)
    with pytest.raises(ValueError, match="negative = 'zero' is unknown"):
        obd.nonnegative_diagonal(d, se, "zero")


def test_hutchinson_negatives_are_not_deleted_first(relu):
    model, batches = relu
    exact = obd.hessian_diagonal(model, batches, method="exact")
    raw = obd.hessian_diagonal(model, batches, method="hutchinson", samples=4, seed=0, negative="keep")
    got = obd.hessian_diagonal(model, batches, method="hutchinson", samples=4, seed=0)
    neg = {n: raw.diag[n] < 0 for n in raw.diag}
    n_neg = sum(int(v.sum()) for v in neg.values())
    assert n_neg > 5 and got.negative_raw == raw.negative_raw == n_neg  # 4 probes: many raw estimates below zero
    assert all(torch.all(got.diag[n] > 0) for n in got.diag)  # the true H_ii >= 0 (ReLU + cross-entropy)
    # the handled estimate is closer to the exact diagonal than the raw one, in total
    err = lambda d: sum(float((d[n] - exact.diag[n]).abs().sum()) for n in d)
    assert err(got.diag) < err(raw.diag)
    # raw: every negative-estimate weight has a negative saliency, so all of them come first in the deletion order
    sal_raw, sal = obd.saliency(model, raw.diag), obd.saliency(model, got.diag)
    keep = {n: torch.ones_like(v, dtype=torch.bool) for n, v in sal.items()}
    first_raw = obd.lowest_masks(sal_raw, keep, n_neg)
    assert all(torch.equal(~first_raw[n], neg[n]) for n in neg)
    first = obd.lowest_masks(sal, keep, n_neg)
    assert not all(torch.equal(~first[n], neg[n]) for n in neg)
    assert all(torch.all(s[w != 0] > 0) for s, w in zip(sal.values(), (model.fc1.weight, model.fc2.weight)))


def test_hutchinson_with_one_probe_cannot_be_corrected():
    with pytest.raises(ValueError, match="obd.hessian.samples = 1"):
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        obd.hessian_diagonal(net, [(torch.randn(8, 4), torch.randint(0, 2, (8,)))], method="hutchinson", samples=1)


@pytest.mark.parametrize("method, samples, phrase", [
    ("ggn", 32, "Gauss-Newton diagonal (Rademacher GGN estimator, 32 probes; never negative)"),
    ("hutchinson", 16, "Hutchinson diagonal (z*Hz, 16 Rademacher probes; negative estimates replaced by the posterior mean"),
    ("exact", 32, "exact Hessian diagonal (one HVP per weight)"),
])
def test_notes_name_the_estimator_used(relu, method, samples, phrase):
    model, batches = relu
    assert phrase in obd.diag_description(method, samples)
    d = obd.hessian_diagonal(model, batches, method=method, samples=samples)
    assert d.description == obd.diag_description(method, samples)
    notes = obd.round_notes(2, method, samples, 300)
    assert notes.startswith("OBD round 2: saliency") and phrase in notes and notes.endswith("300 retraining steps")
    assert ("Hutchinson" in notes) == (method == "hutchinson")
    with pytest.raises(ValueError, match="obd.diag = 'fisher' is unknown"):
        obd.diag_description("fisher", 4)


def test_iterative_prune_jobs_in_processes_equal_the_serial_loops(relu):
    from compress.config import FitConfig as FinetuneConfig
    from compress.hessian.config import ObdConfig, ProbeConfig

    model, batches = relu
    cfg = ObdConfig(hessian=ProbeConfig(samples=3), rounds=2, prune_fraction=0.5,
                    retrain=FinetuneConfig(lr=1e-2, max_iterations=2, batch_size=24))
    args = (model, batches[0], batches[1], batches, batches, cfg)
    a = obd.iterative_prune_jobs(*args, seed=0, workers=1)
    b = obd.iterative_prune_jobs(*args, seed=0, workers=2)
    assert list(a) == ["obd", "magnitude"] and len(a["obd"][1]) == 2 and a["magnitude"][1] == []
    for s in a:
        assert [r.val_acc for r in a[s][0]] == [r.val_acc for r in b[s][0]]
        assert [r.loss_retrained for r in a[s][0]] == [r.loss_retrained for r in b[s][0]]
    for sa, sb in zip(a["obd"][1], b["obd"][1]):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the saved round states carry the round's sparsity; the model itself is untouched
    zeros = sum(int((a["obd"][1][1][k] == 0).sum()) for k in ("fc1.weight", "fc2.weight"))
    assert zeros == a["obd"][0][1].removed_total and all(float((p == 0).float().mean()) == 0 for p in model.parameters())
