"""CompressAI-style result JSON: import published curves, export ours.

The format (CompressAI's results/image/<dataset>/*.json)::

    {"name": "...", "description": "...", "meta": {...},
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}

Older files say ``psnr`` and ``ms-ssim``. Keys come from the registry (bench.measures): a metric's
``compressai_key``, else its own name. MS-SSIM is stored as a value in [0, 1]; imported curves get the
metrics derived from those they hold (``ms_ssim_db`` = -10 log10(1 - mean MS-SSIM), as CompressAI's
plots compute it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import __version__, files
from bench.errors import UserError
from bench.labels import file_stem
from bench.measures import Metric, all_metrics, held, measures
from bench.report.curves import MEAN_COLUMNS, ok_rows, point_key

OLDER_KEYS = {"psnr_rgb": ("psnr",), "ms_ssim": ("ms-ssim",)}  # what older CompressAI files say


def _key(metric: Metric) -> str:
    return metric.compressai_key or metric.name


def export_keys(rows: pd.DataFrame) -> dict[str, str]:
    """Column -> CompressAI key: quality, bpp, every metric the rows hold a value of, and the times."""
    computed = set(held(rows))
    keys = {}
    for name, measure in measures().items():
        if isinstance(measure, Metric):
            if name in computed:
                keys[name] = _key(measure)
        elif measure.compressai_key:
            keys[name] = measure.compressai_key
    return keys


@dataclass
class ImportedCurve:
    """A published curve: its name, source file, and points (bpp plus the metrics the file has)."""

    label: str
    path: Path
    description: str
    points: pd.DataFrame  # columns bpp and some of psnr_rgb, psnr_y, ms_ssim, ms_ssim_db


def _numbers(path: Path, key: str, values: Any, length: int | None) -> np.ndarray:
    if not isinstance(values, list) or (length is not None and len(values) != length):
        expected = f" of {length} numbers (as bpp)" if length is not None else " of numbers"
        raise UserError(f"{path}: results[{key!r}] must be a list{expected}")
    try:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"{path}: results[{key!r}] holds a value that is not a number") from None


def read_compressai(path: str | Path) -> ImportedCurve:
    """Read one CompressAI-style result file; a malformed one is a UserError naming what is wrong."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc})") from None
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, dict) or "bpp" not in results:
        raise UserError(f"{path}: not a CompressAI result file (no results.bpp)")
    bpp = _numbers(path, "bpp", results["bpp"], None)
    points = {"bpp": bpp}
    for name, metric in all_metrics().items():
        key = next((k for k in (_key(metric), *OLDER_KEYS.get(name, ())) if k in results), None)
        if metric.source is None and key is not None:
            points[name] = _numbers(path, key, results[key], len(bpp))
    if len(points) == 1:
        keys = ", ".join(_key(metric) for metric in all_metrics().values() if metric.source is None)
        raise UserError(f"{path}: no results to compare (none of {keys})")
    if "ms_ssim" in points and (np.any(points["ms_ssim"] > 1) or np.any(points["ms_ssim"] < 0)):
        raise UserError(f"{path}: MS-SSIM values must lie in [0, 1]")
    for name, metric in all_metrics().items():
        if metric.source in points:
            points[name] = np.array([metric.derive(v) for v in points[metric.source]])
    name = str(document.get("name") or path.stem)
    return ImportedCurve(name, path, str(document.get("description", "")), pd.DataFrame(points))


def imported_curves(paths: list[str | Path], taken: set[str]) -> list[ImportedCurve]:
    """Read several files; a name already ``taken`` (or repeated) becomes ``name@file-stem``."""
    curves = []
    for path in paths:
        curve = read_compressai(path)
        if curve.label in taken:
            curve.label = f"{curve.label}@{curve.path.stem}"
        if curve.label in taken:
            raise UserError(f"{path}: imported twice (or its name clashes with a codec of the runs)")
        taken.add(curve.label)
        curves.append(curve)
    return curves


def imported_mean_curve(curve: ImportedCurve, metric: str) -> pd.DataFrame:
    """An imported curve in the shape of ``curves.mean_curves`` (empty when it lacks the metric)."""
    if metric not in curve.points:
        return pd.DataFrame(columns=MEAN_COLUMNS)
    points = curve.points[["bpp", metric]].rename(columns={metric: "value"})
    points = points[points["bpp"].notna() & points["value"].notna()]
    return points.assign(label=curve.label, quality=math.nan, target="", images=math.nan, imported=True)


def _finite_or_none(values: pd.Series) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def export_compressai(rows: pd.DataFrame, configs: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """Write ``<label>.json`` per codec label: mean curves over images at each quality (at each target for
    a search run: ``meta.targets`` names them, and ``quality``, which differs per image, is left out),
    sorted by bpp.

    ``configs`` maps a label to its run.json codec entry (or {}) and run metadata, for the description.
    """
    files.make_folder(out)
    written = []
    rows = ok_rows(rows)
    keys, registered = export_keys(rows), measures()
    for label, group in rows.groupby("label", sort=True):
        point = point_key(group)
        exported = {column: key for column, key in keys.items() if column != "quality" or point == "quality"}
        means = group.groupby(point).agg({k: registered[k].aggregate for k in exported if k != point})
        means = means.reset_index().sort_values("bpp")
        config = configs.get(label, {})
        entry = config.get("entry", {})
        targets = {"targets": list(means["target"])} if point == "target" else {}
        document = {
            "name": label,
            "description": f"codec-bench {__version__}: {entry.get('description', label)}",
            "meta": {
                "source": "codec-bench",
                "dataset": config.get("dataset"),
                "images": int(group["image_sha256"].nunique()),
                "run": config.get("run"),
                "config_hash": config.get("config_hash"),
                "versions": config.get("versions", {}),
                "quality_label": entry.get("quality_label"),
                "options": entry.get("options", {}),
            }
            | targets,
            "results": {key: _finite_or_none(means[column]) for column, key in exported.items()},
        }
        path = out / f"{file_stem(label)}.json"
        files.write(out, path.name, (json.dumps(document, indent=2) + "\n").encode())
        written.append(path)
    return written
