"""Search targets: what `--target-bpp`, `--target METRIC=VALUE` and `--budget-bpp` ask for, and the label
each stores in a row's ``target`` column (``bpp=0.25``, ``psnr_y=35``, ``budget_bpp=0.15``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.errors import UserError

RATE, QUALITY, BUDGET = "rate", "quality", "budget"  # the three kinds of search


@dataclass(frozen=True)
class Target:
    """``kind``: rate (a bpp per image), quality (``metric`` reaches ``value``) or budget (the dataset's
    bytes within ``value`` bpp, one knob value for every image)."""

    kind: str
    value: float
    metric: str = "bpp"

    @property
    def label(self) -> str:
        """The row's ``target`` column: ``bpp=0.25``, ``psnr_y=35``, ``budget_bpp=0.15``."""
        name = "budget_bpp" if self.kind == BUDGET else self.metric
        return f"{name}={self.value:g}"


def parse_label(label: str) -> Target | None:
    """The target a row's ``target`` column names; None for an empty one (a fixed-quality row)."""
    if not label:
        return None
    name, _, value = label.partition("=")
    if name == "budget_bpp":
        return Target(BUDGET, float(value))
    return Target(RATE if name == "bpp" else QUALITY, float(value), name)


def _values(option: str, text: str, positive: bool) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"{option}: {part.strip()!r} is not a number") from None
        if not math.isfinite(value) or (positive and value <= 0):
            raise UserError(
                f"{option}: {part.strip()!r} must be a {'positive ' if positive else ''}finite number"
            )
        values.append(value)
    if len(set(values)) != len(values):
        raise UserError(f"{option}: a value is given twice")
    return values


def rate_targets(text: str) -> list[Target]:
    """``--target-bpp 0.25,0.5``: one rate target per value, in the order given."""
    return [Target(RATE, value) for value in _values("--target-bpp", text, positive=True)]


def budget_targets(text: str) -> list[Target]:
    """``--budget-bpp 0.15`` (or several)."""
    return [Target(BUDGET, value) for value in _values("--budget-bpp", text, positive=True)]


def quality_targets(text: str, quality_metrics: dict[str, bool]) -> list[Target]:
    """``--target psnr_y=35,40`` (one metric, its values); ``quality_metrics``: the registry's quality
    metrics, name -> higher is better."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UserError(
            f"--target {text!r}: expected METRIC=VALUE[,VALUE...], e.g. psnr_y=35 or ssimulacra2=70"
        )
    if name not in quality_metrics:
        raise UserError(
            f"--target: {name!r} is not a quality metric of the registry (see `bench metrics`); "
            f"choose from {', '.join(sorted(quality_metrics))}"
        )
    return [Target(QUALITY, value, name) for value in _values("--target", values, positive=False)]


def options_of(labels: list[str]) -> dict[str, str]:
    """The ``bench run`` option that asks for these target labels (``target_bpp``, ``target`` or
    ``budget_bpp``, RunRequest's field), to repeat a run from its run.json."""
    targets = [parse_label(label) for label in labels]
    values = ",".join(f"{target.value:g}" for target in targets if target)
    kind = targets[0].kind if targets and targets[0] else None
    if kind == RATE:
        return {"target_bpp": values}
    if kind == BUDGET:
        return {"budget_bpp": values}
    return {"target": f"{targets[0].metric}={values}"} if kind == QUALITY else {}
