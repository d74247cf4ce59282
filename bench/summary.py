"""The summary table printed at the end of a run: dataset means per codec and quality."""

from __future__ import annotations

import pandas as pd

MEAN_COLUMNS = ["bpp", "psnr_rgb", "ms_ssim_db", "enc_ms", "dec_ms"]


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per codec and quality: images, errors, mean bpp, psnr_rgb, ms_ssim_db, encode/decode ms.

    Means are over the images of each point, as CompressAI averages; failed tasks are counted, not averaged.
    """
    ok = rows[rows["error"].isna()].assign(enc_ms=rows["enc_s"] * 1e3, dec_ms=rows["dec_s"] * 1e3)
    means = ok.groupby(["codec", "quality"])[MEAN_COLUMNS].mean()
    counts = rows.groupby(["codec", "quality"]).agg(
        images=("image", "size"), errors=("error", lambda e: int(e.notna().sum()))
    )
    table = counts.join(means).reset_index()
    return table.sort_values(["codec", "bpp"], na_position="last").reset_index(drop=True)


def format_summary(table: pd.DataFrame) -> str:
    """Fixed-precision text rendering of ``summary``."""
    formats = {
        "quality": "{:g}".format,
        "bpp": "{:.3f}".format,
        "psnr_rgb": "{:.2f}".format,
        "ms_ssim_db": "{:.2f}".format,
        "enc_ms": "{:.1f}".format,
        "dec_ms": "{:.1f}".format,
    }
    return table.to_string(index=False, formatters=formats, na_rep="-")
