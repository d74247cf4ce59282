"""Loading input images as 8-bit RGB, and the pixel hash that identifies them.

Pixels are taken as stored: EXIF orientation is not applied and ICC profiles are ignored (both are
noted). Palette, grayscale, bilevel and alpha images become RGB with a note (alpha is dropped, not
composited). Images with more than 8 bits per sample and CMYK or other colour models are refused.
Multi-frame files (animations, multi-page TIFF, MPO) give their first frame, with a note.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.quoting import quoted

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pbm", ".pnm", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)

DEFAULT_MAX_PIXELS = 100_000_000  # --max-pixels: the largest image (or bitstream) read, in pixels

# What Pillow's decoders raise on corrupt or hostile input.
_PILLOW_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    TypeError,
    IndexError,
    KeyError,
    ZeroDivisionError,
    MemoryError,
)

# mode -> the notes its conversion to RGB earns
_CONVERSIONS: dict[str, tuple[str, ...]] = {
    "RGB": (),
    "RGBX": (),
    "RGBA": ("alpha channel dropped",),
    "P": ("palette converted to RGB",),
    "PA": ("palette converted to RGB", "alpha channel dropped"),
    "L": ("grayscale converted to RGB",),
    "LA": ("grayscale converted to RGB", "alpha channel dropped"),
    "1": ("1-bit converted to RGB",),
}


class BadImage(ValueError):
    """An input file that cannot be used as an 8-bit RGB image; the message names the file."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{quoted(path)}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable across worker processes
        return BadImage, (self.path, self.reason)


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # H x W x 3 uint8, C-contiguous
    notes: tuple[str, ...]


def pixel_sha256(rgb: np.ndarray) -> str:
    """SHA-256 (hex) of ``f"{H}x{W}x3\\n"`` (ASCII) followed by the H x W x 3 uint8 pixels in C order."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 array, got {rgb.dtype} {rgb.shape}")
    h, w, _ = rgb.shape
    digest = hashlib.sha256(f"{h}x{w}x3\n".encode("ascii"))
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def _high_bit_depth(im: Image.Image) -> bool:
    """True when the file stores more than 8 bits per sample (Pillow would silently truncate some)."""
    if im.mode.startswith(("I", "F")):
        return True
    for tile in im.tile:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        if any(isinstance(a, str) and (";16" in a or ";32" in a) for a in args):
            return True
        if tile.codec_name == "ppm" and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            return True
    return False


def _open(path: Path, data: bytes | None, max_pixels: int) -> Image.Image:
    """Open, check and fully decode the first frame (of ``data`` when given, else of the file at
    ``path``), refusing before decoding one of more than ``max_pixels``; raises BadImage."""

    def source():
        return path if data is None else io.BytesIO(data)

    limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            Image.MAX_IMAGE_PIXELS = None  # the size is checked below, against max_pixels
            with Image.open(source()) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    raise BadImage(
                        path, f"{width}x{height} is {width * height} pixels, over --max-pixels {max_pixels}"
                    )
                probe.verify()  # PNG: chunk CRCs and a complete file up to IEND
            im = Image.open(source())
        except BadImage:
            raise
        except Image.UnidentifiedImageError:
            raise BadImage(path, "not an image file that Pillow can read") from None
        except _PILLOW_ERRORS as e:
            raise BadImage(path, f"unreadable ({type(e).__name__}: {e})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        if _high_bit_depth(im):
            raise BadImage(path, f"more than 8 bits per sample (mode {im.mode}); convert it to 8-bit RGB")
        if im.mode not in _CONVERSIONS:
            raise BadImage(path, f"colour mode {im.mode} is not supported; convert it to 8-bit RGB")
        try:
            im.load()
        except _PILLOW_ERRORS as e:
            raise BadImage(path, f"corrupt or truncated ({type(e).__name__}: {e})") from None
    return im


def load_image(path: Path, data: bytes | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load ``path`` as H x W x 3 uint8 RGB, with notes on what was converted or ignored; an image of
    more than ``max_pixels`` is refused from its header, before it is decoded.

    With ``data`` (the file's bytes, e.g. sent by a client to a cluster worker) the file is not read;
    ``path`` only names the image in errors.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise BadImage(path, "no such file")
    if (len(data) if data is not None else path.stat().st_size) == 0:
        raise BadImage(path, "empty file")
    im = _open(path, data, max_pixels)
    with im:
        notes = list(_CONVERSIONS[im.mode])
        if im.mode == "P" and "transparency" in im.info:
            notes.append("palette transparency dropped")
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"first of {frames} frames used")
        orientation = im.getexif().get(0x0112, 1)
        if orientation != 1:
            notes.append(f"EXIF orientation {orientation} not applied")
        if im.info.get("icc_profile"):
            notes.append("ICC profile ignored")
        rgb = np.array(im.convert("RGB") if im.mode != "RGB" else im, dtype=np.uint8, order="C")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise BadImage(path, f"decoded to an unexpected shape {rgb.shape}")
    return LoadedImage(rgb=rgb, notes=tuple(notes))
