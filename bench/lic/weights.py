"""Inference weights: one file per architecture in codecs/lic/, fp16 parameters plus coding tables.

The file is a ``torch.save`` dict: ``config`` (architecture, n, m, levels), ``lambdas``,
``distortion``, ``training`` (what produced it), ``state_dict`` (parameters in fp16; buffers, such
as the likelihood bounds and the entropy coders' integer CDF tables, as they are) and ``integer`` (the
exact integer decoder side, bench.lic.integer, calibrated on held-out training photographs). The
tables and the integer program are computed from the fp16-rounded parameters before saving, and
decoding uses them as shipped: it never calls ``update()``.

``python -m bench.lic.weights --data DIR FILE...`` rebuilds the tables and the integer program of
exported files in place, keeping their metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench import resources
from bench.lic import exact_gemm, integer
from bench.lic.model import GainedModel, build

WEIGHTS_DIR = resources.lic_weights_dir()
GEMM_ENV = "BENCH_LIC_GEMM"  # int8 (the default, where torch has int8 GEMMs) or float64: the same bits
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def default_path(architecture: str) -> Path:
    return WEIGHTS_DIR / f"{architecture}.pt"


def rounded_state(model: GainedModel) -> dict[str, torch.Tensor]:
    """The state with the parameters in fp16; buffers (bounds, scale table, coding tables) as they are."""
    parameters = {name for name, _ in model.named_parameters()}
    return {k: v.half() if k in parameters else v for k, v in model.state_dict().items()}


def _as_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def find_images(folder: Path) -> list[Path]:
    """The photographs of a training folder, by name (the trainer holds out the last ones)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"bench train lic: no images in {folder}")
    return files


def writable(folder: Path, prog: str, instead: str) -> Path:
    """``folder``, resolved, if weights may be written there; else exit with one line saying what to do ``instead``.

    An installed bench's own folders are refused even where site-packages is writable.
    """
    folder = folder.expanduser().resolve()
    if resources.installed() and folder.is_relative_to(resources.PACKAGE):
        raise SystemExit(f"{prog}: {folder} is inside the installed bench package: {instead}")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f"{prog}: cannot write weights in {folder} ({existing} is not a writable folder)")
    return folder


CALIBRATION_CROP = 512


def calibration_images(paths: list[Path]) -> list[torch.Tensor]:
    """Centre crops (up to 512 x 512, a multiple of 64) of photographs as 1 x 3 x H x W floats in [0, 1]."""
    images = []
    for path in paths:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        height, width = (min(CALIBRATION_CROP, side) // 64 * 64 for side in array.shape[:2])
        if not height or not width:
            raise ValueError(f"{path}: calibration images must be at least 64 x 64")
        top, left = (array.shape[0] - height) // 2, (array.shape[1] - width) // 2
        crop = array[top : top + height, left : left + width]
        images.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None])
    return images


def export(
    model: GainedModel,
    path: Path,
    lambdas: list[float],
    distortion: str,
    training: dict[str, Any],
    calibration: list[torch.Tensor],
) -> str:
    """Round the parameters to fp16, rebuild the coding tables and the integer program, save; the sha256."""
    model = model.cpu().eval()
    model.program = None
    model.load_state_dict(_as_float32(rounded_state(model)))
    model.update(force=True)
    payload = {
        "config": model.config(),
        "lambdas": list(lambdas),
        "distortion": distortion,
        "training": training,
        "state_dict": rounded_state(model),
        "integer": model.build_program(calibration),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path, device: str = "cpu", exact: bool = True) -> tuple[GainedModel, dict[str, Any], str]:
    """The model ready to code (tables as shipped), the file's metadata and its sha256.

    ``exact``: decode with the file's integer program (a file without one is refused); otherwise in float.
    """
    raw = path.read_bytes()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = payload["config"]
    model = build(config["architecture"], config["n"], config["m"], config["levels"])
    model.load_state_dict(_as_float32(payload["state_dict"]))
    if exact:
        if "integer" not in payload:
            raise ValueError(
                f"{path} has no integer decoder program: rebuild it with "
                "`python -m bench.lic.weights --data <training photos> FILE`"
            )
        model.program = integer.on_device(payload["integer"], device)
        if str(device) == "cpu" and os.environ.get(GEMM_ENV, "int8") == "int8" and exact_gemm.available():
            model.program = integer.with_gemms(model.program)
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "integer")}
    return model.to(device).eval(), meta, hashlib.sha256(raw).hexdigest()


def rebuild(path: Path, calibration: list[torch.Tensor]) -> str:
    """Re-export a weights file in place (same parameters and metadata); the new sha256."""
    model, meta, _ = load(path, exact=False)
    return export(model, path, meta["lambdas"], meta["distortion"], meta["training"], calibration)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lic.weights", description=rebuild.__doc__)
    parser.add_argument("--data", required=True, help="training photographs; the last --images calibrate")
    parser.add_argument("--images", type=int, default=3, help="how many (the trainer's held-out ones)")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.files:
        writable(path.parent, parser.prog, "rebuild a copy of the file elsewhere")
    calibration = calibration_images(find_images(Path(args.data))[-args.images :])
    for path in args.files:
        print(f"{path}: sha256 {rebuild(path, calibration)[:16]}")


if __name__ == "__main__":
    main()
