"""How many probes the matched-rate search spends: searches the targets 0.12, 0.25, 0.5, 0.75 and 1 bpp
on Kodak images with the real in-process codecs (one search per image and codec, the targets in that
order sharing their probes) and prints, per codec, the mean probes per target, the hit rate and the
misses. Single process: ``python -m bench.search_probes --images 8 --codecs jpeg,webp``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.knob import Knob
from bench.search import Goal, Result, search

if TYPE_CHECKING:
    from bench.codec import Codec

TARGETS_BPP = (0.12, 0.25, 0.5, 0.75, 1.0)
KNOBS = {
    "jpeg": Knob("integer", 1, 100),
    "webp": Knob("continuous", 0, 100, resolution=0.5),
    "jxl": Knob("continuous", 0, 99, resolution=0.1),
    "avif": Knob("integer", 0, 99),
    "heic": Knob("integer", 0, 51, rate_rises=False),
    "jp2": Knob("continuous", 2, 10000, rate_rises=False, resolution=0.005, log_scale=True),
}
DATA_DIR = Path(
    os.environ.get("BENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
)


def search_image(knob: Knob, sweep: tuple[float, ...], rate: Callable[[float], float]) -> list[Result]:
    """Every target searched on one image, ``rate(knob_value)`` giving its bpp."""
    rates: dict[float, float] = {}
    goals = [Goal("rate", target) for target in TARGETS_BPP]
    while not isinstance(outcome := search(knob, goals, sweep, rates.get), list):
        rates[outcome] = rate(outcome)
    return outcome


def bpp_of(codec: Codec, image: np.ndarray) -> Callable[[float], float]:
    """The rate in bits per pixel of ``codec`` on ``image`` at a knob value."""
    pixels = image.shape[0] * image.shape[1]
    return lambda value: len(codec.encode(image, value)) * 8 / pixels


def summary(name: str, results: list[Result]) -> str:
    probes = np.mean([result.probes for result in results])
    met = sum(result.done.met for result in results)
    unreachable = sum(result.done.knob is None for result in results)
    missed = len(results) - met - unreachable
    return (
        f"{name:6} {probes:5.2f} probes/target  hit {met / len(results):6.1%}  "
        f"missed {missed:3}  unreachable {unreachable:3}  ({len(results)} targets)"
    )


def main(argv: list[str] | None = None) -> None:
    from bench.catalog import load_catalog
    from bench.codec import open_codec
    from bench.images import load_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="the first N Kodak images [24]")
    parser.add_argument("--codecs", default=",".join(KNOBS), help=f"comma-separated [{','.join(KNOBS)}]")
    parser.add_argument(
        "--kodak", type=Path, default=DATA_DIR / "kodak", help="the Kodak folder [$BENCH_DATA_DIR/kodak]"
    )
    args = parser.parse_args(argv)
    paths = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    images = [load_image(path).rgb for path in paths]
    catalog = load_catalog()
    for name in args.codecs.split(","):
        codec = open_codec(catalog[name])
        results = []
        for image in images:
            results += search_image(KNOBS[name], catalog[name].qualities, bpp_of(codec, image))
        print(summary(name, results), flush=True)


if __name__ == "__main__":
    main()
