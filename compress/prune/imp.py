"""Iterative magnitude pruning and lottery tickets (Frankle & Carbin, ICLR 2019, Algorithm 1).

  1. Randomly initialise f(x; θ0) and keep θ0 (= w0).
  2. Train to the validation early-stop point → θj (j = the iteration training stopped at).
  3. Prune p% of the remaining weights of each layer by |θj| (output layer: p/2) → mask m.
  4. Reset the survivors to θ0 (or rewind to θk, the weights at iteration k) → f(x; m ⊙ θ0).
  5. Repeat 2–4 until the target fraction of weights remains.
Controls (paper, Fig. 3/4), trained like the ticket at chosen rounds:
  * ``reinit``: the same mask m with a fresh random initialisation,
  * ``random_mask``: a random mask with the same per-layer counts, initialised from θ0 / θk.

Early stopping (:func:`train_to_early_stop`): validation every ``eval_every`` iterations; the
early-stop iteration is the one of minimum validation loss; training stops once the validation
loss has not improved for ``patience`` iterations, or at ``max_iterations`` (a safety budget:
every row says ``budget_hit`` when the budget, not the patience rule, ended a training).  Test
accuracy is read with the weights of the early-stop iteration — the test split is read here by
design: this is the paper's figure, and every output says so.

Masks are applied by zeroing the pruned weights once and their gradients after every backward
pass; with Adam/SGD (with or without weight decay) a weight whose value, gradient and optimizer
state are zero stays exactly zero, so this trains the same function as a forward-pass mask at a
fraction of the cost.  Independent trainings (seeds, controls) run in worker processes with one
thread each (:func:`run_imp`); every training is a pure function of its inputs, so the rows are
bit-identical whatever the number of workers or the order in which trainings finish.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.models import build_model, prunable_layers
from compress.parallel import executor
from compress.prune.magnitude import rate_masks
from compress.prune.masks import Masks, apply_masks
from compress.train import evaluate_model

Data = tuple[torch.Tensor, torch.Tensor]
State = dict[str, torch.Tensor]
KINDS = ("ticket", "reinit", "random_mask")
CONTROLS = ("reinit", "random_mask")


# ----------------------------------------------------------------------------- regimes
# The paper's LeNet-300-100 setting (Frankle & Carbin 2019, Fig. 1/3/4 and Appendix): Adam 1.2e-3,
# batch 60, Glorot init, validation every 100 iterations, 20 % per round per layer (output 10 %).
# ``DEFAULT``: every training stops at its validation early stop with patience 2,000 iterations
# (20 evaluations: the validation loss of this regime fluctuates by ±15 % between evaluations, and
# a shorter patience stops the dense net at an early dip: measured dense test accuracy at the early
# stop, seeds 0-2, 97.22 % at P = 1,000, 97.42 % at 1,500, 97.62 % at 2,000); the 20,000-iteration
# budget is a safety net, flagged when it binds.  3 seeds; the reinitialised control at the 5.6 %
# level (round 13), inside the claim's <= 10 % range and sparse enough that the control's deficit
# is clear (0.75 pp there vs 0.43 pp at 8.7 %, where the control trains to iteration ~7,000).
# ``PAPER``: 50,000 iterations per training, the early-stop iteration the minimum over all of them
# (no patience), both controls at every level, 5 seeds as the paper's figures.
def _trainer(preset: str) -> dict[str, Any]:
    """A ``lottery.preset``'s training knobs (compress.prune.config.PRESETS, the one place they are written)."""
    from compress.prune.config import PRESETS

    p = PRESETS[preset]
    return {"batch_size": p["batch_size"], "optimizer": p["optimizer"], "lr": p["lr"], "weight_decay": 0.0,
            "eval_every": p["eval_every"], "max_iterations": p["iterations"], "patience": p["patience"]}


DEFAULT: dict[str, Any] = {
    "seeds": [0, 1, 2], "rate": 0.2, "output_rate": 0.1, "target_remaining": 0.036,
    "controls_at": {"reinit": [0.056]},
    "trainer": _trainer("default"),
}
PAPER: dict[str, Any] = {
    "seeds": [0, 1, 2, 3, 4], "rate": 0.2, "output_rate": 0.1, "target_remaining": 0.036,
    "controls_at": {"reinit": None, "random_mask": None},
    "trainer": _trainer("paper"),
}


# ----------------------------------------------------------------------------- schedule arithmetic
def layer_rates(model: nn.Module, rate: float, output_rate: float) -> dict[str, float]:
    """p for every prunable layer, p_out for the last one (the output layer)."""
    names = list(prunable_layers(model))
    return {n: (output_rate if n == names[-1] else rate) for n in names}


def remaining_after(model: nn.Module, rate: float, output_rate: float, rounds: int) -> float:
    """Fraction of prunable weights left after ``rounds`` IMP rounds (same rounding as ``rate_masks``)."""
    sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    rates = layer_rates(model, rate, output_rate)
    alive = dict(sizes)
    for _ in range(rounds):
        alive = {n: a - round(rates[n] * a) for n, a in alive.items()}
    return sum(alive.values()) / sum(sizes.values())


def rounds_to_target(model: nn.Module, rate: float, output_rate: float, target_remaining: float) -> int:
    """Number of pruning rounds until at most ``target_remaining`` of the weights remain."""
    r = 0
    while remaining_after(model, rate, output_rate, r) > target_remaining + 1e-12:
        r += 1
        if r > 1000:
            raise ValueError("target_remaining is not reachable with these rates")
    return r


def control_rounds(model: nn.Module, rate: float, output_rate: float, n_rounds: int, *,
                   at_remaining: Iterable[float] | None = None, max_remaining: float = 1.0) -> list[int]:
    """Rounds (1..n_rounds) that get a control training.

    ``at_remaining``: for each listed fraction, the round whose remaining fraction is closest to it
    (e.g. [0.087, 0.036] → rounds 11 and 15 of LeNet-300-100 at 20 %/10 %); otherwise every round
    with at most ``max_remaining`` of the weights left (1.0: every round, as in the paper).
    """
    levels = {r: remaining_after(model, rate, output_rate, r) for r in range(1, n_rounds + 1)}
    if at_remaining is None:
        return [r for r, f in levels.items() if f <= max_remaining + 1e-12]
    picked = {min(levels, key=lambda r: (abs(math.log(levels[r] / f)), r)) for f in at_remaining if f > 0}
    return sorted(picked)


def random_masks(like: Masks, generator: torch.Generator) -> Masks:
    """Uniformly random masks with the same number of kept weights per layer as ``like``."""
    out = {}
    for n, m in like.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[n] = keep.view_as(m)
    return out


def masked_fraction(masks: Masks | None, model: nn.Module) -> float:
    """Fraction of the prunable weights kept by ``masks`` (layers without a mask count as dense)."""
    sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    masks = masks or {}
    kept = sum(int(masks[n].sum()) if n in masks else s for n, s in sizes.items())
    return kept / sum(sizes.values())


@dataclass(frozen=True)
class ModelBuilder:
    """A picklable ``build(init_seed)``: seeds torch's global RNG, then builds the registry model."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, init_seed: int) -> nn.Module:
        torch.manual_seed(init_seed)
        return build_model(self.name, self.input_shape, self.num_classes, **self.kwargs)


# ----------------------------------------------------------------------------- one training
def _optimizer(params: list[nn.Parameter], cfg) -> torch.optim.Optimizer:
    """Adam/AdamW use the fused CPU kernel (one pass over all parameters, ~0.6x the step time of the
    default foreach kernel for LeNet-300-100 at batch 60); SGD the foreach one."""
    wd = float(getattr(cfg, "weight_decay", 0.0))
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd, fused=True)
    if cfg.optimizer == "sgd":
        m = float(getattr(cfg, "momentum", 0.0))
        return torch.optim.SGD(params, lr=cfg.lr, momentum=m, weight_decay=wd, nesterov=m > 0)
    raise ValueError(f"lottery.optimizer = {cfg.optimizer!r} is unknown; allowed: adam, adamw, sgd")


class MLPStep:
    """One Adam step of a ``Flatten → (Linear → ReLU)* → Linear`` net with hand-written backprop.

    The same arithmetic as autograd + ``torch.optim.Adam(fused=True)`` up to rounding, ~25–35 %
    faster per step for LeNet-300-100 at batch 60 on one core: no autograd graph, gradients
    written into preallocated buffers, masks applied to the weight gradients, and the fused Adam
    kernel called directly (``torch._fused_adam_``, the kernel behind ``fused=True``; a test pins it
    to the optimizer's result).  Mean cross-entropy loss, as ``F.cross_entropy``:

      forward   a_0 = x,  h_l = a_{l-1} W_lᵀ + b_l,  a_l = relu(h_l),  z = h_L
      backward  d_L = (softmax(z) − onehot(y)) / B
                ∂W_l = d_lᵀ a_{l-1},  ∂b_l = Σ_batch d_l,  d_{l-1} = (d_l W_l) ⊙ [a_{l-1} > 0]
    """

    def __init__(self, model: nn.Module, masks: Masks | None, cfg):
        layers = list(model.net)
        self.linears: list[nn.Linear] = layers[1::2]
        self.names = {id(m): n for n, m in prunable_layers(model).items()}
        self.params = [t for lin in self.linears for t in (lin.weight, lin.bias)]
        self.params = [p.detach() for p in self.params]
        self.grads = [torch.zeros_like(p) for p in self.params]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32) for _ in self.params]
        masks = masks or {}
        self.grad_masks = [(self.grads[2 * i], masks[self.names[id(lin)]].to(self.params[0].dtype))
                           for i, lin in enumerate(self.linears) if self.names[id(lin)] in masks]
        self.kernel = torch._fused_adamw_ if cfg.optimizer == "adamw" else torch._fused_adam_
        self.hyper = {"lr": float(cfg.lr), "beta1": 0.9, "beta2": 0.999, "weight_decay": float(getattr(cfg, "weight_decay", 0.0)),
                      "eps": 1e-8, "amsgrad": False, "maximize": False}
        self.eye = torch.eye(self.linears[-1].out_features)

    @staticmethod
    def supports(model: nn.Module, cfg) -> bool:
        """Plain MLPs (compress.models.MLP without batch norm/dropout, e.g. LeNet-300-100) under Adam/AdamW."""
        net = getattr(model, "net", None)
        if not isinstance(net, nn.Sequential) or cfg.optimizer not in ("adam", "adamw") or len(net) < 2:
            return False
        layers = list(net)
        if not isinstance(layers[0], nn.Flatten) or len(layers) % 2:
            return False
        shape_ok = all(isinstance(m, nn.Linear) and m.bias is not None for m in layers[1::2]) and \
            all(isinstance(m, nn.ReLU) for m in layers[2::2])
        return shape_ok and hasattr(torch, "_fused_adam_") and all(p.dtype == torch.float32 for p in model.parameters())

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        acts = [x.reshape(len(x), -1)]  # (B, D0)
        # 1. forward, keeping every layer's input
        for lin in self.linears[:-1]:
            acts.append(torch.addmm(lin.bias, acts[-1], lin.weight.t()).clamp_min_(0))  # (B, D_l)
        last = self.linears[-1]
        z = torch.addmm(last.bias, acts[-1], last.weight.t())  # (B, classes)
        # 2. backward of the mean cross-entropy, layer by layer into the gradient buffers
        d = torch.softmax(z, 1).sub_(self.eye[y]).div_(len(y))  # (B, classes)
        for i in range(len(self.linears) - 1, -1, -1):
            torch.mm(d.t(), acts[i], out=self.grads[2 * i])  # (D_l, D_{l-1})
            torch.sum(d, 0, out=self.grads[2 * i + 1])
            if i:
                d = torch.mm(d, self.linears[i].weight).mul_(acts[i] > 0)  # (B, D_{l-1})
        for g, m in self.grad_masks:
            g.mul_(m)
        # 3. Adam (the fused kernel, as torch.optim.Adam(fused=True) calls it)
        torch._foreach_add_(self.steps, 1)
        self.kernel(self.params, self.grads, self.exp_avg, self.exp_avg_sq, [], self.steps, **self.hyper)


def _plain_state(model: nn.Module) -> State:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_to_early_stop(model: nn.Module, train: Data, val: Data, test: Data | None, cfg, *, seed: int,
                        masks: Masks | None = None, capture_iteration: int = 0,
                        on_eval: Callable[[dict, nn.Module], None] | None = None) -> tuple[dict, dict]:
    """Train ``model`` (plain, unmasked module) under ``masks`` until the validation early stop.

    ``cfg`` needs batch_size, optimizer, lr, eval_every, max_iterations and optionally patience
    (None: no patience rule, train ``max_iterations``), weight_decay, momentum.  The minibatch
    order depends on ``seed`` only (one epoch = one seeded permutation, last partial batch kept),
    so every training of a seed sees the same data stream, as in the paper.  ``on_eval(row, model)``
    sees every validation (``iteration``, ``val_loss``, ``val_acc``) with the model at that point.

    Returns ``(result, states)``: ``result`` has ``early_stop_iteration``
    (minimum validation loss), ``iterations`` (where training stopped), ``budget_hit`` (the
    budget, not the patience rule, stopped it), ``val_loss``/``val_acc``/``test_acc`` at the
    early-stop iteration, ``seconds`` (wall) and ``cpu_seconds`` (this process); ``states`` holds
    ``final`` (the weights where training stopped: what IMP prunes, Algorithm 1 step 3),
    ``early_stop`` (the weights of the early-stop iteration, whose test accuracy is reported) and
    ``captured`` (after ``capture_iteration`` steps, for rewinding; None if never reached).
    """
    eval_every, budget = int(cfg.eval_every), int(cfg.max_iterations)
    patience = getattr(cfg, "patience", None)
    if eval_every < 1 or budget < 1:
        raise ValueError(f"eval_every = {eval_every} and max_iterations = {budget} must be >= 1")
    t0, c0 = time.perf_counter(), time.process_time()
    layers = prunable_layers(model)
    # 1. masks: zero the pruned weights now and their gradients after every backward pass
    grad_masks: list[tuple[torch.Tensor, torch.Tensor]] = []
    if masks:
        with torch.no_grad():
            for n, m in masks.items():
                w = layers[n].weight
                fm = m.to(dtype=w.dtype, device=w.device)
                w.mul_(fm)
                grad_masks.append((w, fm))
    fast = MLPStep(model, masks, cfg) if MLPStep.supports(model, cfg) else None
    opt = None if fast else _optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    g = torch.Generator().manual_seed(seed)
    x, y = train
    n = len(y)
    best = {"val_loss": math.inf, "val_acc": 0.0, "iteration": 0, "state": _plain_state(model)}
    captured = _plain_state(model) if capture_iteration == 0 else None
    it, stop = 0, False
    model.train()
    # 2. minibatch Adam steps; validation on a fixed grid of iterations
    while not stop:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, cfg.batch_size):
            sel = perm[i : i + cfg.batch_size]
            if fast is not None:
                fast(x[sel], y[sel])
            else:
                loss = F.cross_entropy(model(x[sel]), y[sel])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for w, fm in grad_masks:
                    w.grad.mul_(fm)
                opt.step()
            it += 1
            if it == capture_iteration:
                captured = _plain_state(model)
            if it % eval_every == 0 or it >= budget:
                vl, va = evaluate_model(model, *val)
                if on_eval is not None:
                    on_eval({"iteration": it, "val_loss": vl, "val_acc": va}, model)
                if vl < best["val_loss"]:
                    best.update(val_loss=vl, val_acc=va, iteration=it, state=_plain_state(model))
                # 3. the patience rule, under the iteration budget
                if (patience is not None and it - best["iteration"] >= patience) or it >= budget:
                    stop = True
                    break
    budget_hit = patience is not None and it - best["iteration"] < patience
    final = _plain_state(model)
    # 4. test accuracy with the weights of the early-stop iteration (the paper's figure)
    test_acc = math.nan
    if test is not None:
        model.load_state_dict(best["state"])
        test_acc = evaluate_model(model, *test)[1]
        model.load_state_dict(final)
    model.eval()
    res = {"early_stop_iteration": best["iteration"], "iterations": it, "budget_hit": bool(budget_hit),
           "test_acc": test_acc, "val_acc": best["val_acc"], "val_loss": best["val_loss"],
           "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    return res, {"final": final, "early_stop": best["state"], "captured": captured}


def train_and_measure(model: nn.Module, train: Data, val: Data, test: Data, cfg, seed: int,
                      masks: Masks | None = None) -> dict:
    """:func:`train_to_early_stop` leaving ``model`` with its final weights; returns the result row."""
    return train_to_early_stop(model, train, val, test, cfg, seed=seed, masks=masks)[0]


# ----------------------------------------------------------------------------- tasks and workers
_WORKER: dict[str, Any] = {}


def _init_worker(build: Callable[[int], nn.Module], train: Data, val: Data, test: Data, cfg) -> None:
    _WORKER.update(build=build, train=train, val=val, test=test, cfg=cfg)


def _run_task(task: dict) -> dict:
    """One training: build from ``init_seed``, optionally load ``start`` weights, apply ``masks``, train."""
    w = _WORKER
    model = w["build"](task["init_seed"])
    if task.get("start") is not None:
        model.load_state_dict(task["start"])
    res, states = train_to_early_stop(model, w["train"], w["val"], w["test"], w["cfg"], seed=task["seed"],
                                      masks=task.get("masks"), capture_iteration=task.get("capture", 0))
    out = {"task": {k: v for k, v in task.items() if k in ("seed", "round", "kind")}, "result": res}
    if task["kind"] == "ticket":  # the next round prunes the final weights; the caller may keep both
        out["states"] = {"final": states["final"], "early_stop": states["early_stop"]}
        if task.get("capture"):
            out["captured"] = states["captured"]
    return out


def _order(row: dict) -> tuple:
    return row["seed"], row["round"], KINDS.index(row["kind"])


def run_imp(build: Callable[[int], nn.Module], train: Data, val: Data, test: Data, cfg, *, seeds: Sequence[int],
            rate: float = 0.2, output_rate: float = 0.1, target_remaining: float = 0.036, rewind_iteration: int = 0,
            controls: dict[str, Sequence[int]] | None = None, workers: int = 1, threads: int | None = 1,
            on_result: Callable[[dict], None] | None = None,
            on_ticket: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """IMP with resetting (or rewinding) for every seed, plus controls at the given rounds.

    ``build(init_seed)`` returns a freshly initialised model (picklable when ``workers`` > 1,
    e.g. :class:`ModelBuilder`); ``controls`` maps a control kind to the rounds it is trained at
    (see :func:`control_rounds`).  ``workers`` processes with ``threads`` torch threads each run
    the trainings as soon as their inputs exist (round r+1 needs round r of its seed; a control
    at round r needs the mask of round r).

    Returns one row per training, sorted by (seed, round, kind): ``{seed, round, kind, remaining,
    early_stop_iteration, iterations, budget_hit, test_acc, val_acc, val_loss, seconds}`` where
    ``kind`` is ``ticket`` (round 0 = the dense network), ``reinit`` or ``random_mask`` and
    ``remaining`` the fraction of prunable weights kept.  ``on_result(row)`` sees each row as it
    finishes (completion order); ``on_ticket(seed, round, ticket)`` each trained ticket, with
    ``ticket = {"final": state, "early_stop": state, "masks": masks}`` (states: plain state dicts,
    pruned weights exactly zero; masks: ``{}`` for the dense round 0).
    """
    controls = {k: sorted(set(v)) for k, v in (controls or {}).items() if v}
    unknown = set(controls) - set(CONTROLS)
    if unknown:
        raise ValueError(f"controls = {sorted(unknown)} unknown; allowed: {', '.join(CONTROLS)}")
    probe = build(seeds[0])
    rates = layer_rates(probe, rate, output_rate)
    n_rounds = rounds_to_target(probe, rate, output_rate, target_remaining)
    if rewind_iteration and rewind_iteration >= int(cfg.max_iterations):
        raise ValueError(f"rewind_iteration = {rewind_iteration} must be below max_iterations = {cfg.max_iterations}")
    # 1. θ0 per seed; the dense run (round 0) also captures θk when rewinding
    w0 = {s: _plain_state(build(s)) for s in seeds}
    start: dict[int, State] = dict(w0)
    masks: dict[tuple[int, int], Masks] = {}
    rows: list[dict] = []
    pool = executor(workers, threads, _init_worker, (build, train, val, test, cfg))
    pending: set = set()

    def submit(task: dict) -> None:
        pending.add(pool.submit(_run_task, task))

    def submit_round(seed: int, r: int) -> None:
        m = masks.get((seed, r))
        submit({"kind": "ticket", "seed": seed, "round": r, "init_seed": seed, "start": start[seed], "masks": m,
                "capture": rewind_iteration if r == 0 else 0})
        for kind, rounds in controls.items():
            if r not in rounds:
                continue
            if kind == "reinit":  # same mask, a new random initialisation
                submit({"kind": kind, "seed": seed, "round": r, "init_seed": seed + 1000 * r + 1, "masks": m})
            else:  # random mask of the same per-layer counts, same initial weights as the ticket
                gen = torch.Generator().manual_seed(7919 + 1009 * seed + r)
                submit({"kind": kind, "seed": seed, "round": r, "init_seed": seed, "start": start[seed],
                        "masks": random_masks(m, gen)})

    from concurrent.futures import FIRST_COMPLETED, wait

    try:
        for s in seeds:
            submit_round(s, 0)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: _order({**f.result()["task"]})):
                pending.discard(f)
                out = f.result()
                t = out["task"]
                seed, r = t["seed"], t["round"]
                m = masks.get((seed, r))
                row = {**t, "remaining": masked_fraction(m, probe), **out["result"]}
                rows.append(row)
                if on_result is not None:
                    on_result(row)
                if t["kind"] != "ticket":
                    continue
                if r == 0 and rewind_iteration:
                    start[seed] = out["captured"]
                if on_ticket is not None:
                    on_ticket(seed, r, {**out["states"], "masks": m or {}})
                if r < n_rounds:
                    # 2. prune p% of the remaining weights per layer by |θj| of the final weights
                    scores = {n: out["states"]["final"][f"{n}.weight"].abs() for n in rates}
                    masks[(seed, r + 1)] = rate_masks(scores, m, rates)
                    # 3. reset the survivors to θ0 (θk) and train round r + 1 (and its controls)
                    submit_round(seed, r + 1)
    finally:
        pool.shutdown(cancel_futures=True)
        _WORKER.clear()
    return sorted(rows, key=_order)


def run_lottery(build: Callable[[int], nn.Module], train: Data, val: Data, test: Data, cfg, *, seed: int,
                rate: float = 0.2, output_rate: float = 0.1, target_remaining: float = 0.036,
                rewind_iteration: int = 0, controls: tuple[str, ...] = ("reinit", "random_mask"),
                controls_max_remaining: float = 1.0,
                on_result: Callable[[dict], None] | None = None,
                on_ticket: Callable[[int, nn.Module], None] | None = None) -> list[dict]:
    """One seed in this process (the pre-``run_imp`` interface): controls at every level with at most
    ``controls_max_remaining`` of the weights left; ``on_ticket(round, model)`` sees each trained
    ticket as a masked model (``torch.nn.utils.prune`` masks) holding its final weights."""
    unknown = set(controls) - set(CONTROLS)
    if unknown:
        raise ValueError(f"controls = {sorted(unknown)} unknown; allowed: {', '.join(CONTROLS)}")
    probe = build(seed)
    n_rounds = rounds_to_target(probe, rate, output_rate, target_remaining)
    rounds = control_rounds(probe, rate, output_rate, n_rounds, max_remaining=controls_max_remaining)

    def ticket(s: int, r: int, t: dict) -> None:
        if on_ticket is not None:
            model = build(s)
            model.load_state_dict(t["final"])
            on_ticket(r, apply_masks(model, t["masks"]) if t["masks"] else model)

    return run_imp(build, train, val, test, cfg, seeds=[seed], rate=rate, output_rate=output_rate,
                   target_remaining=target_remaining, rewind_iteration=rewind_iteration,
                   controls={k: rounds for k in controls}, workers=1, threads=None, on_result=on_result,
                   on_ticket=ticket)


__all__ = [
    "CONTROLS",
    "DEFAULT",
    "KINDS",
    "PAPER",
    "MLPStep",
    "ModelBuilder",
    "control_rounds",
    "layer_rates",
    "masked_fraction",
    "random_masks",
    "remaining_after",
    "rounds_to_target",
    "run_imp",
    "run_lottery",
    "train_and_measure",
    "train_to_early_stop",
]
