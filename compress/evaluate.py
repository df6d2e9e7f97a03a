"""Measure every variant the same way: deployed accuracy, simulated accuracy, bytes on disk,
measured latency.  Rules: accuracy is measured on the artifact re-loaded from disk; size is
the bytes of the deployed files; latency is wall-clock on the real runtime (warm-up, then
the median of repeats, thread count recorded), never estimated from FLOPs.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from compress.runtimes import load_predictor
from compress.variants import ArtifactError, Manifest, artifact_bytes, one_line

COLUMNS = ["variant", "stage", "method", "model", "dataset", "seed", "avg_weight_bits", "act_bits", "sparsity",
           "params", "size_bytes", "accuracy", "accuracy_sim", "latency_ms_b1", "latency_ms_b256", "runtime",
           "threads", "notes", "error"]


def set_threads(n: int | None) -> int:
    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return torch.get_num_threads()


def predict_all(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted classes for all of ``x`` using only full batches of ``batch_size``.

    The final partial batch is padded (and the padding discarded) so that compiled runtimes
    see a single static shape.
    """
    preds = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        n = len(xb)
        if n < batch_size:
            xb = torch.cat([xb, xb.new_zeros((batch_size - n, *xb.shape[1:]))])
        out = torch.as_tensor(predict(xb))
        preds.append(out[:n].argmax(1))
    return torch.cat(preds)


def accuracy(predict, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    return float((predict_all(predict, x, batch_size) == y).double().mean().item())


def measure_latency(predict: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, warmup: int = 10,
                    repeats: int = 50) -> dict:
    """Wall-clock latency of one call in milliseconds: median, p10, p90 over ``repeats``."""
    for _ in range(warmup):
        predict(example)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(example)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]
    return {"median_ms": statistics.median(times), "p10_ms": q(0.1), "p90_ms": q(0.9), "repeats": repeats,
            "threads": torch.get_num_threads()}


def evaluate_variant(folder: Path, manifest: Manifest, test_x: torch.Tensor, test_y: torch.Tensor, cfg) -> dict:
    """One row of the variants table."""
    predict = load_predictor(folder, manifest, manifest.deploy)
    acc = accuracy(predict, test_x, test_y, cfg.batch_size)
    acc_sim = None
    if manifest.sim is not None:
        acc_sim = accuracy(load_predictor(folder, manifest, manifest.sim), test_x, test_y, cfg.batch_size)
    lat = {}
    for b in cfg.latency_batches:
        ex = test_x[:b]
        if len(ex) < b:  # tiny test sets: repeat to reach the batch size
            ex = ex.repeat((b + len(ex) - 1) // len(ex), 1, 1, 1)[:b]
        lat[b] = measure_latency(predict, ex, cfg.warmup, cfg.repeats)
    return {
        "variant": manifest.variant, "stage": manifest.stage, "method": manifest.method,
        "model": manifest.model["name"], "dataset": manifest.dataset, "seed": manifest.seed,
        "avg_weight_bits": manifest.avg_weight_bits, "act_bits": manifest.act_bits, "sparsity": manifest.sparsity,
        "params": manifest.params, "size_bytes": artifact_bytes(folder, manifest.deploy),
        "accuracy": acc, "accuracy_sim": acc_sim,
        "latency_ms_b1": lat[1]["median_ms"], "latency_ms_b256": lat[256]["median_ms"],
        "runtime": getattr(predict, "description", manifest.deploy.runtime), "threads": lat[1]["threads"],
        "notes": manifest.notes, "error": None,
    }


def failed_row(variant: str, stage: str, error: str, manifest: Manifest | None = None) -> dict:
    """The table row of a variant that could not be measured: what the manifest says (when it
    could be read), no measurements, and ``error``: the one-line reason."""
    row = {c: None for c in COLUMNS}
    row.update(variant=variant, stage=stage, error=error)
    if manifest is not None:
        row.update(method=manifest.method, model=manifest.model.get("name"), dataset=manifest.dataset, seed=manifest.seed,
                   avg_weight_bits=manifest.avg_weight_bits, act_bits=manifest.act_bits, sparsity=manifest.sparsity,
                   params=manifest.params, runtime=manifest.deploy.runtime, notes=manifest.notes)
    return row


def evaluate_all(found: Sequence[tuple[Path, Manifest]], test_x: torch.Tensor, test_y: torch.Tensor, cfg,
                 on_row: Callable[[dict], None] | None = None, broken: Sequence[ArtifactError] = (),
                 progress: bool = True) -> tuple[list[dict], list[str]]:
    """Measure every variant of ``found`` (see :func:`evaluate_variant`); one that fails does not
    stop the others.

    A variant whose artifact is missing or corrupt (an :class:`ArtifactError` from
    ``load_predictor``), or whose runtime fails while it is measured, becomes a row with no
    measurements and ``error`` = one line naming the variant, the file and the stage that
    rebuilds it.  ``broken`` (unreadable manifests, from :func:`compress.variants.scan`) become
    such rows too.  ``on_row(row)`` is called after each row (progress, tracking).

    Returns ``(rows, failures)``: the rows in stage / variant order and the error lines; the
    caller writes the table and then fails when ``failures`` is not empty, so that a partial
    table is never taken for a complete one.
    """
    # 1. one ordered work list: readable manifests and broken ones, by folder
    work = [(folder, man, None) for folder, man in found] + [(e.path.parent, None, e) for e in broken]
    work.sort(key=lambda w: (w[0].parent.name, w[0].name))
    rows, failures = [], []
    bar = {} if progress else {"disable": True}  # progress=True leaves it to tqdm (and TQDM_DISABLE)
    for folder, man, err in tqdm(work, desc="evaluate variants", **bar):
        # 2. measure, or record why not
        if err is not None:
            row = failed_row(err.variant or folder.name, err.stage or folder.parent.name, str(err))
        else:
            try:
                row = evaluate_variant(folder, man, test_x, test_y, cfg)
            except ArtifactError as e:
                row = failed_row(man.variant, man.stage, str(e), man)
            except Exception as e:  # noqa: BLE001  a runtime that loads but fails to run: the others still count
                msg = one_line(f"{type(e).__name__}: {e}", 200)
                row = failed_row(man.variant, man.stage, f"variant {man.variant}: runtime {man.deploy.runtime!r} failed while "
                                                         f"measuring {folder} ({msg}); rebuild it: dvc repro {man.stage}", man)
        if row["error"]:
            failures.append(row["error"])
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows, failures
