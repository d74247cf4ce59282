#!/usr/bin/env python
"""What metrics cost on one core: each metric (metrics computed together as one family counted once)
and all of them together, as a run's worker computes them (`metric_s`), per image. By default the
default set; `--metrics` takes the grammar of `bench run --metrics` (`+perceptual`, `all`, ...).

Pairs are Kodak images against Pillow's quality-50 JPEG of them. The process (and the tools it starts:
butteraugli_main runs a pool of 4 threads) is pinned to one CPU, and every math library is held to one
thread before it is imported; each image's first call is untimed (imports, set-up); the figures are
medians over the images. The target for the default set: all together in at most 1.2 s per 768x512
image.

    BENCH_DATA_DIR=DATA scripts/bench-metrics.py --images 4 [--metrics +perceptual] [--device cuda]

With ``--device cuda`` the metrics that can (bench.metric_device) compute on the GPU, as in `bench run
--device cuda`, and the script also gives each one's largest difference from its CPU value.
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

from bench import measures, metric_device
from bench.datasets import default_data_dir

TARGET_S = 1.2


def pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    original = np.asarray(Image.open(path).convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(original).save(buffer, format="JPEG", quality=50)
    return original, np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def seconds(names: list[str], reference: np.ndarray, reconstruction: np.ndarray) -> float:
    start = time.perf_counter()
    measures.compute(names, reference, reconstruction)  # each value is read back: the GPU has finished
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="Kodak images to time (default 4)")
    parser.add_argument(
        "--metrics", help="metrics to time, as bench run --metrics (default: the default set)"
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, auto: as bench run --device (default cpu)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = metric_device.resolve(args.device)
    asked = measures.with_sources(measures.resolve_metrics(args.metrics, measures.default_metrics()))
    left_out = sorted(measures.unavailable_here(asked))
    chosen = [name for name in asked if name not in left_out]
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
    gpu = [name for name in chosen if metrics[name].gpu] if device != "cpu" else []
    differences: dict[str, float] = dict.fromkeys(gpu, 0.0)
    for path in kodak:
        reference, reconstruction = pair(path)
        with metric_device.computing_on(device):
            on_device = measures.compute(chosen, reference, reconstruction)  # untimed first call
            for names in parts.values():
                timings["+".join(names)].append(seconds(names, reference, reconstruction))
            totals.append(seconds(chosen, reference, reconstruction))
        on_cpu = measures.compute(gpu, reference, reconstruction)
        for name in gpu:
            differences[name] = max(differences[name], abs(on_device[name] - on_cpu[name]))
    where = "one CPU" if device == "cpu" else f"one CPU and {metric_device.name(device)}"
    print(f"{len(kodak)} Kodak images vs Pillow q50, on {where}; median seconds per image")
    for label, values in timings.items():
        print(f"  {statistics.median(values):7.3f}  {label}")
    total = statistics.median(totals)
    target = (
        f" ({total / TARGET_S:.2f} of the {TARGET_S} s target for the default set)"
        if not args.metrics
        else ""
    )
    print(f"  {total:7.3f}  all of them together{target}")
    for name, difference in differences.items():
        print(f"  {name}: largest difference from its CPU value {difference:.2e}")
    if left_out:
        print(f"left out (unavailable here): {', '.join(left_out)}")


if __name__ == "__main__":
    main()
