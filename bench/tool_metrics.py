"""Metrics computed by external tools, each call in a temporary folder through bench.adapters.tool.

- Butteraugli: libjxl's ``butteraugli_main ref.png dist.png --pnorm 3`` on lossless PNGs of the two
  images (no colour profile: read as sRGB). One run prints the max-norm distance and the 3-norm.
- VMAF v0.6.1: libvmaf inside imageio-ffmpeg's ffmpeg, fed raw BT.709 full-range 8-bit YUV 4:4:4 planes
  written here (bench.adapters.yuv, H.273: chroma offset 128), so ffmpeg converts nothing. The model
  reads luma only: JPEG AI's conversion (the same luma, chroma offset 127.5) gives the same scores.
  ``vmaf_of_planes`` also reads 10-bit planes (JPEG AI's variant, bench.jpegai_metrics).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.adapters.programs import ffmpeg
from bench.adapters.tool import ToolError, output_tail, run_tool, tool_output
from bench.adapters.yuv import YuvFormat, rgb_to_planes
from bench.measure_types import check_rgb_pair

TIMEOUT_S = 300.0  # one tool call; far above the seconds a 24-megapixel pair takes
VERSION_TIMEOUT_S = 20.0
BUTTERAUGLI = "butteraugli_main"
BUTTERAUGLI_INSTALL = "install libjxl's devtools (Debian, Ubuntu: apt install libjxl-devtools)"
BUTTERAUGLI_MIN_SIDE = 8  # libjxl 0.7's comparator skips a smaller image and reports distance 0
VMAF_MIN_SIDE = 17  # libvmaf's integer ADM crashes on a side of 16 px or less (Netflix/vmaf#1607)
VMAF_YUV = YuvFormat(matrix="bt709", range="full", subsampling="444", bitdepth=8)
VMAF_FILTER = "libvmaf=model='version=vmaf_v0.6.1':log_fmt=json:log_path=vmaf.json:n_threads=1"


@contextmanager
def _folder(tool: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as folder:
        yield Path(folder)


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image, "RGB").save(path, compress_level=0)  # stored: the fastest to write and read


def _butteraugli(
    reference: np.ndarray, reconstruction: np.ndarray, heatmap: bool = False
) -> tuple[float, float, np.ndarray | None]:
    """butteraugli_main's max-norm distance and 3-norm, and with ``heatmap`` its heat map (RGB uint8)."""
    check_rgb_pair(reference, reconstruction, BUTTERAUGLI_MIN_SIDE, BUTTERAUGLI)
    with _folder("butteraugli") as folder:
        _write_png(folder / "ref.png", reference)
        _write_png(folder / "dist.png", reconstruction)
        extra = ["--distmap", "heatmap.png"] if heatmap else []
        run_tool([BUTTERAUGLI, "ref.png", "dist.png", "--pnorm", "3", *extra], folder, TIMEOUT_S)
        printed = (folder / "stdout.txt").read_text(errors="replace")
        found = re.fullmatch(r"\s*(\S+)\s+3-norm:\s*(\S+)\s*", printed)
        try:
            distances = (float(found[1]), float(found[2])) if found else ()
        except ValueError:
            distances = ()
        if not distances or not all(math.isfinite(d) and d >= 0 for d in distances):
            shown = " ".join(printed.split())[:200] or f"nothing; {output_tail(folder)}"
            raise ToolError(f"{BUTTERAUGLI} printed no distance and 3-norm: {shown}")
        return (*distances, _read_heatmap(folder / "heatmap.png", reference.shape) if heatmap else None)


def _read_heatmap(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ToolError(f"{BUTTERAUGLI} wrote no readable heat map: {exc}") from None
    if image.shape != shape:
        raise ToolError(f"{BUTTERAUGLI} wrote a heat map of {image.shape}, not {shape}")
    return image


def butteraugli_family(reference: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """``butteraugli`` (max-norm distance) and ``butteraugli_3n`` (3-norm) of the pair, from one run of
    libjxl's butteraugli_main; 0 for identical images."""
    distance, norm3, _ = _butteraugli(reference, reconstruction)
    return {"butteraugli": distance, "butteraugli_3n": norm3}


def butteraugli_heatmap(reference: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """butteraugli_main's heat map of the pair (``--distmap``), H x W x 3 uint8: black where the images
    match, then blue, cyan, green (libjxl's "good" level), yellow, red ("bad") and on to white as the
    distance grows; MetricUndefined under 8 px."""
    return _butteraugli(reference, reconstruction, heatmap=True)[2]


def butteraugli_unavailable() -> str | None:
    """Why butteraugli_main cannot run here, or None."""
    if shutil.which(BUTTERAUGLI) is None:
        return f"the butteraugli metrics need {BUTTERAUGLI}, not found on PATH: {BUTTERAUGLI_INSTALL}"
    return None


def libjxl_version() -> str:
    """libjxl's version, e.g. "libjxl-0.7.0". butteraugli_main prints none, so this is what cjxl or djxl
    beside it print (libjxl builds its tools together); "unknown" without either."""
    program = shutil.which(BUTTERAUGLI)
    for sibling in ("cjxl", "djxl") if program else ():
        path = os.path.join(os.path.dirname(program), sibling)
        if not os.access(path, os.X_OK):
            continue
        try:
            with _folder("libjxl-version") as folder:
                printed = tool_output([path, "--version"], folder, VERSION_TIMEOUT_S)
        except ToolError:
            continue
        found = re.search(r"\bv(\d+\.\d+\.\d+)\b", printed)
        if found:
            return f"libjxl-{found[1]}"
    return "unknown"


def vmaf_of_planes(
    reference: list[np.ndarray], reconstruction: list[np.ndarray], bits: int = 8
) -> tuple[float, str]:
    """VMAF v0.6.1 of two pictures given as their Y, Cb, Cr planes (4:4:4, integer samples of ``bits``: 8
    or 10), and libvmaf's version as its log names it. libvmaf's first input is the distorted picture, its
    second the reference."""
    height, width = reference[0].shape
    pixel_format, sample = {8: ("yuv444p", np.uint8), 10: ("yuv444p10le", np.dtype("<u2"))}[bits]
    raw = ["-f", "rawvideo", "-pix_fmt", pixel_format, "-s", f"{width}x{height}", "-i"]
    with _folder("vmaf") as folder:
        for name, planes in (("dist.yuv", reconstruction), ("ref.yuv", reference)):
            (folder / name).write_bytes(b"".join(plane.astype(sample).tobytes() for plane in planes))
        inputs = [*raw, "dist.yuv", *raw, "ref.yuv"]
        argv = [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", *inputs, "-lavfi"]
        run_tool([*argv, f"[0:v][1:v]{VMAF_FILTER}", "-f", "null", "-"], folder, TIMEOUT_S)
        try:
            log = json.loads((folder / "vmaf.json").read_text())
            frames = log["frames"]
            if len(frames) != 1:
                raise ValueError(f"{len(frames)} frames, not 1")
            score, version = float(frames[0]["metrics"]["vmaf"]), str(log.get("version", "unknown"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ToolError(f"ffmpeg wrote no readable libvmaf log: {type(exc).__name__}: {exc}") from None
    if not 0 <= score <= 100:
        raise ToolError(f"libvmaf's log holds VMAF {score}, outside [0, 100]")
    return score, " ".join(version.split()) or "unknown"


def vmaf(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """VMAF v0.6.1 of the pair's BT.709 full-range YUV 4:4:4 8-bit planes; MetricUndefined on an image
    with a side under 17 px."""
    check_rgb_pair(reference, reconstruction, VMAF_MIN_SIDE, "libvmaf")
    return vmaf_of_planes(rgb_to_planes(reference, VMAF_YUV), rgb_to_planes(reconstruction, VMAF_YUV))[0]


def libvmaf_version() -> str:
    """libvmaf's version as its log states it (git describe of its build, e.g. "libvmaf-86da14d"), read
    from the VMAF of a small grey picture with itself; ToolError if that fails."""
    grey = [np.full((VMAF_MIN_SIDE, VMAF_MIN_SIDE), 128, np.uint8)] * 3
    return f"libvmaf-{vmaf_of_planes(grey, grey)[1]}"


def vmaf_unavailable() -> str | None:
    """Why VMAF cannot be computed here (no ffmpeg, or one without a working libvmaf), or None."""
    try:
        libvmaf_version()
    except ToolError as exc:
        return f"vmaf needs imageio-ffmpeg's ffmpeg with libvmaf: {exc}"
    return None
