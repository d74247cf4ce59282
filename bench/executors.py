"""Where tasks run, chosen by name: inline (in this process, for debugging), local (a pool of worker
processes) or dask (a Dask cluster: bench.dask_executor, imported only when chosen)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

from bench.catalog import CatalogEntry
from bench.codec import check_codec
from bench.lifeline import die_with_parent, lifeline
from bench.measures import unavailable_here
from bench.worker import Task, run_task

if TYPE_CHECKING:
    from bench.request import RunRequest

EXECUTORS: dict[str, str] = {  # name: "module:class", a class built from the RunRequest
    "inline": "bench.executors:InlineExecutor",
    "local": "bench.executors:LocalExecutor",
    "dask": "bench.dask_executor:DaskExecutor",
}


class Executor(Protocol):
    """Runs a run's tasks somewhere, and says first whether each codec runs there."""

    notes: list[str]  # what the user should know about how the tasks ran, filled while they run

    def probe(self, entries: Sequence[CatalogEntry]) -> list[tuple[str | None, dict[str, str]]]:
        """For each resolved entry, where the tasks will run: why its codec cannot run (None if it
        can) and its versions (bench.codec.check_codec's answer)."""

    def probe_metrics(self, names: Sequence[str]) -> dict[str, str]:
        """Why each metric of ``names`` that cannot be computed where the tasks will run cannot."""

    def run(self, tasks: TaskFeed, jobs: int) -> Iterator[dict[str, Any]]:
        """The tasks' rows, in completion order, on ``jobs`` workers. The feed may run dry and fill
        again while a yielded row is handled (a search's next probe): take tasks from it whenever a
        worker is free, and end when it is dry and no task is in flight."""


class TaskFeed:
    """The tasks of a run, handed out one at a time; the runner adds more while rows come back."""

    def __init__(self, tasks: Iterable[Task] = ()):
        self.queued: deque[Task] = deque(tasks)

    def __iter__(self) -> TaskFeed:
        return self

    def __next__(self) -> Task:
        if not self.queued:
            raise StopIteration  # for now: more may come once the rows in flight are handled
        return self.queued.popleft()

    def __len__(self) -> int:
        return len(self.queued)

    def extend(self, tasks: Iterable[Task]) -> None:
        self.queued.extend(tasks)


def make_executor(request: RunRequest) -> Executor:
    """The executor ``request.executor`` names, set up from the request."""
    if request.executor not in EXECUTORS:
        raise ValueError(f"unknown executor {request.executor!r}; choose from {', '.join(EXECUTORS)}")
    module_name, _, class_name = EXECUTORS[request.executor].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(request)


def default_jobs() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def probe_here(entries: Sequence[CatalogEntry]) -> list[tuple[str | None, dict[str, str]]]:
    """Executor.probe for tasks that run on this machine."""
    return [check_codec(entry) for entry in entries]


class InlineExecutor:
    """Every task in this process, one after the other."""

    def __init__(self, request: RunRequest):
        self.notes: list[str] = []

    def probe(self, entries: Sequence[CatalogEntry]) -> list[tuple[str | None, dict[str, str]]]:
        return probe_here(entries)

    def probe_metrics(self, names: Sequence[str]) -> dict[str, str]:
        return unavailable_here(names)

    def run(self, tasks: TaskFeed, jobs: int) -> Iterator[dict[str, Any]]:
        with lifeline(self.notes):
            for task in tasks:
                yield run_task(task)


def _init_worker(parent: int) -> None:
    """One math thread per worker for the metrics, so jobs do not fight over cores; Ctrl-C is the
    parent's to handle (it stops submitting, lets in-flight tasks end and keeps what is stored); the
    worker dies with its parent (bench.lifeline)."""
    die_with_parent(parent)
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


class LocalExecutor:
    """A pool of spawned worker processes on this machine, ended with the run (bench.lifeline)."""

    def __init__(self, request: RunRequest):
        self.notes: list[str] = []

    def probe(self, entries: Sequence[CatalogEntry]) -> list[tuple[str | None, dict[str, str]]]:
        return probe_here(entries)

    def probe_metrics(self, names: Sequence[str]) -> dict[str, str]:
        return unavailable_here(names)

    def run(self, tasks: TaskFeed, jobs: int) -> Iterator[dict[str, Any]]:
        """Run tasks on ``jobs`` spawned worker processes, yielding rows as they finish.

        At most two tasks per worker are queued at a time, so an interrupted run leaves little in flight.
        """
        context = multiprocessing.get_context("spawn")
        pending = iter(tasks)
        with (
            lifeline(self.notes),
            ProcessPoolExecutor(
                max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
            ) as pool,
        ):
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
