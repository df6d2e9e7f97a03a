"""Independent jobs (seeds, variants, trainings) in worker processes, one torch thread each.

On a few CPU cores, small nets train faster as one process per core than as one process with
several intra-op threads, and a job in a single-threaded process gives the same bits whatever the
machine's core count or the order in which workers pick jobs.  Two ways to fan out:

* ``map_jobs(fn, items, workers, threads)`` returns ``[fn(item) for item in items]`` in order,
  the items run in a ``fork`` pool: the children inherit the parent's memory (training tensors,
  the model) copy-on-write, so only the item's index and ``fn``'s (small, picklable) result cross
  a pipe.  For short jobs on data the parent already holds (variant fine-tunes, OBD rounds).
  Forked workers run one torch thread each: GNU OpenMP hangs in a child forked after the parent
  used a parallel region if the child opens one, so ``threads > 1`` needs ``workers = 1``.
  Once a process has run ``torch.compile`` (the PT2E and torch-compile deploy engines do), autograd
  refuses to run in its forked children ("Unable to handle autograd's threading in combination
  with fork-based multiprocessing"); ``map_jobs`` probes for that with one tiny forked backward and
  then runs the jobs inline, in order, with a warning: same results, one core.
* ``executor(workers, threads, initializer, initargs)`` returns a ``concurrent.futures`` executor
  of ``spawn``ed processes (no fork hazards, any thread count), or an in-process stand-in for
  ``workers <= 1``.  For long trainings (lottery rounds, BinaryConnect runs) whose datasets travel
  once, through shared memory, to the ``initializer``.

Every job runs with ``torch.set_num_threads(threads)`` in both, so a job that seeds itself is
bit-identical whether it ran inline or in a pool.  ``default_workers(n)``: one worker per core.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

import torch

_JOB: tuple[Callable[[Any], Any], Sequence[Any], int] | None = None  # (fn, items, threads), set before forking


def _run(i: int) -> tuple[int, Any, float, float]:
    fn, items, threads = _JOB
    torch.set_num_threads(threads)
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(items[i])
    return i, out, time.process_time() - c0, time.perf_counter() - w0


def _probe_child() -> None:
    torch.set_num_threads(1)
    x = torch.ones(2, requires_grad=True)
    (x * 2).sum().backward()


def fork_autograd_ok() -> bool:
    """Whether a child forked now can run autograd (False after ``torch.compile`` in this process)."""
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only, never return into the caller's code
        code = 1
        try:
            _probe_child()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


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
    if workers > 1 and len(items) > 1 and not fork_autograd_ok():
        warnings.warn(f"map_jobs: autograd cannot run in forked workers of this process (it ran torch.compile "
                      f"earlier); running {len(items)} jobs inline on one process instead of {workers} workers",
                      RuntimeWarning, stacklevel=2)
        workers = 1
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



def _init(threads: int | None, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    if threads:
        torch.set_num_threads(threads)
    if initializer is not None:
        initializer(*initargs)


class InProcess(Executor):
    """The executor interface, run sequentially in this process at ``submit`` (workers <= 1)."""

    def __init__(self, threads: int | None = None, initializer: Callable[..., None] | None = None, initargs: tuple = ()):
        self._threads = torch.get_num_threads()
        _init(threads, initializer, initargs)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - re-raised by f.result()
            f.set_exception(e)
        return f

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        torch.set_num_threads(self._threads)


def executor(workers: int, threads: int | None = 1, initializer: Callable[..., None] | None = None,
             initargs: tuple = ()) -> Executor:
    """``workers`` processes with ``threads`` torch threads each (None: torch's default), or in-process."""
    if workers <= 1:
        return InProcess(threads, initializer, initargs)
    from concurrent.futures import ProcessPoolExecutor

    import torch.multiprocessing as tmp  # registers the shared-memory reductions for tensors

    return ProcessPoolExecutor(max_workers=workers, mp_context=tmp.get_context("spawn"), initializer=_init,
                               initargs=(threads, initializer, initargs))


def default_workers(n_tasks: int, cap: int | None = None) -> int:
    """One worker per available core (``os.sched_getaffinity``), at most ``n_tasks`` and ``cap``."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_tasks, cap or cores))


__all__ = ["InProcess", "default_workers", "executor", "fork_autograd_ok", "map_jobs"]
