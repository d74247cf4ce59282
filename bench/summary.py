"""The summary table printed at the end of a run: dataset means per codec and quality."""

from __future__ import annotations

import pandas as pd

from bench.timing import relative_times

MEAN_COLUMNS = ["bpp", "psnr_rgb", "ms_ssim_db", "enc_ms", "dec_ms"]
REL_COLUMNS = ["enc_rel", "dec_rel"]


def by_configuration(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose codec name comes with several configurations renamed ``codec:<config hash[:8]>``."""
    configs = rows.groupby("codec")["config_hash"].transform("nunique")
    named = rows["codec"].where(configs <= 1, rows["codec"] + ":" + rows["config_hash"].str[:8])
    return rows.assign(codec=named)


def summary(rows: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Per codec and quality: images, errors, mean bpp, psnr_rgb, ms_ssim_db, encode/decode ms.

    Means are over the images of each point, as CompressAI averages; failed tasks are counted, not averaged.
    A codec run in several configurations (``--codecs lic,lic:exact=false``) gets a line per configuration.
    With a ``reference`` codec, ``enc_rel`` and ``dec_rel`` are the medians over the images of each time
    divided by the reference's median time on the same image (timing.relative_times).
    """
    rows = by_configuration(relative_times(rows, reference) if reference else rows)
    ok = rows[rows["error"].isna()].assign(enc_ms=rows["enc_s"] * 1e3, dec_ms=rows["dec_s"] * 1e3)
    means = ok.groupby(["codec", "quality"])[MEAN_COLUMNS].mean()
    if reference:
        means = means.join(ok.groupby(["codec", "quality"])[REL_COLUMNS].median())
    counts = rows.groupby(["codec", "quality"]).agg(
        images=("image", "size"), errors=("error", lambda e: int(e.notna().sum()))
    )
    table = counts.join(means).reset_index()
    return table.sort_values(["codec", "bpp"], na_position="last").reset_index(drop=True)


FORMATS = {
    "quality": "{:g}".format,
    "bpp": "{:.3f}".format,
    "psnr_rgb": "{:.2f}".format,
    "ms_ssim_db": "{:.2f}".format,
    "enc_ms": "{:.1f}".format,
    "dec_ms": "{:.1f}".format,
    "enc_mps": "{:.2f}".format,
    "dec_mps": "{:.2f}".format,
    "enc_rel": "{:.3f}".format,
    "dec_rel": "{:.3f}".format,
}


def format_summary(table: pd.DataFrame) -> str:
    """Fixed-precision text rendering of ``summary`` (or of timing.relative_table)."""
    formats = {name: format for name, format in FORMATS.items() if name in table.columns}
    return table.to_string(index=False, formatters=formats, na_rep="-")
