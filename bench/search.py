"""The searches behind matched-rate, iso-quality and budget comparisons: which knob value to probe next
for a goal, as a pure, deterministic function of the values measured so far (so that a run resumed
after a kill, or run with any number of jobs, takes exactly the same path)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.knob import Knob

GOAL_KINDS = ("rate", "quality", "budget")
PRIOR_LOG_RATE_SPAN = math.log(20.0)  # log-rate spanned by a codec's sweep, roughly 0.1 to 2 bpp
MIN_SLOPE_OF_PRIOR = 0.25  # the least log-rate slope an extrapolation assumes, as a fraction of the prior's
QUALITY_FIRST_STEP = 0.25  # of the sweep's span, the first step of a quality search


@dataclass(frozen=True)
class Goal:
    """``rate``: a bpp target per image, met within ``tolerance`` (relative) and otherwise a cap;
    ``quality``: the fewest bytes at which a metric reaches ``value``; ``budget``: the highest corpus
    bpp at or under ``value``."""

    kind: str
    value: float
    tolerance: float = 0.01
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.kind not in GOAL_KINDS:
            raise ValueError(f"goal kind {self.kind!r} must be one of {', '.join(GOAL_KINDS)}")
        if not math.isfinite(self.value) or (self.kind != "quality" and self.value <= 0):
            raise ValueError(f"{self.kind} goal value {self.value!r} must be a finite positive number")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"rate tolerance {self.tolerance!r} must be in [0, 1)")


@dataclass(frozen=True)
class Probe:
    """The knob value to measure next."""

    knob: float


@dataclass(frozen=True)
class Done:
    """The decision: the chosen knob value (None when nothing measurable meets the goal), whether the
    goal is met, and why not (or what is special about it) in one line without the codec's name."""

    knob: float | None
    met: bool
    note: str | None


@dataclass(frozen=True)
class Result:
    """A goal's decision and the proposals made while searching it (looked-up ones included)."""

    done: Done
    probes: int


@dataclass(frozen=True)
class _Point:
    u: float  # the search coordinate: the rate rises with it
    knob: float
    value: float  # as measured
    y: float  # what is interpolated: log-rate, or the metric oriented so that it rises with u
    side: int  # -1: short of the goal, +1: past it, 0: within the rate tolerance


class _Axis:
    """The oriented search coordinate u of a knob (the rate rises with u; the log of the knob value when
    ``log_scale``), its ends, its step, and the prior the sweep gives: its middle and its span."""

    def __init__(self, knob: Knob, sweep: Sequence[float]) -> None:
        self.knob = knob
        self.sign = 1.0 if knob.rate_rises else -1.0
        self.lowest_rate, self.highest_rate = knob.rate_ends  # knob values
        self.u_min, self.u_max = self.u(self.lowest_rate), self.u(self.highest_rate)
        self.step = 1.0 if knob.discrete else knob.resolution
        swept = sorted(self.u(min(max(x, knob.low), knob.high)) for x in sweep)
        self.sweep_middle = swept[(len(swept) - 1) // 2] if swept else (self.u_min + self.u_max) / 2
        span = swept[-1] - swept[0] if swept else 0.0
        self.span = span if span > 0 else self.u_max - self.u_min

    def u(self, x: float) -> float:
        return self.sign * (math.log(x) if self.knob.log_scale else x)

    def x(self, u: float) -> float:
        """The knob value at u: exactly an end of the range at the ends, a whole number when discrete."""
        if u <= self.u_min:
            return float(self.lowest_rate)
        if u >= self.u_max:
            return float(self.highest_rate)
        if self.knob.discrete:
            return float(round(self.sign * u))
        x = math.exp(self.sign * u) if self.knob.log_scale else self.sign * u
        return min(max(x, self.knob.low), self.knob.high)


def decide(knob: Knob, goal: Goal, points: Mapping[float, float], sweep: Sequence[float]) -> Probe | Done:
    """The next knob value to probe for ``goal``, or the decision, from the values measured so far
    (``points``: knob value -> measured value: the rate in bpp for rate goals, the corpus bpp for budget
    goals, the metric value for quality goals). ``sweep``: the codec's default knob values, the prior
    for the first probe and the first step."""
    axis = _Axis(knob, sweep)
    measured = sorted((_point(axis, goal, x, v) for x, v in points.items()), key=lambda p: p.u)
    hits = [p for p in measured if p.side == 0]
    if hits:
        best = min(hits, key=lambda p: (abs(p.value - goal.value), p.value, p.u))
        return Done(best.knob, True, None)
    lo, hi = _bracket(measured, anchor_low=goal.kind != "quality")
    if goal.kind == "quality":
        done = _quality_verdict(axis, goal, measured, lo, hi)
    else:
        done = _rate_verdict(axis, goal, lo, hi)
    return done or Probe(axis.x(_next_u(axis, goal, measured, lo, hi)))


def _point(axis: _Axis, goal: Goal, x: float, value: float) -> _Point:
    if math.isnan(value):
        raise ValueError(f"the value measured at {x:g} is not a number")
    if goal.kind == "quality":
        y = value if goal.higher_is_better else -value
        return _Point(axis.u(x), x, value, y, 1 if y >= _goal_y(goal) else -1)
    y = math.log(value) if value > 0 else -math.inf
    if goal.kind == "budget":
        return _Point(axis.u(x), x, value, y, -1 if value <= goal.value else 1)
    margin = goal.tolerance * goal.value
    side = -1 if value < goal.value - margin else 1 if value > goal.value + margin else 0
    return _Point(axis.u(x), x, value, y, side)


def _goal_y(goal: Goal) -> float:
    """The goal in the interpolated quantity: log-rate, or the metric oriented to rise with the rate."""
    if goal.kind != "quality":
        return math.log(goal.value)
    return goal.value if goal.higher_is_better else -goal.value


def _bracket(measured: list[_Point], anchor_low: bool) -> tuple[_Point | None, _Point | None]:
    """The bracket around the goal, robust to non-monotone values: anchored at the largest u short of
    it (rate, budget: the answer is the low end) or at the smallest u past it (quality: the high end),
    the other end being the nearest point on the other side of the anchor. No point lies inside."""
    shorts = [p for p in measured if p.side < 0]
    pasts = [p for p in measured if p.side > 0]
    if anchor_low:
        lo = shorts[-1] if shorts else None
        hi = next((p for p in pasts if lo is None or p.u > lo.u), None)
    else:
        hi = pasts[0] if pasts else None
        lo = next((p for p in reversed(shorts) if hi is None or p.u < hi.u), None)
    return lo, hi


def _closed(axis: _Axis, lo: _Point | None, hi: _Point | None) -> bool:
    return lo is not None and hi is not None and hi.u - lo.u <= axis.step * (1 + 1e-9)


def _rate_verdict(axis: _Axis, goal: Goal, lo: _Point | None, hi: _Point | None) -> Done | None:
    """A rate or budget decision: the bracket has closed or an end of the range decides it; else None."""
    target = f"{goal.value:g} bpp"
    rate = "corpus rate" if goal.kind == "budget" else "rate on this image"
    if _closed(axis, lo, hi):
        if goal.kind == "budget":
            return Done(lo.knob, True, None)
        low, high = sorted((lo.knob, hi.knob))
        return Done(
            lo.knob,
            False,
            f"no quality between {low:g} and {high:g} lands within {goal.tolerance * 100:g}% of {target}: "
            f"{lo.value:.4g} bpp at {lo.knob:g}, {hi.value:.4g} at {hi.knob:g}",
        )
    if lo is None and hi is not None and hi.u <= axis.u_min:
        return Done(
            None,
            False,
            f"unreachable: {target} is below the lowest {rate} ({hi.value:.4g} bpp at quality {hi.knob:g})",
        )
    if hi is None and lo is not None and lo.u >= axis.u_max:
        return Done(
            lo.knob,
            False,
            f"{target} is above the highest {rate} ({lo.value:.4g} bpp at quality {lo.knob:g})",
        )
    return None


def _quality_verdict(
    axis: _Axis, goal: Goal, measured: list[_Point], lo: _Point | None, hi: _Point | None
) -> Done | None:
    """A quality decision: the bracket has closed or an end of the range decides it; else None."""
    if _closed(axis, lo, hi):
        return Done(hi.knob, True, None)
    if lo is None and hi is not None and hi.u <= axis.u_min:
        note = f"reached at the lowest rate the knob allows ({hi.value:.4g} at quality {hi.knob:g})"
        return Done(hi.knob, True, note)
    if hi is None and lo is not None and lo.u >= axis.u_max:
        best = max(measured, key=lambda p: (p.y, -p.u))
        side = "above" if goal.higher_is_better else "below"
        best_at = f"{best.value:.4g} at quality {best.knob:g}"
        return Done(
            None, False, f"unreachable: {goal.value:g} is {side} the best this image gets ({best_at})"
        )
    return None


def _next_u(axis: _Axis, goal: Goal, measured: list[_Point], lo: _Point | None, hi: _Point | None) -> float:
    """The next u to probe: inside the bracket when there is one, else a step beyond the points."""
    y_goal = _goal_y(goal)
    if not measured:
        guess = axis.sweep_middle
    elif lo is not None and hi is not None:
        guess = _interpolate(measured, lo, hi, y_goal)
    else:
        guess = _extrapolate(axis, goal, measured, y_goal, upward=hi is None)
    return _admissible(axis, guess, lo, hi, snap=goal.kind != "rate")


def _interpolate(measured: list[_Point], lo: _Point, hi: _Point, y_goal: float) -> float:
    """Where the goal is crossed between the bracket ends: inverse quadratic interpolation through
    them and the nearest point beyond, else the secant, else (infinite values) the middle."""
    if not (math.isfinite(lo.y) and math.isfinite(hi.y)):
        return (lo.u + hi.u) / 2
    secant = lo.u + (y_goal - lo.y) * (hi.u - lo.u) / (hi.y - lo.y)
    below = [p for p in measured if p.u < lo.u]
    above = [p for p in measured if p.u > hi.u]
    third = min(below[-1:] + above[:1], key=lambda p: min(abs(p.u - lo.u), abs(p.u - hi.u)), default=None)
    monotone = third is not None and (third.y < lo.y if third.u < lo.u else third.y > hi.y)
    if not (monotone and math.isfinite(third.y)):
        return secant
    a, b, c = lo, hi, third
    guess = (
        a.u * (y_goal - b.y) * (y_goal - c.y) / ((a.y - b.y) * (a.y - c.y))
        + b.u * (y_goal - a.y) * (y_goal - c.y) / ((b.y - a.y) * (b.y - c.y))
        + c.u * (y_goal - a.y) * (y_goal - b.y) / ((c.y - a.y) * (c.y - b.y))
    )
    return guess if lo.u < guess < hi.u else secant


def _extrapolate(axis: _Axis, goal: Goal, measured: list[_Point], y_goal: float, upward: bool) -> float:
    """A step beyond the points on the open side, along the slope of the two outermost points when it
    rises, else along the prior (log-rate spanning ln 20 over the sweep; a quarter sweep for quality
    goals). A rate step is at most four times the prior's (a plateau between the two points must not
    throw the probe across the range) and at most the sweep's span."""
    near = measured[-2:] if upward else measured[:2]
    edge = near[-1] if upward else near[0]
    slope = None
    if len(near) == 2 and math.isfinite(near[0].y) and math.isfinite(near[1].y):
        rise = (near[1].y - near[0].y) / (near[1].u - near[0].u)
        slope = rise if rise > 0 else None
    if goal.kind != "quality" and math.isfinite(edge.y):
        prior = PRIOR_LOG_RATE_SPAN / axis.span
        slope = max(slope or prior, prior * MIN_SLOPE_OF_PRIOR)
    if slope is None:
        step = QUALITY_FIRST_STEP * axis.span
    else:
        step = min(abs(y_goal - edge.y) / slope, axis.span)
    return edge.u + (step if upward else -step)


def _admissible(axis: _Axis, guess: float, lo: _Point | None, hi: _Point | None, snap: bool) -> float:
    """``guess`` moved strictly inside the bracket (or the range's ends where it is open) by at least
    half a step, to a whole value when discrete; with ``snap``, a guess within a step of an end moves a
    step away from it, so that the bracket closes on the next probe when the guess was right."""
    if axis.knob.discrete:
        low = math.floor(lo.u) + 1 if lo else axis.u_min
        high = math.ceil(hi.u) - 1 if hi else axis.u_max
    else:
        low = lo.u + axis.step / 2 if lo else axis.u_min
        high = hi.u - axis.step / 2 if hi else axis.u_max
    if low > high:
        return axis.u_min if lo is None else axis.u_max
    if axis.knob.discrete:
        guess = math.floor(guess + 0.5)
    elif snap and lo and hi:
        if guess - lo.u < axis.step and guess - lo.u <= hi.u - guess:
            guess = lo.u + axis.step
        elif hi.u - guess < axis.step:
            guess = hi.u - axis.step
    return min(max(guess, low), high)


def search(
    knob: Knob,
    goals: Sequence[Goal],
    sweep: Sequence[float],
    lookup: Callable[[float], float | None],
    max_probes: int = 30,
) -> float | list[Result]:
    """Search the goals one after another, each starting from every point measured for the earlier ones
    (so they measure one quantity: bpp for rate and budget goals, one metric for quality goals).
    ``lookup(knob_value)`` returns the measured value, or None when it is not measured yet: then the
    search returns that knob value (the probe to run now); once every goal is decided it returns one
    Result per goal, in order. The search replays from no points on every call, so values ``lookup``
    knows but the replay never proposes never change the path."""
    points: dict[float, float] = {}
    results = []
    for goal in goals:
        proposals = 0
        step = decide(knob, goal, points, sweep)
        while isinstance(step, Probe):
            if proposals == max_probes:
                step = _stopped(_Axis(knob, sweep), goal, points, max_probes)
                break
            proposals += 1
            value = lookup(step.knob)
            if value is None:
                return step.knob
            points[step.knob] = value
            step = decide(knob, goal, points, sweep)
        results.append(Result(step, proposals))
    return results


def _stopped(axis: _Axis, goal: Goal, points: Mapping[float, float], max_probes: int) -> Done:
    """The decision of a search stopped at ``max_probes``: the highest rate at or under the target
    (rate, budget), or the lowest rate that reaches the quality; not met."""
    measured = [_point(axis, goal, x, v) for x, v in points.items()]
    if goal.kind == "quality":
        chosen = min((p for p in measured if p.side > 0), key=lambda p: p.u, default=None)
    else:
        chosen = max(
            (p for p in measured if p.value <= goal.value), key=lambda p: (p.value, -p.u), default=None
        )
    return Done(chosen.knob if chosen else None, False, f"search stopped after {max_probes} probes")
