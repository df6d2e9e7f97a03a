"""BinaryConnect (Courbariaux, Bengio & David, NeurIPS 2015): train with binary weights.

Algorithm 1 of the paper, per minibatch:
  1. w_b = binarize(w_r)            det: sign(w_r);  stoch: +1 w.p. p = hard_sigmoid(w_r), else -1
                                    hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)
  2. forward and backward with w_b; the gradient w.r.t. w_b is applied to w_r (straight-through)
  3. update w_r with the optimizer, then clip w_r to [-1, 1]  (``clip_weights`` via fit(after_step=))
Biases and batch-norm parameters stay full precision.

Test time (paper, Sec. 2.6): det nets run with the binary weights; the paper's stoch figure
(1.18 %) uses the *real-valued* weights.  Both are measured here; the deployed artifact is
always the 1-bit one (``sign(w_r)``).

Storage: every binarized weight is one bit (``numpy.packbits``), batch norm is folded into a
per-output scale and shift (fp32).  The registered runtime ``binary-packed`` loads that file.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compress.runtimes import ModulePredictor, register_runtime
from compress.variants import ArtifactError, Form, Manifest, corrupt, missing

MODES = ("det", "stoch")
EvalWeights = Literal["binary", "real"]


def _check_mode(mode: str, key: str = "binary.modes") -> None:
    if mode not in MODES:
        raise ValueError(f"{key}: binarization mode {mode!r} is unknown; allowed: det, stoch")


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """sigma(x) = clip((x + 1) / 2, 0, 1)  (paper eq. 3)."""
    return ((x + 1) / 2).clamp(0, 1)


def binarize(w: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Paper eq. 1 (det: +1 if w >= 0 else -1) or eq. 2 (stoch: +1 with probability hard_sigmoid(w))."""
    _check_mode(mode)
    if mode == "det":
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    u = torch.rand(w.shape, generator=generator, device=w.device, dtype=w.dtype)
    return torch.where(u < hard_sigmoid(w), 1.0, -1.0).to(w.dtype)


class BinarizeSTE(torch.autograd.Function):
    """Forward: binarize; backward: straight-through (dC/dw_r := dC/dw_b, paper Algorithm 1)."""

    @staticmethod
    def forward(ctx, w, mode: str, generator):
        return binarize(w, mode, generator)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


class BinaryLinear(nn.Linear):
    """nn.Linear whose weight is binarized in the forward pass; bias stays full precision.

    Training forward: a fresh binarization per minibatch (``mode``).  Eval forward:
    ``eval_weights = "binary"`` uses sign(w_r), ``"real"`` uses w_r (the paper's stoch protocol).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, mode: str = "det",
                 eval_weights: EvalWeights = "binary"):
        super().__init__(in_features, out_features, bias)
        _check_mode(mode)
        self.mode = mode
        self.eval_weights: EvalWeights = eval_weights
        self.generator: torch.Generator | None = None  # seeded by BinaryMLP.seed_binarization

    def reset_parameters(self) -> None:  # reference code: W ~ U(-H, H) with H = 1
        nn.init.uniform_(self.weight, -1.0, 1.0)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def effective_weight(self) -> torch.Tensor:
        if self.training:
            return BinarizeSTE.apply(self.weight, self.mode, self.generator)
        if self.eval_weights == "real":
            return self.weight
        return binarize(self.weight.detach(), "det")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode}, eval_weights={self.eval_weights}"


class BinaryMLP(nn.Module):
    """The paper's permutation-invariant MNIST net: Flatten -> [BinaryLinear -> BN -> ReLU] x L
    -> BinaryLinear -> BN (the output BN of the reference code keeps binary logits in range)."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 hidden: Sequence[int] = (1024, 1024, 1024), mode: str = "det", bn_eps: float = 1e-4,
                 bn_momentum: float = 0.15):
        super().__init__()
        _check_mode(mode)
        if not hidden or min(int(h) for h in hidden) < 1:
            raise ValueError(f"binary.hidden = {list(hidden)!r} must be a non-empty list of positive widths")
        dims = [math.prod(input_shape), *[int(h) for h in hidden], int(num_classes)]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers += [BinaryLinear(a, b, mode=mode), nn.BatchNorm1d(b, eps=bn_eps, momentum=bn_momentum)]
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.net(x)

    def binary_layers(self) -> list[tuple[str, BinaryLinear]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, BinaryLinear)]

    def set_eval_weights(self, which: EvalWeights) -> BinaryMLP:
        for _, m in self.binary_layers():
            m.eval_weights = which
        return self

    def seed_binarization(self, seed: int) -> BinaryMLP:
        """One seeded generator drives every stochastic binarization (bit-reproducible runs)."""
        g = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        for _, m in self.binary_layers():
            m.generator = g
        return self


def clip_weights(model: nn.Module, h: float = 1.0) -> None:
    """Algorithm 1, last line: w_r <- clip(w_r, -H, H) for every binarized layer (use as fit(after_step=))."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BinaryLinear):
                m.weight.clamp_(-h, h)


def glorot_lr_scales(model: BinaryMLP) -> dict[str, float]:
    """Per-layer lr multiplier W_LR_scale = 1/H, H = sqrt(1.5 / (fan_in + fan_out)) — the reference code's
    ``W_LR_scale = "Glorot"`` (BinaryConnect mnist.py with H = 1): half of Glorot's uniform bound
    sqrt(6 / (fan_in + fan_out)), so the scale is twice 1/sqrt(6 / (fan_in + fan_out))."""
    return {n: 1.0 / math.sqrt(1.5 / (m.in_features + m.out_features)) for n, m in model.binary_layers()}


def param_groups(model: BinaryMLP, lr: float, lr_scale: str = "glorot") -> list[dict]:
    """Optimizer groups: each binary weight at lr * scale, everything else (biases, BN) at lr."""
    if lr_scale not in ("glorot", "none"):
        raise ValueError(f"binary.lr_scale = {lr_scale!r} is unknown; allowed: glorot, none")
    scales = glorot_lr_scales(model) if lr_scale == "glorot" else {}
    groups, seen = [], set()
    for name, m in model.binary_layers():
        groups.append({"params": [m.weight], "lr": lr * scales.get(name, 1.0)})
        seen.add(id(m.weight))
    rest = [p for p in model.parameters() if id(p) not in seen]
    groups.append({"params": rest, "lr": lr})
    return groups


def binary_optimizer(model: BinaryMLP, optimizer: str, lr: float, lr_scale: str = "glorot", momentum: float = 0.9):
    groups = param_groups(model, lr, lr_scale)
    if optimizer == "adam":  # the fused CPU kernel: one pass over the 2.9M weights instead of several
        return torch.optim.Adam(groups, lr=lr, fused=True)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"binary.optimizer = {optimizer!r} is unknown; allowed: adam, sgd")


def train_binaryconnect(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                        input_shape: Sequence[int], num_classes: int, *, hidden: Sequence[int], mode: str, seed: int,
                        cfg, lr_scale: str = "glorot", on_eval=None, progress: bool = True):
    """Algorithm 1 from scratch with compress.train.fit: binarize in forward, STE, clip after each step,
    early stopping on validation loss (weights of the best epoch restored).

    ``cfg`` carries fit's knobs (epochs, batch_size, optimizer, lr, momentum, schedule, max_iterations,
    eval_every).  Validation uses binary weights for det and real weights for stoch (paper, Sec. 2.6).
    Returns (model, History).
    """
    from types import SimpleNamespace

    from compress.train import fit, seed_everything

    _check_mode(mode)
    seed_everything(seed)
    model = BinaryMLP(input_shape, num_classes, hidden=hidden, mode=mode).seed_binarization(seed)
    model.set_eval_weights("binary" if mode == "det" else "real")
    opt = binary_optimizer(model, cfg.optimizer, cfg.lr, lr_scale, getattr(cfg, "momentum", 0.9))
    knobs = SimpleNamespace(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                            weight_decay=0.0, momentum=getattr(cfg, "momentum", 0.9), schedule=cfg.schedule,
                            max_iterations=cfg.max_iterations, eval_every=cfg.eval_every)
    hist = fit(model, train, val, knobs, seed=seed, desc=f"binaryconnect-{mode}-s{seed}", after_step=clip_weights,
               on_eval=on_eval, optimizer=opt, restore_best=True, progress=progress)
    return model, hist


_RUNS: dict = {}


def _init_runs(train, val, test, input_shape, num_classes, hidden, cfg, lr_scale, fp32_lr) -> None:
    _RUNS.update(train=train, val=val, test=test, input_shape=tuple(input_shape), num_classes=int(num_classes),
                 hidden=list(hidden), cfg=cfg, lr_scale=lr_scale, fp32_lr=fp32_lr)


def _error(model: nn.Module, data) -> float:
    from compress.train import evaluate_model

    return 100.0 * (1.0 - evaluate_model(model, *data)[1])


def _train_run(method: str, seed: int) -> dict:
    """One run of :func:`train_runs` (in a worker): train, then every error the stage reports."""
    import time
    from types import SimpleNamespace

    from compress.models import MLP
    from compress.train import fit, seed_everything

    w, t0, c0 = _RUNS, time.perf_counter(), time.process_time()
    rows: list[dict] = []
    if method == "fp32":  # the unregularised full-precision MLP of the paper's table (same widths, BN)
        cfg = w["cfg"]
        seed_everything(seed)
        model = MLP(w["input_shape"], w["num_classes"], hidden=w["hidden"], batchnorm=True)
        knobs = SimpleNamespace(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=w["fp32_lr"],
                                weight_decay=0.0, momentum=getattr(cfg, "momentum", 0.9), schedule=cfg.schedule,
                                max_iterations=cfg.max_iterations, eval_every=cfg.eval_every)
        opt = torch.optim.Adam(model.parameters(), lr=w["fp32_lr"], fused=True) if cfg.optimizer == "adam" else None
        hist = fit(model, w["train"], w["val"], knobs, seed=seed, desc=f"fp32-mlp-s{seed}", on_eval=rows.append,
                   optimizer=opt, restore_best=True, progress=False)
        err = _error(model, w["test"])
        errors = {"test_error": err, "test_error_binary": None, "test_error_real": err,
                  "val_error_deployed": _error(model, w["val"])}
    else:
        model, hist = train_binaryconnect(w["train"], w["val"], w["input_shape"], w["num_classes"], hidden=w["hidden"],
                                          mode=method, seed=seed, cfg=w["cfg"], lr_scale=w["lr_scale"],
                                          on_eval=rows.append, progress=False)
        err_bin = _error(model.set_eval_weights("binary"), w["test"])
        err_real = _error(model.set_eval_weights("real"), w["test"])
        errors = {"test_error": err_bin if method == "det" else err_real,  # the paper's test-time protocol
                  "test_error_binary": err_bin, "test_error_real": err_real,
                  "val_error_deployed": _error(model.set_eval_weights("binary"), w["val"])}  # the 1-bit artifact
    return {"method": method, "seed": seed, "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "history": rows, "best_iteration": hist.best_iteration, "iterations": hist.iterations,
            "train_seconds": hist.seconds, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            **errors}


def train_runs(train, val, test, input_shape: Sequence[int], num_classes: int, runs: Sequence[tuple[str, int]], *,
               hidden: Sequence[int], cfg, lr_scale: str = "glorot", fp32_lr: float = 1e-3, workers: int = 1,
               threads: int | None = 1, on_result=None) -> list[dict]:
    """Train every ``(method, seed)`` of ``runs`` (method: det, stoch or fp32) in ``workers`` processes.

    Each run is :func:`train_binaryconnect` (or the fp32 MLP with ``fp32_lr``) followed by its test
    errors, measured once in the worker: ``test_error`` (the paper's protocol: det with binary
    weights, stoch with real weights, Sec. 2.6), ``test_error_binary``, ``test_error_real`` and
    ``val_error_deployed`` (validation error of the net the artifact stores: sign(w_r) for BC).
    A run is a pure function of its inputs (one thread per worker), so results do not depend on
    ``workers``.  Returns one dict per run in the order of ``runs`` with ``state`` (state dict),
    ``history`` (fit's evaluation rows), ``best_iteration``, ``seconds`` (wall), ``cpu_seconds``; ``on_result(run)`` sees
    each as it finishes.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from compress.parallel import executor

    runs = [(str(m), int(s)) for m, s in runs]
    for m, _ in runs:
        if m != "fp32":
            _check_mode(m)
    pool = executor(workers, threads, _init_runs, (train, val, test, input_shape, num_classes, hidden, cfg, lr_scale, fp32_lr))
    out: dict[tuple[str, int], dict] = {}
    try:
        pending = {pool.submit(_train_run, m, s): (m, s) for m, s in runs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                key = pending.pop(f)
                out[key] = f.result()
                if on_result is not None:
                    on_result(out[key])
    finally:
        pool.shutdown(cancel_futures=True)
        _RUNS.clear()
    return [out[k] for k in runs]


# --------------------------------------------------------------------------- 1-bit storage
def fold_layers(model: BinaryMLP) -> list[dict[str, torch.Tensor]]:
    """Per layer: sign bits of w_r and the BN folded into y = scale * (W_b x) + shift.

    BN(W_b x + b) = gamma (W_b x + b - mu) / sqrt(var + eps) + beta
                  = a * (W_b x) + (a (b - mu) + beta),  a = gamma / sqrt(var + eps).
    """
    mods = list(model.net)
    out = []
    for i, m in enumerate(mods):
        if not isinstance(m, BinaryLinear):
            continue
        bn = mods[i + 1]
        assert isinstance(bn, nn.BatchNorm1d), "BinaryMLP layout: BinaryLinear is followed by BatchNorm1d"
        with torch.no_grad():
            a = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
            b = m.bias if m.bias is not None else torch.zeros_like(a)
            shift = a * (b - bn.running_mean) + bn.bias  # (out,)
            out.append({"bits": (m.weight >= 0), "scale": a.float().clone(), "shift": shift.float().clone()})
    return out


def save_binary(model: BinaryMLP, path: str | Path) -> Path:
    """Write ``path`` (safetensors): 1 bit per weight (uint8, numpy.packbits order) + fp32 scale/shift."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, shapes = {}, {}
    for i, layer in enumerate(fold_layers(model)):
        bits = layer["bits"].cpu().numpy()  # (out, in) bool
        tensors[f"l{i}.bits"] = torch.from_numpy(np.packbits(bits.reshape(-1)))  # (ceil(out*in/8),) uint8
        tensors[f"l{i}.scale"] = layer["scale"]
        tensors[f"l{i}.shift"] = layer["shift"]
        shapes[f"l{i}"] = list(bits.shape)
    save_file(tensors, str(path), metadata={"format": "binaryconnect-packed-v1", "shapes": json.dumps(shapes)})
    return path


def load_binary(path: str | Path) -> list[dict[str, torch.Tensor]]:
    """Inverse of :func:`save_binary`: per layer W_b in {-1, +1} (fp32), scale, shift.

    A missing or undecodable file is an :class:`~compress.variants.ArtifactError` naming it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise missing(path)
    layers = []
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "binaryconnect-packed-v1":
                raise ArtifactError(path, f"is not a BinaryConnect packed artifact (format {meta.get('format')!r})")
            shapes = json.loads(meta["shapes"])
            for i in range(len(shapes)):
                shape = shapes[f"l{i}"]
                packed = f.get_tensor(f"l{i}.bits").numpy()
                bits = np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape)  # (out, in) 0/1
                w = torch.from_numpy(bits.astype(np.float32) * 2.0 - 1.0)  # {0,1} -> {-1,+1}
                layers.append({"weight": w, "scale": f.get_tensor(f"l{i}.scale"), "shift": f.get_tensor(f"l{i}.shift")})
    except ArtifactError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise corrupt(path, f"{type(e).__name__}: {e}") from None
    return layers


class PackedBinaryMLP(nn.Module):
    """Inference net rebuilt from the packed file: [x @ W_b^T * scale + shift -> ReLU] per layer."""

    def __init__(self, layers: list[dict[str, torch.Tensor]]):
        super().__init__()
        self.n = len(layers)
        for i, layer in enumerate(layers):
            self.register_buffer(f"w{i}", layer["weight"])  # (out, in) in {-1, +1}
            self.register_buffer(f"s{i}", layer["scale"])  # (out,)
            self.register_buffer(f"t{i}", layer["shift"])  # (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(x, 1)  # (B, D)
        for i in range(self.n):
            h = F.linear(h, getattr(self, f"w{i}")) * getattr(self, f"s{i}") + getattr(self, f"t{i}")  # (B, out)
            if i < self.n - 1:
                h = F.relu(h)
        return h


def packed_size_bound(model: BinaryMLP) -> int:
    """Σ ceil(n_i / 8) bytes of sign bits + 2 fp32 per output unit (folded scale/shift)."""
    total = 0
    for _, m in model.binary_layers():
        total += -(-m.weight.numel() // 8) + 8 * m.out_features
    return total


@register_runtime("binary-packed")
def _binary_packed(folder: Path, manifest: Manifest, form: Form):
    module = PackedBinaryMLP(load_binary(Path(folder) / form.files[0])).eval()
    return ModulePredictor(module, "BinaryConnect 1-bit packed weights (unpacked to ±1 fp32 at load), PyTorch eager")


# --------------------------------------------------------------------------- the paper's table
PAPER_TEST_ERROR = {"det": 1.29, "stoch": 1.18, "fp32": 1.30}  # Courbariaux et al. 2015, Table 2 (test error %, MNIST)
PROTOCOL = ("det: binary weights at test time; stoch: real-valued weights (paper Sec. 2.6); "
            "test_error_binary/real give both for every run")


def paper_table(rows: Sequence[dict]) -> dict[str, dict]:
    """Per method (det, stoch, fp32): test error mean / std / n / values over seeds beside the paper's."""
    import statistics

    out = {}
    for m in ("det", "stoch", "fp32"):
        v = [r["test_error"] for r in rows if r["method"] == m]
        if v:
            out[m] = {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v),
                      "values": v, "paper": PAPER_TEST_ERROR[m]}
    return out


def paper_table_rows(table: dict[str, dict], epochs: int) -> list[dict]:
    """The table as CSV rows: ours (epochs, seeds) and the paper's, per method."""
    return [r for m, t in table.items() for r in (
        {"method": m, "source": f"ours ({epochs} epochs, {t['n']} seeds)", "test_error_pct": round(t["mean"], 3),
         "std": round(t["std"], 3)},
        {"method": m, "source": "paper", "test_error_pct": t["paper"], "std": ""})]


__all__ = [
    "MODES",
    "PAPER_TEST_ERROR",
    "PROTOCOL",
    "BinarizeSTE",
    "BinaryLinear",
    "BinaryMLP",
    "PackedBinaryMLP",
    "binarize",
    "binary_optimizer",
    "clip_weights",
    "fold_layers",
    "glorot_lr_scales",
    "hard_sigmoid",
    "load_binary",
    "packed_size_bound",
    "paper_table",
    "paper_table_rows",
    "param_groups",
    "save_binary",
    "train_binaryconnect",
    "train_runs",
]
