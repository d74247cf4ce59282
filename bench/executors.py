"""Where tasks run: inline (in this process, for debugging), a pool of local worker processes, or a
Dask cluster (bench.dask_executor)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from bench.worker import Task, run_task

EXECUTORS = ("inline", "local", "dask")


def default_jobs() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _init_worker() -> None:
    """One math thread per worker for the metrics, so jobs do not fight over cores; Ctrl-C is the
    parent's to handle (it stops submitting, lets in-flight tasks end and keeps what is stored)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def run_inline(tasks: Sequence[Task]) -> Iterator[dict[str, Any]]:
    for task in tasks:
        yield run_task(task)


def run_local(tasks: Sequence[Task], jobs: int) -> Iterator[dict[str, Any]]:
    """Run tasks on ``jobs`` spawned worker processes, yielding rows as they finish.

    At most two tasks per worker are queued at a time, so an interrupted run leaves little in flight.
    """
    context = multiprocessing.get_context("spawn")
    pending = iter(tasks)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker) as pool:
        in_flight: set[Future] = set()
        try:
            while True:
                while len(in_flight) < 2 * jobs:
                    task = next(pending, None)
                    if task is None:
                        break
                    in_flight.add(pool.submit(run_task, task))
                if not in_flight:
                    return
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in in_flight:
                future.cancel()


def execute(
    tasks: Sequence[Task],
    executor: str,
    jobs: int,
    scheduler: str | None = None,
    task_timeout_s: float | None = None,
    ship_images: bool = False,
    notes: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of ``tasks`` in completion order (the other arguments: Dask only, see run_dask)."""
    if executor == "inline":
        return run_inline(tasks)
    if executor == "local":
        return run_local(tasks, jobs)
    if executor == "dask":
        from bench.dask_executor import run_dask

        return run_dask(tasks, jobs, scheduler, task_timeout_s, ship_images, notes)
    raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
