"""The tables of runs made in a search mode (bench.targets), per target and without interpolation.

- Rate targets, "at matched rates": per metric, each codec's mean over images at each target with a
  bootstrap 95 % CI over images; and the rates achieved: the mean bpp and the targets met.
- Quality targets, "bytes at equal quality": per codec and target, the mean over images of its bytes over
  the anchor's on the same image, with a bootstrap 95 % CI over images; an image where either codec did not
  reach the target is left out of that mean and counted.
- Budgets: per codec and budget, the knob value, the corpus bpp (total bits over total pixels), the spread
  of per-image bpp and the mean of each metric.

A missed rate target is a full row (the closest point at or under the target) and counts in the means.
The row of a target out of a codec's reach has no rate: it is left out of every mean and counted, as
are failed tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.measures import all_metrics, measures
from bench.report.bdtable import bootstrap_ci
from bench.report.curves import ok_rows
from bench.targets import BUDGET, QUALITY, RATE, parse_label


@dataclass
class TargetTable:
    """One table of a search run: its grid as text (a row per codec) and the numbers behind it."""

    ident: str  # "achieved-rates", "matched-psnr_rgb", "equal-quality", "budget-0.15"
    heading: str  # "Matched rates: psnr_rgb"
    title: str  # what the numbers are, in a sentence
    grid: pd.DataFrame  # strings; the index (named "codec") holds the codecs
    records: list[dict[str, Any]]  # one per codec and target (and metric), None where undefined
    notes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """The rows of one codec at one target (one per image) and how each ended."""

    rows: pd.DataFrame

    @property
    def reached(self) -> pd.DataFrame:
        """Finished rows with a rate: the target met, or missed (the closest point at or under it)."""
        return ok_rows(self.rows)

    @property
    def met(self) -> pd.DataFrame:
        return self.reached[self.reached["target_met"] == 1]

    @property
    def failed(self) -> int:
        return int(self.rows["error"].notna().sum())

    @property
    def unreachable(self) -> int:
        """Rows without a rate or an error: the target is out of the codec's reach."""
        return len(self.rows) - len(self.reached) - self.failed


def where(target: str) -> str:
    """A target label in a sentence: ``0.12 bpp``, ``psnr_y 35``, ``a budget of 0.15 bpp``."""
    found = parse_label(target)
    if found.kind == RATE:
        return f"{found.value:g} bpp"
    if found.kind == BUDGET:
        return f"a budget of {found.value:g} bpp"
    return f"{found.metric} {found.value:g}"


def count_notes(outcomes: dict[tuple[str, str], Outcome]) -> list[str]:
    """``jpeg: 3 of 24 images unreachable at 0.12 bpp`` (and failed), per codec and target."""
    return [
        f"{label}: {count} of {len(one.rows)} images {what} at {where(target)}"
        for (label, target), one in outcomes.items()
        for count, what in ((one.unreachable, "unreachable"), (one.failed, "failed"))
        if count
    ]


def _outcomes(rows: pd.DataFrame) -> tuple[dict[tuple[str, str], Outcome], list[str], list[str]]:
    """(the outcome per label and target, the labels, the targets ordered by metric and value)."""
    outcomes = {key: Outcome(group) for key, group in rows.groupby(["label", "target"], sort=False)}
    order = {label: (parse_label(label).metric, parse_label(label).value) for label in set(rows["target"])}
    return outcomes, list(dict.fromkeys(rows["label"])), sorted(order, key=order.__getitem__)


def _mean_and_ci(values: np.ndarray, seed: int) -> tuple[float, float, float]:
    if not len(values):
        return math.nan, math.nan, math.nan
    return (float(np.mean(values)), *bootstrap_ci(values, seed=seed))


def _with_ci(mean: float, low: float, high: float, fmt: str) -> str:
    if math.isnan(mean):
        return "n/a"
    return fmt.format(mean) + ("" if math.isnan(low) else f" [{fmt.format(low)}, {fmt.format(high)}]")


def _none(record: dict[str, Any]) -> dict[str, Any]:
    """NaN (undefined) as None, for JSON."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def _grid(cells: dict[str, list[str]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(cells, orient="index", columns=columns)
    frame.index.name = "codec"
    return frame


def _met(one: Outcome) -> str:
    return f"{len(one.met)}/{len(one.rows)}"


def matched_rate_tables(rows: pd.DataFrame, metrics: list[str], seed: int = 0) -> list[TargetTable]:
    """The rates achieved at each rate target, then one table per metric: each codec's mean at each
    target with a bootstrap 95 % CI over the images that reached a rate."""
    outcomes, labels, columns = _outcomes(rows)
    bpp_format = measures()["bpp"].fmt
    cells: dict[str, list[str]] = {label: [] for label in labels}
    records = []
    for label, target in ((label, target) for label in labels for target in columns):
        one = outcomes.get((label, target))
        if one is None:
            cells[label].append("-")
            continue
        bpp = float(one.reached["bpp"].mean()) if len(one.reached) else math.nan
        cells[label].append(f"{'n/a' if math.isnan(bpp) else bpp_format.format(bpp)}, {_met(one)} met")
        records.append(
            _none({"codec": label, "target": target, "bpp": bpp, "images": len(one.reached)})
            | {
                "met": len(one.met),
                "total": len(one.rows),
                "unreachable": one.unreachable,
                "failed": one.failed,
            }
        )
    title = (
        "Rates achieved at each rate target: the mean bpp over the images that reached a rate (a missed "
        "target counts its closest point at or under it), and the targets met of the images"
    )
    notes = count_notes(outcomes) + [
        f"the codecs' means at {where(target)} are over different images (out of reach or failed on some)"
        for target in columns
        if len({frozenset(one.reached["image_sha256"]) for (_, t), one in outcomes.items() if t == target})
        > 1
    ]
    tables = [
        TargetTable(
            "achieved-rates",
            "Matched rates: the rates achieved",
            title,
            _grid(cells, columns),
            records,
            notes,
        )
    ]
    for metric in metrics:
        fmt = all_metrics()[metric].fmt
        cells, records = {label: [] for label in labels}, []
        for label, target in ((label, target) for label in labels for target in columns):
            one = outcomes.get((label, target))
            if one is None:
                cells[label].append("-")
                continue
            values = one.reached[metric].dropna().to_numpy(dtype=float)
            mean, low, high = _mean_and_ci(values, seed)
            cells[label].append(_with_ci(mean, low, high, fmt))
            records.append(
                _none({"codec": label, "target": target, "metric": metric, "mean": mean, "ci_low": low})
                | _none({"ci_high": high, "images": len(values)})
            )
        title = (
            f"{metric} at matched rates: the mean over images at each rate target [bootstrap 95 % CI over "
            "images]; no interpolation; images out of reach left out"
        )
        tables.append(
            TargetTable(
                f"matched-{metric}", f"Matched rates: {metric}", title, _grid(cells, columns), records
            )
        )
    return tables


def equal_quality_table(rows: pd.DataFrame, anchor: str, seed: int = 0) -> TargetTable:
    """Bytes at equal quality: per codec and quality target, the mean over images of its bytes over the
    anchor's on the same image [bootstrap 95 % CI], over the images where both met the target."""
    outcomes, labels, columns = _outcomes(rows)
    notes = count_notes(outcomes)
    title = (
        f"Bytes at equal quality vs {anchor}: the mean over images of bytes / {anchor}'s bytes on the same "
        "image at each quality target [bootstrap 95 % CI over images]; below 1 = fewer bytes than the anchor"
    )
    if anchor not in labels:
        notes.append(f"no bytes ratio: the anchor {anchor} was not searched for equal quality")
        return TargetTable("equal-quality", "Bytes at equal quality", title, _grid({}, columns), [], notes)
    cells, records = {anchor: ["anchor"] * len(columns)}, []
    for label in labels:
        if label == anchor:
            continue
        cells[label] = []
        for target in columns:
            mine, theirs = outcomes.get((label, target)), outcomes.get((anchor, target))
            if mine is None or theirs is None:
                cells[label].append("-")
                continue
            ratios, left_out, note = bytes_ratios(mine, theirs, (label, anchor), target)
            notes += note
            mean, low, high = _mean_and_ci(ratios, seed)
            cells[label].append(_with_ci(mean, low, high, "{:.3f}"))
            records.append(
                _none({"codec": label, "anchor": anchor, "target": target, "ratio": mean, "ci_low": low})
                | _none({"ci_high": high, "images": len(ratios), "left_out": left_out})
            )
    return TargetTable(
        "equal-quality", "Bytes at equal quality", title, _grid(cells, columns), records, notes
    )


def bytes_ratios(
    mine: Outcome, theirs: Outcome, names: tuple[str, str], target: str
) -> tuple[np.ndarray, int, list[str]]:
    """(bytes over the anchor's on each image both met the target on, the images both ran that are left
    out, a note naming who did not reach the target where some are)."""
    common = set(mine.rows["image_sha256"]) & set(theirs.rows["image_sha256"])
    met = [one.met[one.met["image_sha256"].isin(common)] for one in (mine, theirs)]
    both = met[0].merge(met[1], on="image_sha256", suffixes=("", "_anchor"))
    ratios = (both["bytes"] / both["bytes_anchor"]).to_numpy(dtype=float)
    left_out = len(common) - len(ratios)
    if not left_out:
        return ratios, 0, []
    by = ", ".join(
        f"by {name} on {len(common) - len(part)}"
        for name, part in zip(names, met, strict=True)
        if len(part) < len(common)
    )
    note = (
        f"{names[0]} vs {names[1]} at {where(target)}: {left_out} of {len(common)} images left out of the "
        f"bytes ratio (the target not reached {by})"
    )
    return ratios, left_out, [note]


def budget_tables(rows: pd.DataFrame, metrics: list[str]) -> list[TargetTable]:
    """Per budget, per codec: its knob value, the corpus bpp, the per-image bpp's min, median and max, the
    budget met, and the mean of each metric over images."""
    outcomes, labels, columns = _outcomes(rows)
    bpp_format = measures()["bpp"].fmt
    header = ["knob", "corpus bpp", "bpp min", "bpp median", "bpp max", "met", *metrics]
    tables = []
    for target in columns:
        mine = {label: outcomes[(label, target)] for label in labels if (label, target) in outcomes}
        cells, records = {}, []
        for label, one in mine.items():
            reached = one.reached
            if reached.empty:
                cells[label] = ["unreachable", *["-"] * (len(header) - 1)]
                records.append(
                    {"codec": label, "target": target, "images": 0, "met": 0, "total": len(one.rows)}
                )
                continue
            corpus = float(reached["bytes"].sum()) * 8 / float((reached["width"] * reached["height"]).sum())
            spread = [
                float(reached["bpp"].min()),
                float(reached["bpp"].median()),
                float(reached["bpp"].max()),
            ]
            means = {metric: float(reached[metric].mean()) for metric in metrics}
            knob = ", ".join(f"{q:g}" for q in sorted(set(reached["quality"])))
            cells[label] = [
                knob,
                *(bpp_format.format(value) for value in (corpus, *spread)),
                _met(one),
                *("n/a" if math.isnan(v) else all_metrics()[m].fmt.format(v) for m, v in means.items()),
            ]
            records.append(
                _none({"codec": label, "target": target, "knob": knob, "corpus_bpp": corpus})
                | _none(dict(zip(("bpp_min", "bpp_median", "bpp_max"), spread, strict=True)))
                | {"images": len(reached), "met": len(one.met), "total": len(one.rows), "means": _none(means)}
            )
        value = parse_label(target).value
        title = (
            f"At a budget of {value:g} bpp: per codec its knob value (one for every image: the highest "
            "total rate within the budget), the corpus bpp (total bits / total pixels), the spread of "
            "per-image bpp, the budget met, and the mean of each metric over images"
        )
        notes = count_notes({(label, target): one for label, one in mine.items()})
        tables.append(
            TargetTable(
                f"budget-{value:g}",
                f"At a budget of {value:g} bpp",
                title,
                _grid(cells, header),
                records,
                notes,
            )
        )
    return tables


def search_kinds(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Kind of search (rate, quality, budget) -> the labels whose rows were searched for such targets."""
    searched = rows[rows["target"] != ""]
    kinds: dict[str, list[str]] = {}
    for label, group in searched.groupby("label", sort=False):
        kinds.setdefault(parse_label(group["target"].iloc[0]).kind, []).append(label)
    return kinds


def target_tables(
    rows: pd.DataFrame, anchor: str | None, metrics: list[str], seed: int = 0
) -> list[TargetTable]:
    """The tables of the search runs among ``rows`` (none for runs at fixed qualities): matched rates,
    bytes at equal quality against ``anchor`` (none without an anchor), budgets."""
    kinds = search_kinds(rows)
    of = {kind: rows[rows["label"].isin(labels)] for kind, labels in kinds.items()}
    tables = []
    if RATE in of:
        tables += matched_rate_tables(of[RATE], metrics, seed)
    if QUALITY in of and anchor is not None:
        tables.append(equal_quality_table(of[QUALITY], anchor, seed))
    if BUDGET in of:
        tables += budget_tables(of[BUDGET], metrics)
    return tables
