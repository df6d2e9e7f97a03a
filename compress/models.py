"""Model registry: plain ``nn.Module`` classes, built by name from params.yaml.

``build_model(name, input_shape, num_classes, **kwargs)``; adding a model is one class plus
one ``MODELS`` line.  Every model takes images (B, C, H, W); MLPs flatten them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _init(module: nn.Module, scheme: str) -> None:
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if scheme == "glorot":
                nn.init.xavier_normal_(m.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                raise ValueError(f"model.kwargs.init = {scheme!r} is unknown; allowed: default, glorot, kaiming")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling; 61,706 parameters on 28x28 inputs."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, init: str = "default",
                 widths: Sequence[int] = (6, 16, 120, 84)):
        super().__init__()
        c, h, w = input_shape
        if len(widths) != 4 or any(int(k) < 1 for k in widths):
            raise ValueError(f"model.kwargs.widths = {list(widths)!r} must be 4 positive widths (conv1, conv2, fc1, fc2)")
        c1, c2, f1, f2 = (int(k) for k in widths)  # structured pruning shrinks these
        self.conv1 = nn.Conv2d(c, c1, 5, padding=2)  # (B, c1, H, W)
        self.conv2 = nn.Conv2d(c1, c2, 5)  # (B, c2, H/2-4, W/2-4)
        fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        self.fc1 = nn.Linear(c2 * fh * fw, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.fc3 = nn.Linear(f2, num_classes)
        _init(self, init)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, c1, H/2, W/2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, c2, fh, fw)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """Caffe's LeNet (the "LeNet-5" of Deep Compression, Han et al. 2016): conv 5x5x20, max-pool 2,
    conv 5x5x50, max-pool 2, fc 500, fc 10, ReLU, no padding; 431,080 parameters on 28x28 inputs."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, init: str = "default"):
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 20, 5)  # (B, 20, H-4, W-4)
        self.conv2 = nn.Conv2d(20, 50, 5)  # (B, 50, (H-4)/2-4, (W-4)/2-4)
        fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * fh * fw, 500)
        self.fc2 = nn.Linear(500, num_classes)
        _init(self, init)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 20, 12, 12) on 28x28
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 50, 4, 4)
        x = torch.flatten(x, 1)  # (B, 800)
        x = F.relu(self.fc1(x))  # (B, 500)
        return self.fc2(x)


class MLP(nn.Module):
    """Fully connected net: input -> hidden... -> classes, ReLU, optional batch norm and dropout.

    LeNet-300-100 is ``MLP(hidden=(300, 100))``; the BinaryConnect / Monarch net is
    ``MLP(hidden=(1024, 1024))`` or three 1024 layers with batch norm.
    """

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, hidden: Sequence[int] = (1024, 1024),
                 batchnorm: bool = False, dropout: float = 0.0, init: str = "default", bias: bool = True):
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"model.kwargs.hidden = {list(hidden)!r} must be a non-empty list of positive widths")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.kwargs.dropout = {dropout!r} must be in [0, 1)")
        dims = [math.prod(input_shape), *[int(h) for h in hidden]]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[-1], num_classes, bias=bias))
        self.net = nn.Sequential(*layers)
        _init(self, init)

    def forward(self, x):
        return self.net(x)


def lenet300(input_shape=(1, 28, 28), num_classes=10, init: str = "default", **kw) -> MLP:
    return MLP(input_shape, num_classes, hidden=(300, 100), init=init, **kw)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:  # option B: 1x1 projection
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR-10 (He et al. 2016): 3 stages x 3 basic blocks, widths 16/32/64."""

    def __init__(self, input_shape=(3, 32, 32), num_classes=10, width: int = 16, init: str = "kaiming"):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(3):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(_BasicBlock(cin, cout, stride))
                cin = cout
        self.layer1, self.layer2, self.layer3 = (nn.Sequential(*blocks[i : i + 3]) for i in (0, 3, 6))
        self.fc = nn.Linear(cin, num_classes)
        _init(self, init)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, 8, 8)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "lenet5-caffe": LeNet5Caffe,
    "lenet300": lenet300,
    "mlp": MLP,
    "resnet20": ResNet20,
}


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"model.name = {name!r} is unknown; allowed: {sorted(MODELS)}")
    try:
        return MODELS[name](tuple(input_shape), num_classes, **kwargs)
    except TypeError as e:
        raise ValueError(f"model.kwargs {kwargs!r} do not fit model {name!r}: {e}") from None


def model_from_spec(spec: dict) -> nn.Module:
    """The model a spec describes (``{"name", "kwargs", "input_shape", "num_classes"}``, see variants.model_spec)."""
    return build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec.get("kwargs", {}))


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    if nonzero:
        return int(sum((p != 0).sum().item() for p in model.parameters()))
    return int(sum(p.numel() for p in model.parameters()))


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv and Linear layers by qualified name: the blocks that quantizers and pruners act on."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
