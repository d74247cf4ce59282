#!/usr/bin/env python
"""Pack lic's training photographs into one file for a GPU round (bench.lic.pack says how).

The last 8 photographs by name are held out (never packed: the shipping decision's, scripts/lic-select.py);
the others are box-filtered down by 2 and centre-cropped to at most 512x512, stored as PNG in a zip.
Refuses Kodak. Prints the pack's size and sha256.

    scripts/pack-lic-train.py ../shared/datasets/train carry/lic-train.zip
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.lic import pack, weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/pack-lic-train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the training photographs (never Kodak)")
    parser.add_argument("out", type=Path, help="the pack to write, e.g. carry/lic-train.zip")
    parser.add_argument("--held-out", type=int, default=pack.HELD_OUT, help="hold out the last N photographs")
    parser.add_argument("--scale", type=int, default=pack.SCALE, help="box-filter down by this factor")
    parser.add_argument("--tile", type=int, default=pack.TILE, help="centre crop to at most this many pixels")
    args = parser.parse_args(argv)
    manifest = pack.write_pack(args.folder, args.out, args.held_out, args.scale, args.tile)
    pixels = sum(w * h for w, h in (photo["size"] for photo in manifest["photos"]))
    print(
        f"{args.out}: {len(manifest['photos'])} photographs ({pixels / 1e6:.2f} Mpx), "
        f"{args.out.stat().st_size:,} bytes ({args.out.stat().st_size / 2**20:.2f} MiB), "
        f"sha256 {weights.file_sha256(args.out)[:16]}; held out: "
        + ", ".join(photo["name"] for photo in manifest["held_out"])
    )


if __name__ == "__main__":
    main()
