"""`bench compare BASE NEW`: per codec configuration, BD-rate of NEW vs BASE, time and kMAC/px change,
errors; a CI gate. The curves are the dataset-mean curves of bench.report.curves: over the qualities, or
over the targets of a run made in a search mode.

Configurations pair across the runs by codec name and options (the config hash also covers library
versions, which may differ between the runs); each is labelled as bench.labels labels NEW's.

Times are compared as ratios to each run's reference codec (run.json's config.timing.reference, else
jp2 when both runs hold it), so that a slower or faster machine cancels out; without a reference in
both runs the raw median times are compared, and a note says so. Codecs do not slow down alike on
another CPU model, so ``--max-time-ratio`` gates only runs measured on the same CPU model (provenance
machine.cpu and machine.cpu_id); otherwise a note says time was not gated. BD-rate and kMAC are gated
always.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.bd import bd_rate
from bench.labels import configuration_labels
from bench.measures import all_metrics
from bench.report.curves import mean_curves, ok_rows
from bench.runs import Run
from bench.timing import DEFAULT_REFERENCE

CPU_KEYS = (("machine", "cpu"), ("machine", "cpu_id"))
PROVENANCE_KEYS = (
    *CPU_KEYS,
    ("machine", "cores"),
    ("machine", "os"),
    ("python",),
    ("packages",),
    ("gpu",),
    ("code", "commit"),
)


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per codec of both runs
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.table["fails"].astype(bool).any())


def _reference(base: Run, new: Run) -> str | None:
    for run in (new, base):
        reference = run.manifest.timing.get("reference") if run.manifest else None
        if reference:
            return reference
    return DEFAULT_REFERENCE


def configurations(run: Run) -> dict[tuple[str, str], str]:
    """(codec, options as JSON) -> config hash, for each configuration of the run's rows; a configuration
    whose options run.json does not give pairs by its config hash."""
    found = {}
    for codec, config_hash in run.rows[["codec", "config_hash"]].drop_duplicates().itertuples(index=False):
        record = run.codec(config_hash)
        options = json.dumps(record.entry.options, sort_keys=True, default=str) if record else config_hash
        found[(codec, options)] = config_hash
    return found


def _median(run: Run, column: str, codec: str, config_hash: str | None = None) -> float:
    """The median of ``column`` over the finished rows of a codec (of one configuration when given)."""
    rows = ok_rows(run.rows)
    chosen = rows["codec"] == codec
    if config_hash is not None:
        chosen &= rows["config_hash"] == config_hash
    return float(rows.loc[chosen, column].median())


def time_ratio(base: Run, new: Run, pair: tuple[str, str, str], column: str, reference: str | None) -> float:
    """NEW's median time over BASE's for ``pair`` (codec, BASE's config hash, NEW's), each divided by its
    run's reference codec median if given."""
    codec, old, now = pair
    ratio = _median(new, column, codec, now) / _median(base, column, codec, old)
    if reference:
        ratio /= _median(new, column, reference) / _median(base, column, reference)
    return ratio


def _curve(run: Run, config_hash: str, metric: str) -> list[tuple[float, float]]:
    rows = run.rows[run.rows["config_hash"] == config_hash].assign(label=config_hash)
    curve = mean_curves(rows, metric)
    return list(zip(curve["bpp"], curve["value"], strict=True))


def searched(run: Run) -> str:
    """The targets the run's rows were searched for (their curves' points), or ``fixed qualities``."""
    targets = sorted(set(run.rows["target"]) - {""})
    return f"targets {', '.join(targets)}" if targets else "fixed qualities"


def _lookup(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        document = document.get(key, {}) if isinstance(document, dict) else {}
    return document


def provenance_notes(base: Run, new: Run, pairs: dict[str, tuple[str, str, str]]) -> list[str]:
    """One line per provenance item or codec version that differs between the runs."""
    notes = []
    for path in PROVENANCE_KEYS:
        before, after = (
            _lookup(run.manifest.provenance if run.manifest else {}, path) for run in (base, new)
        )
        if before != after:
            notes.append(f"provenance differs: {'.'.join(path)}: {before} (BASE) vs {after} (NEW)")
    for label, (_, old, now) in pairs.items():
        before, after = (run.codec(config) for run, config in ((base, old), (new, now)))
        before, after = (record.versions if record else None for record in (before, after))
        if before != after:
            notes.append(f"provenance differs: {label} versions: {before} (BASE) vs {after} (NEW)")
    return notes


def same_cpu(base: Run, new: Run) -> bool:
    """Whether both runs recorded the same CPU model (name and, where recorded, vendor/family/model)."""
    found = [
        [_lookup(run.manifest.provenance if run.manifest else {}, key) for key in CPU_KEYS]
        for run in (base, new)
    ]
    return found[0][0] is not None and found[0] == found[1]


def kmac_ratio(base: Run, new: Run, pair: tuple[str, str, str]) -> float:
    """NEW's kMAC per pixel over BASE's, the larger of encoder and decoder; NaN where not counted."""
    codec, old, now = pair
    ratios = []
    for column in ("kmac_px_enc", "kmac_px_dec"):
        if column in base.rows and column in new.rows:
            ratios.append(_median(new, column, codec, now) / _median(base, column, codec, old))
    ratios = [r for r in ratios if not math.isnan(r)]
    return max(ratios) if ratios else math.nan


def paired(base: Run, new: Run) -> tuple[dict[str, tuple[str, str, str]], list[str]]:
    """{label: (codec, BASE's config hash, NEW's)} of the configurations both runs hold, and the labels
    of those only one holds. A codec in one configuration in each run pairs whatever its options."""
    before, after = configurations(base), configurations(new)
    for codec in {key[0] for key in before} & {key[0] for key in after}:
        mine = [[key for key in side if key[0] == codec] for side in (before, after)]
        if len(mine[0]) == len(mine[1]) == 1:
            before[(codec, "")], after[(codec, "")] = before.pop(mine[0][0]), after.pop(mine[1][0])
    keys = sorted(before.keys() | after.keys())
    owners = {key: (new if key in after else base) for key in keys}
    labels = configuration_labels([owners[key].configuration(key[0], (after | before)[key]) for key in keys])
    pairs = {
        label: (key[0], before[key], after[key])
        for key, label in zip(keys, labels, strict=True)
        if key in before and key in after
    }
    alone = [label for key, label in zip(keys, labels, strict=True) if label not in pairs]
    return pairs, alone


def compare(
    base: Run,
    new: Run,
    metrics: list[str],
    max_bd_loss: float | None = None,
    max_time_ratio: float | None = None,
    max_kmac_ratio: float | None = None,
) -> Comparison:
    """Per codec configuration of both runs: BD-rate (%) per metric, encode/decode time ratios, kMAC/px
    ratio, NEW's errors, and which threshold it passes (``fails``)."""
    pairs, alone = paired(base, new)
    notes = provenance_notes(base, new, pairs)
    reference = _reference(base, new)
    if reference not in set(base.rows["codec"]) & set(new.rows["codec"]):
        notes.append(f"reference codec {reference} is not in both runs: raw median times compared")
        reference = None
    notes += [f"{label} is in only one run: not compared" for label in alone]
    if searched(base) != searched(new):
        notes.append(
            f"BASE ran at {searched(base)}, NEW at {searched(new)}: BD compares the curves where they overlap"
        )
    if max_time_ratio is not None and not same_cpu(base, new):
        notes.append(
            "time ratios not gated: the runs were measured on different CPU models (or one did not record "
            "its own); gate time against a baseline made on this CPU model (make baseline)"
        )
        max_time_ratio = None
    records = []
    for label, pair in sorted(pairs.items()):
        _, old, now = pair
        record: dict[str, Any] = {"codec": label}
        fails = []
        for metric in metrics:
            higher = all_metrics()[metric].higher_is_better
            value = bd_rate(_curve(base, old, metric), _curve(new, now, metric), higher_is_better=higher)
            record[f"bd_rate_{metric}"] = value
            if max_bd_loss is not None and not math.isnan(value) and value > max_bd_loss:
                fails.append(f"bd_rate_{metric} > {max_bd_loss:g} %")
        for column, name in (("enc_s", "enc_ratio"), ("dec_s", "dec_ratio")):
            record[name] = time_ratio(base, new, pair, column, reference)
            if max_time_ratio is not None and record[name] > max_time_ratio:
                fails.append(f"{name} > {max_time_ratio:g}")
        record["kmac_ratio"] = kmac_ratio(base, new, pair)
        if max_kmac_ratio is not None and record["kmac_ratio"] > max_kmac_ratio:
            fails.append(f"kmac_ratio > {max_kmac_ratio:g}")
        errors = int(new.rows.loc[new.rows["config_hash"] == now, "error"].notna().sum())
        record["errors"] = errors
        if errors:
            fails.append(f"{errors} error row(s)")
        record["fails"] = "; ".join(fails)
        records.append(record)
    return Comparison(pd.DataFrame.from_records(records), notes)


def format_comparison(table: pd.DataFrame) -> str:
    """Fixed-precision text of a comparison table."""
    formats = {name: "{:+.2f}".format for name in table.columns if name.startswith("bd_rate_")}
    formats |= {name: "{:.2f}".format for name in ("enc_ratio", "dec_ratio", "kmac_ratio")}
    return table.replace({"fails": {"": "-"}}).to_string(index=False, formatters=formats, na_rep="nan")
