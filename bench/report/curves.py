"""Rate-quality curves from result rows: per image, dataset means, and imported published curves.

Every curve frame has the columns ``label, bpp, value, images, imported`` (``value`` is the metric);
per-image frames add ``image``. Failed tasks are left out, and so are the rows of targets out of a codec's
reach (no rate); a metric that is undefined for an image (NaN, e.g. MS-SSIM of a small image) leaves that
image out of that metric's means, and an infinite value (a lossless point) is kept, so that BD can skip
the point and say so.

A codec's points are its qualities in a run at fixed qualities, and its targets (``bpp=0.25``,
``psnr_y=35``, ``budget_bpp=0.15``) in a run made in a search mode, where the quality differs per image:
``point_key`` decides, per codec configuration.
"""

from __future__ import annotations

import math

import pandas as pd

MEAN_COLUMNS = ["label", "quality", "target", "bpp", "value", "images", "imported"]


def ok_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of tasks that finished, with a positive rate."""
    return rows[rows["error"].isna() & (rows["bpp"] > 0)]


def metric_rows(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished rows where ``metric`` is defined (finite or infinite, not NaN)."""
    rows = ok_rows(rows)
    return rows[rows[metric].notna()]


def carries_targets(rows: pd.DataFrame) -> bool:
    """Whether the rows come from a run made in a search mode (a non-empty ``target``)."""
    return "target" in rows and bool((rows["target"] != "").any())


def point_key(rows: pd.DataFrame) -> str:
    """The column whose value makes one point of a codec configuration's curve: ``target`` for the rows of
    a search run, else ``quality``."""
    return "target" if carries_targets(rows) else "quality"


def image_curves(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One point per finished row (label, image, and quality or target): columns label, image, quality, bpp,
    value."""
    rows = metric_rows(rows, metric)
    frame = rows[["label", "image_sha256", "image", "quality", "bpp", metric]]
    return frame.rename(columns={metric: "value"}).reset_index(drop=True)


def mean_curves(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Dataset curves: per label and point (quality, or target: ``point_key``), the mean bpp and mean
    metric over images (as CompressAI), ordered by rate; ``quality`` is NaN at a target, ``target`` empty
    at a quality."""
    rows = metric_rows(rows, metric)
    if rows.empty:
        return pd.DataFrame(columns=MEAN_COLUMNS)
    frames = []
    for label, group in rows.groupby("label", sort=False):
        key = point_key(group)
        means = group.groupby(key, sort=False).agg(
            bpp=("bpp", "mean"), value=(metric, "mean"), images=("image_sha256", "nunique")
        )
        means = means.reset_index().assign(label=label)
        frames.append(means.assign(target="") if key == "quality" else means.assign(quality=math.nan))
    frame = pd.concat(frames, ignore_index=True).assign(imported=False)[MEAN_COLUMNS]
    return frame.sort_values(["label", "bpp"], ignore_index=True)
