"""bench.search against independent truth: closed-form rate and metric curves checked by brute force,
purity (extra known values change nothing), termination on noisy curves, and real codec output."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.knob import Knob
from bench.search import Done, Goal, Probe, decide, search

TARGETS = (0.12, 0.25, 0.5, 0.75, 1.0)
SWEEP = (5, 15, 30, 50, 70, 85, 95)
CONTINUOUS = Knob("continuous", 0, 100, resolution=0.01)
RATIO = Knob("continuous", 2, 10000, rate_rises=False, resolution=0.005, log_scale=True)  # as jp2's
RATIO_SWEEP = (240, 160, 96, 64, 40, 24, 12)
INTEGER = Knob("integer", 1, 100)
QP = Knob("integer", 0, 51, rate_rises=False)  # as heic's
QP_SWEEP = (46, 42, 38, 34, 30, 26, 22)


def exponential(x: float) -> float:
    return 0.05 * math.exp(0.045 * x)


def power_law(x: float) -> float:
    return 0.004 * (x + 1) ** 1.4


def ratio_rate(ratio: float) -> float:
    return 24 / ratio**0.97


def steep_integer(q: float) -> float:
    """Rises 6 % a step: most 1 % windows fall between two integers."""
    return 0.1 * math.exp(0.06 * q)


def qp_rate(qp: float) -> float:
    return 12 * math.exp(-0.1 * qp)


def shifted(knob: Knob, value: float, steps: int) -> float:
    """The knob value ``steps`` resolution steps (integers: 1) towards higher rates from ``value``."""
    step = steps * (1 if knob.discrete else knob.resolution) * (1 if knob.rate_rises else -1)
    return value * math.exp(step) if knob.log_scale else value + step


def run(knob, goals, measure, sweep=SWEEP, max_probes=30):
    """The results of searching ``goals`` as the runner does (measure what ``search`` asks, call it
    again), checking that no knob value is proposed twice; and the proposals in order."""
    measured: dict[float, float] = {}
    while not isinstance(outcome := search(knob, goals, sweep, measured.get, max_probes), list):
        assert outcome not in measured
        assert knob.low <= outcome <= knob.high
        assert not knob.discrete or outcome == round(outcome)
        measured[outcome] = measure(outcome)
    proposals = []
    search(knob, goals, sweep, lambda x: proposals.append(x) or measured[x], max_probes)
    assert len(set(proposals)) == len(proposals) == sum(result.probes for result in outcome)
    return outcome, proposals


@pytest.mark.parametrize(
    "knob, rate, sweep",
    [
        (CONTINUOUS, exponential, SWEEP),
        (CONTINUOUS, power_law, SWEEP),
        (RATIO, ratio_rate, RATIO_SWEEP),
        (
            Knob("continuous", 0, 100, rate_rises=False, resolution=0.01),
            lambda x: exponential(100 - x),
            SWEEP,
        ),
    ],
    ids=["exponential", "power-law", "log-scale-falling", "falling"],
)
def test_continuous_rate_targets_are_met_within_tolerance(knob, rate, sweep):
    results, _ = run(knob, [Goal("rate", target) for target in TARGETS], rate, sweep)
    for target, result in zip(TARGETS, results):
        assert result.done.met and result.done.note is None
        assert abs(rate(result.done.knob) - target) <= 0.01 * target


@pytest.mark.parametrize(
    "knob, rate, sweep", [(INTEGER, steep_integer, SWEEP), (QP, qp_rate, QP_SWEEP)], ids=["rising", "falling"]
)
@pytest.mark.parametrize("tolerance", [0.01, 0.03])
def test_integer_rate_targets_agree_with_brute_force(knob, rate, sweep, tolerance):
    targets = [0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0]
    results, _ = run(knob, [Goal("rate", t, tolerance) for t in targets], rate, sweep)
    values = range(int(knob.low), int(knob.high) + 1)
    for target, result in zip(targets, results):
        within = [q for q in values if abs(rate(q) - target) <= tolerance * target]
        if within:
            assert result.done.met and result.done.knob in within
        else:
            under = max((q for q in values if rate(q) <= target), key=rate)
            assert result.done == Done(under, False, result.done.note)
            richer = shifted(knob, under, 1)
            assert rate(richer) > target * (1 + tolerance)
            assert result.done.note.startswith(f"no quality between {min(under, richer):g} and ")


def test_a_missed_rate_target_says_what_each_neighbour_gives():
    [result], _ = run(INTEGER, [Goal("rate", 0.25)], steep_integer)
    assert (
        result.done.note
        == "no quality between 15 and 16 lands within 1% of 0.25 bpp: 0.246 bpp at 15, 0.2612 at 16"
    )


@pytest.mark.parametrize(
    "knob, rate, sweep",
    [(INTEGER, steep_integer, SWEEP), (QP, qp_rate, QP_SWEEP), (RATIO, ratio_rate, RATIO_SWEEP)],
    ids=["integer", "falling", "log-scale"],
)
def test_rate_targets_beyond_reach(knob, rate, sweep):
    lowest, highest = (knob.low, knob.high) if knob.rate_rises else (knob.high, knob.low)
    below, above = rate(lowest) / 2, rate(highest) * 2
    (under, over), _ = run(knob, [Goal("rate", below), Goal("rate", above)], rate, sweep)
    assert under.done.knob is None and not under.done.met
    assert under.done.note == (
        f"unreachable: {below:g} bpp is below the lowest rate on this image "
        f"({rate(lowest):.4g} bpp at quality {lowest:g})"
    )
    assert over.done.knob == highest and not over.done.met
    assert over.done.note.startswith(f"{above:g} bpp is above the highest rate on this image")


def test_ladder_takes_the_closest_rung_at_or_under_the_target():
    ladder = Knob("ladder", 0, 7)
    rung_rate = [0.08, 0.13, 0.2, 0.3, 0.5, 0.755, 1.1, 1.6]
    targets = [0.1, 0.25, 0.5, 0.75, 1.0, 1.5]
    results, _ = run(ladder, [Goal("rate", t) for t in targets], lambda k: rung_rate[int(k)], range(8))
    chosen = [(result.done.knob, result.done.met) for result in results]
    assert chosen == [(0, False), (2, False), (4, True), (5, True), (5, False), (6, False)]


def psnr(rate):
    """A PSNR-like metric of a rate curve: rises with the rate."""
    return lambda x: 30 + 6 * math.log2(rate(x))


def ciede(rate):
    """A lower-is-better metric of a rate curve."""
    return lambda x: 8 / math.sqrt(rate(x))


def reaches(measured: float, value: float, higher_is_better: bool) -> bool:
    return measured >= value if higher_is_better else measured <= value


@pytest.mark.parametrize(
    "knob, metric, sweep, values, higher_is_better",
    [
        (INTEGER, psnr(steep_integer), SWEEP, [20, 25, 30.3, 35, 40], True),
        (QP, psnr(qp_rate), QP_SWEEP, [20, 25, 30.3, 35, 40], True),
        (INTEGER, ciede(steep_integer), SWEEP, [20, 10, 5, 3.3, 2], False),
        (CONTINUOUS, psnr(exponential), SWEEP, [20, 25, 30.3, 35, 40], True),
        (RATIO, ciede(ratio_rate), RATIO_SWEEP, [10, 8, 5, 3.3, 2.5], False),
    ],
    ids=["integer", "falling", "lower-is-better", "continuous", "log-scale-lower-is-better"],
)
def test_quality_goals_find_the_fewest_bytes(knob, metric, sweep, values, higher_is_better):
    goals = [Goal("quality", value, higher_is_better=higher_is_better) for value in values]
    results, _ = run(knob, goals, metric, sweep)
    for value, result in zip(values, results):
        knob_value = result.done.knob
        assert result.done.met and result.done.note is None
        assert reaches(metric(knob_value), value, higher_is_better)
        assert not reaches(metric(shifted(knob, knob_value, -1)), value, higher_is_better)
        if knob.discrete:
            values_reaching = [
                q
                for q in range(int(knob.low), int(knob.high) + 1)
                if reaches(metric(q), value, higher_is_better)
            ]
            assert knob_value == (min(values_reaching) if knob.rate_rises else max(values_reaching))


def test_quality_reached_at_the_lowest_rate_or_never():
    metric = psnr(steep_integer)
    goals = [Goal("quality", 10), Goal("quality", 90), Goal("quality", 0.001, higher_is_better=False)]
    lowest, unreachable, never = run(INTEGER, goals, metric)[0]
    assert lowest.done == Done(
        1, True, f"reached at the lowest rate the knob allows ({metric(1):.4g} at quality 1)"
    )
    assert unreachable.done == Done(
        None, False, f"unreachable: 90 is above the best this image gets ({metric(100):.4g} at quality 100)"
    )
    assert never.done.knob is None and "is below the best this image gets" in never.done.note


@pytest.mark.parametrize(
    "knob, rate, sweep",
    [(INTEGER, steep_integer, SWEEP), (QP, qp_rate, QP_SWEEP), (CONTINUOUS, exponential, SWEEP)],
    ids=["integer", "falling", "continuous"],
)
def test_budget_takes_the_highest_rate_that_fits(knob, rate, sweep):
    budgets = [0.15, 0.3, 0.6, 1.2]
    results, _ = run(knob, [Goal("budget", b) for b in budgets], rate, sweep)
    for budget, result in zip(budgets, results):
        assert result.done.met and result.done.note is None
        assert rate(result.done.knob) <= budget < rate(shifted(knob, result.done.knob, 1))


def test_budget_that_nothing_fits():
    [result], _ = run(INTEGER, [Goal("budget", 0.01)], steep_integer)
    assert result.done.knob is None and not result.done.met
    assert result.done.note.startswith("unreachable: 0.01 bpp is below the lowest corpus rate")


def noisy(x: float) -> float:
    """Roughly monotone with 15 % deterministic noise: not monotone at all on a small scale."""
    return exponential(x) * (1 + 0.15 * math.sin(37.0 * x) * math.cos(11.0 * x))


@pytest.mark.parametrize("knob", [CONTINUOUS, INTEGER, Knob("continuous", 0, 100, resolution=1e-6)])
@pytest.mark.parametrize("kind", ["rate", "budget", "quality"])
def test_non_monotone_values_terminate_without_repeating(knob, kind):
    """The search decides on its own (well before max_probes), and what it decides holds locally."""
    if kind == "quality":
        goals, measure = [Goal("quality", 30 + 6 * math.log2(target)) for target in TARGETS], psnr(noisy)
    else:
        goals, measure = [Goal(kind, target, tolerance=0.001) for target in TARGETS], noisy
    results, _ = run(knob, goals, measure)
    for goal, result in zip(goals, results):
        assert result.probes < 25 and result.done.knob is not None
        value = measure(result.done.knob)
        if kind == "quality":
            assert result.done.met and value >= goal.value
        elif kind == "budget":
            assert result.done.met and value <= goal.value
        else:
            assert abs(value - goal.value) <= 0.001 * goal.value if result.done.met else value < goal.value


def test_a_search_stops_at_max_probes():
    [result], proposals = run(CONTINUOUS, [Goal("rate", 0.5, tolerance=0)], exponential, max_probes=3)
    assert result.probes == len(proposals) == 3
    under = max((x for x in proposals if exponential(x) <= 0.5), key=exponential)
    assert result.done == Done(under, False, "search stopped after 3 probes")


@pytest.mark.parametrize(
    "knob, rate, sweep",
    [(INTEGER, steep_integer, SWEEP), (RATIO, ratio_rate, RATIO_SWEEP)],
    ids=["int", "log"],
)
@pytest.mark.parametrize("kind", ["rate", "quality"])
def test_values_known_beyond_the_proposals_change_nothing(knob, rate, sweep, kind):
    if kind == "rate":
        goals, measure = [Goal("rate", t) for t in TARGETS] + [Goal("budget", 0.4)], rate
    else:
        goals, measure = [Goal("quality", 25), Goal("quality", 33)], psnr(rate)
    results, proposals = run(knob, goals, measure, sweep)
    grid = range(1, 101) if knob.discrete else np.geomspace(knob.low, knob.high, 501)
    known = {float(x): measure(float(x)) for x in [*grid, *proposals]}
    assert search(knob, goals, sweep, known.get) == results


def test_a_later_target_reuses_the_earlier_probes():
    results, _ = run(INTEGER, [Goal("rate", 0.5), Goal("rate", 0.5)], steep_integer)
    assert results[1].done == results[0].done and results[1].probes == 0


def test_the_met_rate_closest_to_the_target_wins_and_ties_go_to_the_lower_rate():
    points = {10: 0.5 - 2**-8, 11: 0.5 + 2**-8, 12: 0.5 + 2**-9, 13: 0.8}
    assert decide(INTEGER, Goal("rate", 0.5), points, SWEEP) == Done(12, True, None)
    del points[12]
    assert decide(INTEGER, Goal("rate", 0.5), points, SWEEP) == Done(10, True, None)


def test_first_probes_follow_the_sweep_prior():
    assert decide(INTEGER, Goal("rate", 0.5), {}, SWEEP) == Probe(50)
    assert decide(QP, Goal("rate", 0.5), {}, QP_SWEEP) == Probe(34)
    lower = decide(INTEGER, Goal("rate", 0.5), {50: 1.0}, SWEEP)
    assert isinstance(lower, Probe) and lower.knob < 50
    higher = decide(QP, Goal("quality", 40), {34: 35.0}, QP_SWEEP)
    assert higher == Probe(34 - round(0.25 * (46 - 22)))


def test_a_plateau_does_not_throw_the_next_probe_across_the_range():
    step = decide(CONTINUOUS, Goal("rate", 0.75), {32: 0.5, 33: 0.501}, SWEEP)
    prior_slope = math.log(20) / (95 - 5)
    assert step == Probe(pytest.approx(33 + math.log(0.75 / 0.501) / (prior_slope / 4)))


def test_goal_rejects_nonsense():
    with pytest.raises(ValueError, match="goal kind"):
        Goal("speed", 1.0)
    with pytest.raises(ValueError, match="positive"):
        Goal("rate", 0)
    with pytest.raises(ValueError, match="not a number"):
        decide(INTEGER, Goal("rate", 0.5), {50: math.nan}, SWEEP)
