"""Rate-quality curves from result rows: per image, dataset means, and imported published curves.

Every curve frame has the columns ``label, bpp, value, images, imported`` (``value`` is the metric);
per-image frames add ``image``. Failed tasks are left out; a metric that is undefined for an image
(NaN, e.g. MS-SSIM of a small image) leaves that image out of that metric's means, and an infinite
value (a lossless point) is kept, so that BD can skip the point and say so.
"""

from __future__ import annotations

import pandas as pd


def ok_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of tasks that finished, with a positive rate."""
    return rows[rows["error"].isna() & (rows["bpp"] > 0)]


def metric_rows(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished rows where ``metric`` is defined (finite or infinite, not NaN)."""
    rows = ok_rows(rows)
    return rows[rows[metric].notna()]


def image_curves(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One point per (label, image, quality): columns label, image, quality, bpp, value."""
    rows = metric_rows(rows, metric)
    frame = rows[["label", "image_sha256", "image", "quality", "bpp", metric]]
    return frame.rename(columns={metric: "value"}).reset_index(drop=True)


def mean_curves(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Dataset curves: per label and quality, the mean bpp and mean metric over images (as CompressAI)."""
    rows = metric_rows(rows, metric)
    if rows.empty:
        return pd.DataFrame(columns=["label", "quality", "bpp", "value", "images", "imported"])
    grouped = rows.groupby(["label", "quality"], sort=False)
    frame = grouped.agg(bpp=("bpp", "mean"), value=(metric, "mean"), images=("image_sha256", "nunique"))
    return frame.reset_index().assign(imported=False).sort_values(["label", "bpp"], ignore_index=True)
