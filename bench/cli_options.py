"""Option parsers shared by the `bench` commands."""

from __future__ import annotations

import math

from bench.errors import UserError


def parse_qualities(values: tuple[str, ...]) -> dict[str, list[float]]:
    """Repeated ``--qualities CODEC=Q1,Q2,...`` as {codec: qualities}."""
    qualities: dict[str, list[float]] = {}
    for value in values:
        name, eq, points = value.partition("=")
        try:
            parsed = [float(p) for p in points.split(",") if p.strip()]
        except ValueError:
            parsed = []
        if not eq or not name or not parsed or not all(math.isfinite(q) for q in parsed):
            raise UserError(f"--qualities {value!r}: expected CODEC=Q1,Q2,... with finite numbers")
        qualities[name.strip()] = parsed
    return qualities
