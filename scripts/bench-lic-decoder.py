#!/usr/bin/env python
"""lic's decoders against the arithmetic this CPU can do, on one core, in one run.

First the peak rates of the routes a decoder can use (multiply-accumulates per second): float64 and
float32 GEMMs through torch (1024^3 and a synthesis-shaped one), float32 convolution through oneDNN (a
transposed convolution of lic's synthesis), and int8 GEMMs with int32 accumulation (torch._int_mm,
counted as int8 MACs). Then, per Kodak image, lic's decode time with the float decoder
(`lic:exact=false`), the exact decoder through int8 GEMMs and through float64 (its portable route), and
`lic:synthesis=float32`, and the encoder's time; each one's achieved MAC/s (its kMAC per pixel times the
pixels, over the time) as a fraction of the float32 peak. The process is pinned to one CPU with every math library on one thread;
medians over the images, each image's first call untimed.

    BENCH_DATA_DIR=DATA scripts/bench-lic-decoder.py --images 24 [--level 5] [--json OUT]
"""

from __future__ import annotations

import os

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from bench.datasets import default_data_dir
from bench.lic.codec import LicCodec
from bench.lic.weights import GEMM_ENV

DECODERS = {  # label: (codec options, route of the exact convolutions)
    "float": ({"exact": False}, "int8"),
    "exact-int8": ({}, "int8"),
    "exact-float64": ({}, "float64"),
    "float32-synthesis": ({"synthesis": "float32"}, "int8"),
}


def seconds(call: Callable[[], object], repeat: int = 3) -> float:
    """The median of ``repeat`` timed calls after one untimed call."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peaks() -> dict[str, float]:
    """GMAC/s of each arithmetic route."""
    rates = {}
    for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
        for m, k, n, shape in ((1024, 1024, 1024, "1024^3"), (128, 1152, 24576, "128x1152x24576")):
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            rates[f"{name} GEMM {shape}"] = m * k * n / seconds(lambda a=a, b=b: a @ b) / 1e9
    x, weight = torch.randn(1, 128, 128, 192), torch.randn(128, 128, 5, 5)
    macs = 128 * 128 * 25 * 128 * 192
    deconv = lambda: F.conv_transpose2d(x, weight, None, 2, 2, 1)
    rates["float32 oneDNN deconv 128->128 5x5 /2"] = macs / seconds(deconv) / 1e9
    for m, k, n in ((1024, 1024, 1024), (257, 1152, 4096)):
        a = torch.randint(-128, 128, (m, k), dtype=torch.int8)
        b = torch.randint(-128, 128, (k, n), dtype=torch.int8)
        rates[f"int8 GEMM {m}x{k}x{n}"] = m * k * n / seconds(lambda a=a, b=b: torch._int_mm(a, b)) / 1e9
    return rates


def images(count: int) -> list[tuple[str, np.ndarray]]:
    paths = sorted((default_data_dir() / "kodak").glob("kodim*.png"))[:count]
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def decoders(level: int, pictures: list[tuple[str, np.ndarray]]) -> dict[str, dict]:
    """Per decoder: median decode seconds, kMAC per pixel and the pixels' agreement with the others."""
    results, pixels = {}, {}
    for label, (options, route) in DECODERS.items():
        os.environ[GEMM_ENV] = route
        codec = LicCodec("lic", options | {"threads": 1})
        kmac, kmac_encoder = codec.complexity()["kmac_px_dec"], codec.complexity()["kmac_px_enc"]
        times, encode_times, decoded = [], [], []
        for _, image in pictures:
            data = codec.encode(image, level)
            times.append(seconds(lambda c=codec, d=data, s=image.shape[:2]: c.decode(d, s), repeat=1))
            encode_times.append(seconds(lambda c=codec, i=image: c.encode(i, level), repeat=1))
            decoded.append(codec.decode(data, image.shape[:2]))
        pixels[label] = decoded
        px = statistics.median(i.shape[0] * i.shape[1] for _, i in pictures)
        median, encode_median = statistics.median(times), statistics.median(encode_times)
        results[label] = {
            "decode_s": median,
            "encode_s": encode_median,
            "kmac_px_dec": kmac,
            "gmac_s": kmac * 1e3 * px / median / 1e9,
            "encode_gmac_s": kmac_encoder * 1e3 * px / encode_median / 1e9,
        }
    same = all(
        np.array_equal(a, b) for a, b in zip(pixels["exact-int8"], pixels["exact-float64"], strict=True)
    )
    results["exact-int8"]["same_pixels_as_float64_route"] = same
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--level", type=int, default=5, help="lic's rate level (0-7)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rates = peaks()
    for name, rate in rates.items():
        print(f"peak  {name:40s} {rate:7.1f} GMAC/s")
    float_peak = max(rate for name, rate in rates.items() if name.startswith("float32"))
    results = decoders(args.level, images(args.images))
    base = results["float"]["decode_s"]
    for label, r in results.items():
        print(
            f"lic   {label:14s} decode {r['decode_s']:.3f} s ({r['decode_s'] / base:.2f}x float) "
            f"{r['gmac_s']:.1f} GMAC/s = {r['gmac_s'] / float_peak:.0%} of the float32 peak; "
            f"encode {r['encode_s']:.3f} s = {r['encode_gmac_s'] / float_peak:.0%}"
        )
    print(
        f"exact-int8 and exact-float64 give the same pixels: {results['exact-int8']['same_pixels_as_float64_route']}"
    )
    if args.json:
        args.json.write_text(json.dumps({"peaks": rates, "decoders": results}, indent=1))


if __name__ == "__main__":
    main()
