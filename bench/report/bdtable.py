"""BD tables: codecs x metrics, BD-rate (or BD-quality) of each codec against an anchor.

``mode="image"`` (as AWCY and JPEG AI): BD per image between the two codecs' curves on that image,
then the mean over the images where it is defined, with a bootstrap 95 % confidence interval over
images and the count of images where it is undefined. ``mode="curve"`` (as most papers): BD between
the dataset-mean curves. Before BD, points that are not on the curve's improving front (quality not
better than every point of lower or equal rate, in the metric's own direction) and points where the
metric saturates (an infinite PSNR, a value at the metric's ceiling, such as VMAF's 100) are dropped
and counted: BD would otherwise interpolate a flat curve.

A composite score (``bench.measures.OVERALL``, e.g. ``jpegai_overall``) is the mean of a group's BD-rates:
in image mode the mean over its metrics of each metric's mean BD-rate over images, with a bootstrap CI
over images; in curve mode the mean of the curves' BD-rates. It is NaN, with the reason, when any of them
is (never a mean of fewer), and under BD-quality.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench import measures
from bench.bd import bd_details, monotone_points
from bench.measures import Metric, all_metrics
from bench.report.compressai import ImportedCurve, imported_mean_curve
from bench.report.curves import image_curves, mean_curves

BOOTSTRAP_SAMPLES = 10000
LOW_OVERLAP = 0.75
CEILING_TOLERANCE = 1e-9  # a value this close to its metric's ceiling is saturated (CIEDE2000's 1e-15)


@dataclass
class BDCell:
    """One codec and metric: the mean BD (image mode) or the BD of the mean curves (curve mode)."""

    codec: str
    metric: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    images: int = 0  # images compared (image mode) or averaged into the test curve (curve mode)
    undefined: int = 0  # images where BD is undefined (image mode)
    dropped: int = 0  # non-monotonic points of the test dropped before BD
    skipped: int = 0  # points of the test where the metric saturates
    overlap: float = math.nan  # mean overlap fraction over the images where BD is defined
    reason: str | None = None  # why the value is NaN
    imported: bool = False
    per_image: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "per_image"}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


@dataclass
class Overall:
    """A composite score: the mean of a group's BD-rates, a column of the table."""

    column: str  # "jpegai_overall"
    label: str  # "JPEG AI overall (mean BD-rate of 7)"
    metrics: list[str]  # the group's metrics, in registry order


def overall_scores(groups: Iterable[str]) -> list[Overall]:
    """The composite score of each of ``groups`` (keys of bench.measures.OVERALL) over its metrics."""
    found = []
    for group in groups:
        members = measures.groups().get(group, [])
        label = f"{measures.OVERALL[group]} (mean BD-rate of {len(members)})"
        found.append(Overall(f"{group}_overall", label, members))
    return found


@dataclass
class BDTable:
    anchor: str
    mode: str
    method: str
    delta: str
    metrics: list[str]
    codecs: list[str]  # tested codecs, in table order (the anchor excluded)
    cells: dict[tuple[str, str], BDCell]
    anchor_dropped: dict[str, int]
    anchor_skipped: dict[str, int]
    anchor_images: int
    imported: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    overall: list[Overall] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """The metrics, then the composite scores."""
        return self.metrics + [score.column for score in self.overall]


def bootstrap_ci(values: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean; NaN with fewer than two values."""
    return bootstrap_ci_of_means(np.asarray(values, dtype=float)[:, None], samples, seed)


def bootstrap_ci_of_means(
    values: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval, resampling the rows (images) of ``values`` (images x metrics,
    NaN where undefined), of the mean over the columns of each column's mean over its defined rows; a
    resample where a column has no defined row is left out. With every value defined it is the
    bootstrap of the row means (the same resamples); one column: of that column's mean."""
    values = np.asarray(values, dtype=float)
    images = len(values)
    if images < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, images, size=(samples, images)) + images * np.arange(samples)[:, None]
    counts = np.bincount(picks.ravel(), minlength=samples * images).reshape(samples, images)
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = ((counts @ np.where(defined, values, 0.0)) / (counts @ defined)).mean(axis=1)
    means = means[np.isfinite(means)]
    if not len(means):
        return math.nan, math.nan
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def prepare(points: pd.DataFrame, metric: Metric) -> tuple[list[tuple[float, float]], int, int]:
    """(the points BD uses, non-monotonic points dropped, points skipped where ``metric`` saturates:
    an infinite value, or one at or past its ceiling in its direction)."""
    values = points["value"].to_numpy(dtype=float)
    unsaturated = np.isfinite(values)
    ceiling = metric.ceiling
    if ceiling is not None and math.isfinite(ceiling):  # an infinite one: not finite, already out
        sign = 1.0 if metric.higher_is_better else -1.0
        unsaturated &= sign * (values - ceiling) < -CEILING_TOLERANCE
    kept = points[unsaturated]
    keep = monotone_points(kept["bpp"], kept["value"], metric.higher_is_better)
    pairs = list(zip(kept["bpp"][keep], kept["value"][keep], strict=True))
    return pairs, int((~keep).sum()), int((~unsaturated).sum())


def _image_cell(anchor: pd.DataFrame, test: pd.DataFrame, codec: str, metric: str, options) -> BDCell:
    cell = BDCell(codec, metric, math.nan)
    names = dict(zip(test["image_sha256"], test["image"], strict=False))
    anchor_by_image = dict(tuple(anchor.groupby("image_sha256")))
    values, overlaps, reasons = [], [], []
    for sha, points in test.groupby("image_sha256", sort=False):
        if sha not in anchor_by_image:
            continue
        cell.images += 1
        test_pairs, dropped, skipped = prepare(points, options["metric"])
        cell.dropped += dropped
        cell.skipped += skipped
        details = bd_details(
            prepare(anchor_by_image[sha], options["metric"])[0],
            test_pairs,
            options["method"],
            options["delta"],
            options["metric"].higher_is_better,
        )
        cell.per_image[names[sha]] = details["value"]
        if math.isnan(details["value"]):
            cell.undefined += 1
            reasons.append(details["reason"])
        else:
            values.append(details["value"])
            overlaps.append(details["overlap"])
    if values:
        cell.value = float(np.mean(values))
        cell.overlap = float(np.mean(overlaps))
        cell.ci_low, cell.ci_high = bootstrap_ci(np.array(values), options["bootstrap"], options["seed"])
    elif test.empty or anchor.empty:
        cell.reason = f"{'this codec' if test.empty else 'the anchor'} has no defined {metric} value"
    elif cell.images == 0:
        cell.reason = "no image in common with the anchor"
    else:
        cell.reason = f"undefined on every image ({reasons[0]})"
    return cell


def _curve_cell(anchor: pd.DataFrame, test: pd.DataFrame, codec: str, metric: str, options) -> BDCell:
    cell = BDCell(codec, metric, math.nan, imported=bool(test["imported"].any()))
    cell.images = int(test["images"].max()) if test["images"].notna().any() else 0
    test_pairs, cell.dropped, cell.skipped = prepare(test, options["metric"])
    if not test_pairs or anchor.empty:
        cell.reason = "no points for this metric" if not test_pairs else "the anchor has no points for it"
        return cell
    details = bd_details(
        prepare(anchor, options["metric"])[0],
        test_pairs,
        options["method"],
        options["delta"],
        options["metric"].higher_is_better,
    )
    cell.value, cell.reason, cell.overlap = details["value"], details["reason"], details["overlap"]
    return cell


def _overall_cell(cells: dict, codec: str, score: Overall, metrics: list[str], options) -> BDCell:
    """The composite score of one codec from its cells under the score's metrics."""
    cell = BDCell(codec, score.column, math.nan)
    parts = [cells[(codec, metric)] for metric in score.metrics if metric in metrics]
    cell.dropped, cell.skipped = sum(p.dropped for p in parts), sum(p.skipped for p in parts)
    cell.imported = any(p.imported for p in parts)
    absent = [metric for metric in score.metrics if metric not in metrics]
    undefined = [p.metric for p in parts if math.isnan(p.value)]
    if options["delta"] != "rate":
        cell.reason = "a mean of BD-rates: not defined for BD-quality (--delta quality)"
    elif absent:
        cell.reason = f"no BD-rate under {', '.join(absent)} (not computed in these runs)"
    elif undefined:
        cell.reason = f"BD-rate undefined under {', '.join(undefined)}"
    if cell.reason:
        return cell
    cell.value = float(np.mean([p.value for p in parts]))
    cell.images = max(p.images for p in parts)
    if options["mode"] == "image":
        images = list(dict.fromkeys(name for p in parts for name in p.per_image))
        values = np.array([[p.per_image.get(name, math.nan) for p in parts] for name in images])
        cell.per_image = dict(zip(images, values.mean(axis=1).tolist(), strict=True))
        cell.undefined = int(np.isnan(values).any(axis=1).sum())
        cell.ci_low, cell.ci_high = bootstrap_ci_of_means(values, options["bootstrap"], options["seed"])
    return cell


def _curves(rows: pd.DataFrame, imported: list[ImportedCurve], metric: str, mode: str) -> pd.DataFrame:
    if mode == "image":
        return image_curves(rows, metric)
    frames = [mean_curves(rows, metric)] + [imported_mean_curve(curve, metric) for curve in imported]
    return pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)


def bd_table(
    rows: pd.DataFrame,
    anchor: str,
    metrics: list[str],
    mode: str = "image",
    method: str = "pchip",
    delta: str = "rate",
    imported: list[ImportedCurve] | None = None,
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    overall: Iterable[str] = (),
) -> BDTable:
    """The BD table of every label in ``rows`` (and imported curves, curve mode) against ``anchor``,
    with a composite score for each group of ``overall`` (keys of bench.measures.OVERALL).

    ``rows`` needs a ``label`` column (``bench.runs.combined_rows``); the caller checks that the
    anchor and the metrics exist.
    """
    imported = imported or []
    labels = list(dict.fromkeys(rows["label"]))
    names = {curve.label for curve in imported}
    notes = []
    if mode == "image" and imported:
        notes.append(
            f"imported curves ({', '.join(sorted(names))}) have BD only between mean curves (--mode curve)"
        )
        imported = []
    codecs = [label for label in labels + [curve.label for curve in imported] if label != anchor]
    options = {"method": method, "delta": delta, "mode": mode, "bootstrap": bootstrap, "seed": seed}
    cells: dict[tuple[str, str], BDCell] = {}
    anchor_dropped, anchor_skipped, anchor_images = {}, {}, 0
    cell_of = _image_cell if mode == "image" else _curve_cell
    for metric in metrics:
        options["metric"] = all_metrics()[metric]
        curves = _curves(rows, imported, metric, mode)
        reference = curves[curves["label"] == anchor]
        if mode == "image":
            per_image = [
                prepare(points, options["metric"])[1:] for _, points in reference.groupby("image_sha256")
            ]
            anchor_dropped[metric] = sum(d for d, _ in per_image)
            anchor_skipped[metric] = sum(s for _, s in per_image)
            anchor_images = max(anchor_images, len(per_image))
        else:
            _, anchor_dropped[metric], anchor_skipped[metric] = prepare(reference, options["metric"])
            if reference["images"].notna().any():
                anchor_images = max(anchor_images, int(reference["images"].max()))
        for codec in codecs:
            test = curves[curves["label"] == codec]
            cells[(codec, metric)] = cell_of(reference, test, codec, metric, options)
    scores = overall_scores(overall)
    for score in scores:
        members = [metric for metric in score.metrics if metric in metrics]
        anchor_dropped[score.column] = sum(anchor_dropped[metric] for metric in members)
        anchor_skipped[score.column] = sum(anchor_skipped[metric] for metric in members)
        for codec in codecs:
            cells[(codec, score.column)] = _overall_cell(cells, codec, score, metrics, options)
    images = {label: set(rows.loc[rows["label"] == label, "image_sha256"]) for label in labels}
    if len({frozenset(s) for s in images.values()}) > 1:
        notes.append(
            "the codecs were run on different images: "
            + (
                "BD compares the images both have"
                if mode == "image"
                else "their mean curves average different images"
            )
        )
    return BDTable(
        anchor,
        mode,
        method,
        delta,
        list(metrics),
        codecs,
        cells,
        anchor_dropped,
        anchor_skipped,
        anchor_images,
        names,
        notes,
        scores,
    )
