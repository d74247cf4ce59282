"""Bjøntegaard delta metrics: BD-rate and BD-quality between two rate-quality curves.

A curve is a sequence of (rate, quality) pairs in any order (rate in bpp or bytes, quality in dB or any
metric). A metric where lower is better (``higher_is_better=False``: Butteraugli, CIEDE2000, LPIPS) is
negated before interpolation, so that its curve rises with rate too; BD-quality is then negated back
and keeps the metric's own sign. Both functions interpolate in log10(rate) and integrate exactly over the
overlap of the two curves' ranges:

- ``pchip`` (default): piecewise cubic Hermite (Fritsch-Carlson), as JVET CTC (JVET-L0242 and later),
  the CTC spreadsheets and the ``bjontegaard`` package;
- ``akima``: Akima's spline (linear between two points), as the ``bjontegaard`` package;
- ``cubic``: one cubic polynomial fitted by least squares, as VCEG-M33 (Bjøntegaard, 2001).

BD-rate interpolates log10(rate) as a function of quality and averages the difference over the
quality overlap: ``(10 ** mean - 1) * 100`` percent (negative: the test needs fewer bits). BD-quality
interpolates quality as a function of log10(rate) and averages the difference over the log-rate overlap
(BD-PSNR when quality is PSNR; positive: the test scores higher, which is better for a higher-is-better
metric).

Undefined results are NaN, never 0; ``bd_details`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

METHODS = ("pchip", "cubic", "akima")
MIN_POINTS = {"pchip": 2, "akima": 2, "cubic": 4}
DELTAS = ("rate", "quality")

Points = Iterable[Sequence[float]]


def clean_curve(points: Points) -> tuple[np.ndarray, np.ndarray]:
    """(rates, qualities) sorted by rate (then quality), identical pairs dropped.

    Raises ValueError for a rate that is not positive and finite, or a quality that is not finite.
    """
    pairs = np.asarray([tuple(p) for p in points], dtype=float).reshape(-1, 2)
    rates, qualities = pairs[:, 0], pairs[:, 1]
    if not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError(f"rates must be positive and finite, got {rates.tolist()}")
    if not np.all(np.isfinite(qualities)):
        raise ValueError(f"qualities must be finite, got {qualities.tolist()}")
    unique = np.unique(pairs, axis=0)  # sorted by rate, then quality
    return unique[:, 0], unique[:, 1]


def _strictly_rising(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) > 0))


def _interpolator(x: np.ndarray, y: np.ndarray, method: str) -> Any:
    """An object with ``integrate(a, b)``; x strictly increasing except for ``cubic``."""
    import scipy.interpolate as si

    if method == "pchip":
        return si.PchipInterpolator(x, y)
    if method == "akima":
        return si.Akima1DInterpolator(x, y) if len(x) > 2 else si.make_interp_spline(x, y, k=1)
    return _Polynomial(np.polyfit(x, y, 3))


class _Polynomial:
    """A fitted polynomial that integrates exactly (VCEG-M33)."""

    def __init__(self, coefficients: np.ndarray):
        self.antiderivative = np.polyint(coefficients)

    def integrate(self, a: float, b: float) -> float:
        return float(np.polyval(self.antiderivative, b) - np.polyval(self.antiderivative, a))


def _axes(rates: np.ndarray, qualities: np.ndarray, delta: str) -> tuple[np.ndarray, np.ndarray]:
    """(integration variable, integrated variable) for a BD delta."""
    log_rates = np.log10(rates)
    return (qualities, log_rates) if delta == "rate" else (log_rates, qualities)


def _undefined_reason(
    rates: np.ndarray, qualities: np.ndarray, method: str, delta: str, which: str
) -> str | None:
    x = _axes(rates, qualities, delta)[0]
    if len(rates) < MIN_POINTS[method]:
        return f"{which} has {len(rates)} distinct point(s); {method} needs at least {MIN_POINTS[method]}"
    if method == "cubic":
        if len(np.unique(x)) < 4:
            axis = "quality" if delta == "rate" else "rate"
            return f"{which} has fewer than 4 distinct {axis} values; cubic needs 4"
        return None
    if delta == "rate" and not (_strictly_rising(qualities) and _strictly_rising(rates)):
        return f"{which}: quality does not strictly rise with rate (equal rates count as not rising)"
    if not _strictly_rising(rates):
        return f"{which}: two points share a rate, so quality is not a function of rate"
    return None


def overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the overlap of the ranges of ``a`` and ``b`` over the length of their union."""
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    overlap = min(a.max(), b.max()) - max(a.min(), b.min())
    return max(overlap, 0.0) / union if union > 0 else 0.0


def bd_details(
    anchor: Points, test: Points, method: str = "pchip", delta: str = "rate", higher_is_better: bool = True
) -> dict[str, Any]:
    """BD-rate (``delta="rate"``, percent) or BD-quality (``delta="quality"``) with how it was found.

    Returns ``{"value", "reason", "overlap", "method", "delta", "points"}``: ``value`` is NaN and
    ``reason`` says why when the delta is undefined (no overlap, too few points, a curve that does
    rise, or fall for a lower-is-better metric); ``overlap`` is the overlap of the two ranges of the integration variable (quality for
    BD-rate, log10 rate for BD-quality) over their union, in [0, 1]; ``points`` the distinct points of
    (anchor, test). Raises ValueError for an unknown method or delta, or invalid points.
    """
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; choose from {', '.join(METHODS)}")
    if delta not in DELTAS:
        raise ValueError(f"unknown BD delta {delta!r}; choose from {', '.join(DELTAS)}")
    sign = 1.0 if higher_is_better else -1.0
    curves = {
        which: clean_curve([(rate, sign * quality) for rate, quality in points])
        for which, points in (("anchor", anchor), ("test", test))
    }
    result: dict[str, Any] = {
        "value": math.nan,
        "reason": None,
        "overlap": math.nan,
        "method": method,
        "delta": delta,
        "points": (len(curves["anchor"][0]), len(curves["test"][0])),
    }
    for which, (rates, qualities) in curves.items():
        if len(rates) == 0:
            result["reason"] = f"{which} has no points"
            return result
    (xa, ya), (xt, yt) = (_axes(*curves[w], delta) for w in ("anchor", "test"))
    result["overlap"] = overlap_fraction(xa, xt)
    for which, curve in curves.items():
        reason = _undefined_reason(*curve, method, delta, which)
        if reason:
            result["reason"] = reason
            return result
    low, high = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if not high > low:
        result["reason"] = "the curves do not overlap"
        return result
    mean = (
        _interpolator(xt, yt, method).integrate(low, high)
        - _interpolator(xa, ya, method).integrate(low, high)
    ) / (high - low)
    result["value"] = float((10.0**mean - 1.0) * 100.0 if delta == "rate" else sign * mean)
    return result


def bd_rate(anchor: Points, test: Points, method: str = "pchip", higher_is_better: bool = True) -> float:
    """Percent rate change of ``test`` vs ``anchor`` at equal quality (negative: test saves rate); NaN
    when undefined."""
    return bd_details(anchor, test, method, "rate", higher_is_better)["value"]


def bd_quality(anchor: Points, test: Points, method: str = "pchip", higher_is_better: bool = True) -> float:
    """Mean quality difference of ``test`` minus ``anchor`` at equal rate (BD-PSNR for PSNR); NaN when
    undefined."""
    return bd_details(anchor, test, method, "quality", higher_is_better)["value"]


def monotone_points(
    rates: Sequence[float], qualities: Sequence[float], higher_is_better: bool = True
) -> np.ndarray:
    """Boolean mask of the points to keep so that quality strictly improves with rate (rises, or falls
    for a lower-is-better metric).

    Keeps the Pareto front: a point is dropped when another point has a rate no higher and a quality
    at least as good. Points with a non-finite or non-positive value are dropped too.
    """
    rates = np.asarray(rates, dtype=float)
    qualities = np.asarray(qualities, dtype=float) * (1.0 if higher_is_better else -1.0)
    keep = np.zeros(len(rates), dtype=bool)
    valid = np.isfinite(rates) & np.isfinite(qualities) & (rates > 0)
    order = sorted(np.flatnonzero(valid), key=lambda i: (rates[i], -qualities[i]))
    best = -math.inf
    for i in order:
        if qualities[i] > best:
            keep[i] = True
            best = qualities[i]
    return keep
