"""Measure every variant the same way: deployed accuracy, simulated accuracy, bytes on disk,
measured latency.  Rules: accuracy is measured on the artifact re-loaded from disk; size is
the bytes of the deployed files; latency is wall-clock on the real runtime (warm-up, then
the median of repeats, thread count recorded), never estimated from FLOPs.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from compress.runtimes import load_predictor
from compress.variants import Manifest, artifact_bytes

COLUMNS = ["variant", "stage", "method", "model", "dataset", "seed", "avg_weight_bits", "act_bits", "sparsity",
           "params", "size_bytes", "accuracy", "accuracy_sim", "latency_ms_b1", "latency_ms_b256", "runtime",
           "threads", "notes"]


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
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
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
        "notes": manifest.notes,
    }
