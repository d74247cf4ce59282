#!/usr/bin/env python
"""How many probes the matched-rate search spends: searches the targets 0.12, 0.25, 0.5, 0.75 and 1 bpp
on Kodak images with the real in-process codecs and their declared knobs (one search per image and
codec, the targets in that order sharing their probes, as `bench run --target-bpp` does) and prints, per
codec, the mean probes per target, the hit rate and the misses. Encodes only, one process:
``scripts/bench-search.py --images 8 --codecs jpeg,webp`` (the Kodak folder: $BENCH_DATA_DIR/kodak)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from bench.catalog import load_catalog
from bench.codec import knob, open_codec
from bench.images import load_image
from bench.search import Goal, Result, search

TARGETS_BPP = (0.12, 0.25, 0.5, 0.75, 1.0)
IN_PROCESS = "jpeg,webp,jxl,avif,heic,jp2"


def search_image(name: str, image: np.ndarray) -> list[Result]:
    """Every target searched on one image with the codec ``name``."""
    entry = load_catalog()[name]
    codec = open_codec(entry)
    pixels = image.shape[0] * image.shape[1]
    rates: dict[float, float] = {}
    goals = [Goal("rate", target) for target in TARGETS_BPP]
    declared = knob(codec, entry.rate_rises_with_quality)
    while not isinstance(outcome := search(declared, goals, entry.qualities, rates.get), list):
        rates[outcome] = len(codec.encode(image, outcome)) * 8 / pixels
    return outcome


def summary(name: str, results: list[Result]) -> str:
    probes = np.mean([result.probes for result in results])
    met = sum(result.done.met for result in results)
    unreachable = sum(result.done.knob is None for result in results)
    missed = len(results) - met - unreachable
    return (
        f"{name:6} {probes:5.2f} probes/target  hit {met / len(results):6.1%}  "
        f"missed {missed:3}  unreachable {unreachable:3}  ({len(results)} targets)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="the first N Kodak images [24]")
    parser.add_argument("--codecs", default=IN_PROCESS, help=f"comma-separated [{IN_PROCESS}]")
    args = parser.parse_args()
    if not os.environ.get("BENCH_DATA_DIR"):
        sys.exit("bench-search: set BENCH_DATA_DIR to the folder holding kodak/")
    paths = sorted((Path(os.environ["BENCH_DATA_DIR"]) / "kodak").glob("kodim*.png"))[: args.images]
    images = [load_image(path).rgb for path in paths]
    for name in args.codecs.split(","):
        results = [result for image in images for result in search_image(name, image)]
        print(summary(name, results), flush=True)


if __name__ == "__main__":
    main()
