"""Where tasks run: inline (in this process, for debugging), a pool of local worker processes, or Dask.

With Dask (dask.distributed), ``--scheduler ADDRESS`` connects to a running cluster, else a
LocalCluster of ``jobs`` single-threaded worker processes starts for the run. Workers read the images
from the paths in the tasks (a path they share with the client); rows come back to the client, whose
store stays the only record. A task whose worker dies is retried on another worker; a task that kills
``ATTEMPTS`` workers (a codec that crashes its process) becomes an error row and the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from bench.errors import UserError
from bench.worker import Task, failed_row, run_task

EXECUTORS = ("inline", "local", "dask")
ATTEMPTS = 3  # workers a task may take down before it becomes an error row (dask's allowed-failures + 1)
CONNECT_TIMEOUT_S = 20
TIMEOUT_EXIT = 75  # exit status of a worker that ended itself at the task timeout


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


_threads_set = False


def _dask_task(task: Task, timeout_s: float | None = None) -> dict[str, Any]:
    """run_task on a Dask worker, with one math thread per worker process (as the local pool's).

    Past ``timeout_s`` the worker process ends itself (a hung codec cannot be interrupted in-thread):
    Dask retries the task elsewhere, and after ATTEMPTS it becomes an error row.
    """
    global _threads_set
    if not _threads_set:
        import torch

        torch.set_num_threads(1)
        _threads_set = True
    watchdog = threading.Timer(timeout_s, os._exit, [TIMEOUT_EXIT]) if timeout_s else None
    if watchdog is not None:
        watchdog.daemon = True
        watchdog.start()
    try:
        return run_task(task)
    finally:
        if watchdog is not None:
            watchdog.cancel()


DASK_SETTINGS = {
    "distributed.scheduler.allowed-failures": ATTEMPTS - 1,
    # one task per worker at a time: a crash then counts against the crashing task only
    "distributed.scheduler.worker-saturation": 1.0,
    # worker processes: one math thread each; dask's MALLOC_TRIM_THRESHOLD_=65536 fixes glibc's mmap
    # threshold at 128 KiB, so every image-sized array was mmapped and unmapped again: the metrics ran 3x
    # slower than in the local pool. Large thresholds restore the local pool's speed (measured here).
    "distributed.nanny.pre-spawn-environ": {
        "OMP_NUM_THREADS": 1,
        "MKL_NUM_THREADS": 1,
        "OPENBLAS_NUM_THREADS": 1,
        "MALLOC_TRIM_THRESHOLD_": 2**28,
        "MALLOC_MMAP_THRESHOLD_": 2**28,
    },
}


def _dask_client(jobs: int, scheduler: str | None):
    """(client, None) for the cluster at ``scheduler``, else (client, cluster) of a new LocalCluster."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False), None
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    cluster = LocalCluster(
        n_workers=jobs,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster, set_as_default=False), cluster


def run_dask(
    tasks: Sequence[Task], jobs: int, scheduler: str | None, timeout_s: float | None = None
) -> Iterator[dict[str, Any]]:
    """Run tasks on a Dask cluster, yielding rows as they finish; a task that kills its workers (or
    outlives ``timeout_s`` on each of them) is an error row."""
    import dask
    import distributed  # noqa: F401 - its config defaults must be loaded before dask.config.set, whose
    # exit would otherwise remove the whole "distributed" section it found missing

    if not tasks:
        return
    with dask.config.set(DASK_SETTINGS):  # for the run: restarted workers are spawned with it too
        yield from _run_on_cluster(tasks, jobs, scheduler, timeout_s)


def _run_on_cluster(
    tasks: Sequence[Task], jobs: int, scheduler: str | None, timeout_s: float | None
) -> Iterator[dict[str, Any]]:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    client, cluster = _dask_client(jobs, scheduler)
    try:
        futures = {
            client.submit(
                _dask_task, task, timeout_s, pure=False, key=f"bench-task-{i}-{task.config_hash[:8]}"
            ): task
            for i, task in enumerate(tasks)
        }
        for future in as_completed(list(futures), loop=client.loop):
            task = futures[future]
            try:
                yield future.result()
            except KilledWorker:
                yield failed_row(
                    task,
                    f"WorkerDied: the task's worker process died {ATTEMPTS} times "
                    "(a codec crash, or a hang past --task-timeout)",
                )
            except Exception as exc:  # noqa: BLE001 - run_task does not raise; this is the cluster failing
                yield failed_row(task, f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def execute(
    tasks: Sequence[Task],
    executor: str,
    jobs: int,
    scheduler: str | None = None,
    task_timeout_s: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of ``tasks`` in completion order (``scheduler`` and ``task_timeout_s``: Dask only)."""
    if executor == "inline":
        return run_inline(tasks)
    if executor == "local":
        return run_local(tasks, jobs)
    if executor == "dask":
        return run_dask(tasks, jobs, scheduler, task_timeout_s)
    raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
