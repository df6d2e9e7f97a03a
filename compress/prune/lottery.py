"""The lottery-ticket experiment as the ``lottery`` stage runs it: a ``lottery`` params section →
the IMP trainings of every seed with their controls (:func:`compress.prune.imp.run_imp`) → the
per-round and summary tables, the claim check, the ticket variant and the metrics record.

The test split is read by design (the paper's figure is test accuracy at the early-stop
iteration); the ticket chosen as a variant is picked on validation accuracy, never on test.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from compress.parallel import default_workers
from compress.prune.imp import ModelBuilder, control_rounds, rounds_to_target, run_imp
from compress.prune.report import claim, summarize
from compress.tables import write_csv

Data = tuple[torch.Tensor, torch.Tensor]
NOTE = "reads the test split: test accuracy at the early-stop iteration is the paper's figure (Frankle & Carbin 2019)"


@dataclass
class Plan:
    """What a ``lottery`` section will train: the rounds, the control rounds, the trainings, the workers."""

    build: ModelBuilder
    trainer: Any
    n_rounds: int
    controls: dict[str, list[int]]
    trainings: int
    workers: int

    def describe(self, C) -> str:
        t = self.trainer
        stop = f"patience {t.patience} it (budget {t.max_iterations})" if t.patience else f"{t.max_iterations} it, ES = argmin"
        ctrl = ", ".join(f"{k} at rounds {v}" for k, v in self.controls.items()) or "no controls"
        return (f"{C.model}, preset {C.preset}: {stop}, eval every {t.eval_every}; {self.n_rounds} rounds, {ctrl}; "
                f"{self.trainings} trainings on {self.workers} worker(s)")

    def title(self, C, dataset: str) -> str:
        t = self.trainer
        stop = f"patience {t.patience}" if t.patience else f"{t.max_iterations} it/training"
        return f"IMP on {C.model} ({dataset}, preset {C.preset}, {stop}, eval every {t.eval_every})"


@dataclass
class Result:
    rows: list[dict]
    tickets: dict[int, dict] = field(default_factory=dict)  # round -> {"early_stop", "final", "masks"} of the first seed
    summary: pd.DataFrame | None = None
    claim: dict | None = None


def plan(C, spec: dict) -> Plan:
    build = ModelBuilder(spec["name"], tuple(spec["input_shape"]), spec["num_classes"], dict(spec["kwargs"]))
    probe = build(0)
    rate, orate = C.rate, C.effective_output_rate
    n_rounds = rounds_to_target(probe, rate, orate, C.target_remaining)
    rounds = control_rounds(probe, rate, orate, n_rounds, at_remaining=C.controls_at, max_remaining=C.controls_max_remaining)
    controls = {k: rounds for k in C.controls} if rounds else {}
    trainings = len(C.seeds) * (1 + n_rounds + sum(len(v) for v in controls.values()))
    return Plan(build, C.trainer(), n_rounds, controls, trainings, C.workers or default_workers(trainings, len(C.seeds)))


def run(C, p: Plan, train: Data, val: Data, test: Data, on_result: Callable[[dict], None] | None = None) -> Result:
    """Every training of the plan; keeps the first seed's tickets (weights at their early stop) for the variant."""
    res = Result(rows=[])

    def on_ticket(seed: int, rnd: int, t: dict) -> None:
        if seed == C.seeds[0]:
            res.tickets[rnd] = t

    res.rows = run_imp(p.build, train, val, test, p.trainer, seeds=C.seeds, rate=C.rate, output_rate=C.effective_output_rate,
                       target_remaining=C.target_remaining, rewind_iteration=C.rewind_iteration, controls=p.controls,
                       workers=p.workers, threads=C.threads, on_result=on_result, on_ticket=on_ticket)
    res.summary = summarize(res.rows)
    res.claim = claim(res.summary)
    return res


def write_tables(res: Result, rounds_csv: str | Path, summary_csv: str | Path) -> None:
    """``rounds.csv``: one row per training (seed, round, kind, % remaining, early stop, iterations,
    budget hit, accuracies, seconds); ``summary.csv``: mean / std / 95 % CI / min / max over seeds."""
    write_csv(rounds_csv, pd.DataFrame(res.rows).assign(remaining_pct=lambda d: 100 * d["remaining"]))
    write_csv(summary_csv, res.summary, float_format="%.6g")


def pick_ticket(res: Result, first_seed: int) -> dict:
    """The sparsest ticket of the first seed whose validation accuracy matches its dense run (chosen on val)."""
    s0 = [r for r in res.rows if r["seed"] == first_seed and r["kind"] == "ticket"]
    ok = [r for r in s0 if r["val_acc"] >= s0[0]["val_acc"]] or s0[:1]
    return min(ok, key=lambda r: r["remaining"])


def export_ticket(folder: Path, C, p: Plan, res: Result, spec: dict, dataset: str) -> dict:
    """The picked ticket, weights at its early-stop iteration, as a compact sparse variant."""
    from compress.prune.export import write_sparse_variant

    row = pick_ticket(res, C.seeds[0])
    model = p.build(C.seeds[0])
    model.load_state_dict(res.tickets[row["round"]]["early_stop"])
    stop = f"patience {p.trainer.patience}" if p.trainer.patience else f"argmin over {p.trainer.max_iterations} it"
    write_sparse_variant(folder, model, folder.name, "lottery", "lottery-ticket", spec, dataset, C.seeds[0],
                         round(1 - row["remaining"], 6), extra={"round": row["round"], "early_stop_iteration": row["early_stop_iteration"]},
                         notes=f"IMP round {row['round']} ticket (sparsest with val acc >= dense, chosen on val); weights at "
                               f"the early-stop iteration (min val loss, {stop}); decoded to dense at load")
    return row


def metrics(C, p: Plan, res: Result) -> dict:
    """The stage's metrics record: the regime, the controls, budget hits, the claim check."""
    levels = {r["round"]: round(100 * r["remaining"], 3) for r in res.rows if r["kind"] == "ticket" and r["seed"] == C.seeds[0]}
    t = p.trainer
    return {"reads_test_split": True, "note": NOTE, "model": C.model, "preset": C.preset, "seeds": C.seeds,
            "rate": C.rate, "output_rate": C.effective_output_rate, "rewind_iteration": C.rewind_iteration,
            "rounds": p.n_rounds, "trainings": len(res.rows), "patience": t.patience, "eval_every": t.eval_every,
            "max_iterations": t.max_iterations, "trainer": vars(t),
            "controls": {k: [levels[r] for r in v] for k, v in p.controls.items()},
            "budget_hits": int(sum(bool(r["budget_hit"]) for r in res.rows)), "claim": res.claim}


__all__ = ["NOTE", "Plan", "Result", "export_ticket", "metrics", "pick_ticket", "plan", "run", "write_tables"]
