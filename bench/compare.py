"""`bench compare BASE NEW`: per codec, BD-rate of NEW vs BASE, time and kMAC/px change, errors; a CI gate.

Times are compared as ratios to each run's reference codec (run.json's config.timing.reference, else
jp2 when both runs hold it), so that a slower or faster machine cancels out; without a reference in
both runs the raw median times are compared, and a note says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.bd import bd_rate
from bench.report.curves import mean_curves, ok_rows
from bench.runs import Run
from bench.timing import DEFAULT_REFERENCE

PROVENANCE_KEYS = (
    ("machine", "cpu"),
    ("machine", "cores"),
    ("machine", "os"),
    ("python",),
    ("packages",),
    ("gpu",),
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
        reference = run.meta.get("config", {}).get("timing", {}).get("reference")
        if reference:
            return reference
    return DEFAULT_REFERENCE


def _median(run: Run, codec: str, column: str) -> float:
    values = ok_rows(run.rows)
    return float(values.loc[values["codec"] == codec, column].median())


def time_ratio(base: Run, new: Run, codec: str, column: str, reference: str | None) -> float:
    """NEW's median time over BASE's, each divided by its run's reference codec median if given."""
    ratio = _median(new, codec, column) / _median(base, codec, column)
    if reference:
        ratio /= _median(new, reference, column) / _median(base, reference, column)
    return ratio


def _curve(run: Run, codec: str, metric: str) -> list[tuple[float, float]]:
    rows = run.rows[run.rows["codec"] == codec].assign(label=codec)
    curve = mean_curves(rows, metric)
    return list(zip(curve["bpp"], curve["value"], strict=True))


def _lookup(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        document = document.get(key, {}) if isinstance(document, dict) else {}
    return document


def provenance_notes(base: Run, new: Run) -> list[str]:
    """One line per provenance item or codec version that differs between the runs."""
    notes = []
    for path in PROVENANCE_KEYS:
        before, after = (
            _lookup(base.meta.get("provenance", {}), path),
            _lookup(new.meta.get("provenance", {}), path),
        )
        if before != after:
            notes.append(f"provenance differs: {'.'.join(path)}: {before} (BASE) vs {after} (NEW)")
    for codec in sorted(set(base.rows["codec"]) & set(new.rows["codec"])):
        before, after = base.codec_config(codec).get("versions"), new.codec_config(codec).get("versions")
        if before != after:
            notes.append(f"provenance differs: {codec} versions: {before} (BASE) vs {after} (NEW)")
    return notes


def kmac_ratio(base: Run, new: Run, codec: str) -> float:
    """NEW's kMAC per pixel over BASE's, the larger of encoder and decoder; NaN where not counted."""
    ratios = []
    for column in ("kmac_px_enc", "kmac_px_dec"):
        if column in base.rows and column in new.rows:
            ratios.append(_median(new, codec, column) / _median(base, codec, column))
    ratios = [r for r in ratios if not math.isnan(r)]
    return max(ratios) if ratios else math.nan


def compare(
    base: Run,
    new: Run,
    metrics: list[str],
    max_bd_loss: float | None = None,
    max_time_ratio: float | None = None,
    max_kmac_ratio: float | None = None,
) -> Comparison:
    """Per codec of both runs: BD-rate (%) per metric, encode/decode time ratios, kMAC/px ratio, NEW's
    errors, and which threshold it passes (``fails``)."""
    notes = provenance_notes(base, new)
    reference = _reference(base, new)
    if reference not in set(base.rows["codec"]) & set(new.rows["codec"]):
        notes.append(f"reference codec {reference} is not in both runs: raw median times compared")
        reference = None
    shared = sorted(set(base.rows["codec"]) & set(new.rows["codec"]))
    for codec in sorted(set(base.rows["codec"]) ^ set(new.rows["codec"])):
        notes.append(f"{codec} is in only one run: not compared")
    records = []
    for codec in shared:
        record: dict[str, Any] = {"codec": codec}
        fails = []
        for metric in metrics:
            value = bd_rate(_curve(base, codec, metric), _curve(new, codec, metric))
            record[f"bd_rate_{metric}"] = value
            if max_bd_loss is not None and not math.isnan(value) and value > max_bd_loss:
                fails.append(f"bd_rate_{metric} > {max_bd_loss:g} %")
        for column, name in (("enc_s", "enc_ratio"), ("dec_s", "dec_ratio")):
            record[name] = time_ratio(base, new, codec, column, reference)
            if max_time_ratio is not None and record[name] > max_time_ratio:
                fails.append(f"{name} > {max_time_ratio:g}")
        record["kmac_ratio"] = kmac_ratio(base, new, codec)
        if max_kmac_ratio is not None and record["kmac_ratio"] > max_kmac_ratio:
            fails.append(f"kmac_ratio > {max_kmac_ratio:g}")
        errors = int(new.rows.loc[new.rows["codec"] == codec, "error"].notna().sum())
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
