#!/usr/bin/env python
"""lic training speed, side by side: steps per second of each configuration on the same batch.

For each configuration (eager fp32; bf16; bf16 + channels-last; bf16 + channels-last + compile by
default) in one process: a fresh model (same seed), one batch of random crops drawn once from the
training data, a few untimed warm-up steps (torch.compile compiles there: its time is reported), then
--steps timed training steps (bench.lic.train.train_step) with the device synchronised around them.
Picks the configuration that trains the most steps in --budget seconds (its warm-up counted) and
writes the table and the pick to --json. Meant for the GPU machine (scripts/lic-gpu-round.sh).

    scripts/lic-train-speed.py --data carry/lic-train.zip --steps 50 --budget 420 --json speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from bench.lic import pack
from bench.lic.model import build
from bench.lic.train import (
    TrainConfig,
    device_for,
    device_name,
    fast_kernels,
    memory_format,
    optimizers,
    sync,
    train_step,
    training_data,
    training_forward,
)

CONFIGURATIONS = {
    "eager-fp32": {},
    "bf16": {"bf16": True},
    "bf16+channels-last": {"bf16": True, "channels_last": True},
    "bf16+channels-last+compile": {"bf16": True, "channels_last": True, "compile": True},
}
FLAGS = {"bf16": "--bf16", "channels_last": "--channels-last", "compile": "--compile"}


def measure(base: TrainConfig, name: str, batch: torch.Tensor, steps: int, warmup: int) -> dict:
    """Warm-up seconds and timed steps per second of one configuration, training on ``batch``."""
    config = dataclasses.replace(base, **CONFIGURATIONS[name])
    device = batch.device
    torch.manual_seed(config.seed)
    layout = memory_format(config)
    x = batch.contiguous(memory_format=layout)
    level = torch.arange(config.batch, device=device) % len(config.lambdas)
    model = build(config.architecture, config.n, config.m, len(config.lambdas))
    model = model.to(device, memory_format=layout).train()
    pair = optimizers(model, config.lr)
    lambdas = torch.tensor(config.lambdas, device=device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    forward = training_forward(model, config, x, level)
    for _ in range(warmup):
        train_step(forward, model, pair, x, level, lambdas, config, config.lr)
    sync(device)
    warm_s = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(steps):
        result = train_step(forward, model, pair, x, level, lambdas, config, config.lr)
    sync(device)
    timed_s = time.perf_counter() - began
    return {
        "name": name,
        "flags": [FLAGS[key] for key in CONFIGURATIONS[name] if key != "compile" or forward is not model],
        "warmup_s": round(warm_s, 2),
        "steps_per_s": round(steps / timed_s, 2),
        "loss": round(float(result.loss), 4),
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/lic-train-speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a training pack or folder (never Kodak)")
    parser.add_argument(
        "--configs", default=",".join(CONFIGURATIONS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument("--steps", type=int, default=50, help="timed steps per configuration")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps first (compiling, cuDNN's choice)"
    )
    parser.add_argument("--budget", type=float, default=420.0, help="seconds of training the pick is for")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--channels", nargs=2, type=int, default=(128, 192), metavar=("N", "M"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the table and the pick here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.configs.split(",")) - set(CONFIGURATIONS))
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}; choose from {', '.join(CONFIGURATIONS)}")
    if pack.is_kodak(Path(args.data)):
        parser.error("Kodak is the test set: never train on it")
    torch.set_num_threads(args.threads)
    fast_kernels()
    n, m = args.channels
    base = TrainConfig(data=args.data, batch=args.batch, crop=args.crop, n=n, m=m, device=args.device)
    device = device_for(args.device)
    crops = training_data(base, device).crops
    batch = crops.batch(args.batch, crops.generator(base.seed))
    rows = []
    print(f"{'configuration':<28} {'warm-up s':>9} {'steps/s':>8} {'loss':>9} {'peak GiB':>8}", flush=True)
    for name in args.configs.split(","):
        row = measure(base, name, batch, args.steps, args.warmup)
        rows.append(row)
        print(
            f"{name:<28} {row['warmup_s']:>9.1f} {row['steps_per_s']:>8.2f} {row['loss']:>9.3f} "
            f"{row['peak_gib'] if row['peak_gib'] is not None else '-':>8}",
            flush=True,
        )
    pick = max(rows, key=lambda row: (args.budget - row["warmup_s"]) * row["steps_per_s"])
    print(f"fastest in {args.budget:.0f} s: {pick['name']} ({' '.join(pick['flags']) or 'no flags'})")
    if args.json:
        summary = {
            "device": device_name(device),
            "torch": torch.__version__,
            "batch": args.batch,
            "crop": args.crop,
        }
        args.json.write_text(json.dumps(summary | {"rows": rows, "pick": pick}, indent=1) + "\n")


if __name__ == "__main__":
    main()
