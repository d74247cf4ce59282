"""What a measure is: a ``Measure`` is a column of a result row; a ``Metric`` is a measure computed from
an original and its reconstruction. The registry of both is bench.measures.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One column of a result row."""

    name: str
    label: str  # for tables and plot axes, unit included
    doc: str  # what the column holds (docs/results.md)
    unit: str = ""
    direction: str | None = None  # HIGHER or LOWER is better; None: not a quality
    sql: str = "REAL"
    fmt: str = "{:.4g}"
    aggregate: str = "mean"  # over the images of a point: mean, median, or "" (not aggregated)
    compressai_key: str | None = None  # its key in CompressAI result JSON

    @property
    def higher_is_better(self) -> bool:
        """For BD and the report's colouring: True unless lower is better."""
        return self.direction != LOWER

    @property
    def python_type(self) -> type:
        return {"REAL": float, "INTEGER": int}.get(self.sql.split()[0], str)


class MetricUndefined(Exception):
    """Raised by a metric's function when it has no value for this pair (the message says why)."""


def check_rgb_pair(reference: np.ndarray, reconstruction: np.ndarray, min_side: int, what: str) -> None:
    """ValueError unless both are H x W x 3 uint8 of one shape; MetricUndefined under ``min_side``."""
    for image in (reference, reconstruction):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{what} reads 8-bit RGB (H x W x 3 uint8), not {image.dtype} {image.shape}")
    if reference.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {reconstruction.shape}")
    height, width = reference.shape[:2]
    if min(height, width) < min_side:
        raise MetricUndefined(f"{width}x{height} has a side under {min_side} px, too small for {what}")


@dataclass(frozen=True, kw_only=True)
class Metric(Measure):
    """A measure computed from the original and its reconstruction (8-bit RGB arrays, H x W x 3).

    ``compute(reference, reconstruction) -> float`` raises MetricUndefined for a pair it has no value
    for. Metrics that come out of one computation share a ``family(reference, reconstruction)``
    function instead, which returns every member's value by name and is called once per pair. A
    derived metric has ``source`` (another metric) and ``derive(value) -> float``.
    """

    compute: Callable[[np.ndarray, np.ndarray], float] | None = None
    family: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None
    source: str | None = None
    derive: Callable[[float], float] | None = None
    reads: str = "8-bit RGB"
    version: str = "1"  # change it whenever the definition changes: stored values are then stale
    requires: tuple[str, ...] = ()  # importable modules it needs
    cost: str = "cheap"  # cheap (< 0.1 s per 768x512 image), moderate (< 1 s), expensive
    gpu: bool = False  # computed on the run's GPU when it has one (bench.metric_device), noted per value
    groups: tuple[str, ...] = ()  # "default": computed by every run unless --metrics says otherwise
    summary: bool = False  # shown in the summary of `bench run`
    compared: bool = True  # shown by bd and report when the runs hold it and --metrics names none
    # Beyond Python modules: ``probe()`` says why it cannot run here (a missing tool), or None; its result
    # is cached per process. ``tool_version()`` names the tool's version, appended to ``version``.
    probe: Callable[[], str | None] | None = None
    tool_version: Callable[[], str] | None = None
    ceiling: float | None = None  # the best value, where it saturates; BD skips points at or past it

    def unavailable(self) -> str | None:
        """None when it can be computed here, else why not."""
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            return f"it needs the Python module(s) {', '.join(missing)}"
        return _probed(self.probe) if self.probe is not None else None

    def current_version(self) -> str:
        """The definition version, with the tool's version where it has one (``version+tool``)."""
        if self.tool_version is None or self.unavailable():
            return self.version
        return f"{self.version}+{_probed(self.tool_version)}"


@cache
def _probed(function: Callable[[], str | None]) -> str | None:
    """A probe's answer, asked once per process (tools do not come and go during a run)."""
    return function()
