"""lic's training pack: the training photographs in one compact file that travels to a GPU machine.

A pack is a zip (stored, not deflated again) of ``manifest.json`` and one PNG per training photograph.
Each photograph is reduced by a box filter (Pillow's ``Image.reduce(SCALE)``: the mean of each
SCALE x SCALE block, rounded) and then centre-cropped to at most TILE x TILE pixels; PNG keeps those
pixels exactly. The last HELD_OUT photographs of the folder by name are held out: never packed, kept
for the shipping decision (scripts/lic-select.py). The manifest names every photograph of the folder
with its sha256, packed or held out, so that a round records exactly what it trained on.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.lic.weights import file_sha256, find_images

FORMAT = 1
SCALE = 2
TILE = 512
HELD_OUT = 8
MANIFEST = "manifest.json"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # every member's date in the zip: the same photographs make the same bytes


def is_kodak(folder: Path) -> bool:
    """Whether ``folder`` is Kodak, the test set: never trained or selected on."""
    return folder.resolve().name.lower() == "kodak"


def split(folder: Path, held_out: int = HELD_OUT) -> tuple[list[Path], list[Path]]:
    """The photographs of a training folder: (trained on, held out: the last ``held_out`` by name).

    Refuses Kodak (the test set) and a folder with no more photographs than ``held_out``.
    """
    if is_kodak(folder):
        raise SystemExit(f"{folder}: Kodak is the test set: never train or select on it")
    paths = find_images(folder)
    if len(paths) <= held_out:
        raise SystemExit(f"{folder}: {len(paths)} photographs; need more than the {held_out} held out")
    return paths[:-held_out], paths[-held_out:]


def reduced(path: Path, scale: int = SCALE, tile: int = TILE) -> Image.Image:
    """A photograph as packed: RGB, box-filtered down by ``scale``, centre-cropped to at most ``tile``."""
    with Image.open(path) as image:
        small = image.convert("RGB").reduce(scale)
    width, height = min(small.width, tile), min(small.height, tile)
    left, top = (small.width - width) // 2, (small.height - height) // 2
    return small.crop((left, top, left + width, top + height))


def write_pack(
    folder: Path, out: Path, held_out: int = HELD_OUT, scale: int = SCALE, tile: int = TILE
) -> dict[str, Any]:
    """Pack the photographs of ``folder`` but the held-out ones into the zip ``out``; its manifest."""
    train, held = split(folder, held_out)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "source": folder.resolve().name,
        "filter": f"PIL Image.reduce({scale}) (box filter), then a centre crop of at most {tile}x{tile}",
        "scale": scale,
        "tile": tile,
        "photos": [],
        "held_out": [{"name": p.name, "sha256": file_sha256(p)} for p in held],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for path in train:
            image = reduced(path, scale, tile)
            buffer = io.BytesIO()
            image.save(buffer, "PNG", compress_level=9)
            member = f"{path.stem}.png"
            archive.writestr(zipfile.ZipInfo(member, FIXED_TIME), buffer.getvalue())
            manifest["photos"].append(
                {"name": path.name, "sha256": file_sha256(path), "member": member, "size": list(image.size)}
            )
        archive.writestr(zipfile.ZipInfo(MANIFEST, FIXED_TIME), json.dumps(manifest, indent=1))
    return manifest


def read_pack(path: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The packed photographs (H x W x 3 uint8 arrays, in the manifest's order) and the manifest."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        if manifest.get("format") != FORMAT:
            raise SystemExit(f"{path}: pack format {manifest.get('format')}, this code reads {FORMAT}")
        if manifest["source"].lower() == "kodak":
            raise SystemExit(f"{path}: packed from Kodak, the test set: never train on it")
        images = []
        for photo in manifest["photos"]:
            with Image.open(io.BytesIO(archive.read(photo["member"]))) as image:
                images.append(np.array(image.convert("RGB")))
    return images, manifest
