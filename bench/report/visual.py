"""Visual comparison: the same crop decoded by every codec near a target rate, beside the original.

For each target bpp the image is the one where the codecs' PSNRs at that rate (interpolated on each
image's own curve) differ most; each codec is re-encoded at its stored point nearest the target on
that image, with the catalog entry recorded in run.json; the crop is the window where the codecs'
local RMSE differs most (largest max - min across codecs). Where libjxl's butteraugli_main runs, each
codec's crop comes with Butteraugli's heat map of it, computed on the whole image and then cropped.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.report.curves import image_curves, ok_rows
from bench.runs import Run

STRIDE = 4


@dataclass
class Crop:
    label: str
    quality: float | None  # None for the original
    bpp: float
    psnr: float  # whole image
    crop_psnr: float
    png: bytes
    heatmap: bytes = (
        b""  # PNG of Butteraugli's heat map of the crop; empty for the original, or without the tool
    )


@dataclass
class Comparison:
    target: float
    image: str
    box: tuple[int, int, int]  # top, left, side
    crops: list[Crop] = field(default_factory=list)


def pick_image(curves: pd.DataFrame, labels: list[str], target: float) -> str | None:
    """The image_sha256 (among those every label has) where PSNRs interpolated at ``target`` differ most."""
    best, best_spread = None, -1.0
    for sha, points in curves.groupby("image_sha256", sort=False):
        estimates = []
        for label in labels:
            curve = points[points["label"] == label].sort_values("bpp")
            finite = curve[np.isfinite(curve["value"])]
            if finite.empty:
                break
            estimates.append(np.interp(math.log(target), np.log(finite["bpp"]), finite["value"]))
        else:
            spread = max(estimates) - min(estimates)
            if spread > best_spread:
                best, best_spread = sha, spread
    return best


def pick_region(original: np.ndarray, decoded: list[np.ndarray], side: int) -> tuple[int, int, int]:
    """(top, left, side) of the square window where the codecs' local RMSE differs most."""
    height, width = original.shape[:2]
    side = min(side, height, width)
    reference = original.astype(np.float32)
    spreads = None
    for image in decoded:
        error = ((image.astype(np.float32) - reference) ** 2).mean(axis=2)
        integral = np.pad(error.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        tops = np.arange(0, height - side + 1, STRIDE)[:, None]
        lefts = np.arange(0, width - side + 1, STRIDE)[None, :]
        window = (
            integral[tops + side, lefts + side]
            - integral[tops, lefts + side]
            - integral[tops + side, lefts]
            + integral[tops, lefts]
        )
        rmse = np.sqrt(np.maximum(window, 0) / (side * side))
        spreads = (
            (rmse, rmse) if spreads is None else (np.maximum(spreads[0], rmse), np.minimum(spreads[1], rmse))
        )
    difference = spreads[0] - spreads[1]
    row, column = np.unravel_index(int(np.argmax(difference)), difference.shape)
    return int(row * STRIDE), int(column * STRIDE), side


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def load_original(runs: list[Run], rows: pd.DataFrame, sha: str) -> tuple[np.ndarray, str] | str:
    """(pixels, image name) of the image with pixel hash ``sha``, or why it cannot be found."""
    from bench.images import BadImage, load_image, pixel_sha256

    tried = []
    for run in runs:
        names = rows.loc[(rows["run"] == run.name) & (rows["image_sha256"] == sha), "image"]
        if names.empty or not run.manifest:
            continue
        try:
            path = run.manifest.dataset.image_path(names.iloc[0])
            tried.append(str(path))
            rgb = load_image(path).rgb
        except LookupError as exc:
            tried.append(str(exc))
            continue
        except BadImage:
            continue
        if pixel_sha256(rgb) == sha:
            return rgb, names.iloc[0]
    return f"the original image is not where run.json says ({', '.join(tried) or 'no dataset root'})"


def reencode(run: Run, config_hash: str, quality: float, image: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Encode and decode ``image`` with the codec configuration ``config_hash`` as the run configured it
    (bench.codec.open_codec: available here, with the run's versions); raises with the reason."""
    from bench.codec import open_codec, trusted_entry

    record = run.codec(config_hash)
    if record is None:
        raise RuntimeError(f"{run.path}/run.json has no codec configuration {config_hash}")
    codec = open_codec(trusted_entry(record.entry, f"{run.path}/run.json"), record.versions)
    data = bytes(codec.encode(image, quality))
    decoded = codec.decode(data, image.shape[:2])
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise RuntimeError(f"decoder returned {decoded.dtype} {decoded.shape}")
    return data, decoded


def _compare(runs: list[Run], rows: pd.DataFrame, sha: str, original: np.ndarray, target: float):
    """(a Crop per codec without its pixels, the decoded images, notes) near ``target`` on one image."""
    from bench.metrics import bpp, psnr_rgb

    by_name = {run.name: run for run in runs}
    decoded, crops, notes = [], [], []
    points = ok_rows(rows[rows["image_sha256"] == sha])  # a target out of reach has no rate
    for label, group in points.groupby("label", sort=False):
        nearest = group.loc[(group["bpp"] - target).abs().idxmin()]
        try:
            data, image = reencode(
                by_name[nearest["run"]], nearest["config_hash"], float(nearest["quality"]), original
            )
        except Exception as exc:  # noqa: BLE001 - any codec failure is a note on the report, not a crash
            notes.append(f"{label}: not re-encoded for the visual comparison: {exc}")
            continue
        if len(data) != int(nearest["bytes"]):
            notes.append(
                f"{label} at quality {nearest['quality']:g}: re-encoded to {len(data)} bytes, "
                f"the run stored {int(nearest['bytes'])} (a different library version?)"
            )
        height, width = original.shape[:2]
        crops.append(
            Crop(
                label,
                float(nearest["quality"]),
                bpp(len(data), height, width),
                psnr_rgb(original, image),
                0.0,
                b"",
            )
        )
        decoded.append(image)
    return crops, decoded, notes


def visual_comparisons(
    runs: list[Run], rows: pd.DataFrame, targets: list[float], side: int = 128
) -> tuple[list[Comparison], list[str]]:
    """One Comparison per target bpp (original first, then each codec), and notes on what was left out."""
    from bench.metrics import psnr_rgb

    curves = image_curves(rows, "psnr_rgb")
    labels = list(dict.fromkeys(curves["label"]))
    comparisons, notes = [], []
    for target in targets:
        sha = pick_image(curves, labels, target)
        if sha is None:
            notes.append(f"{target:g} bpp: no image that every codec has finished")
            continue
        found = load_original(runs, rows, sha)
        if isinstance(found, str):
            notes.append(f"{target:g} bpp: no visual comparison: {found}")
            continue
        original, name = found
        crops, decoded, more = _compare(runs, rows, sha, original, target)
        notes += more
        if not crops:
            continue
        top, left, side_used = pick_region(original, decoded, side)
        window = (slice(top, top + side_used), slice(left, left + side_used))
        reference = original[window]
        comparison = Comparison(target, name, (top, left, side_used))
        comparison.crops.append(Crop("original", None, math.nan, math.inf, math.inf, png_bytes(reference)))
        for crop, image in zip(crops, decoded, strict=True):
            crop.crop_psnr = psnr_rgb(reference, image[window])
            crop.png = png_bytes(np.ascontiguousarray(image[window]))
            heatmap = butteraugli_heatmap(original, image, notes)
            crop.heatmap = png_bytes(np.ascontiguousarray(heatmap[window])) if heatmap is not None else b""
            comparison.crops.append(crop)
        comparisons.append(comparison)
    return comparisons, list(dict.fromkeys(notes))


def butteraugli_heatmap(original: np.ndarray, decoded: np.ndarray, notes: list[str]) -> np.ndarray | None:
    """Butteraugli's heat map of the whole pair, or None with a note saying why not."""
    from bench.adapters.tool import ToolError
    from bench.measure_types import MetricUndefined
    from bench.measures import all_metrics
    from bench.tool_metrics import butteraugli_heatmap as heatmap

    reason = all_metrics()["butteraugli"].unavailable()
    if reason:
        notes.append(f"no Butteraugli heat maps in the visual comparison: {reason}")
        return None
    try:
        return heatmap(original, decoded)
    except (ToolError, MetricUndefined) as exc:
        notes.append(f"no Butteraugli heat map: {exc}")
        return None
