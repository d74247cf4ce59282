"""A benchmark run: resolve the configuration, plan the tasks the store lacks, execute, export."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import datasets
from bench.catalog import CatalogEntry, config_hash, load_catalog, parse_codec_specs
from bench.codec import CodecUnavailable, resources_for
from bench.errors import UserError
from bench.executors import EXECUTORS, default_jobs, make_executor
from bench.provenance import provenance
from bench.request import RunRequest
from bench.store import SCHEMA_VERSION, Store, TaskKey, row_key
from bench.timing import TimingPlan, plan_timing
from bench.worker import Task

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = Path("reports/runs")
BITSTREAMS = "bitstreams"  # the run directory's folder of kept bitstreams
IN_PROCESS_EXCLUDED_ADAPTERS = ("subprocess",)


@dataclass(frozen=True)
class ResolvedCodec:
    entry: CatalogEntry
    threads: int
    versions: dict[str, str]
    config_hash: str
    qualities: tuple[float, ...]
    resources: dict[str, float]  # what a Dask worker must offer (GPU for a codec on CUDA)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.entry.name,
            "config_hash": self.config_hash,
            "threads": self.threads,
            "qualities": list(self.qualities),
            "versions": self.versions,
            "entry": self.entry.to_dict(),
        }


@dataclass
class RunPlan:
    run_dir: Path
    config_id: str
    dataset: datasets.Dataset
    images: list[datasets.ImageInfo]
    codecs: list[ResolvedCodec]
    jobs: int
    executor: str
    request: RunRequest
    notes: list[str]
    skipped_files: list[datasets.BadFile]
    timing: TimingPlan = field(default_factory=TimingPlan)


@dataclass
class RunOutcome:
    run_dir: Path
    rows: pd.DataFrame
    executed: int
    resumed: int
    wall_s: float
    overhead: float
    notes: list[str]


def _selected_entries(request: RunRequest, notes: list[str]) -> list[CatalogEntry]:
    if request.entries is not None:
        return list(request.entries)
    catalog = load_catalog()
    if request.codecs is None:
        return [e for e in catalog.values() if e.adapter not in IN_PROCESS_EXCLUDED_ADAPTERS]
    selected = []
    for name, overrides in parse_codec_specs(request.codecs):
        if name not in catalog:
            raise UserError(f"unknown codec {name!r}; the catalog has: {', '.join(catalog)}")
        selected.append(catalog[name].with_options(overrides))
    return selected


def resolve_codecs(request: RunRequest, notes: list[str]) -> list[ResolvedCodec]:
    """Catalog entries with options, threads, versions and config hashes; unavailable ones refused.

    The executor says whether each codec runs where the tasks will (with a Dask scheduler, a worker of
    that cluster) and with which versions.
    """
    by_default = request.codecs is None and request.entries is None
    built: list[tuple[CatalogEntry, int, dict[str, float]]] = []
    for entry in _selected_entries(request, notes):
        threads = request.threads if request.threads is not None else int(entry.options.get("threads", 1))
        entry = entry.with_options({"threads": threads})
        if request.device is not None and "device" in entry.options:
            entry = entry.with_options({"device": request.device})
        try:
            built.append((entry, threads, resources_for(entry)))
        except CodecUnavailable as exc:  # bad options: refused even with --skip-unavailable
            raise UserError(str(exc)) from None
    checks = make_executor(request).probe([entry for entry, _, _ in built])
    resolved, unavailable = [], []
    for (entry, threads, resources), (reason, versions) in zip(built, checks):
        if reason:
            unavailable.append(f"{entry.name} is unavailable: {reason}")
            continue
        qualities = request.qualities.get(entry.name, entry.qualities)
        resolved.append(
            ResolvedCodec(
                entry,
                threads,
                versions,
                config_hash(entry, threads, versions),
                tuple(qualities),
                resources,
            )
        )
    unknown = set(request.qualities) - {entry.entry.name for entry in resolved}
    if unknown:
        raise UserError(f"--qualities names codec(s) not in this run: {', '.join(sorted(unknown))}")
    if unavailable and not (by_default or request.skip_unavailable):
        raise UserError("\n".join(f"{line} (--skip-unavailable runs the others)" for line in unavailable))
    notes.extend(f"left out: {line}" for line in unavailable)
    if not resolved:
        raise UserError("no available codec to run (see `bench codecs`)")
    return resolved


def _config_id(
    dataset_name: str, images: list[datasets.ImageInfo], codecs: list[ResolvedCodec], timing: TimingPlan
) -> str:
    payload: dict[str, Any] = {
        "dataset": dataset_name,
        "images": [image.sha256 for image in images],
        "codecs": [(c.entry.name, c.config_hash, list(c.qualities)) for c in codecs],
    }
    if timing.repeat > 1 or timing.warmup_per_task:  # default timing keeps older run ids
        payload["timing"] = [timing.repeat, timing.warmup_per_task]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def resolve(request: RunRequest) -> RunPlan:
    """Check everything the user asked for, before any work."""
    if request.executor not in EXECUTORS:
        raise UserError(f"unknown executor {request.executor!r}; choose from {', '.join(EXECUTORS)}")
    if (request.scheduler or request.task_timeout or request.ship_images) and request.executor != "dask":
        raise UserError("--scheduler, --task-timeout and --ship-images need --executor dask")
    if request.task_timeout is not None and request.task_timeout <= 0:
        raise UserError("--task-timeout must be positive")
    jobs = 1 if request.executor == "inline" else default_jobs() if request.jobs is None else request.jobs
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    if request.images is not None and request.images < 1:
        raise UserError("--images must be at least 1")
    notes: list[str] = []
    codecs = resolve_codecs(request, notes)
    try:
        timing, jobs, timing_notes = plan_timing(
            request.repeat,
            request.timing,
            request.time_reference,
            jobs,
            [c.entry.name for c in codecs],
            default_jobs(),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    notes.extend(timing_notes)
    data_dir = datasets.default_data_dir(request.data_dir)
    dataset = datasets.open_dataset(request.dataset, data_dir)
    images, bad = datasets.scan(dataset, request.images)
    if bad and not request.skip_bad:
        lines = [f"{b.path}: {b.reason}" for b in bad]
        raise UserError(
            f"{len(bad)} unusable image(s) in {dataset.name} (use --skip-bad to skip them):\n"
            + "\n".join(lines)
        )
    notes.extend(f"skipped: {b.path}: {b.reason}" for b in bad)
    by_note: dict[str, list[str]] = {}
    for image in images:
        for note in image.notes:
            by_note.setdefault(note, []).append(image.name)
    notes.extend(f"{note}: {', '.join(names)}" for note, names in by_note.items())
    if not images:
        raise UserError(f"no usable image in {dataset.name}")
    config_id = _config_id(dataset.name, images, codecs, timing)
    run_dir = Path(request.out) if request.out else DEFAULT_RUNS_DIR / f"{dataset.name}-{config_id[:8]}"
    return RunPlan(
        run_dir, config_id, dataset, images, codecs, jobs, request.executor, request, notes, bad, timing
    )


def run_json(plan: RunPlan) -> dict[str, Any]:
    """The run.json document: schema version, resolved configuration, provenance."""
    request = plan.request
    return {
        "schema_version": SCHEMA_VERSION,
        "config_id": plan.config_id,
        "config": {
            "dataset": {
                "name": plan.dataset.name,
                "spec": request.dataset,
                "root": str(plan.dataset.root),
                "data_dir": request.data_dir,
                "limit": request.images,
                "images": [
                    {
                        "name": i.name,
                        "sha256": i.sha256,
                        "width": i.width,
                        "height": i.height,
                        "notes": list(i.notes),
                    }
                    for i in plan.images
                ],
                "skipped": [{"path": str(b.path), "reason": b.reason} for b in plan.skipped_files],
            },
            "codecs": [codec.to_dict() for codec in plan.codecs],
            "threads": request.threads,
            "jobs": plan.jobs,
            "executor": plan.executor,
            "timing": plan.timing.to_dict(),
        },
        "provenance": provenance(),
    }


def request_from_run_json(path: Path) -> RunRequest:
    """The request that repeats a run exactly: its own catalog entries, qualities, images and threads."""
    try:
        document = json.loads(Path(path).read_text())
        config = document["config"]
        dataset = config["dataset"]
        entries = [CatalogEntry.from_dict(codec["entry"]) for codec in config["codecs"]]
        qualities = {codec["name"]: codec["qualities"] for codec in config["codecs"]}
        timing = config.get("timing", {})
        request = RunRequest(
            dataset=dataset["spec"],
            data_dir=dataset.get("data_dir"),
            images=dataset.get("limit"),
            qualities=qualities,
            jobs=config.get("jobs"),
            threads=config.get("threads"),
            executor=config.get("executor", "local"),
            skip_bad=bool(dataset.get("skipped")),
            entries=entries,
            repeat=timing.get("repeat"),
            timing=bool(timing.get("preset", False)),
            time_reference=timing.get("reference"),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a readable run.json ({exc})") from None
    return request


def _prepare_run_dir(plan: RunPlan) -> None:
    """Create the run directory, or check that an existing one holds this same configuration."""
    path = plan.run_dir / "run.json"
    if path.exists():
        try:
            existing = json.loads(path.read_text()).get("config_id")
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: unreadable ({exc}); use another --out") from None
        if existing != plan.config_id:
            raise UserError(
                f"{plan.run_dir} holds a different run configuration ({existing} here, {plan.config_id} asked); "
                "use another --out or remove that directory"
            )
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(run_json(plan), indent=2) + "\n")
    os.replace(temporary, path)


def _tasks(plan: RunPlan) -> list[Task]:
    return [
        Task(
            dataset=plan.dataset.name,
            image=image.name,
            path=str(image.path),
            image_sha256=image.sha256,
            height=image.height,
            width=image.width,
            entry=codec.entry.to_dict(),
            config_hash=codec.config_hash,
            quality=float(quality),
            threads=codec.threads,
            jobs=plan.jobs,
            repeat=plan.timing.repeat,
            warmup=plan.timing.warmup_per_task,
            keep_bitstream=plan.request.keep_bitstreams,
            versions=codec.versions,
            resources=codec.resources,
        )
        for image in plan.images
        for codec in plan.codecs
        for quality in codec.qualities
    ]


def bitstream_path(folder: Path, key: TaskKey) -> Path:
    """Where --keep-bitstreams keeps a task's bytes: <folder>/<config hash>/<image sha256>-q<quality>.bin"""
    image_sha256, _, config_hash, quality = key
    return Path(folder) / config_hash / f"{image_sha256}-q{quality:g}.bin"


def _keep_bitstream(folder: Path, key: TaskKey, data: bytes) -> None:
    path = bitstream_path(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def harness_overhead(rows: list[dict[str, Any]], wall_s: float, jobs: int) -> float:
    """1 - (sum of task codec + metric seconds) / (wall seconds x jobs), over the tasks run now."""
    busy = sum(
        row.get(key) or 0.0
        for row in rows
        for key in ("enc_s", "dec_s", "metric_s")
        if not (isinstance(row.get(key), float) and math.isnan(row[key]))
    )
    return 1.0 - busy / (wall_s * jobs) if wall_s > 0 else math.nan


@contextmanager
def _cache(folder: str | None) -> Iterator[Store | None]:
    """The cache's store (folder/results.sqlite), or None without --cache."""
    if folder is None:
        yield None
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    with Store(Path(folder) / "results.sqlite") as cache:
        yield cache


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock (an flock on .lock) for one run; refuse if another run holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise UserError(
                f"another bench run (pid {holder}) is writing to {run_dir}: wait for it, or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def execute_plan(plan: RunPlan, progress: Callable[[int], Any] | None = None) -> RunOutcome:
    """Run the tasks the store lacks; one transaction per finished task; export results.csv.

    One run at a time per run directory: a second one started meanwhile is refused (run_dir_lock).
    """
    with run_dir_lock(plan.run_dir):
        return _execute_locked(plan, progress)


def _execute_locked(plan: RunPlan, progress: Callable[[int], Any] | None) -> RunOutcome:
    start = time.perf_counter()
    _prepare_run_dir(plan)
    cache_notes: list[str] = []
    with Store(plan.run_dir / "results.sqlite") as store, _cache(plan.request.cache) as cache:
        done = store.done_keys()
        planned = _tasks(plan)
        tasks = [task for task in planned if task.key not in done]
        resumed = len(planned) - len(tasks)
        if cache is not None:
            waiting = {task.key: task for task in tasks}
            for row in cache.rows(list(waiting)):
                task = waiting.pop(row_key(row))
                store.add(row | {"dataset": task.dataset, "image": task.image})  # names as in this run
            cached = len(tasks) - len(waiting)
            tasks = list(waiting.values())
            if cached:
                cache_notes.append(f"{cached} task(s) taken from the cache {plan.request.cache}")
        new_rows: list[dict[str, Any]] = []
        bar = progress(len(tasks)) if progress else None
        executor = make_executor(plan.request)
        rows = executor.run(tasks, plan.jobs)
        try:
            for row in rows:
                data = row.pop("bitstream", None)
                if data is not None:  # before its row: a stored row always has its bitstream
                    _keep_bitstream(plan.run_dir / BITSTREAMS, row_key(row), data)
                store.add(row)
                if cache is not None and not row.get("error"):
                    cache.add(row)
                new_rows.append(row)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            frame = store.frame()
            frame.to_csv(plan.run_dir / "results.csv", index=False)
    wall_s = time.perf_counter() - start
    errors = sum(1 for row in new_rows if row.get("error"))
    notes = (
        list(plan.notes)
        + cache_notes
        + executor.notes
        + ([f"{errors} task(s) failed: see the error column"] if errors else [])
    )
    return RunOutcome(
        plan.run_dir,
        frame,
        len(new_rows),
        resumed,
        wall_s,
        harness_overhead(new_rows, wall_s, plan.jobs),
        notes,
    )


def run(
    codecs: str | None = None,
    dataset: str = "sample",
    *,
    progress: Callable[[int], Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run a benchmark (arguments as RunRequest's fields) and return every row of its configuration."""
    return execute_plan(resolve(RunRequest(codecs=codecs, dataset=dataset, **options)), progress).rows
