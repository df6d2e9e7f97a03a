"""Iterative magnitude pruning and lottery tickets (Frankle & Carbin, ICLR 2019, Algorithm 1).

  1. Randomly initialise f(x; θ0) and keep θ0 (= w0).
  2. Train for j iterations → θj.
  3. Prune p% of the remaining weights of each layer by |θj| (output layer: p/2) → mask m.
  4. Reset the survivors to θ0 (or rewind to θk, the weights at iteration k) → f(x; m ⊙ θ0).
  5. Repeat 2–4 until the target fraction of weights remains.
At every sparsity level two controls are trained like the ticket (paper, Fig. 3/4):
  * ``reinit``: the same mask m with a fresh random initialisation,
  * ``random_mask``: a random mask with the same per-layer counts, initialised from θ0 / θk.
Each training records the early-stop iteration (minimum validation loss) and the test
accuracy of the weights at that iteration.  The test split is read here by design: this is
the paper's figure, and every output says so.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch
import torch.nn as nn

from compress.models import prunable_layers
from compress.prune.magnitude import magnitude_scores, rate_masks
from compress.prune.masks import Masks, apply_masks, counts, dense_state_dict, set_weights
from compress.train import evaluate_model, fit

Data = tuple[torch.Tensor, torch.Tensor]


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


def random_masks(like: Masks, generator: torch.Generator) -> Masks:
    """Uniformly random masks with the same number of kept weights per layer as ``like``."""
    out = {}
    for n, m in like.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[n] = keep.view_as(m)
    return out


def train_and_measure(model: nn.Module, train: Data, val: Data, test: Data, cfg, seed: int,
                      after_step: Callable[[nn.Module, int], None] | None = None) -> dict:
    """Train; return the early-stop iteration (min val loss) and test accuracy at that iteration.

    The weights at the early-stop iteration are kept aside for the test measurement; the
    model itself ends with its final weights (those are what IMP prunes, as in the paper).
    """
    best: dict = {"val_loss": math.inf, "iteration": 0, "state": None, "val_acc": 0.0}
    step = {"it": 0}

    def on_eval(row: dict) -> None:
        if row["val_loss"] < best["val_loss"]:
            best.update(val_loss=row["val_loss"], val_acc=row["val_acc"], iteration=row["iteration"],
                        state=copy.deepcopy(model.state_dict()))

    def _after(m: nn.Module) -> None:
        step["it"] += 1
        if after_step is not None:
            after_step(m, step["it"])

    t0 = time.perf_counter()
    hist = fit(model, train, val, cfg, seed=seed, on_eval=on_eval, after_step=_after, progress=False)
    final_state = copy.deepcopy(model.state_dict())
    _, final_test = evaluate_model(model, *test)
    model.load_state_dict(best["state"])
    _, es_test = evaluate_model(model, *test)
    model.load_state_dict(final_state)
    return {"early_stop_iteration": best["iteration"], "test_acc": es_test, "val_acc": best["val_acc"],
            "val_loss": best["val_loss"], "final_test_acc": final_test, "iterations": hist.iterations,
            "seconds": time.perf_counter() - t0}


def run_lottery(build: Callable[[int], nn.Module], train: Data, val: Data, test: Data, cfg, *, seed: int,
                rate: float = 0.2, output_rate: float = 0.1, target_remaining: float = 0.036,
                rewind_iteration: int = 0, controls: tuple[str, ...] = ("reinit", "random_mask"),
                controls_max_remaining: float = 1.0,
                on_result: Callable[[dict], None] | None = None,
                on_ticket: Callable[[int, nn.Module], None] | None = None) -> list[dict]:
    """IMP with resetting (or rewinding) plus controls, for one seed.

    ``build(init_seed)`` returns a freshly initialised model.  Returns one row per training:
    ``{seed, round, kind, remaining, early_stop_iteration, test_acc, ...}`` where ``kind`` is
    ``ticket`` (round 0 = the dense network), ``reinit`` or ``random_mask`` and ``remaining``
    the fraction of prunable weights left; controls are trained at the levels with at most
    ``controls_max_remaining`` of the weights left.  ``on_ticket(round, model)`` sees each trained
    ticket (masked model, final weights).
    """
    unknown = set(controls) - {"reinit", "random_mask"}
    if unknown:
        raise ValueError(f"controls = {sorted(unknown)} unknown; allowed: reinit, random_mask")
    # 1. initialise, keep θ0
    model = build(seed)
    w0 = dense_state_dict(model)
    rates = layer_rates(model, rate, output_rate)
    n_rounds = rounds_to_target(model, rate, output_rate, target_remaining)
    g = torch.Generator().manual_seed(seed + 7919)
    rows: list[dict] = []

    def record(r: int, kind: str, m: nn.Module, res: dict) -> None:
        zeros, total = counts(m)
        row = {"seed": seed, "round": r, "kind": kind, "remaining": 1 - zeros / total, **res}
        rows.append(row)
        if on_result is not None:
            on_result(row)

    # 2. train the dense network (round 0), capturing θk for rewinding
    rewind = {"state": w0}

    def capture(m: nn.Module, it: int) -> None:
        if it == rewind_iteration:
            rewind["state"] = dense_state_dict(m)

    record(0, "ticket", model, train_and_measure(model, train, val, test, cfg, seed,
                                                 after_step=capture if rewind_iteration else None))
    if on_ticket is not None:
        on_ticket(0, model)
    masks: Masks | None = None
    for r in range(1, n_rounds + 1):
        # 3. prune p% of the remaining weights per layer by the magnitude of the trained weights
        masks = rate_masks(magnitude_scores(model, list(rates)), masks, rates)
        # 4. reset survivors to θ0 (or θk) and retrain
        model = build(seed)
        apply_masks(model, masks)
        set_weights(model, rewind["state"])
        record(r, "ticket", model, train_and_measure(model, train, val, test, cfg, seed))
        if on_ticket is not None:
            on_ticket(r, model)
        zeros, total = counts(model)
        for kind in controls if 1 - zeros / total <= controls_max_remaining + 1e-12 else ():
            if kind == "reinit":  # same mask, a new random initialisation
                ctrl = build(seed + 1000 * r + 1)
                apply_masks(ctrl, masks)
            else:  # random mask of the same per-layer sparsity, same initial weights as the ticket
                ctrl = build(seed)
                apply_masks(ctrl, random_masks(masks, g))
                set_weights(ctrl, rewind["state"])
            record(r, kind, ctrl, train_and_measure(ctrl, train, val, test, cfg, seed))
    return rows


__all__ = ["layer_rates", "remaining_after", "rounds_to_target", "random_masks", "train_and_measure", "run_lottery"]
