"""Optimal Brain Damage: exact saliencies, global lowest-saliency deletion, the iterative procedure."""
import pytest
import torch
from torch import nn

from compress.config import FitConfig
from compress.hessian.config import ObdConfig, ProbeConfig
from compress.prune import obd
from compress.prune.masks import apply_masks, get_masks, sparsity
from tests.hessian.conftest import explicit_hessian


class ReluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture
def relu():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(96, 8, generator=g)
    y = (x[:, :3].argmax(1))
    return ReluNet(), [(x[:48], y[:48]), (x[48:], y[48:])]


def test_exact_diagonal_and_saliency_match_explicit_hessian(relu):
    model, batches = relu
    d = obd.hessian_diagonal(model, batches, method="exact")
    H = explicit_hessian(model, ["fc1.weight", "fc2.weight"], batches)
    diag = torch.diagonal(H)
    got = torch.cat([d.diag["fc1"].reshape(-1), d.diag["fc2"].reshape(-1)]).double()
    torch.testing.assert_close(got, diag, rtol=1e-4, atol=1e-7)
    assert torch.all(got >= -1e-7)  # ReLU + cross-entropy: Gauss-Newton = Hessian, PSD diagonal
    sal = obd.saliency(model, d.diag)
    torch.testing.assert_close(sal["fc2"], 0.5 * d.diag["fc2"] * model.fc2.weight.detach() ** 2)
    assert d.hvps == 6 * 8 + 3 * 6 and d.stderr is None


def test_masked_weights_have_zero_hessian_diagonal(relu):
    model, batches = relu
    mask = torch.ones_like(model.fc1.weight, dtype=torch.bool)
    mask[0] = False
    apply_masks(model, {"fc1": mask})
    d = obd.hessian_diagonal(model, batches, method="exact")
    assert torch.all(d.diag["fc1"][0] == 0) and torch.all(d.diag["fc1"][1:] > 0)


def test_lowest_masks_delete_exactly_the_lowest_alive():
    scores = {"a": torch.tensor([[5.0, 1.0], [3.0, 0.5]]), "b": torch.tensor([2.0, 0.1, 4.0])}
    keep = {"a": torch.tensor([[True, True], [True, False]]), "b": torch.tensor([True, True, True])}
    m = obd.lowest_masks(scores, keep, 3)
    # alive scores: a 5,1,3 ; b 2,0.1,4 -> lowest three are 0.1 (b1), 1 (a01), 2 (b0)
    assert m["a"].tolist() == [[True, False], [True, False]] and m["b"].tolist() == [False, False, True]
    assert all(torch.all(m[n] <= keep[n]) for n in m)  # masks only shrink
    with pytest.raises(ValueError, match="only 6 are left"):
        obd.lowest_masks(scores, keep, 7)


def test_one_shot_curve_prediction_starts_at_zero_and_grows(relu):
    model, batches = relu
    d = obd.hessian_diagonal(model, batches, method="exact")
    sal = obd.saliency(model, d.diag)
    rows = obd.one_shot_curve(model, sal, d.grad, obd.curve_counts(66, 5, 0.5), batches)
    ob = [r for r in rows if r["method"] == "obd"]
    assert [r["removed"] for r in ob] == [0, 8, 16, 25, 33]
    assert ob[0]["actual_increase"] == 0 and ob[0]["predicted_increase"] == 0
    preds = [r["predicted_increase"] for r in ob]
    assert preds == sorted(preds)  # Σ of the k lowest non-negative saliencies
    # deleting the lowest saliencies first beats deleting random... at least vs. |w| on the predicted cost
    mg = [r for r in rows if r["method"] == "magnitude"]
    assert all(o["predicted_increase"] <= m["predicted_increase"] + 1e-12 for o, m in zip(ob, mg))
    assert sparsity(model) == 0  # the model itself is untouched


def test_hutchinson_saliency_is_seeded(relu):
    model, batches = relu
    a = obd.hessian_diagonal(model, batches, samples=8, seed=3)
    b = obd.hessian_diagonal(model, batches, samples=8, seed=3)
    assert all(torch.equal(a.diag[n], b.diag[n]) for n in a.diag) and a.hvps == 8


@pytest.mark.parametrize("scorer, diag", [("obd", "ggn"), ("obd", "hutchinson"), ("magnitude", "ggn")])
def test_iterative_procedure_sparsity_and_monotone_masks(relu, scorer, diag):
    model, batches = relu
    cfg = ObdConfig(hessian=ProbeConfig(samples=4), diag=diag, rounds=3, prune_fraction=0.5,
                    retrain=FitConfig(lr=1e-2, max_iterations=2, batch_size=24))
    seen = []

    def on_round(res, m):
        seen.append(get_masks(m, all_layers=True))

    rows = obd.iterative_prune(model, batches[0], batches[1], batches, batches, cfg, seed=0, scorer=scorer, on_round=on_round)
    total = 6 * 8 + 3 * 6
    alive = total
    for r, res in zip(range(1, 4), rows):
        alive -= round(0.5 * alive)
        assert res.removed_total == total - alive
        assert res.sparsity == pytest.approx(1 - alive / total)
    assert sparsity(model) == pytest.approx(rows[-1].sparsity)  # retraining kept the zeros
    for a, b in zip(seen, seen[1:]):
        assert all(torch.all(b[n] <= a[n]) for n in a)
    assert all(r.actual_increase == pytest.approx(r.loss_pruned - r.loss_before) for r in rows)
    assert all(r.hvps == (4 if diag == "hutchinson" else 4 * len(batches)) for r in rows)


def test_ggn_diagonal_is_nonnegative_and_matches_relu_hessian_diagonal(relu):
    model, batches = relu
    H = explicit_hessian(model, ["fc1.weight", "fc2.weight"], batches)
    diag = torch.diagonal(H)
    n = 400
    d = obd.hessian_diagonal(model, batches, method="ggn", samples=n, seed=0)
    got = torch.cat([d.diag["fc1"].reshape(-1), d.diag["fc2"].reshape(-1)]).double()
    assert torch.all(got >= 0)
    # per-sample relative std <= sqrt(2): 5 standard errors
    assert torch.all((got - diag).abs() <= 5 * (2 / n) ** 0.5 * diag + 1e-7)
    assert d.hvps == n * len(batches)
    # and it is not exact (it is an estimator): some entry differs
    assert not torch.allclose(got, diag, rtol=1e-6, atol=0)
