#!/usr/bin/env python
"""The same `bench run` three ways, one after the other: a local pool, a Dask LocalCluster, and a Dask
LocalCluster with the images shipped from the client (--ship-images).

Prints each one's wall time (the whole command, cluster start included), its ratio to the local pool's,
and whether its rows equal the local rows to the last digit, timing and memory columns aside.

    scripts/bench-dask.py --data-dir DATA --dataset kodak --jobs 2 --out /tmp/bench-dask
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.store import Store

MEASURED = ["enc_s", "dec_s", "enc_mps", "dec_mps", "metric_s", "load_s", "enc_peak_rss_mb", "dec_peak_rss_mb",
            "enc_gpu_peak_mb", "dec_gpu_peak_mb"]  # fmt: skip
VARIANTS = {
    "local": ["--executor", "local"],
    "dask": ["--executor", "dask"],
    "dask --ship-images": ["--executor", "dask", "--ship-images"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="kodak")
    parser.add_argument("--codecs", default="jpeg,jp2,webp,jxl,avif,heic")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, required=True, help="a folder for the three runs (must not exist)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True)
    walls, frames = {}, {}
    for name, options in VARIANTS.items():
        out = args.out / name.replace(" --", "-")
        command = [sys.executable, "-m", "bench.cli", "run", "--codecs", args.codecs, "--dataset", args.dataset,
                   "--data-dir", args.data_dir, "--jobs", str(args.jobs), "--out", str(out), *options]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls[name] = time.perf_counter() - start
        with Store(out / "results.sqlite") as store:
            frames[name] = store.frame().drop(columns=MEASURED).sort_values(["image", "codec", "quality"])
    reference = frames["local"].reset_index(drop=True)
    print(f"{len(reference)} tasks, {args.jobs} jobs")
    for name, frame in frames.items():
        try:
            pd.testing.assert_frame_equal(reference, frame.reset_index(drop=True), check_exact=True)
            same = "same rows"
        except AssertionError:
            same = "ROWS DIFFER"
        print(f"{name:20s} wall {walls[name]:7.1f} s  ratio {walls[name] / walls['local']:.3f}  {same}")


if __name__ == "__main__":
    main()
