"""A benchmark run: resolve the configuration, plan the tasks the store lacks, execute, export."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import datasets, measures
from bench.catalog import CatalogEntry, config_hash, load_catalog, parse_codec_specs
from bench.codec import CodecUnavailable, codec_for, knob, resources_for, trusted_entry
from bench.errors import UserError
from bench.executors import EXECUTORS, TaskFeed, default_jobs, make_executor
from bench.files import FilesystemError, make_folder
from bench.knob import Knob
from bench.provenance import provenance
from bench.quoting import quoted
from bench.request import RunRequest
from bench.rescore import Rescorer
from bench.rundir import (
    BITSTREAMS,
    DATABASE,
    RUN_JSON,
    CodecRecord,
    DatasetRecord,
    ImageRecord,
    Manifest,
    bitstream_path,
    keep_bitstream,
    read_bitstream,
    read_manifest,
    run_dir_lock,
    write_csv,
    write_manifest,
)
from bench.search_run import Searches
from bench.store import Store, TaskKey, as_fixed, fixed_key, row_key
from bench.targets import QUALITY, Target, budget_targets, options_of, quality_targets, rate_targets
from bench.timing import TimingPlan, plan_timing
from bench.worker import Task

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = Path("reports/runs")
IN_PROCESS_EXCLUDED_ADAPTERS = ("subprocess",)


@dataclass
class RunPlan:
    run_dir: Path
    config_id: str
    dataset: datasets.Dataset
    images: list[datasets.ImageInfo]
    codecs: list[CodecRecord]
    jobs: int
    executor: str
    request: RunRequest
    notes: list[str]
    skipped_files: list[datasets.BadFile]
    timing: TimingPlan = field(default_factory=TimingPlan)
    metrics: list[str] = field(default_factory=measures.default_metrics)  # with their sources
    targets: list[Target] = field(default_factory=list)  # a search run's targets (one kind), else []
    knobs: dict[str, Knob] = field(default_factory=dict)  # a search run's knob per config hash


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


def resolve_codecs(request: RunRequest, notes: list[str]) -> list[CodecRecord]:
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
            unavailable.append(f"{quoted(entry.name)} is unavailable: {reason}")
            continue
        qualities = request.qualities.get(entry.name, entry.qualities)
        resolved.append(
            CodecRecord(
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


def resolve_metrics(request: RunRequest, notes: list[str], targets: list[Target]) -> list[str]:
    """The metrics to compute, with their sources (and an equal-quality search's metric). One that
    cannot be computed where the tasks run is refused when --metrics or --target names it (or its
    group), unless --skip-unavailable; else it is left out with a note, as unavailable default codecs
    are."""
    spec = request.metrics
    if targets and targets[0].kind == QUALITY:
        spec = f"{spec or 'default'},{targets[0].metric}"
    asked = measures.with_sources(measures.resolve_metrics(spec, measures.default_metrics()))
    reasons = make_executor(request).probe_metrics(asked)
    named = measures.asked_for(spec)
    refused = measures.unavailable_lines({name: why for name, why in reasons.items() if name in named})
    if refused and not request.skip_unavailable:
        raise UserError("\n".join(f"{line} (--skip-unavailable computes the others)" for line in refused))
    notes.extend(f"left out: {line}" for line in measures.unavailable_lines(reasons))
    metrics = [name for name in asked if name not in reasons]
    if not metrics:
        raise UserError("no available metric to compute (see `bench metrics`)")
    if targets and targets[0].kind == QUALITY and targets[0].metric in reasons:
        raise UserError(
            f"--target: {measures.unavailable_lines({targets[0].metric: reasons[targets[0].metric]})[0]}"
        )
    return metrics


def resolve_targets(request: RunRequest) -> list[Target]:
    """The targets of --target-bpp, --target or --budget-bpp (one of them), checked; [] for a run at
    fixed qualities."""
    given = {
        "--target-bpp": request.target_bpp,
        "--target": request.target,
        "--budget-bpp": request.budget_bpp,
    }
    asked = [option for option, value in given.items() if value]
    if len(asked) > 1:
        raise UserError(f"{' and '.join(asked)} ask for different searches: give one of them")
    if not asked:
        return []
    if request.qualities:
        raise UserError(f"{asked[0]} searches each codec's quality: it does not take --qualities")
    if not 0 < request.rate_tolerance < 1:
        raise UserError("--rate-tolerance must be between 0 and 1 (0.01 is 1 %)")
    if request.target_bpp:
        return rate_targets(request.target_bpp)
    if request.budget_bpp:
        return budget_targets(request.budget_bpp)
    quality = {name: metric.direction == measures.HIGHER for name, metric in measures.all_metrics().items()}
    return quality_targets(request.target, quality)


def resolve_knobs(codecs: list[CodecRecord], notes: list[str]) -> tuple[list[CodecRecord], dict[str, Knob]]:
    """The codecs whose quality can be searched, with their knobs; the others are left out with a note."""
    knobs: dict[str, Knob] = {}
    for record in codecs:
        try:
            found = knob(codec_for(record.entry), record.entry.rate_rises_with_quality)
        except (ValueError, TypeError, CodecUnavailable) as exc:
            notes.append(f"left out: {record.name} has no searchable quality knob ({exc})")
            continue
        if found is None:
            notes.append(
                f"left out: {record.name} has no searchable quality knob (its catalog entry declares no "
                "quality_range)"
            )
            continue
        knobs[record.config_hash] = found
    if not knobs:
        raise UserError(
            "no codec of the run has a searchable quality knob (see docs/results.md, Matched rates)"
        )
    return [record for record in codecs if record.config_hash in knobs], knobs


def _config_id(
    dataset_name: str,
    images: list[datasets.ImageInfo],
    codecs: list[CodecRecord],
    timing: TimingPlan,
    search: dict[str, Any],
) -> str:
    payload: dict[str, Any] = {
        "dataset": dataset_name,
        "images": [image.sha256 for image in images],
        "codecs": [(c.entry.name, c.config_hash, list(c.qualities)) for c in codecs],
    }
    if timing.repeat > 1 or timing.warmup_per_task:  # default timing keeps older run ids
        payload["timing"] = [timing.repeat, timing.warmup_per_task]
    if search:  # runs at fixed qualities keep their ids
        payload["search"] = search
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
    targets = resolve_targets(request)
    metrics = resolve_metrics(request, notes, targets)
    codecs = resolve_codecs(request, notes)
    codecs, knobs = resolve_knobs(codecs, notes) if targets else (codecs, {})
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
    images, bad = datasets.scan(dataset, request.images, max_pixels=request.max_pixels)
    if bad and not request.skip_bad:
        lines = [str(b) for b in bad]
        raise UserError(
            f"{len(bad)} unusable image(s) in {dataset.name} (use --skip-bad to skip them):\n"
            + "\n".join(lines)
        )
    notes.extend(f"skipped: {b}" for b in bad)
    by_note: dict[str, list[str]] = {}
    for image in images:
        for note in image.notes:
            by_note.setdefault(note, []).append(quoted(image.name))
    notes.extend(f"{note}: {', '.join(names)}" for note, names in by_note.items())
    if not images:
        raise UserError(f"no usable image in {dataset.name}")
    config_id = _config_id(dataset.name, images, codecs, timing, _search_record(targets, request))
    run_dir = Path(request.out) if request.out else DEFAULT_RUNS_DIR / f"{dataset.name}-{config_id[:8]}"
    return RunPlan(
        run_dir,
        config_id,
        dataset,
        images,
        codecs,
        jobs,
        request.executor,
        request,
        notes,
        bad,
        timing,
        metrics,
        targets,
        knobs,
    )


def _search_record(targets: list[Target], request: RunRequest) -> dict[str, Any]:
    """run.json's and the config id's account of a search: its target labels and rate tolerance."""
    if not targets:
        return {}
    return {"targets": [target.label for target in targets], "rate_tolerance": request.rate_tolerance}


def manifest(plan: RunPlan) -> Manifest:
    """The run's run.json: schema version, resolved configuration, provenance."""
    request = plan.request
    dataset = DatasetRecord(
        plan.dataset.name,
        request.dataset,
        str(plan.dataset.root),
        request.data_dir,
        request.images,
        [ImageRecord(i.name, i.sha256, i.width, i.height, tuple(i.notes)) for i in plan.images],
        [{"path": str(b.path), "reason": b.reason} for b in plan.skipped_files],
    )
    return Manifest(
        plan.config_id,
        dataset,
        list(plan.codecs),
        request.threads,
        plan.jobs,
        plan.executor,
        plan.timing.to_dict(),
        plan.metrics,
        provenance(),
        search=_search_record(plan.targets, request),
    )


def request_from_run_json(path: Path) -> RunRequest:
    """The request that repeats a run exactly: its own catalog entries, qualities, images and threads."""
    recorded = read_manifest(path)
    dataset, timing = recorded.dataset, recorded.timing
    try:
        entries = [trusted_entry(codec.entry, str(path)) for codec in recorded.codecs]
    except CodecUnavailable as exc:
        raise UserError(str(exc)) from None
    return RunRequest(
        dataset=dataset.spec,
        data_dir=dataset.data_dir,
        images=dataset.limit,
        qualities={codec.name: list(codec.qualities) for codec in recorded.codecs},
        jobs=recorded.jobs,
        threads=recorded.threads,
        executor=recorded.executor,
        skip_bad=bool(dataset.skipped),
        entries=entries,
        repeat=timing.get("repeat"),
        timing=bool(timing.get("preset", False)),
        time_reference=timing.get("reference"),
        metrics=",".join(recorded.metrics) if recorded.metrics else None,
        rate_tolerance=float(recorded.search.get("rate_tolerance", 0.01)),
        **options_of(list(recorded.search.get("targets", []))),
    )


def _prepare_run_dir(plan: RunPlan) -> None:
    """Create the run directory, or check that an existing one holds this same configuration; run.json
    then lists the metrics its rows may hold (those asked for now and before)."""
    if (plan.run_dir / RUN_JSON).exists():
        existing = read_manifest(plan.run_dir)
        if existing.config_id != plan.config_id:
            raise UserError(
                f"{plan.run_dir} holds a different run configuration ({existing.config_id} here, "
                f"{plan.config_id} asked); use another --out or remove that directory"
            )
        known = [name for name in existing.metrics if name in measures.all_metrics()]
        plan.metrics = measures.with_sources([*known, *plan.metrics])
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(plan.run_dir, manifest(plan))


def _task(plan: RunPlan, image: datasets.ImageInfo, codec: CodecRecord, quality: float) -> Task:
    return Task(
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
        metrics=tuple(plan.metrics),
        metrics_device=plan.request.device or "cpu",
    )


def _tasks(plan: RunPlan) -> list[Task]:
    """A fixed-quality run's tasks: every image, configuration and quality."""
    return [
        _task(plan, image, codec, quality)
        for image in plan.images
        for codec in plan.codecs
        for quality in codec.qualities
    ]


def harness_overhead(rows: list[dict[str, Any]], wall_s: float, jobs: int, probe_s: float = 0.0) -> float:
    """1 - (sum of task codec + metric seconds, and a search's probe seconds) / (wall seconds x jobs),
    over the tasks run now."""
    busy = probe_s + sum(
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
    make_folder(Path(folder))
    with Store(Path(folder) / "results.sqlite") as cache:
        yield cache


def execute_plan(plan: RunPlan, progress: Callable[..., Any] | None = None) -> RunOutcome:
    """Run the tasks the store lacks; one transaction per finished task; export results.csv.

    One run at a time per run directory: a second one started meanwhile is refused (run_dir_lock).
    ``progress(total)`` makes the tasks' bar (tqdm's ``update``, ``close`` and, in a search run, whose
    total is its rows, ``set_postfix_str`` for the probes); ``progress(total, "rescore")`` that of stored
    rows rescored from kept bitstreams first.
    """
    with run_dir_lock(plan.run_dir):
        return _execute_locked(plan, progress)


@dataclass
class _Pending:
    """The planned tasks against what the store and the cache hold."""

    rerun: set[TaskKey] = field(default_factory=set)  # stored rows to replace (stale, not rescored)
    resumed: int = 0
    rescored: int = 0
    cached: int = 0
    problems: list[str] = field(default_factory=list)  # why kept bitstreams could not be rescored


def _rescorer(plan: RunPlan) -> Rescorer:
    return Rescorer(
        {image.sha256: image.path for image in plan.images}, {c.config_hash: c for c in plan.codecs}
    )


def _pending(
    plan: RunPlan,
    store: Store,
    cache: Store | None,
    kept: Path | None,
    cached_bitstreams: Path | None,
    planned: list[Task],
    pending: _Pending,
    progress: Callable[..., Any] | None = None,
) -> list[Task]:
    """Which of the ``planned`` tasks to run (counted in ``pending``): stored rows that lack a metric
    (or hold an older version of one) are rescored from their kept bitstream (in ``kept``, counted by a
    ``progress`` bar of their own), else run again; the cache's rows are taken the same way (their
    bitstreams in ``cached_bitstreams``)."""
    stored = {row_key(row): row for row in store.rows([task.key for task in planned])}
    rescorer = _rescorer(plan)
    fresh: dict[TaskKey, Task] = {}
    stale: list[tuple[Task, dict[str, Any], list[str]]] = []
    to_run: list[Task] = []
    for task in planned:
        row = stored.get(task.key)
        missing = measures.stale(row, task.metrics) if row is not None else []
        if row is None:
            fresh[task.key] = task
        elif isinstance(row["error"], str) or not missing:
            pending.resumed += 1
        else:
            stale.append((task, row, missing))
    bar = progress(len(stale), "rescore") if progress and kept and stale else None
    for task, row, missing in stale:
        if kept and (columns := _rescored(rescorer, row, kept, missing)):
            store.update(task.key, columns)
            pending.rescored += 1
        else:
            pending.rerun.add(task.key)
            to_run.append(task)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if cache is not None:
        by_fixed: dict[TaskKey, list[TaskKey]] = {}  # the cache keeps rows as at fixed qualities
        for key in fresh:
            by_fixed.setdefault(fixed_key(key), []).append(key)
        for row in cache.rows(list(by_fixed)):
            keys = by_fixed[row_key(row)]
            missing = measures.stale(row, fresh[keys[0]].metrics)
            if missing:
                columns = _rescored(rescorer, row, cached_bitstreams, missing)
                if columns is None:
                    continue
                cache.update(row_key(row), columns)
                row |= columns
            if kept:  # a run that keeps bitstreams takes only rows whose bitstream the cache kept intact
                try:
                    data = read_bitstream(
                        cached_bitstreams, keys[0], int(row["bytes"]), row.get("bitstream_sha256")
                    )
                except (FilesystemError, LookupError):
                    continue
                row["bitstream_sha256"] = keep_bitstream(kept, keys[0], data)
            else:
                row["bitstream_sha256"] = None  # this run keeps no bitstream
            for key in keys:  # every target that landed on this quality (one at fixed qualities)
                task = fresh.pop(key)
                names = {"dataset": task.dataset, "image": task.image, "target": task.target}
                store.add(row | names | task.search)
                pending.cached += 1
    pending.problems += rescorer.problems
    return to_run + list(fresh.values())


def _rescored(
    rescorer: Rescorer, row: dict[str, Any], folder: Path, names: list[str]
) -> dict[str, Any] | None:
    """The row's metric columns recomputed from its bitstream kept in ``folder``, or None (no bitstream,
    or it failed)."""
    return rescorer.columns(row, folder, names) if bitstream_path(folder, row_key(row)).is_file() else None


def _execute_locked(plan: RunPlan, progress: Callable[..., Any] | None) -> RunOutcome:
    start = time.perf_counter()
    _prepare_run_dir(plan)
    request = plan.request
    kept = plan.run_dir / BITSTREAMS if request.keep_bitstreams else None
    cached_bitstreams = Path(request.cache) / BITSTREAMS if request.cache else None
    with Store(plan.run_dir / DATABASE) as store, _cache(request.cache) as cache:
        pending = _Pending()

        def to_run(planned: list[Task], bar_for_rescore: Callable[..., Any] | None = None) -> list[Task]:
            return _pending(plan, store, cache, kept, cached_bitstreams, planned, pending, bar_for_rescore)

        searches = _searches(plan, store, cache) if plan.targets else None
        planned, ready, probes = searches.start() if searches else (_tasks(plan), [], [])
        for row in ready:  # targets out of reach, searches that failed: rows without measurements
            store.add(row)
        feed = TaskFeed(to_run(planned, progress) + probes)
        new_rows: list[dict[str, Any]] = []
        bar = None
        if progress and searches:
            bar = progress(_search_rows(plan))
            bar.update(pending.resumed + pending.rescored + pending.cached + len(ready))
        elif progress:
            bar = progress(len(feed))
        executor = make_executor(plan.request)
        rows = executor.run(feed, plan.jobs)
        try:
            for row in rows:
                if row.pop("probe", False):
                    before = pending.resumed + pending.rescored + pending.cached
                    planned, ready, probes = searches.record(row)
                    for ready_row in ready:
                        store.add(ready_row)
                    feed.extend(to_run(planned) + probes)
                    if bar is not None:  # the bar counts the rows; the probes encoded so far beside it
                        bar.update(pending.resumed + pending.rescored + pending.cached - before + len(ready))
                        bar.set_postfix_str(f"{searches.probes_run} probes")
                    continue
                key = row_key(row)
                data = row.pop("bitstream", None)
                if data is not None:  # before its row: a stored row always has its bitstream
                    row["bitstream_sha256"] = keep_bitstream(kept, key, data)
                store.add(row, replace=key in pending.rerun)
                if cache is not None and not row.get("error"):
                    if data is not None:  # the cache keeps bitstreams when the run does
                        keep_bitstream(cached_bitstreams, key, data)
                    cache.add(as_fixed(row), replace=True)
                new_rows.append(row)
                if bar is not None:
                    bar.update(1)
        except BaseException:
            with contextlib.suppress(UserError):  # stored rows exported still; the first failure is told
                write_csv(plan.run_dir, store.frame())
            raise
        finally:
            if bar is not None:
                bar.close()
        frame = store.frame()
        write_csv(plan.run_dir, frame)
    wall_s = time.perf_counter() - start
    errors = sum(1 for row in new_rows if row.get("error"))
    notes = list(plan.notes)
    if pending.cached:
        notes.append(f"{pending.cached} task(s) taken from the cache {request.cache}")
    if pending.rescored:
        notes.append(f"{pending.rescored} stored row(s) lacked a metric: rescored from their kept bitstreams")
    if pending.rerun:
        notes.append(
            f"{len(pending.rerun)} stored row(s) lacked a metric and were not rescored from a kept "
            "bitstream: run again"
        )
    if pending.problems:
        notes.append(
            f"{len(pending.problems)} kept bitstream(s) could not be rescored, their tasks ran again "
            f"(first: {pending.problems[0]})"
        )
    if searches:
        notes += _search_notes(searches, frame)
    notes += executor.notes
    if errors:
        notes.append(f"{errors} task(s) failed: see the error column")
    return RunOutcome(
        plan.run_dir,
        frame,
        len(new_rows),
        pending.resumed + pending.rescored,
        wall_s,
        harness_overhead(new_rows, wall_s, plan.jobs, searches.probe_s if searches else 0.0),
        notes,
    )


def _searches(plan: RunPlan, store: Store, cache: Store | None) -> Searches:
    return Searches(
        plan.targets,
        plan.request.rate_tolerance,
        plan.images,
        plan.codecs,
        plan.knobs,
        store,
        cache,
        lambda image, codec, quality: _task(plan, image, codec, quality),
    )


def _search_rows(plan: RunPlan) -> int:
    """The rows a search run ends with: one per image, configuration and target."""
    return len(plan.images) * len(plan.codecs) * len(plan.targets)


def _search_notes(searches: Searches, frame: pd.DataFrame) -> list[str]:
    """How the searches went: probes encoded and reused, targets missed or out of reach."""
    rows = frame[frame["target"] != ""]
    missed = rows[(rows["target_met"] == 0) & rows["bytes"].notna()]
    unreachable = rows[(rows["target_met"] == 0) & rows["bytes"].isna() & rows["error"].isna()]
    notes = [
        f"searches: {searches.probes_run} probe(s) encoded now, {searches.probes_reused} taken from the cache"
    ]
    if len(missed):
        notes.append(
            f"{len(missed)} row(s) missed their target: the closest point at or under it (see target_note)"
        )
    if len(unreachable):
        notes.append(
            f"{len(unreachable)} target(s) out of a codec's reach: rows without measurements (see target_note)"
        )
    return notes


def run(
    codecs: str | None = None,
    dataset: str = "sample",
    *,
    progress: Callable[..., Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run a benchmark (arguments as RunRequest's fields) and return every row of its configuration."""
    return execute_plan(resolve(RunRequest(codecs=codecs, dataset=dataset, **options)), progress).rows
