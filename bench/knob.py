"""A codec's quality knob as the matched-rate searches see it: its domain, range, direction and
resolution, declared once per codec (the adapter for in-process codecs, the TOML entry for command-line
codecs)."""

from __future__ import annotations

import math
from dataclasses import dataclass

DOMAINS = ("continuous", "integer", "ladder")


@dataclass(frozen=True)
class Knob:
    """``domain``: continuous (any value in range), integer, or ladder (one model per integer rung);
    ``rate_rises``: whether the rate rises with the knob value; ``resolution``: the smallest step that
    matters, in the search coordinate (knob units; natural-log units when ``log_scale``, as for jp2's
    compression ratio); integer and ladder knobs step by 1."""

    domain: str
    low: float
    high: float
    rate_rises: bool = True
    resolution: float = 1.0
    log_scale: bool = False

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"knob domain {self.domain!r} must be one of {', '.join(DOMAINS)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"knob range [{self.low:g}, {self.high:g}] must be finite and increasing")
        if self.log_scale and self.low <= 0:
            raise ValueError("a log-scale knob's range must be positive")
        if self.domain != "continuous" and self.log_scale:
            raise ValueError("only a continuous knob may be searched on a log scale")
        if not self.resolution > 0:
            raise ValueError("knob resolution must be positive")

    @property
    def discrete(self) -> bool:
        """Integer and ladder knobs take whole values only."""
        return self.domain != "continuous"

    @property
    def rate_ends(self) -> tuple[float, float]:
        """The knob values that give the lowest and the highest rate (whole values when discrete)."""
        low, high = (math.ceil(self.low), math.floor(self.high)) if self.discrete else (self.low, self.high)
        return (low, high) if self.rate_rises else (high, low)
