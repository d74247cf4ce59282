"""Codecs ranked under each metric by their BD value against the anchor, and how far the metrics' rankings
agree (Kendall tau-b between every two metrics).

A rank comes from the BD table's value (BD-rate: lower is better for every metric, since bench.bd negates
lower-is-better curves; BD-quality: better in the metric's own direction). The anchor is ranked at 0. A
codec whose BD is undefined under a metric is not ranked there, and the correlation of two metrics is
taken over the codecs ranked under both (NaN with fewer than two, or when one ranking is all ties).
A composite score (a mean of BD-rates, bench.report.bdtable) is ranked like a metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.measures import all_metrics
from bench.report.bdtable import BDTable


@dataclass
class Ranking:
    """A BD table's codecs ranked under each of its metrics."""

    table: BDTable
    reference: str  # the metric the others' ranks are compared with: psnr_rgb, else the first
    ranks: pd.DataFrame  # codec x column (metric or composite score), 1 = best, NaN where unranked; rows in
    # the reference's order
    tau: pd.DataFrame  # column x column, Kendall tau-b


def _scores(table: BDTable, metric: str) -> pd.Series:
    """Per codec, the anchor included, a score where lower is better; NaN where BD is undefined."""
    quality = table.delta == "quality" and metric in table.metrics  # a composite score is n/a there
    sign = -1.0 if quality and all_metrics()[metric].higher_is_better else 1.0
    tested = {codec: sign * table.cells[(codec, metric)].value for codec in table.codecs}
    anchor = 0.0 if any(math.isfinite(v) for v in tested.values()) else math.nan
    return pd.Series({table.anchor: anchor} | tested, dtype=float)


def _tau(a: pd.Series, b: pd.Series) -> float:
    from scipy.stats import kendalltau

    both = a.notna() & b.notna()
    if both.sum() < 2 or a[both].nunique() < 2 or b[both].nunique() < 2:
        return math.nan
    return float(kendalltau(a[both], b[both]).statistic)


def rank_codecs(table: BDTable) -> Ranking:
    """The codecs of ``table`` ranked under each of its metrics (ties share the best rank), with the
    Kendall tau-b of every two metrics' rankings."""
    from scipy.stats import rankdata

    ranks = pd.DataFrame({metric: _scores(table, metric) for metric in table.columns})
    for metric in table.columns:
        defined = ranks[metric].notna()
        ranks.loc[defined, metric] = rankdata(ranks.loc[defined, metric], method="min")
    reference = "psnr_rgb" if "psnr_rgb" in table.metrics else table.metrics[0]
    ranks = ranks.sort_values(reference, kind="stable", na_position="last")
    ranks.index.name = "codec"
    tau = pd.DataFrame(
        [[_tau(ranks[a], ranks[b]) for b in table.columns] for a in table.columns],
        index=table.columns,
        columns=table.columns,
    )
    return Ranking(table, reference, ranks, tau)


def differs(ranking: Ranking, codec: str, metric: str) -> bool:
    """Whether the codec is ranked under ``metric`` and under the reference metric, at different ranks."""
    rank, reference = ranking.ranks.loc[codec, metric], ranking.ranks.loc[codec, ranking.reference]
    return bool(math.isfinite(rank) and math.isfinite(reference) and rank != reference)
