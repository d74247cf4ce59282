"""HEIC (HEVC intra, x265 through libheif) via pillow-heif, with x265 set as bpgenc sets it."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from bench.adapters.base import LibraryCodec, as_rgb, subsampling
from bench.headers import check_header

# libheif's own parameter names (it refuses the "x265:" prefix for these), then x265's own ones.
# bpgenc's x265 settings: within ~1.5 % BD-rate of BPG 4:4:4; libheif's defaults lose ~17 %.
X265_PARAMS = {"tune": "ssim", "tu-intra-depth": "3", "x265:psy-rd": "0", "x265:psy-rdoq": "0"}


@contextmanager
def _heif_options(**values: Any) -> Iterator[None]:
    """Set ``pillow_heif.options`` attributes (module globals) for the duration of one call."""
    from pillow_heif import options

    saved = {key: getattr(options, key) for key in values}
    try:
        for key, value in values.items():
            setattr(options, key, value)
        yield
    finally:
        for key, value in saved.items():
            setattr(options, key, value)


class HevcCodec(LibraryCodec):
    """HEIC with a fixed x265 QP (``quality``, 0-51: lower QP, more bytes).

    ``threads`` sets x265's thread pool (``x265:pools``; the bitstream does not depend on it) and
    libde265's decoding threads.
    """

    module, install = "pillow_heif", "pip install pillow-heif"
    defaults: ClassVar[dict[str, Any]] = {"preset": "veryslow", "subsampling": "444", "threads": 1}
    quality_range = (0, 51)

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.subsampling = subsampling(name, self.options["subsampling"], ("444", "422", "420"))

    def missing_feature(self) -> str | None:
        info = self.library().libheif_info()
        if "x265" not in info.get("encoders", {}):
            return f"libheif in pillow-heif has no x265 encoder (encoders: {info.get('encoders')})"
        if not info.get("decoders"):
            return "libheif in pillow-heif has no HEVC decoder"
        return None

    def versions(self) -> dict[str, str]:
        heif = self.library()
        info = heif.libheif_info()
        versions = {"pillow_heif": heif.__version__, "libheif": heif.libheif_version()}
        # e.g. "x265 HEVC encoder (4.3+1-e9b8812)" and "libde265 HEVC decoder, version 1.1.3"
        x265 = re.search(r"\(([^)]+)\)", info.get("encoders", {}).get("x265", ""))
        de265 = re.search(r"version (\S+)", info.get("decoders", {}).get("libde265", ""))
        versions.update({"x265": x265.group(1)} if x265 else {})
        versions.update({"libde265": de265.group(1)} if de265 else {})
        return versions

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        heif = self.library()
        params = {
            "preset": self.options["preset"],
            **X265_PARAMS,
            "x265:qp": str(self.quality(quality)),  # pillow-heif's own quality is then ignored
            "x265:pools": str(self.threads),
        }
        height, width = image.shape[:2]
        buffer = io.BytesIO()
        with _heif_options(PREFERRED_ENCODER={"HEIF": "x265", "AVIF": ""}):
            heif.encode(
                "RGB",
                (width, height),
                np.ascontiguousarray(image).tobytes(),
                buffer,
                enc_params=params,  # a fresh dict: pillow-heif adds keys to it
                chroma=int(self.subsampling),
            )
        return buffer.getvalue()

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        check_header(data, "heic", shape)
        with _heif_options(DECODE_THREADS=self.threads):
            return as_rgb(self.library().open_heif(data, convert_hdr_to_8bit=True))


hevc = HevcCodec  # the factory ``(name, options) -> Codec`` that bench.codec.BUILTIN_ADAPTERS names
