"""Time lic's encode and decode on real images: ``python -m bench.lic.timing --device cuda IMAGE...``.

Prints JSON: per architecture, level and image the bytes, bpp, PSNR and the median encode/decode
seconds over ``--repeat`` calls after a warm-up, with CUDA synchronised before each clock stops.
Imports only what bench.lic imports, so it runs on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from bench.lic.codec import LicCodec


def _timed(call, codec: LicCodec, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        codec.sync()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def measure(architecture: str, device: str, images: list[Path], levels: list[int], repeat: int) -> list[dict]:
    codec = LicCodec("lic", {"architecture": architecture, "device": device})
    codec.warmup()
    rows = []
    for path in images:
        image = np.asarray(Image.open(path).convert("RGB"))
        height, width = image.shape[:2]
        for level in levels:
            data, enc_s = _timed(partial(codec.encode, image, level), codec, repeat)
            decoded, dec_s = _timed(partial(codec.decode, data, (height, width)), codec, repeat)
            mse = np.mean((decoded.astype(np.float64) - image) ** 2)
            rows.append(
                {
                    "architecture": architecture,
                    "device": device,
                    "image": path.name,
                    "level": level,
                    "bytes": len(data),
                    "bpp": len(data) * 8 / (height * width),
                    "psnr_rgb": 10 * np.log10(255**2 / mse),
                    "enc_s": enc_s,
                    "dec_s": dec_s,
                    "enc_mps": height * width / 1e6 / enc_s,
                    "dec_mps": height * width / 1e6 / dec_s,
                    "load_s": codec.load_s,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lic.timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--architectures", default="hyperprior,factorized")
    parser.add_argument("--levels", default="0,3,7")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    rows = [
        row
        for arch in args.architectures.split(",")
        for row in measure(arch, args.device, args.images, levels, args.repeat)
    ]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
