"""The registry of measures: every column of a result row, declared once.

Each column is a ``Measure``, each metric a ``Metric`` (bench.measure_types). The store's schema
and CSV column order, the run summary, plot labels, the BD metric choices, the CompressAI export keys,
the report's tables and the column table of docs/results.md all come from here.

Built-in metrics are declared in ``bench.metrics``; metric tools (external programs) in the TOML files of
the metrics folder (``bench.metric_catalog``). Plug-ins add metrics under the entry-point group
``bench.metrics``: each entry point names a Metric, or a list of them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from bench import metric_device
from bench.errors import UserError
from bench.measure_types import HIGHER, LOWER, Measure, Metric, MetricUndefined
from bench.metric_catalog import load_metric_catalog
from bench.metrics import METRICS
from bench.resources import metrics_dir

__all__ = ["HIGHER", "LOWER", "Measure", "Metric", "MetricUndefined"]  # what plug-ins import from here
ENTRY_POINT_GROUP = "bench.metrics"
VERSIONS_COLUMN, NOTES_COLUMN = "metric_versions", "metric_notes"
DEFAULT_METRICS_ENV = "BENCH_DEFAULT_METRICS"


def _column(name: str, label: str, doc: str, **settings: Any) -> Measure:
    return Measure(name=name, label=label, doc=doc, **settings)


IDENTITY = [
    _column(
        "dataset",
        "dataset",
        "dataset name (`sample`, `kodak`, or the folder's name)",
        sql="TEXT",
        aggregate="",
    ),
    _column("image", "image", "file name within the dataset", sql="TEXT", aggregate=""),
    _column(
        "image_sha256",
        "image hash",
        "sha256 of the decoded RGB pixels (docs/datasets.md)",
        sql="TEXT NOT NULL",
        aggregate="",
    ),
    _column("codec", "codec", "catalog name", sql="TEXT NOT NULL", aggregate=""),
    _column(
        "config_hash",
        "config hash",
        "16 hex of sha256 over the resolved catalog entry, threads and the codec's `versions()`",
        sql="TEXT NOT NULL",
        aggregate="",
    ),
    _column(
        "quality",
        "quality",
        "the codec's native quality parameter (see the catalog entry's `quality_label`)",
        sql="REAL NOT NULL",
        fmt="{:g}",
        aggregate="",
        compressai_key="quality",
    ),
    _column(
        "target",
        "target",
        "what a matched-rate or equal-quality run searched the quality parameter for (`bpp=0.25`, "
        '`psnr_y=35`, `budget_bpp=0.15`: docs/results.md, "Matched rates"); empty in a run at fixed '
        "qualities. Part of the task key: two targets that land on the same quality keep a row each",
        sql="TEXT NOT NULL",
        aggregate="",
    ),
    _column("width", "width", "original image width in pixels", sql="INTEGER", aggregate=""),
    _column("height", "height", "original image height in pixels", sql="INTEGER", aggregate=""),
]
RATE = [
    _column(
        "bytes",
        "bytes",
        "size of the complete encoded bitstream (headers and containers included)",
        unit="B",
        sql="INTEGER",
        fmt="{:.0f}",
    ),
    _column(
        "bpp",
        "bits per pixel",
        "bytes x 8 / (width x height)",
        unit="bpp",
        fmt="{:.3f}",
        compressai_key="bpp",
    ),
]
SEARCH = [
    _column(
        "target_met",
        "target met",
        "1 when the search met its target (a rate within `--rate-tolerance`, the metric value "
        "reached, the budget kept), 0 when the row is the closest point at or under it or the target is "
        "out of the codec's reach (then `target_note` says why); empty at fixed qualities",
        sql="INTEGER",
        aggregate="",
    ),
    _column(
        "probes",
        "probes",
        "knob values the search tried for this target (a rate probe is an encode only; an "
        "equal-quality probe is also decoded and scored); empty at fixed qualities",
        sql="INTEGER",
        aggregate="",
    ),
    _column(
        "target_note",
        "target note",
        "why the target was missed (the achieved rate and its neighbour) or is out of reach; an "
        "unreachable target's row has no rate, metrics or times",
        sql="TEXT",
        aggregate="",
    ),
]
TIMES = [
    _column(
        "enc_s",
        "encode s",
        "`time.perf_counter` seconds around the encode call only; the median of `repeats` calls",
        unit="s",
        fmt="{:.4f}",
        compressai_key="encoding_time",
    ),
    _column(
        "dec_s",
        "decode s",
        "the same around the decode call",
        unit="s",
        fmt="{:.4f}",
        compressai_key="decoding_time",
    ),
    _column(
        "enc_mps",
        "encode MP/s",
        "megapixels per second: width x height / 1e6 / enc_s",
        unit="MP/s",
        fmt="{:.2f}",
        aggregate="median",
    ),
    _column("dec_mps", "decode MP/s", "the same with dec_s", unit="MP/s", fmt="{:.2f}", aggregate="median"),
    _column(
        "metric_s",
        "metric s",
        "seconds spent computing the metrics (for the harness overhead)",
        unit="s",
        fmt="{:.4f}",
    ),
    _column(
        "load_s",
        "load s",
        "seconds the worker took to load the codec's model or library (learned "
        "codecs), timed apart from coding; empty for codecs that report none",
        unit="s",
        fmt="{:.3f}",
    ),
]
MEMORY = [
    _column(
        "enc_peak_rss_mb",
        "encode peak RSS MB",
        "peak resident memory of the worker process during the "
        "encode calls, in MB (1e6 bytes), its baseline (Python, libraries, the image) included: on Linux, "
        '"5" is written to /proc/self/clear_refs before the calls and VmHWM read after. Empty for '
        "subprocess codecs (a child's `ru_maxrss` also counts the parent memory it was forked from) and "
        "where /proc/self/clear_refs cannot be written",
        unit="MB",
        fmt="{:.1f}",
    ),
    _column(
        "dec_peak_rss_mb",
        "decode peak RSS MB",
        "the same during the decode calls",
        unit="MB",
        fmt="{:.1f}",
    ),
    _column(
        "enc_gpu_peak_mb",
        "encode GPU peak MB",
        "codecs running on a CUDA device (`--device cuda`): "
        "torch's `max_memory_allocated` during the encode calls, in MB, after `reset_peak_memory_stats` "
        "(the CUDA context is not counted); empty on the CPU",
        unit="MB",
        fmt="{:.1f}",
    ),
    _column(
        "dec_gpu_peak_mb",
        "decode GPU peak MB",
        "the same during the decode calls",
        unit="MB",
        fmt="{:.1f}",
    ),
]
COMPLEXITY = [
    _column(
        "kmac_px_enc",
        "encoder kMAC/px",
        "learned codecs (those with a `complexity()` hook, e.g. `lic`): "
        "thousands of multiply-accumulates per pixel of the encoder, counted once per configuration "
        "with torch's FlopCounterMode on a 768 x 512 input (MACs = FLOPs / 2 of convolutions and matrix "
        "products; entropy coding not counted; bench/complexity.py); empty for the others",
        unit="kMAC/px",
        fmt="{:.1f}",
        aggregate="median",
    ),
    _column(
        "kmac_px_dec",
        "decoder kMAC/px",
        "the same for the decoder",
        unit="kMAC/px",
        fmt="{:.1f}",
        aggregate="median",
    ),
]
SETTINGS = [
    _column(
        "repeats",
        "repeats",
        "timed encode calls and timed decode calls of the task (`--repeat`, "
        "`--timing`); every call must return the same bytes and pixels as the first, else the task is "
        "an error row (`NotRepeatableError`)",
        sql="INTEGER",
        aggregate="",
    ),
    _column(
        "threads",
        "threads",
        "threads given to the codec for each call",
        sql="INTEGER",
        aggregate="",
    ),
    _column("jobs", "jobs", "worker processes of the run", sql="INTEGER", aggregate=""),
    _column(
        "device",
        "device",
        "where the codec ran (`cpu`, or a codec's own device such as `cuda`)",
        sql="TEXT",
        aggregate="",
    ),
]
PROVENANCE = [
    _column(
        "bitstream_sha256",
        "bitstream hash",
        "sha256 of the kept bitstream (`--keep-bitstreams`), which `bench rescore` checks before "
        "decoding it; empty when the bitstream is not kept, and for rows stored before schema 7 (their "
        "bitstream is checked by its length only)",
        sql="TEXT",
        aggregate="",
    ),
    _column(
        VERSIONS_COLUMN,
        "metric versions",
        "JSON object: the definition version of each metric "
        "computed for the row (`bench metrics` lists the current ones); a value of an older version is "
        "recomputed when a run or the cache is asked for that metric",
        sql="TEXT",
        aggregate="",
    ),
    _column(
        NOTES_COLUMN,
        "metric notes",
        "JSON object: per metric, why its value is undefined (e.g. MS-SSIM "
        "on an image with a side under 161 px); empty when every value is defined",
        sql="TEXT",
        aggregate="",
    ),
    _column(
        "error",
        "error",
        "why the task failed (`Type: message`), else empty; a failed task has no rate or metrics",
        sql="TEXT",
        aggregate="",
    ),
]


# the fixed columns before the metrics in results.csv, then after
BEFORE_METRICS = IDENTITY + RATE + SEARCH
AFTER_METRICS = TIMES + MEMORY + COMPLEXITY + SETTINGS + PROVENANCE


def _from_entry_points() -> list[Metric]:
    found: list[Metric] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        loaded = point.load()
        for metric in loaded if isinstance(loaded, list | tuple) else [loaded]:
            if not isinstance(metric, Metric):
                raise UserError(
                    f"entry point {point.name} ({point.value}) of {ENTRY_POINT_GROUP} is not a Metric"
                )
            found.append(metric)
    return found


def builtin_metrics() -> list[Metric]:
    return list(METRICS)


@cache
def all_metrics() -> dict[str, Metric]:
    """Every metric by name: the built-in ones, then the metric tools, then those of installed plug-ins."""
    metrics: dict[str, Metric] = {}
    fixed = {measure.name for measure in BEFORE_METRICS + AFTER_METRICS}
    builtin = builtin_metrics()
    tools = load_metric_catalog(taken=fixed | {metric.name for metric in builtin})
    for metric in builtin + tools + _from_entry_points():
        if metric.name in metrics or metric.name in fixed:
            raise UserError(f"metric {metric.name!r} is registered twice")
        if metric.source is not None and metric.source not in metrics:
            raise UserError(
                f"metric {metric.name!r} derives from {metric.source!r}, registered after it or not at all"
            )
        metrics[metric.name] = metric
    return metrics


def measures(metrics: Iterable[Metric] | None = None) -> dict[str, Measure]:
    """Every column in results.csv order; ``metrics`` replaces the registered metrics (docs table)."""
    chosen = list(all_metrics().values()) if metrics is None else list(metrics)
    return {measure.name: measure for measure in BEFORE_METRICS + chosen + AFTER_METRICS}


def held(rows: Any) -> list[str]:
    """The registered metrics of which ``rows`` (a DataFrame) hold at least one value, in registry order."""
    return [name for name in all_metrics() if name in rows.columns and rows[name].notna().any()]


def measure_label(name: str) -> str:
    """A column's label (its name when it is not registered)."""
    measure = measures().get(name)
    return measure.label if measure else name


def groups() -> dict[str, list[str]]:
    """Every group of metrics, by name."""
    found: dict[str, list[str]] = {}
    for metric in all_metrics().values():
        for group in metric.groups:
            found.setdefault(group, []).append(metric.name)
    return found


def _items(spec: str | None) -> list[tuple[bool, str]]:
    """The items of a ``--metrics`` value: (adds to the default, name or group)."""
    items = [part.strip() for part in (spec or "").split(",")]
    return [(item.startswith("+"), item.lstrip("+")) for item in items if item]


def _expand(name: str, default: list[str], option: str) -> set[str]:
    """The metrics one item names: ``all``, ``default``, a group or a metric."""
    metrics, known = all_metrics(), groups()
    if name == "all":
        return set(metrics)
    if name == "default":
        return set(default)
    if name in known:
        return set(known[name])
    if name in metrics:
        return {name}
    choices = ", ".join(["all", *known, *metrics])
    raise UserError(f"{option}: no metric or group {name!r}; choose from {choices}")


def resolve_metrics(spec: str | None, default: list[str], option: str = "--metrics") -> list[str]:
    """The metric names a ``--metrics`` value asks for, in registry order.

    Items are names or groups; ``+NAME`` or ``+GROUP`` adds to ``default``; ``all`` is every metric.
    Plain items replace the default; an unknown item is a UserError listing the choices.
    """
    items = _items(spec)
    chosen: set[str] = set()
    for _, name in items:
        chosen |= _expand(name, default, option)
    if all(adds for adds, _ in items):
        chosen |= set(default)
    if not chosen:
        raise UserError(f"{option} names no metric")
    return [name for name in all_metrics() if name in chosen]


def asked_for(spec: str | None) -> set[str]:
    """The metrics a ``--metrics`` value names by name or group: not those of ``default`` or ``all``,
    which a run leaves out with a note when they cannot run there."""
    return {
        metric
        for _, name in _items(spec)
        if name not in ("all", "default")
        for metric in with_sources(_expand(name, [], "--metrics"))
    }


def named(spec: str | None) -> list[str]:
    """The metrics a ``--metrics`` value names one by one (not through a group)."""
    items = [item.strip().lstrip("+") for item in (spec or "").split(",")]
    return [name for name in all_metrics() if name in items]


# Composite scores: per group, the label of the mean of its metrics' BD-rates, a column of `bench bd` and
# `bench report` whenever --metrics names the group (bench.report.bdtable).
OVERALL = {"jpegai": "JPEG AI overall"}


def overall_groups(spec: str | None) -> list[str]:
    """The groups with a composite score (OVERALL) that a ``--metrics`` value names (``+GROUP`` too)."""
    return list(dict.fromkeys(name for _, name in _items(spec) if name in OVERALL))


def summary_metrics(spec: str | None = None) -> list[str]:
    """The metrics the summary of `bench run` shows: those flagged for it and those ``spec`` names."""
    flagged = [name for name, metric in all_metrics().items() if metric.summary]
    return flagged + [name for name in named(spec) if name not in flagged]


def default_metrics() -> list[str]:
    """What `bench run` computes unless --metrics says otherwise: the metrics $BENCH_DEFAULT_METRICS
    names (in the --metrics grammar, ``+NAME`` adding to the group), else the ``default`` group."""
    group = list(groups().get("default", []))
    spec = os.environ.get(DEFAULT_METRICS_ENV, "").strip()
    return resolve_metrics(spec, group, f"${DEFAULT_METRICS_ENV}") if spec else group


def with_sources(names: Iterable[str]) -> list[str]:
    """``names`` and every metric they derive from, in registry order."""
    metrics = all_metrics()
    wanted = set(names)
    unknown = sorted(wanted - set(metrics))
    if unknown:
        raise LookupError(f"metric(s) {', '.join(unknown)} not registered here (is a plug-in missing?)")
    for name in list(wanted):
        while metrics[name].source is not None:
            name = metrics[name].source
            wanted.add(name)
    return [name for name in metrics if name in wanted]


def unavailable_here(names: Iterable[str]) -> dict[str, str]:
    """Why each of ``names`` cannot be computed in this process (a metric whose source cannot, neither),
    for those that cannot; a name not registered here is one of them (a plug-in missing)."""
    metrics = all_metrics()
    reasons: dict[str, str] = {}
    for name in names:
        metric = metrics.get(name)
        if metric is None:
            reasons[name] = "it is not registered here (is a plug-in missing?)"
        elif metric.source is not None and metric.source in reasons:
            reasons[name] = reasons[metric.source]
        elif reason := metric.unavailable():
            reasons[name] = reason
    return reasons


def unavailable_lines(reasons: dict[str, str]) -> list[str]:
    """One line per reason (``unavailable_here``'s), naming the metrics it holds back."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        by_reason.setdefault(reason, []).append(name)
    return [
        f"metric{'s' if len(names) > 1 else ''} {', '.join(names)}: {reason}"
        for reason, names in by_reason.items()
    ]


def check_available(names: Iterable[str]) -> None:
    """Raise a UserError naming each requested metric that cannot be computed here."""
    lines = unavailable_lines(unavailable_here(with_sources(names)))
    if lines:
        raise UserError("; ".join(lines))


def compute(names: Iterable[str], reference: np.ndarray, reconstruction: np.ndarray) -> dict[str, Any]:
    """The metrics ``names`` (their sources included) of one pair: each value by name, and the versions
    and notes as dicts under metric_versions and metric_notes (``merged`` makes the row's columns).

    An undefined value is NaN with a note saying why; any other failure of a metric raises.
    """
    if reference.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {reconstruction.shape}")
    metrics = all_metrics()
    values: dict[str, float] = {}
    notes: dict[str, str] = {}
    families: dict[Any, dict[str, float] | MetricUndefined] = {}
    for name in with_sources(names):
        metric = metrics[name]
        if metric.source is not None:
            source = values[metric.source]
            values[name] = math.nan if math.isnan(source) else float(metric.derive(source))
            if metric.source in notes:
                notes[name] = notes[metric.source]
            continue
        try:
            if metric.family is None:
                values[name] = float(metric.compute(reference, reconstruction))
                continue
            if metric.family not in families:
                try:
                    families[metric.family] = metric.family(reference, reconstruction)
                except MetricUndefined as exc:
                    families[metric.family] = exc
            result = families[metric.family]
            if isinstance(result, MetricUndefined):
                raise result
            values[name] = float(result[name])
        except MetricUndefined as exc:
            values[name], notes[name] = math.nan, f"{name} undefined: {exc}"
    device = metric_device.current()
    if device != "cpu":
        for name in values:
            if metrics[name].gpu and name not in notes:
                notes[name] = f"computed on {metric_device.name(device)}"
    versions = {name: metrics[name].current_version() for name in values}
    return values | {VERSIONS_COLUMN: versions, NOTES_COLUMN: notes}


def merged(row: dict[str, Any], computed: dict[str, Any]) -> dict[str, Any]:
    """The columns to store for ``computed`` (from ``compute``) on a row that may hold other metrics:
    values as they are, versions and notes as JSON objects merged with the row's own."""
    versions, notes = _json(row.get(VERSIONS_COLUMN)), _json(row.get(NOTES_COLUMN))
    for name in computed[VERSIONS_COLUMN]:
        notes.pop(name, None)
    versions |= computed[VERSIONS_COLUMN]
    notes |= computed[NOTES_COLUMN]
    values = {k: v for k, v in computed.items() if k not in (VERSIONS_COLUMN, NOTES_COLUMN)}
    return values | {
        VERSIONS_COLUMN: json.dumps(versions, sort_keys=True),
        NOTES_COLUMN: json.dumps(notes, sort_keys=True) if notes else None,
    }


def _json(text: Any) -> dict[str, Any]:
    """A JSON object column's content; {} for an empty or unreadable one."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def stale(row: dict[str, Any], names: Iterable[str]) -> list[str]:
    """The metrics of ``names`` that a stored row lacks or holds at another version than today's."""
    versions = _json(row.get(VERSIONS_COLUMN))
    metrics = all_metrics()
    return [name for name in names if versions.get(name) != metrics[name].current_version()]


def cost_seconds(metric: Metric, side: tuple[int, int] = (512, 768)) -> float:
    """Seconds to compute ``metric`` (with its sources) on one 768x512 pair of noisy images, after an
    untimed first call (imports, first-call set-up)."""
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (*side, 3), dtype=np.uint8)
    noisy = np.clip(reference + rng.normal(0, 8, reference.shape), 0, 255).astype(np.uint8)
    compute([metric.name], reference, noisy)
    start = time.perf_counter()
    compute([metric.name], reference, noisy)
    return time.perf_counter() - start


def docs_table(metrics: Iterable[Metric] | None = None) -> str:
    """The column table of docs/results.md: unless given, the built-in metrics and the shipped metric tools
    (not plug-ins, nor a $BENCH_METRICS_DIR's)."""
    chosen = (
        builtin_metrics() + load_metric_catalog(metrics_dir(shipped=True))
        if metrics is None
        else list(metrics)
    )
    lines = ["| column | unit | better | meaning |", "| --- | --- | --- | --- |"]
    for measure in measures(chosen).values():
        better = measure.direction or ""
        doc = measure.doc
        if isinstance(measure, Metric):
            doc += f" (metric version {measure.version}; reads {measure.reads})"
        lines.append(f"| `{measure.name}` | {measure.unit} | {better} | {doc} |")
    return "\n".join(lines) + "\n"
