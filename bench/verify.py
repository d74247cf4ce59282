"""`bench verify`: encode once, decode every bitstream under deliberately different numerics, compare.

The reference is the decode right after encoding, on the encoding machine: its pixel hash
(bench.images.pixel_sha256) and, kept as a PNG beside the bitstream, its pixels. Each variant decodes
every bitstream in a fresh process: one thread, all cores, oneDNN off, AVX2 kernels only (on a CPU with
AVX-512), and the GPU where torch sees one. A decode ``matches`` when its pixels hash the same; when
they differ, it records the largest absolute pixel difference from the reference and the PSNR between
the two, and is a ``mismatch`` for a decoder that promises the same pixels everywhere
(bench.codec.decode_promise ``pixels``: every codec unless it declares less) or ``differ`` for one that
promises only the same decoded symbols (``symbols``: lic:synthesis=float32), whose float pixels may
differ slightly (reported, not a failure). It is also a ``mismatch`` when the decoder's own checks find
that its numerics disagree with the encoder's (lic's index-map or symbol CRC), and an ``error``
otherwise (the decoder raised, crashed or hung). For traditional codecs this checks that their decoders
are deterministic; for learned codecs it is the cross-machine test.

A bitstream folder holds ``manifest.json`` (the catalog entries, images, qualities and reference
hashes), one file per bitstream and, unless written without them, one PNG of reference pixels per
bitstream, so bitstreams written on one machine (``--write-bitstreams``) can be checked on another
(``--bitstreams``). A folder without reference pixels (older ones) still verifies; its differences are
then of unknown size.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import files
from bench.adapters.tool import ToolError, output_tail, run_tool
from bench.catalog import CatalogEntry
from bench.codec import Codec, decode_promise, open_codec, trusted_entry
from bench.files import FilesystemError
from bench.images import DEFAULT_MAX_PIXELS, load_image, pixel_sha256

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
VARIANT_TIMEOUT_S = 3600
MAX_BITSTREAM_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Variant:
    """One way of decoding: environment variables (set before torch loads) and codec overrides (threads
    and device, for codecs with those options: bitstreams encoded on a GPU decode here on the CPU)."""

    name: str
    description: str
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    onednn: bool = True
    device: str | None = None


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def default_variants() -> list[Variant]:
    cores = max(2, os.cpu_count() or 2)
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    variants = [
        Variant("1-thread", "one thread", one, threads=1, device="cpu"),
        Variant(
            f"{cores}-threads",
            f"{cores} threads",
            {"OMP_NUM_THREADS": str(cores)},
            threads=cores,
            device="cpu",
        ),
        Variant(
            "no-onednn",
            "oneDNN off: PyTorch's own CPU kernels",  # lic's exact convolutions then in float64
            one,
            threads=1,
            onednn=False,
            device="cpu",
        ),
        Variant(
            "avx2",
            "AVX2 kernels only (DNNL_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2)",
            one | {"DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
            threads=1,
            device="cpu",
        ),
    ]
    if _cuda_available():
        variants.append(Variant("cuda", "decoded on the GPU (codecs with a device option)", device="cuda"))
    return variants


def _stem(name: str) -> str:
    return Path(name).stem.replace("/", "_")


def _one_line(exc: Exception) -> str:
    """An exception as a reason: its type and the first line of its message."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def write_bitstreams(
    codecs: Iterable[tuple[str, CatalogEntry, tuple[float, ...]]],
    images: Iterable[Any],
    directory: Path,
    progress: Callable[[], None] = lambda: None,
    references: bool = True,
) -> dict[str, Any]:
    """Encode every (codec, image, quality), decode it once here for the reference hash (and, with
    ``references``, the reference pixels as a PNG beside the bitstream), write the folder.

    ``codecs`` are (label, catalog entry, qualities); ``images`` are bench.datasets.ImageInfo; an encode
    or reference decode that fails is recorded as an item with ``error`` (nothing to verify) rather than
    stopping the others, as is a codec that bench.codec.open_codec refuses here.
    """
    from PIL import Image

    from bench.provenance import cpu_model, gpus

    images = list(images)
    items = []
    files.make_folder(directory)
    for label, entry, qualities in codecs:
        folder = label.replace(":", "_").replace("=", "-")
        for image in images:
            rgb = load_image(image.path).rgb
            for quality in qualities:
                item = {
                    "file": f"{folder}/{_stem(image.name)}-q{quality:g}.bin",
                    "codec": label,
                    "entry": entry.to_dict(),
                    "image": image.name,
                    "quality": quality,
                    "height": rgb.shape[0],
                    "width": rgb.shape[1],
                }
                try:
                    codec = open_codec(entry)
                    data = codec.encode(rgb, quality)
                    files.write(directory, item["file"], data)
                    decoded = codec.decode(data, rgb.shape[:2])
                    item["sha256"] = pixel_sha256(decoded)
                    if references:
                        item["reference"] = f"{folder}/{_stem(image.name)}-q{quality:g}.png"
                        png = io.BytesIO()
                        Image.fromarray(decoded).save(png, format="PNG")
                        files.write(directory, item["reference"], png.getvalue())
                except FilesystemError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a codec failure is a result to report, not a crash
                    item["error"] = _one_line(exc)
                items.append(item)
                progress()
    manifest = {
        "format": MANIFEST_FORMAT,
        "encoder": {"cpu": cpu_model(), "gpus": gpus()},
        "items": items,
    }
    files.write(directory, MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{directory} has no {MANIFEST}: not a folder written by --write-bitstreams"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: manifest format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
    return manifest


def _entry_for(item: dict[str, Any], variant: Variant) -> CatalogEntry:
    entry = CatalogEntry.from_dict(item["entry"])
    overrides: dict[str, Any] = {}
    if variant.threads is not None and "threads" in entry.options:
        overrides["threads"] = variant.threads
    if variant.device is not None and "device" in entry.options:
        overrides["device"] = variant.device
    return entry.with_options(overrides) if overrides else entry


def read_bitstream(directory: Path, name: str) -> bytes:
    """The bytes of a manifest's ``file``: a regular file inside ``directory`` (not through a link), at
    most MAX_BITSTREAM_BYTES; raises ValueError saying which rule it breaks."""
    path = directory / name
    if not files.inside(directory, name):
        raise ValueError(f"{name!r} is not a file inside {directory}")
    try:
        mode = os.lstat(path)
    except OSError as exc:
        raise ValueError(f"{name!r}: {exc.strerror}") from None
    if not stat.S_ISREG(mode.st_mode):
        raise ValueError(f"{name!r} is not a regular file")
    if mode.st_size > MAX_BITSTREAM_BYTES:
        raise ValueError(
            f"{name!r} holds {mode.st_size} bytes, over the {MAX_BITSTREAM_BYTES} a bitstream may have"
        )
    return path.read_bytes()


def expected_shape(item: dict[str, Any], max_pixels: int) -> tuple[int, int]:
    """The (height, width) a manifest item says its bitstream decodes to, checked against ``max_pixels``
    before any decoder allocates for it; ValueError otherwise."""
    height, width = item.get("height"), item.get("width")
    if not all(type(side) is int and side > 0 for side in (height, width)):
        raise ValueError(f"image size {width!r}x{height!r} is not two positive whole numbers")
    if height * width > max_pixels:
        raise ValueError(f"{width}x{height} is {height * width} pixels, over --max-pixels {max_pixels}")
    return height, width


def pixel_difference(reference: np.ndarray, decoded: np.ndarray) -> tuple[int, float]:
    """The largest absolute difference between two H x W x 3 uint8 images and the PSNR between them in dB,
    10 log10(255^2 / MSE) over every sample (inf when identical)."""
    if reference.shape != decoded.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {decoded.shape}")
    from bench.metrics import psnr_from_mse

    difference = reference.astype(np.int32) - decoded.astype(np.int32)
    mse = float(np.mean(np.square(difference, dtype=np.int64)))
    return int(np.abs(difference).max(initial=0)), psnr_from_mse(mse)


def read_reference(item: dict[str, Any], directory: Path, shape: tuple[int, int]) -> np.ndarray:
    """An item's reference pixels, from its PNG under read_bitstream's rules, checked against its hash;
    ValueError saying why not (none kept, unreadable, or not the pixels the hash names)."""
    if "reference" not in item:
        raise ValueError("the folder keeps no reference pixels")
    height, width = shape
    rgb = load_image(
        Path(item["reference"]), read_bitstream(directory, item["reference"]), height * width
    ).rgb
    if pixel_sha256(rgb) != item["sha256"]:
        raise ValueError(f"{item['reference']!r} is not the reference decode (its pixel hash differs)")
    return rgb


def _differences(item: dict[str, Any], directory: Path, shape: tuple[int, int], decoded: np.ndarray) -> dict:
    """``max_diff`` and ``psnr_db`` of a decode whose hash differs from the reference's (None with
    ``difference_unknown`` saying why when the reference pixels cannot be had)."""
    try:
        max_diff, psnr = pixel_difference(read_reference(item, directory, shape), decoded)
    except Exception as exc:  # noqa: BLE001 - a missing or bad reference leaves the size unknown
        return {"max_diff": None, "psnr_db": None, "difference_unknown": _one_line(exc)}
    return {"max_diff": max_diff, "psnr_db": psnr}


def _describe(difference: dict[str, Any]) -> str:
    if difference["max_diff"] is None:
        return f"size unknown ({difference['difference_unknown']})"
    return f"largest difference {difference['max_diff']}, PSNR {difference['psnr_db']:.2f} dB"


def decode_items(
    items: list[dict[str, Any]],
    directory: Path,
    make_codec: Callable[[dict[str, Any]], Codec],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict[str, Any]]:
    """Decode each item's bitstream with ``make_codec(item)`` and compare with its reference: hash, and
    when the hash differs, largest pixel difference and PSNR (``max_diff``, ``psnr_db``; 0 and inf for a
    match, None when nothing was decoded or no reference pixels are kept)."""
    from bench.lic.bitstream import NumericsMismatch

    results = []
    for item in items:
        result = {key: item[key] for key in ("codec", "image", "quality")}
        unknown = {"max_diff": None, "psnr_db": None}
        if "error" in item:
            result |= {"status": "error", "reason": f"at encoding: {item['error']}"} | unknown
        else:
            try:
                shape = expected_shape(item, max_pixels)
                data = read_bitstream(directory, item["file"])
                codec = make_codec(item)
                decoded = codec.decode(data, shape)
                if pixel_sha256(decoded) == item["sha256"]:
                    result |= {"status": "match", "reason": "", "max_diff": 0, "psnr_db": math.inf}
                else:
                    difference = _differences(item, directory, shape, decoded)
                    allowed = decode_promise(codec) == "symbols"  # not the pixels: they may differ
                    why = " (its decoder promises the symbols, not the pixels)" if allowed else ""
                    result |= {
                        "status": "differ" if allowed else "mismatch",
                        "reason": f"pixels differ{why}: {_describe(difference)}",
                    } | difference
            except NumericsMismatch as exc:
                result |= {"status": "mismatch", "reason": str(exc)} | unknown
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a result
                result |= {"status": "error", "reason": _one_line(exc)} | unknown
        results.append(result)
    return results


def decode_variant(
    directory: Path, variant: Variant, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[dict[str, Any]]:
    """Decode the folder's bitstreams in a fresh process set up as ``variant``; one result per item."""
    items = read_manifest(directory)["items"]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "results.json"
        request = {
            "directory": str(directory.resolve()),
            "variant": asdict(variant),
            "max_pixels": max_pixels,
        }
        command = [sys.executable, "-m", "bench.verify", json.dumps(request), str(out)]
        root = str(Path(__file__).resolve().parent.parent)  # it runs in the scratch folder: bench from here
        env = (
            os.environ
            | variant.env
            | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        )
        try:  # a tool's treatment: output capped, its processes ended with it
            status = run_tool(command, Path(scratch), VARIANT_TIMEOUT_S, check=False, env=env)
            failure = None if status == 0 else output_tail(Path(scratch)) or "no output"
        except ToolError as exc:
            failure = str(exc)
        if failure is None:
            results = json.loads(out.read_text())
        else:
            reason = f"decoding process failed: {failure}"
            results = [
                {
                    "codec": i["codec"],
                    "image": i["image"],
                    "quality": i["quality"],
                    "status": "error",
                    "reason": reason,
                    "max_diff": None,
                    "psnr_db": None,
                }
                for i in items
            ]
    return [r | {"variant": variant.name} for r in results]


def _worker(request: dict[str, Any], out: Path) -> None:
    """In the variant's own process: apply its settings, decode, write the results. Decoders must be
    available here; their library versions are not held to the encoder's (other machines and
    libraries are what a cross-machine check is for)."""
    variant = Variant(**request["variant"])
    if not variant.onednn:
        import torch

        torch.backends.mkldnn.enabled = False
    directory = Path(request["directory"])
    items = read_manifest(directory)["items"]

    def make_codec(item: dict[str, Any]) -> Codec:
        return open_codec(trusted_entry(_entry_for(item, variant), f"{directory / MANIFEST}"))

    out.write_text(json.dumps(decode_items(items, directory, make_codec, request["max_pixels"])))


STATUSES = ("match", "differ", "mismatch", "error")
FAILURES = ("mismatch", "error")  # the statuses that fail a check


def summarise(results: list[dict[str, Any]]) -> dict[str, int]:
    """Distinct images and bitstreams, decodes, and decodes per status."""
    images = {r["image"] for r in results}
    bitstreams = {(r["codec"], r["image"], r["quality"]) for r in results}
    counts = {status: sum(r["status"] == status for r in results) for status in STATUSES}
    return {"images": len(images), "bitstreams": len(bitstreams), "decodes": len(results)} | counts


def worst_differences(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (codec, variant), over its decoded bitstreams: the largest ``max_diff``, the lowest ``psnr_db``
    and ``compared`` (how many decodes these cover) and ``unknown`` (decoded, differing, size unknown)."""
    worst: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        cell = worst.setdefault(
            (r["codec"], r["variant"]), {"max_diff": 0, "psnr_db": math.inf, "compared": 0, "unknown": 0}
        )
        if r.get("max_diff") is not None:
            cell["compared"] += 1
            cell["max_diff"] = max(cell["max_diff"], r["max_diff"])
            cell["psnr_db"] = min(cell["psnr_db"], r["psnr_db"])
        elif "difference_unknown" in r:
            cell["unknown"] += 1
    return worst


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]), Path(sys.argv[2]))
