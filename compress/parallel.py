"""Independent jobs (seeds, variants) in forked worker processes, one torch thread each.

``map_jobs(fn, items, workers, threads)`` returns ``[fn(item) for item in items]`` in order.
With ``workers > 1`` the items run in a ``fork`` pool: the children inherit the parent's memory
(training tensors, the model) copy-on-write, so only the item's index and ``fn``'s (small,
picklable) result cross a pipe.  Every job — in the parent or in a child — runs with
``torch.set_num_threads(threads)``, so a job's result does not depend on ``workers``: a job that
seeds itself is bit-identical whether it ran inline or in a pool.  Each result gets the job's
CPU seconds (``time.process_time`` of the process that ran it) through ``on_result``.  Forked workers run one
torch thread each: GNU OpenMP hangs in a child forked after the parent used a parallel region, if
the child opens one (more than one thread), so ``threads > 1`` needs ``workers = 1``.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any, Callable, Sequence

import torch

_JOB: tuple[Callable[[Any], Any], Sequence[Any], int] | None = None  # (fn, items, threads), set before forking


def _run(i: int) -> tuple[int, Any, float, float]:
    fn, items, threads = _JOB
    torch.set_num_threads(threads)
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(items[i])
    return i, out, time.process_time() - c0, time.perf_counter() - w0


def map_jobs(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 1, threads: int = 1,
             on_result: Callable[[int, Any, float, float], None] | None = None) -> list[Any]:
    """``[fn(x) for x in items]``, run by ``workers`` forked processes (1: inline, in order).

    ``on_result(index, result, cpu_seconds, wall_seconds)`` is called in the parent as each job
    finishes (completion order when ``workers > 1``).  An exception in a job is re-raised here.
    """
    global _JOB
    if workers < 1:
        raise ValueError(f"workers = {workers!r} is invalid: must be >= 1")
    if threads < 1:
        raise ValueError(f"threads = {threads!r} is invalid: must be >= 1")
    if workers > 1 and threads > 1:
        # GNU OpenMP cannot run parallel regions in a child forked after the parent ran some: the
        # child hangs (measured here with torch 2.14: a LeNet-5 step with 2 threads never returns)
        raise ValueError(f"threads = {threads} with workers = {workers}: forked workers run 1 torch thread each; "
                         "use threads = 1 (or workers = 1 for a multi-threaded run)")
    saved = torch.get_num_threads()
    _JOB = (fn, list(items), int(threads))
    results: list[Any] = [None] * len(items)
    try:
        if workers == 1 or len(items) <= 1:
            for i in range(len(items)):
                _, out, cpu, wall = _run(i)
                results[i] = out
                if on_result is not None:
                    on_result(i, out, cpu, wall)
        else:
            # 1. fork after _JOB is set, so the children see fn and the items without pickling them
            ctx = mp.get_context("fork")
            with ctx.Pool(min(workers, len(items))) as pool:
                # 2. one item per task, in the given order; results come back as they finish
                for i, out, cpu, wall in pool.imap_unordered(_run, range(len(items)), chunksize=1):
                    results[i] = out
                    if on_result is not None:
                        on_result(i, out, cpu, wall)
    finally:
        _JOB = None
        torch.set_num_threads(saved)
    return results


__all__ = ["map_jobs"]
