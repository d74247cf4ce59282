"""bench.bd against closed forms and the independent `bjontegaard` package."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from bench.bd import bd_details, bd_quality, bd_rate, monotone_points
from tests.conftest import skip_or_fail

METHODS = ("pchip", "akima", "cubic")


def line_curve(rates, intercept=35.0, slope=10.0):
    """Points on quality = intercept + slope * log10(rate): every method interpolates a line exactly."""
    return [(r, intercept + slope * math.log10(r)) for r in rates]


ANCHOR = line_curve([0.12, 0.25, 0.5, 1.0, 2.0])


@pytest.fixture(scope="module", name="bj")
def bjontegaard_package():
    """The independent reference implementation."""
    try:
        import bjontegaard
    except ImportError:
        skip_or_fail("the bjontegaard package is not installed (pip install -e '.[test]')")
    return bjontegaard


@pytest.mark.parametrize("method", METHODS)
def test_rates_times_0_8_give_minus_20_percent(method):
    test = [(r * 0.8, q) for r, q in ANCHOR]
    assert bd_rate(ANCHOR, test, method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(test, ANCHOR, method) == pytest.approx(25.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    assert bd_rate(ANCHOR, ANCHOR, method) == pytest.approx(0.0, abs=1e-12)
    assert bd_quality(ANCHOR, ANCHOR, method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_a_quality_shift_is_the_bd_quality(method):
    test = [(r, q + 1.25) for r, q in ANCHOR]
    assert bd_quality(ANCHOR, test, method) == pytest.approx(1.25, abs=1e-9)
    # on a line q = 35 + 10 log10(r), +1.25 dB is a rate factor of 10 ** (-1.25 / 10) everywhere
    assert bd_rate(ANCHOR, test, method) == pytest.approx((10 ** (-1.25 / 10) - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_curves_of_different_lengths_and_orders(method):
    """Other sample points of the same scaled line, shuffled, with a repeated pair: still -20 %."""
    test = line_curve([0.1, 0.2, 0.3, 0.45, 0.7, 1.1, 1.6], intercept=35.0 - 10 * math.log10(0.8))
    shuffled = [test[i] for i in (3, 0, 6, 2, 5, 1, 4)] + [test[2]]
    assert bd_rate(ANCHOR, shuffled, method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(list(reversed(ANCHOR)), shuffled, method) == pytest.approx(-20.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_a_non_constant_gap_against_its_closed_form(method):
    """Two lines of different slopes in log rate: the mean log-rate gap over the quality overlap is the
    gap at the overlap's midpoint."""
    anchor = line_curve([0.1, 0.3, 0.9, 2.7], intercept=30.0, slope=10.0)  # q in [20, 34.3]
    test = line_curve([0.1, 0.25, 0.6, 1.5], intercept=32.0, slope=12.0)  # q in [20, 34.1]
    low = max(min(q for _, q in anchor), min(q for _, q in test))
    high = min(max(q for _, q in anchor), max(q for _, q in test))
    middle = (low + high) / 2
    gap = (middle - 32.0) / 12.0 - (middle - 30.0) / 10.0
    assert bd_rate(anchor, test, method) == pytest.approx((10**gap - 1) * 100, abs=1e-9)


def _random_curve(rng, points):
    rates = np.sort(rng.uniform(0.05, 3.0, points))
    qualities = np.sort(rng.uniform(24.0, 42.0, points))
    return rates, qualities


def _reference(bj, function, anchor, test, method):
    """The bjontegaard package's value, NaN where it raises or warns of no overlap."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return function(*anchor, *test, method, require_matching_points=False)
        except (ValueError, AssertionError, np.linalg.LinAlgError):
            return math.nan


@pytest.mark.parametrize("method", METHODS)
def test_matches_the_bjontegaard_package_on_many_curves(bj, method):
    rng = np.random.default_rng(2024)
    smallest = 4 if method == "cubic" else 2
    compared = 0
    for _ in range(300):
        anchor = _random_curve(rng, int(rng.integers(smallest, 9)))
        test = _random_curve(rng, int(rng.integers(smallest, 9)))
        order = rng.permutation(len(test[0]))  # our input may come in any order
        shuffled_test = list(zip(test[0][order], test[1][order], strict=True))
        for ours, theirs in ((bd_rate, bj.bd_rate), (bd_quality, bj.bd_psnr)):
            expected = _reference(bj, theirs, anchor, test, method)
            value = ours(list(zip(*anchor, strict=True)), shuffled_test, method)
            if math.isnan(expected):
                assert math.isnan(value)
            else:
                compared += 1
                assert value == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert compared > 500


def test_matches_bjontegaard_on_published_style_curves(bj):
    """Four-point anchor/test pairs like those of the CTC spreadsheets (kbps, PSNR)."""
    anchor = ([9487.76, 4593.60, 2486.44, 1358.24], [40.2265, 38.5558, 36.3489, 34.0042])
    test = ([9787.80, 4469.00, 2451.40, 1348.08], [40.6015, 38.7013, 36.4530, 34.1125])
    for method in METHODS:
        expected = bj.bd_rate(*anchor, *test, method=method, min_overlap=0)
        assert bd_rate(list(zip(*anchor)), list(zip(*test)), method) == pytest.approx(expected, rel=1e-12)
        expected = bj.bd_psnr(*anchor, *test, method=method, min_overlap=0)
        assert bd_quality(list(zip(*anchor)), list(zip(*test)), method) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", ("pchip", "akima"))
def test_where_bjontegaard_raises_we_return_nan(bj, method):
    """A curve whose quality falls as rate rises: the package raises, we say why."""
    falling = [(0.2, 30.0), (0.5, 33.0), (1.0, 32.0), (2.0, 38.0)]
    rates, qualities = zip(*falling, strict=True)
    with pytest.raises((ValueError, AssertionError)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bj.bd_rate(*zip(*ANCHOR), rates, qualities, method, require_matching_points=False)
    details = bd_details(ANCHOR, falling, method)
    assert math.isnan(details["value"]) and "does not strictly rise" in details["reason"]


@pytest.mark.parametrize(
    ("anchor", "test", "method", "reason"),
    [
        (ANCHOR, [(0.5, 30.0)], "pchip", "needs at least 2"),
        (ANCHOR, line_curve([0.5, 1.0, 2.0]), "cubic", "needs at least 4"),
        (ANCHOR, [(0.5, 40.0), (0.5, 41.0), (1.0, 42.0)], "pchip", "does not strictly rise"),  # equal rates
        (ANCHOR, [(0.5, 50.0), (1.0, 55.0)], "pchip", "do not overlap"),
        (ANCHOR, [(4.0, 35.0 + 10 * math.log10(2.0)), (8.0, 47.0)], "akima", "do not overlap"),  # touching
        ([], ANCHOR, "pchip", "anchor has no points"),
    ],
)
def test_undefined_is_nan_with_a_reason(anchor, test, method, reason):
    details = bd_details(anchor, test, method)
    assert math.isnan(details["value"]) and reason in details["reason"]
    assert math.isnan(bd_rate(anchor, test, method))


def test_cubic_needs_no_monotone_curve_but_pchip_does():
    wobbly = [(0.1, 28.0), (0.2, 30.0), (0.4, 29.5), (0.8, 34.0), (1.6, 37.0)]
    assert math.isfinite(bd_rate(ANCHOR, wobbly, "cubic"))
    assert math.isnan(bd_rate(ANCHOR, wobbly, "pchip"))
    # BD-quality interpolates quality over rate, which a falling quality does not prevent
    assert math.isfinite(bd_quality(ANCHOR, wobbly, "pchip"))


def test_overlap_fraction_and_points():
    anchor = [(0.1, 30.0), (1.0, 40.0)]
    test = [(0.2, 35.0), (2.0, 45.0)]
    details = bd_details(anchor, test)
    assert details["overlap"] == pytest.approx(5.0 / 15.0)
    assert details["points"] == (2, 2)
    # BD-quality integrates over log10 rate: [-1, 0] and [log10 0.2, log10 2]
    union = math.log10(2.0) + 1.0
    overlap = -math.log10(0.2)
    assert bd_details(anchor, test, delta="quality")["overlap"] == pytest.approx(overlap / union)
    assert bd_details(anchor + anchor, test)["points"] == (2, 2)  # identical pairs dropped


@pytest.mark.parametrize(
    "bad",
    [
        [(0.0, 30.0), (1.0, 35.0)],
        [(-1.0, 30.0), (1.0, 35.0)],
        [(0.5, math.inf), (1.0, 35.0)],
        [(0.5, math.nan)],
    ],
)
def test_invalid_points_are_refused(bad):
    with pytest.raises(ValueError):
        bd_rate(ANCHOR, bad)


def test_unknown_method_or_delta_is_refused():
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(ANCHOR, ANCHOR, "linear")
    with pytest.raises(ValueError, match="unknown BD delta"):
        bd_details(ANCHOR, ANCHOR, delta="psnr")


def test_monotone_points_keep_the_rising_front():
    rates = [0.1, 0.2, 0.3, 0.4, 0.4, 0.5, 0.6, math.nan]
    qualities = [30.0, 29.0, 31.0, 33.0, 32.5, 33.0, 35.0, 40.0]
    keep = monotone_points(rates, qualities)
    # 0.2 falls below 0.1; (0.4, 32.5) ties a rate with a better point; 0.5 does not beat 0.4; NaN dropped
    assert keep.tolist() == [True, False, True, True, False, False, True, False]
    kept = [(r, q) for r, q, k in zip(rates, qualities, keep, strict=True) if k]
    assert math.isfinite(bd_rate(ANCHOR, kept))


def test_points_where_a_metric_saturates_are_left_out_of_bd_and_counted():
    """psnr_hvs saturates at 100 (psnr_hvsm's cap): the saturated top points of both codecs are skipped,
    and BD is that of the remaining points, which lie on two lines (a closed form)."""
    import pandas as pd

    from bench.report.bdtable import bd_table

    rates = [0.25, 0.5, 1.0, 2.0, 4.0]
    rows = []
    for label, intercept in (("anchor", 35.0), ("test", 38.0)):
        curve = line_curve(rates[:4], intercept) + [(rates[4], 100.0)]
        rows += [
            {"label": label, "image": "a.png", "image_sha256": "a", "quality": q, "bpp": r, "psnr_hvs": v,
             "error": None}
            for q, (r, v) in enumerate(curve)
        ]  # fmt: skip
    table = bd_table(pd.DataFrame(rows), "anchor", ["psnr_hvs"], mode="image")
    cell = table.cells[("test", "psnr_hvs")]
    assert cell.skipped == 1 and table.anchor_skipped["psnr_hvs"] == 1 and cell.dropped == 0
    # 3 dB higher on a slope of 10 dB per decade: the test needs 10^-0.3 of the rate
    assert cell.value == pytest.approx((10**-0.3 - 1) * 100, rel=1e-9)
