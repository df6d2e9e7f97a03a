"""Independent trainings in worker processes, one torch thread each (seeds, controls, modes).

On a few CPU cores, small nets train faster as one process per core than as one process with
several intra-op threads, and a training in a single-threaded process gives the same bits whatever
the machine's core count or the order in which workers pick tasks.  ``executor(workers, ...)``
returns a ``concurrent.futures`` executor: ``workers`` spawned processes (fork after OpenMP/MKL
initialisation can deadlock), or, with ``workers <= 1``, a sequential stand-in running every task
in this process at submission.  ``initializer(*initargs)`` runs once per worker (e.g. to keep the
datasets, which travel once through shared memory, in a module-level dict).
"""
from __future__ import annotations

from concurrent.futures import Executor, Future
from typing import Callable

import torch


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
    import torch.multiprocessing as tmp  # registers the shared-memory reductions for tensors
    from concurrent.futures import ProcessPoolExecutor

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


__all__ = ["InProcess", "executor", "default_workers"]
