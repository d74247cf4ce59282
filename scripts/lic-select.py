#!/usr/bin/env python
"""The shipping decision for a lic candidate, on the held-out training photographs (never Kodak).

Encodes and decodes each held-out photograph (the last 8 of the training folder by name, which no
round trains on) with the real lic codec (bench.lic.codec, exact decoder, real bitstreams) at every
rung of the ladder, with the shipped weights and with the candidate. Per photograph, the BD-rate of the
candidate against the shipped weights on psnr_rgb (bench.bd, pchip, each curve cut to its monotone
points), then the mean and its bootstrap 95 % interval over the photographs: SHIP only when every
photograph's BD-rate is defined and the whole interval is negative (the candidate needs fewer bits for
the same quality, beyond the photographs' noise), or below -PERCENT with --margin PERCENT; otherwise
NO. Also prints each model's top-of-ladder PSNR, the mean over the photographs (issue 21 asks 36 dB on
Kodak of the top rung).

    scripts/lic-select.py CANDIDATE.pt [--shipped codecs/lic/hyperprior.pt] [--data TRAIN_FOLDER]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from bench.bd import bd_rate, monotone_points
from bench.lic import pack
from bench.lic.codec import LicCodec
from bench.lic.round import held_out_photos
from bench.lic.train import load_photos
from bench.lic.weights import default_path
from bench.metrics import bpp, psnr_rgb
from bench.report.bdtable import bootstrap_ci

Curve = list[tuple[float, float]]  # (bpp, psnr_rgb) per rung


def curves(weights: Path, images: list[np.ndarray], threads: int = 1) -> list[Curve]:
    """Each image's (bpp, psnr_rgb) at every rung of the ladder, through real bitstreams."""
    codec = LicCodec("lic", {"weights": str(weights), "threads": threads})
    problem = codec.available()
    if problem:
        raise SystemExit(f"{weights}: {problem}")
    result = []
    for image in images:
        height, width = image.shape[:2]
        points = []
        for level in range(int(codec.knob().high) + 1):
            encoded = codec.encode(image, level)
            points.append(
                (bpp(len(encoded), height, width), psnr_rgb(image, codec.decode(encoded, (height, width))))
            )
        result.append(points)
    return result


def image_bd_rate(shipped: Curve, candidate: Curve) -> float:
    """BD-rate (percent) of the candidate against the shipped weights on one image; NaN if undefined."""

    def monotone(curve: Curve) -> Curve:
        rates, qualities = zip(*curve, strict=True)
        return [point for point, keep in zip(curve, monotone_points(rates, qualities), strict=True) if keep]

    return bd_rate(monotone(shipped), monotone(candidate))


def decide(bd_rates: list[float], margin: float = 0.0) -> tuple[float, tuple[float, float], bool]:
    """The mean BD-rate, its bootstrap 95 % interval over the photographs, and whether to ship: every
    BD-rate defined and the interval's upper end below ``-margin`` percent (negative, with margin 0)."""
    defined = bool(bd_rates) and all(math.isfinite(v) for v in bd_rates)
    if not defined:
        return math.nan, (math.nan, math.nan), False
    low, high = bootstrap_ci(np.asarray(bd_rates))
    return float(np.mean(bd_rates)), (low, high), bool(high < -margin)


def top_psnr(per_image: list[Curve]) -> float:
    """Mean psnr_rgb of the top rung over the images."""
    return float(np.mean([curve[-1][1] for curve in per_image]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/lic-select.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "candidate", type=Path, help="exported candidate weights (python -m bench.lic.round assemble)"
    )
    parser.add_argument(
        "--shipped", type=Path, default=default_path("hyperprior"), help="default: %(default)s"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("BENCH_DATA_DIR", "datasets")) / "train",
        help="the training photographs; their last --held-out are measured (default: $BENCH_DATA_DIR/train)",
    )
    parser.add_argument("--held-out", type=int, default=pack.HELD_OUT)
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help="ship only when the mean BD-rate's 95 %% interval lies below -PERCENT (default 0: negative)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every point and the decision here")
    args = parser.parse_args(argv)
    meta = torch.load(args.candidate, map_location="cpu", weights_only=True)
    paths = held_out_photos(meta, args.data, args.held_out)
    images = load_photos(paths)
    shipped = curves(args.shipped, images, args.threads)
    candidate = curves(args.candidate, images, args.threads)
    rates = [image_bd_rate(s, c) for s, c in zip(shipped, candidate, strict=True)]
    for path, rate in zip(paths, rates, strict=True):
        print(f"{path.name}: BD-rate {rate:+.2f} % (psnr_rgb, candidate against shipped)")
    mean, (low, high), ship = decide(rates, args.margin)
    print(
        f"top of the ladder, mean psnr_rgb: shipped {top_psnr(shipped):.2f} dB, candidate {top_psnr(candidate):.2f} dB"
    )
    better = sum(rate < 0 for rate in rates)
    print(
        f"mean BD-rate {mean:+.2f} % [{low:+.2f}, {high:+.2f}] over {len(rates)} held-out photographs "
        f"({better} better, from {min(rates):+.2f} to {max(rates):+.2f} %), margin {args.margin:g} %: "
        f"{'SHIP' if ship else 'NO'}"
    )
    if args.json:
        names = [path.name for path in paths]
        points = {
            "shipped": dict(zip(names, shipped, strict=True)),
            "candidate": dict(zip(names, candidate, strict=True)),
        }
        decision = {
            "bd_rates": dict(zip(names, rates, strict=True)),
            "mean": mean,
            "ci": [low, high],
            "ship": ship,
        }
        args.json.write_text(json.dumps(decision | {"points": points}, indent=1) + "\n")


if __name__ == "__main__":
    main()
