"""Tasks on a Dask (dask.distributed) cluster; rows come back to the client, whose store is the only record.

``--scheduler ADDRESS`` connects to a running cluster, else a LocalCluster of ``jobs`` single-threaded
worker processes starts for the run. Workers read each image from its path when every worker sees the
images, else (or with --ship-images) the client sends them the files' bytes; either way a worker checks
the pixels against the image's hash. A task whose codec runs on CUDA asks for the worker resource GPU=1
(``dask worker ADDRESS --resources GPU=1``); a worker process builds each codec configuration once and
keeps it, so a model is loaded once per worker. The client sends out one task per worker thread able
to run it: a worker holds one task at a time, so when a worker dies the task it held is known; the
client sends it again (to any worker), and a task that kills ATTEMPTS workers (a codec that crashes its
process, or hangs past the task timeout) becomes an error row. An interrupted client leaves little
behind, and a shipped image travels inside its tasks only while they run.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.catalog import CatalogEntry
from bench.codec import check_codec, resources_for
from bench.errors import UserError
from bench.executors import TaskFeed, probe_here
from bench.lifeline import lifeline
from bench.measures import unavailable_here
from bench.worker import Task, failed_row, run_task

if TYPE_CHECKING:
    from bench.request import RunRequest

ATTEMPTS = 3  # workers a task may take down before it becomes an error row
CONNECT_TIMEOUT_S = 20
PROBE_TIMEOUT_S = 300  # a worker's first import of torch and a model's weights can take a while
TIMEOUT_EXIT = 75  # exit status of a worker that ended itself at the task timeout
WORKERS_REFRESH_S = 1.0  # how often the client asks the scheduler which workers there are

DASK_SETTINGS = {
    "distributed.scheduler.allowed-failures": 0,  # a task whose worker dies comes back to the client
    # a LocalCluster drops a worker for good when it is away at this delay after a death (by default
    # 15 s): a codec that kills its worker now and then would otherwise empty the cluster mid-run
    "distributed.deploy.lost-worker-timeout": "1000 days",
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

_threads_set = False


def _dask_task(task: Task, timeout_s: float | None = None, image_file: bytes | None = None) -> dict[str, Any]:
    """run_task on a Dask worker, with one math thread per worker process (as the local pool's).

    Past ``timeout_s`` the worker process ends itself (a hung codec cannot be interrupted in-thread):
    the client sends the task again, and after ATTEMPTS deaths it becomes an error row.
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
        return run_task(task, image_file)
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _connect(scheduler: str):
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None


def _client(jobs: int, scheduler: str | None, gpu: bool):
    """(client, None) for the cluster at ``scheduler``, else (client, cluster) of a new LocalCluster
    whose workers each offer GPU=1 when ``gpu`` (they share this machine's GPUs)."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        return _connect(scheduler), None
    cluster = LocalCluster(
        n_workers=jobs,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        resources={"GPU": 1} if gpu else None,
    )
    return Client(cluster, set_as_default=False), cluster


def _offers(worker: dict[str, Any], resources: dict[str, float]) -> bool:
    return all(worker.get("resources", {}).get(name, 0) >= amount for name, amount in resources.items())


def _workers(client) -> list[dict[str, Any]]:
    return list(client.scheduler_info()["workers"].values())


def _probe(entry: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """On a worker: bench.codec.check_codec's answer for ``entry`` there."""
    return check_codec(CatalogEntry.from_dict(entry))


def probe_codecs(scheduler: str, entries: Sequence[CatalogEntry]) -> list[tuple[str | None, dict[str, str]]]:
    """For each entry: (why it cannot run, versions) as a worker of the cluster at ``scheduler`` that
    offers the resources its codec needs answers; a run's config hashes then hold the versions of the
    machines that run it."""
    client = _connect(scheduler)
    try:
        workers = _workers(client)
        if not workers:
            raise UserError(f"no worker has joined the Dask cluster at {scheduler}")
        answers: list[Any] = []
        for entry in entries:
            resources = resources_for(entry)
            if not any(_offers(worker, resources) for worker in workers):
                offer = " ".join(f"{name}={amount:g}" for name, amount in resources.items())
                answers.append(
                    f"it needs a Dask worker offering {offer}; none of the {len(workers)} at {scheduler} does "
                    f"(start one with `dask worker {scheduler} --resources {offer}`)"
                )
            else:
                answers.append(
                    client.submit(_probe, entry.to_dict(), resources=resources or None, pure=False)
                )
        try:
            return [
                (answer, {}) if isinstance(answer, str) else answer.result(timeout=PROBE_TIMEOUT_S)
                for answer in answers
            ]
        except TimeoutError:
            raise UserError(
                f"the Dask cluster at {scheduler} did not say within {PROBE_TIMEOUT_S} s which codecs its workers run"
            ) from None
    finally:
        client.close()


def probe_metrics(scheduler: str, names: Sequence[str]) -> dict[str, str]:
    """Why each metric of ``names`` that some worker of the cluster at ``scheduler`` cannot compute
    cannot (any worker may get any task): the first worker's reason, with how many workers lack it."""
    client = _connect(scheduler)
    try:
        answers = list(client.run(unavailable_here, list(names)).values())
    finally:
        client.close()
    reasons: dict[str, str] = {}
    for name in names:
        lacking = [answer[name] for answer in answers if name in answer]
        if lacking:
            reasons[name] = (
                f"{lacking[0]} (on {len(lacking)} of the {len(answers)} Dask workers at {scheduler})"
            )
    return reasons


def _allowed_failures(dask_scheduler) -> int:
    return dask_scheduler.allowed_failures


def _workers_miss_images(client, tasks: Sequence[Task]) -> int:
    """How many workers do not see every image at the client's paths."""
    paths = sorted({task.path for task in tasks})
    seen = client.run(lambda: all(os.path.isfile(path) for path in paths))
    return sum(1 for sees in seen.values() if not sees)


class _Feeder:
    """Submits tasks in plan order, one per worker thread able to run them, and retries a task whose
    worker died (Dask does not: with one task per worker the client knows which task the death was)."""

    def __init__(self, client, feed: TaskFeed, timeout_s: float | None, ship: bool, deaths: int):
        from distributed import as_completed

        self.client = client
        self.deaths_per_try = deaths  # workers the scheduler lets a task take down before it gives up
        self.timeout_s = timeout_s
        self.ship = ship
        self.feed = feed
        self.queues: dict[tuple, deque[tuple[Task, int]]] = {}  # by resources: (task, deaths so far)
        self.file: tuple[str, bytes] = ("", b"")  # the image file last read, for shipping
        self.running: dict[Any, tuple[Task, tuple, int]] = {}
        self.in_flight: Counter = Counter()
        self.completed = as_completed(loop=client.loop)
        self.workers: list[dict[str, Any]] = []
        self.workers_at = -math.inf

    def _bytes(self, task: Task) -> bytes:
        """The task's image file (tasks come image by image). Sent inside the task, not scattered: a
        task that depended on data held by one worker would be queued there while others idle."""
        if self.file[0] != task.path:
            self.file = (task.path, Path(task.path).read_bytes())
        return self.file[1]

    def refill(self) -> None:
        for task in self.feed:  # what the feed holds now (a search adds probes as rows come back)
            self.queues.setdefault(tuple(sorted(task.resources.items())), deque()).append((task, 0))
        if time.monotonic() - self.workers_at > WORKERS_REFRESH_S:
            self.workers, self.workers_at = _workers(self.client), time.monotonic()
        for kind, queue in self.queues.items():
            resources = dict(kind)
            threads = sum(w["nthreads"] for w in self.workers if _offers(w, resources))
            while queue and self.in_flight[kind] < max(threads, 1):
                task, deaths = queue.popleft()
                name = f"{task.entry['name']}-q{task.quality:g}-{task.image}-{uuid.uuid4().hex[:12]}"
                image_file = (self._bytes(task),) if self.ship else ()
                future = self.client.submit(
                    _dask_task, task, self.timeout_s, *image_file, key=name, resources=resources or None
                )
                self.running[future] = (task, kind, deaths)
                self.in_flight[kind] += 1
                self.completed.add(future)

    def row(self, future) -> dict[str, Any] | None:
        """The row of a finished task, or None when its worker died and it goes back in the queue."""
        from distributed.scheduler import KilledWorker

        task, kind, deaths = self.running.pop(future)
        self.in_flight[kind] -= 1
        try:
            row = future.result()
        except KilledWorker:
            self.workers_at = -math.inf  # one worker fewer until it restarts
            if deaths + 1 < ATTEMPTS:
                self.queues[kind].appendleft((task, deaths + 1))
                row = None
            else:
                row = failed_row(
                    task,
                    f"WorkerDied: the task's worker process died {ATTEMPTS * self.deaths_per_try} times "
                    "(a codec crash, or a hang past --task-timeout)",
                )
        except Exception as exc:  # noqa: BLE001 - run_task does not raise; this is the cluster failing
            row = failed_row(task, f"{type(exc).__name__}: {exc}")
        future.release()
        return row


class DaskExecutor:
    """Tasks on the Dask cluster at ``request.scheduler``, else on a LocalCluster of ``jobs`` workers;
    ``request.task_timeout`` and ``request.ship_images`` as the module says."""

    def __init__(self, request: RunRequest):
        self.scheduler = request.scheduler
        self.timeout_s = request.task_timeout
        self.ship_images = request.ship_images
        self.notes: list[str] = []

    def probe(self, entries: Sequence[CatalogEntry]) -> list[tuple[str | None, dict[str, str]]]:
        """The workers of the cluster at the scheduler answer; a LocalCluster's would answer as here."""
        return probe_codecs(self.scheduler, entries) if self.scheduler else probe_here(entries)

    def probe_metrics(self, names: Sequence[str]) -> dict[str, str]:
        """The workers of the cluster at the scheduler answer; a LocalCluster's would answer as here."""
        return probe_metrics(self.scheduler, names) if self.scheduler else unavailable_here(names)

    def run(self, tasks: TaskFeed | Sequence[Task], jobs: int) -> Iterator[dict[str, Any]]:
        """Run tasks on the cluster, yielding rows as they finish. Images are shipped from the client
        with ``ship_images`` or when a worker does not see them (said in ``notes``)."""
        import dask
        import distributed  # noqa: F401 - its config defaults must be loaded before dask.config.set, whose
        # exit would otherwise remove the whole "distributed" section it found missing

        feed = tasks if isinstance(tasks, TaskFeed) else TaskFeed(tasks)
        planned = list(feed.queued)  # those known now: a search's later probes are of the same codecs
        if not planned:
            return
        scheduler, ship_images = self.scheduler, self.ship_images
        # a LocalCluster's workers (restarted ones too) end with the run; a running cluster's are not ours
        ours = contextlib.nullcontext() if scheduler else lifeline(self.notes)
        with ours, dask.config.set(DASK_SETTINGS):  # for the run: restarted workers are spawned with it too
            client, cluster = _client(jobs, scheduler, any(task.resources for task in planned))
            try:
                if not ship_images:
                    missing = _workers_miss_images(client, planned)
                    if missing:
                        ship_images = True
                        self.notes.append(
                            f"{missing} Dask worker(s) do not see the images: the client sends them"
                        )
                deaths = 1 + (client.run_on_scheduler(_allowed_failures) if scheduler else 0)
                if deaths > 1:
                    self.notes.append(
                        f"the scheduler at {scheduler} retries a task whose worker died {deaths - 1} time(s) itself: a "
                        f"crashing codec can take down up to {ATTEMPTS * deaths} workers per task (start it with "
                        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 for 3)"
                    )
                yield from _rows(_Feeder(client, feed, self.timeout_s, ship_images, deaths))
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()


def _rows(feeder: _Feeder) -> Iterator[dict[str, Any]]:
    """Rows as tasks finish; the feed is read again after each row is handled (it may add tasks)."""
    feeder.refill()
    for future in feeder.completed:
        row = feeder.row(future)
        if row is not None:
            yield row
        feeder.refill()
