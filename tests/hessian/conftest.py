import pytest
import torch
import torch.nn.functional as F
from torch import nn

# tiny tensors: one thread avoids oversubscribing the shared cores
torch.set_num_threads(1)


class Tiny(nn.Module):
    """Conv + two linears on 6x6 inputs (153 parameters): small enough for explicit Hessians."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)  # (B, 2, 4, 4)
        self.fc1 = nn.Linear(32, 3)
        self.fc2 = nn.Linear(3, 3)

    def forward(self, x):
        x = torch.tanh(self.conv(x)).flatten(1)
        return self.fc2(torch.tanh(self.fc1(x)))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = Tiny()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    return model, [(x[:32], y[:32]), (x[32:], y[32:])]


def explicit_hessian(model, names, batches):
    """Dense Hessian of the mean batch loss w.r.t. the named parameters (torch.autograd.functional.hessian)."""
    from torch.func import functional_call

    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    theta = torch.cat([params[n].detach().reshape(-1) for n in names])
    n_tot = sum(len(y) for _, y in batches)

    def loss(flat):
        parts = torch.split(flat, sizes)
        p = {k: v.detach() for k, v in params.items()}
        p.update({n: t.view(s) for n, t, s in zip(names, parts, shapes)})
        return sum(len(y) / n_tot * F.cross_entropy(functional_call(model, p, (x,)), y) for x, y in batches)

    return torch.autograd.functional.hessian(loss, theta).double()
