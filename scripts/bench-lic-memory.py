#!/usr/bin/env python
"""lic's peak resident memory and decode time per decoder, on a 3840x2160 image and on one Kodak image.

The 3840x2160 image is a mosaic of real photographs made in memory: the 24 Kodak images (portrait ones
turned on their side) in a 5 x 5 grid of 768x512 tiles, cycled, cut to 2160 rows. It is encoded once
by the exact encoder and once by the float one (`lic:exact=false`, which writes its own bitstreams),
in a subprocess of its own; then each decoder decodes it in a fresh subprocess:

    exact-int8      lic (the exact decoder; int8 GEMMs where this CPU has them)
    exact-float64   lic with BENCH_LIC_GEMM=float64 (the exact decoder's portable float64 route)
    float32-synth   lic:synthesis=float32 (exact scale path, synthesis in float32)
    float           lic:exact=false (float decoder, its own bitstreams)

Per decode: the child's peak resident memory (ru_maxrss from wait4, the whole process: interpreter,
torch, weights and the decode), its resident memory after loading the model (before decoding), the
decode time (one call after a 64x64 warm-up round trip), the PSNR against the original, and whether
the two exact routes gave the same pixels. One thread, on the CPUs this process may use (run it under
`taskset -c N`). A child whose resident memory passes --kill-above MiB is killed and reported as such
(the untiled float64 route needs far more than 2 GB at 3840x2160).

    BENCH_DATA_DIR=DATA taskset -c 1 scripts/bench-lic-memory.py [--level 7] [--images kodim01,uhd]
        [--decoders exact-int8,exact-float64,float32-synth,float] [--json OUT]
"""

from __future__ import annotations

import os

for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse
import hashlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DECODERS = {  # label: (codec options, BENCH_LIC_GEMM, which encoder's bitstream)
    "exact-int8": ({}, "int8", "exact"),
    "exact-float64": ({}, "float64", "exact"),
    "float32-synth": ({"synthesis": "float32"}, "int8", "exact"),
    "float": ({"exact": False}, "int8", "float"),
}
ENCODERS = {"exact": {}, "float": {"exact": False}}
UHD = (2160, 3840)


def kodak(data_dir: Path) -> list[np.ndarray]:
    from PIL import Image

    paths = sorted((data_dir / "kodak").glob("kodim*.png"))
    if len(paths) != 24:
        raise SystemExit(f"expected the 24 Kodak images in {data_dir / 'kodak'}, found {len(paths)}")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def mosaic(photos: list[np.ndarray], size: tuple[int, int] = UHD) -> np.ndarray:
    """A size[0] x size[1] image of whole 768x512 photographs (portrait ones rotated), row by row."""
    landscape = [p if p.shape[1] > p.shape[0] else np.rot90(p) for p in photos]
    tile_h, tile_w = landscape[0].shape[:2]
    rows, cols = -(-size[0] // tile_h), -(-size[1] // tile_w)
    grid = [
        np.concatenate([landscape[(r * cols + c) % len(landscape)] for c in range(cols)], 1)
        for r in range(rows)
    ]
    return np.ascontiguousarray(np.concatenate(grid, 0)[: size[0], : size[1]])


def rss_mib(field: str = "VmRSS", pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_encode(folder: Path, level: int, kinds: list[str]) -> None:
    """Encode every image in ``folder`` (name.npy) with the encoders ``kinds``: name.exact.bin and/or
    name.float.bin."""
    import torch

    from bench.lic.codec import LicCodec

    torch.set_num_threads(1)
    for kind in kinds:
        options = ENCODERS[kind]
        codec = LicCodec("lic", options)
        for path in sorted(folder.glob("*.npy")):
            if path.stem.count("."):
                continue
            image = np.load(path)
            (folder / f"{path.stem}.{kind}.bin").write_bytes(codec.encode(image, level))
    print(json.dumps({}))


def child_decode(stream: Path, label: str, out: Path) -> None:
    """Decode one bitstream with one decoder; print a JSON line with the times and memory."""
    import torch

    from bench.lic import bitstream
    from bench.lic.codec import LicCodec

    torch.set_num_threads(1)
    options, _, _ = DECODERS[label]
    codec = LicCodec("lic", options)
    codec.warmup()
    loaded = rss_mib()
    data = stream.read_bytes()
    header, _ = bitstream.unpack(data)
    start = time.perf_counter()
    pixels = codec.decode(data, (header.height, header.width))
    seconds = time.perf_counter() - start
    peak = rss_mib("VmHWM")
    np.save(out, pixels)
    tiles = None
    try:  # how many tiles the synthesis took (bench.lic.tiles; absent before it)
        from bench.lic import tiles as tiling

        model = codec._loaded()
        step = model.downsampling  # the decoder's latent: the padded size over 16
        latent = (-(-header.height // step) * step // 16, -(-header.width // step) * step // 16)
        tiles = len(tiling.tiles_for(latent, model.g_s, model.tile_route("g_s"), model.tile_budget))
    except ImportError:
        pass
    print(json.dumps({"decode_s": seconds, "loaded_mib": loaded, "vmhwm_mib": peak, "tiles": tiles}))


def run_child(args: list[str], env: dict[str, str], kill_above: float) -> tuple[dict | None, float, str]:
    """Run this script as a child: its JSON line (None if killed or failed), its peak resident memory in
    MiB (ru_maxrss from wait4: this child's alone) and the reason it failed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=out, stderr=err)
        done, killed = threading.Event(), threading.Event()

        def guard() -> None:  # reads /proc only, never reaps (wait4 below must get the child's usage)
            while not done.is_set():
                try:
                    if rss_mib("VmRSS", process.pid) > kill_above:
                        killed.set()
                        os.kill(process.pid, signal.SIGKILL)
                        return
                except (FileNotFoundError, ProcessLookupError):
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=guard, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        watcher.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    if killed.is_set():
        return None, peak, f"killed above {kill_above:.0f} MiB"
    if process.returncode:
        return None, peak, stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {process.returncode}"
    return json.loads(stdout.strip().splitlines()[-1]), peak, ""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=7, help="lic's rate level (0-7; 7: the most symbols)")
    parser.add_argument("--decoders", default=",".join(DECODERS), help="comma-separated labels")
    parser.add_argument("--images", default="kodim01,uhd", help="kodim01 and/or uhd (the 3840x2160 mosaic)")
    parser.add_argument("--kill-above", type=float, default=16384, help="MiB; a child above it is killed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "encode":
            child_encode(Path(args.child[1]), args.level, args.child[2:])
        else:
            child_decode(Path(args.child[1]), args.child[2], Path(args.child[3]))
        return

    from bench.datasets import default_data_dir

    photos = kodak(default_data_dir())
    named = {
        "kodim01": ("kodim01 768x512", lambda: photos[0]),
        "uhd": ("mosaic 3840x2160", lambda: mosaic(photos)),
    }
    images = {named[key][0]: named[key][1]() for key in args.images.split(",")}
    decoders = args.decoders.split(",")
    kinds = sorted({DECODERS[label][2] for label in decoders})
    print(f"CPUs {sorted(os.sched_getaffinity(0))}, level {args.level}, one thread", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lic-memory-") as tmp:
        folder = Path(tmp)
        names = {}
        for index, (name, image) in enumerate(images.items()):
            names[name] = f"image{index}"
            np.save(folder / f"image{index}.npy", image)
        start = time.perf_counter()
        encode = ["--level", str(args.level), "--child", "encode", tmp, *kinds]
        _, peak, error = run_child(encode, dict(os.environ), args.kill_above)
        if error:
            raise SystemExit(f"encoding failed: {error}")
        seconds = time.perf_counter() - start
        print(
            f"encoded with the {' and '.join(kinds)} encoder(s) in {seconds:.0f} s (peak {peak:.0f} MiB)",
            flush=True,
        )
        for name, image in images.items():
            pixels = {}
            for label in decoders:
                _, gemm, kind = DECODERS[label]
                stream = folder / f"{names[name]}.{kind}.bin"
                out = folder / f"{names[name]}.{label}.out.npy"
                env = dict(os.environ, BENCH_LIC_GEMM=gemm)
                result, peak, error = run_child(
                    ["--level", str(args.level), "--child", "decode", str(stream), label, str(out)],
                    env,
                    args.kill_above,
                )
                row = {"image": name, "decoder": label, "bytes": stream.stat().st_size, "peak_mib": peak}
                if result:
                    decoded = np.load(out)
                    pixels[label] = decoded
                    digest = hashlib.sha256(decoded.tobytes()).hexdigest()[:16]
                    row |= result | {"psnr_db": psnr(decoded, image), "pixels_sha256": digest}
                else:
                    row["error"] = error
                rows.append(row)
                print(format_row(row), flush=True)
            if "exact-int8" in pixels and "exact-float64" in pixels:
                same = np.array_equal(pixels["exact-int8"], pixels["exact-float64"])
                print(f"{name}: exact-int8 and exact-float64 give the same pixels: {same}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def format_row(row: dict) -> str:
    head = f"{row['image']:17s} {row['decoder']:14s} {row['bytes']:>9,d} B"
    if "error" in row:
        return f"{head}  peak >= {row['peak_mib']:7.0f} MiB  {row['error']}"
    tiles = f"{row['tiles']:3d} tile(s)" if row.get("tiles") is not None else "untiled  "
    return (
        f"{head}  peak {row['peak_mib']:7.0f} MiB (loaded {row['loaded_mib']:5.0f} MiB)  "
        f"decode {row['decode_s']:7.2f} s  {tiles}  {row['psnr_db']:.2f} dB  {row['pixels_sha256']}"
    )


if __name__ == "__main__":
    main()
