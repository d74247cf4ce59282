#!/usr/bin/env python
"""What the default metrics (or those --metrics names) cost on one core: each metric (metrics computed
together as one family counted once) and all of them together, as a run's worker computes them
(`metric_s`), per image.

Pairs are Kodak images against Pillow's quality-50 JPEG of them. The process (and the tools it starts:
butteraugli_main runs a pool of 4 threads) is pinned to one CPU, and every math library is held to one
thread before it is imported; each image's first call is untimed (imports, set-up); the figures are
medians over the images. The target of issue 16: all default metrics together in at most 1.2 s per
768x512 image.

    BENCH_DATA_DIR=DATA scripts/bench-metrics.py --images 4 [--metrics jpegai]
"""

from __future__ import annotations

import os

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench import measures
from bench.datasets import default_data_dir

TARGET_S = 1.2


def pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    original = np.asarray(Image.open(path).convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(original).save(buffer, format="JPEG", quality=50)
    return original, np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def seconds(names: list[str], reference: np.ndarray, reconstruction: np.ndarray) -> float:
    start = time.perf_counter()
    measures.compute(names, reference, reconstruction)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="Kodak images to time (default 4)")
    parser.add_argument(
        "--metrics", help="the metrics to time, in bench's --metrics grammar (default: default)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    asked = measures.resolve_metrics(args.metrics, measures.default_metrics())
    chosen = [name for name in asked if not measures.unavailable_here([name])]
    left_out = sorted(set(asked) - set(chosen))
    metrics = measures.all_metrics()
    parts: dict[str, list[str]] = {}  # one entry per computation: a metric, or a family's members
    for name in chosen:
        metric = metrics[name]
        key = metric.source or (metric.family or name)
        parts.setdefault(key, []).append(name)
    kodak = sorted((default_data_dir(None) / "kodak").glob("kodim*.png"))[: args.images]
    if not kodak:
        raise SystemExit("no Kodak image: set BENCH_DATA_DIR to the folder holding kodak/")
    timings: dict[str, list[float]] = {"+".join(names): [] for names in parts.values()}
    totals = []
    for path in kodak:
        reference, reconstruction = pair(path)
        seconds(chosen, reference, reconstruction)  # untimed first call
        for names in parts.values():
            timings["+".join(names)].append(seconds(names, reference, reconstruction))
        totals.append(seconds(chosen, reference, reconstruction))
    print(f"{len(kodak)} Kodak images vs Pillow q50, on one CPU; median seconds per image")
    for label, values in timings.items():
        print(f"  {statistics.median(values):7.3f}  {label}")
    total = statistics.median(totals)
    target = f" ({total / TARGET_S:.2f} of the {TARGET_S} s target)" if args.metrics is None else ""
    print(f"  {total:7.3f}  all {'default ' if args.metrics is None else ''}metrics together{target}")
    if left_out:
        print(f"left out (unavailable here): {', '.join(left_out)}")


if __name__ == "__main__":
    main()
