"""JPEG, WebP, JPEG XL and AVIF through imagecodecs."""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from bench.adapters.base import LibraryCodec, as_rgb, subsampling
from bench.headers import check_header


class ImagecodecsCodec(LibraryCodec):
    """A codec of imagecodecs: ``<prefix>_encode``, ``<prefix>_decode`` and ``<prefix>_version``."""

    feature: ClassVar[str]  # the imagecodecs class whose ``available`` says it was compiled in
    prefix: ClassVar[str]
    header: ClassVar[str]  # its bitstream's kind for bench.headers
    threaded_decoder: ClassVar[bool] = False  # whether ``<prefix>_decode`` takes ``numthreads``

    def missing_feature(self) -> str | None:
        ic = self.library()
        if not getattr(getattr(ic, self.feature, None), "available", False):
            return (
                f"the installed imagecodecs {ic.__version__} was built without {self.feature}: "
                "pip install --upgrade imagecodecs (the PyPI wheels include it)"
            )
        return None

    def versions(self) -> dict[str, str]:
        ic = self.library()
        library, _, version = getattr(ic, f"{self.prefix}_version")().partition(" ")
        return {"imagecodecs": ic.__version__, library: version}

    def encode_args(self, quality: float) -> dict[str, Any]:
        """Keyword arguments of ``<prefix>_encode`` at ``quality``."""
        raise NotImplementedError

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        encode = getattr(self.library(), f"{self.prefix}_encode")
        return bytes(encode(np.ascontiguousarray(image), **self.encode_args(quality)))

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        check_header(data, self.header, shape)
        args = {"numthreads": self.threads} if self.threaded_decoder else {}
        return as_rgb(getattr(self.library(), f"{self.prefix}_decode")(data, **args))


class JpegCodec(ImagecodecsCodec):
    """libjpeg-turbo: baseline, standard Huffman tables (no optimize), as Pillow's defaults.

    libjpeg-turbo is single-threaded: ``threads`` is recorded but changes nothing.
    """

    feature, prefix, header = "JPEG8", "jpeg8", "jpeg"
    defaults: ClassVar[dict[str, Any]] = {"subsampling": "420", "threads": 1}
    quality_range = (1, 100)

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.subsampling = subsampling(name, self.options["subsampling"], ("444", "422", "420"))

    def encode_args(self, quality: float) -> dict[str, Any]:
        return {"level": self.quality(quality), "subsampling": self.subsampling, "optimize": False}


class WebpCodec(ImagecodecsCodec):
    """Lossy libwebp (always 4:2:0); ``method`` is the effort 0-6, 4 as cwebp's default.

    libwebp's ``thread_level`` is on or off (threads > 1); its decoder here is single-threaded.
    """

    feature, prefix, header = "WEBP", "webp", "webp"
    defaults: ClassVar[dict[str, Any]] = {"method": 4, "threads": 1}
    integer_quality = False
    quality_resolution = 0.5

    def encode_args(self, quality: float) -> dict[str, Any]:
        return {
            "level": self.quality(quality),
            "lossless": False,
            "method": self.options["method"],
            "numthreads": self.threads if self.threads > 1 else 0,
        }


class JpegxlCodec(ImagecodecsCodec):
    """libjxl, lossy (VarDCT); quality maps to butteraugli distance as in cjxl; effort 7 as cjxl."""

    feature, prefix, header, threaded_decoder = "JPEGXL", "jpegxl", "jxl", True
    defaults: ClassVar[dict[str, Any]] = {"effort": 7, "threads": 1}
    quality_range = (0, 99)
    integer_quality = False
    quality_resolution = 0.1

    def encode_args(self, quality: float) -> dict[str, Any]:
        return {
            "level": self.quality(quality),
            "lossless": False,
            "effort": self.options["effort"],
            "numthreads": self.threads,
        }


class AvifCodec(ImagecodecsCodec):
    """libavif with the aom AV1 encoder; quality is libavif's 0-99 (100 would be lossless).

    ``threads`` sets libavif's maxThreads for encoding and decoding; aom's output depends on it.
    """

    feature, prefix, header, threaded_decoder = "AVIF", "avif", "avif", True
    defaults: ClassVar[dict[str, Any]] = {"speed": 6, "subsampling": "444", "encoder": "aom", "threads": 1}
    quality_range = (0, 99)

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.subsampling = subsampling(name, self.options["subsampling"], ("444", "420"))

    def missing_feature(self) -> str | None:
        reason = super().missing_feature()
        codecs = _avif_codec_versions(self.library())
        if reason is None and codecs and f"{self.options['encoder']} [enc" not in codecs:
            reason = f"libavif in imagecodecs has no {self.options['encoder']} encoder (it has: {codecs})"
        return reason

    def versions(self) -> dict[str, str]:
        versions = super().versions()
        codecs = _avif_codec_versions(self.library())
        if codecs:
            versions["libavif codecs"] = codecs
        return versions

    def encode_args(self, quality: float) -> dict[str, Any]:
        return {
            "level": self.quality(quality),
            "speed": self.options["speed"],
            "pixelformat": self.subsampling,
            "codec": self.options["encoder"],
            "numthreads": self.threads,
        }


@functools.cache
def _avif_codec_versions(ic: ModuleType) -> str:
    """libavif's ``avifCodecVersions()`` (e.g. "dav1d [dec]:1.5.3, aom [enc/dec]:3.13.1"), or ""."""
    folder = os.path.dirname(ic.__file__)
    patterns = ("../imagecodecs.libs/libavif*", ".dylibs/libavif*", "libavif*")
    for path in (p for pattern in patterns for p in glob.glob(os.path.join(folder, pattern))):
        try:
            function = ctypes.CDLL(path).avifCodecVersions
        except (OSError, AttributeError):
            continue
        buffer = ctypes.create_string_buffer(256)
        function(buffer)
        return buffer.value.decode()
    return ""


# The factories ``(name, options) -> Codec`` that bench.codec.BUILTIN_ADAPTERS names.
jpeg = JpegCodec
webp = WebpCodec
jpegxl = JpegxlCodec
avif = AvifCodec
