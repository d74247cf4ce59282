"""The summary table printed at the end of a run: dataset means per codec and quality (per codec and
target for a search run)."""

from __future__ import annotations

import pandas as pd

from bench import measures
from bench.labels import Configuration, configuration_labels
from bench.timing import relative_times

REL_COLUMNS = ["enc_rel", "dec_rel"]


def by_configuration(rows: pd.DataFrame, options: dict[str, dict]) -> pd.DataFrame:
    """Rows with each codec configuration's label (bench.labels) as their codec; ``options``: each
    config hash's options."""
    seen = rows[["codec", "config_hash"]].drop_duplicates()
    configurations = [
        Configuration(codec, options.get(h, {}), "", h) for codec, h in seen.itertuples(index=False)
    ]
    labels = dict(zip(seen["config_hash"], configuration_labels(configurations), strict=True))
    return rows.assign(codec=rows["config_hash"].map(labels))


def summary(
    rows: pd.DataFrame, reference: str | None = None, metrics: list[str] | None = None
) -> pd.DataFrame:
    """Per codec and quality (codec and target in a search run, with the images that met it, those it was
    out of reach for and the mean probes per image): images, errors, mean bpp, the mean of each of ``metrics`` (default: those
    flagged for the summary) the rows hold, mean encode/decode ms.

    Means are over the images of each point, as CompressAI averages; failed tasks are counted, not averaged.
    A codec run in several configurations (``--codecs lic,lic:exact=false``) gets a line per configuration
    once ``by_configuration`` has labelled the rows.
    With a ``reference`` codec, ``enc_rel`` and ``dec_rel`` are the medians over the images of each time
    divided by the reference's median time on the same image (timing.relative_times).
    """
    rows = relative_times(rows, reference) if reference else rows
    point = "target" if "target" in rows.columns and rows["target"].fillna("").ne("").any() else "quality"
    ok = rows[rows["error"].isna()].assign(enc_ms=rows["enc_s"] * 1e3, dec_ms=rows["dec_s"] * 1e3)
    shown = [m for m in (measures.summary_metrics() if metrics is None else metrics) if m in rows.columns]
    means = ok.groupby(["codec", point])[["bpp", *shown, "enc_ms", "dec_ms"]].mean()
    if reference:
        means = means.join(ok.groupby(["codec", point])[REL_COLUMNS].median())
    counts = {"images": ("image", "size"), "errors": ("error", lambda e: int(e.notna().sum()))}
    if point == "target":  # how many images met the target, how many it was out of reach for; probes
        counts["met"] = ("target_met", lambda m: int((m == 1).sum()))
        ok_rows = rows["error"].isna()
        rows = rows.assign(out_of_reach=(rows["target_met"] == 0) & rows["bytes"].isna() & ok_rows)
        counts["out_of_reach"] = ("out_of_reach", "sum")
        means = means.join(ok.groupby(["codec", point])[["probes"]].mean())
    table = rows.groupby(["codec", point]).agg(**counts).join(means).reset_index()
    return table.sort_values(["codec", "bpp"], na_position="last").reset_index(drop=True)


FORMATS = {
    "enc_ms": "{:.1f}".format,
    "dec_ms": "{:.1f}".format,
    "enc_rel": "{:.3f}".format,
    "dec_rel": "{:.3f}".format,
    "probes": "{:.1f}".format,
}


def format_summary(table: pd.DataFrame) -> str:
    """Fixed-precision text rendering of ``summary`` (or of timing.relative_table)."""
    registered = {
        name: measure.fmt.format
        for name, measure in measures.measures().items()
        if measure.python_type is not str
    }
    formats = {name: format for name, format in (registered | FORMATS).items() if name in table.columns}
    return table.to_string(index=False, formatters=formats, na_rep="-")
