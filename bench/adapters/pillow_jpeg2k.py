"""JPEG 2000 through Pillow's OpenJPEG binding, rate-controlled by compression ratio.

imagecodecs' ``jpeg2k_encode`` offers only fixed-PSNR layers, not the compression-ratio rate control
that JPEG 2000 benchmarks use (as CompressAI's ffmpeg path), so this adapter uses Pillow.
"""

from __future__ import annotations

import io

import numpy as np

from bench.adapters.base import LibraryCodec, as_rgb
from bench.headers import check_header


class Jpeg2000Codec(LibraryCodec):
    """OpenJPEG through Pillow: irreversible 9/7 wavelet, RGB->YCC transform, one layer rate-controlled
    to compression ratio ``quality`` (24 / bpp), JP2 container.

    Pillow's OpenJPEG binding is single-threaded: ``threads`` is recorded but changes nothing.
    """

    module, install = "PIL", "pip install pillow (with OpenJPEG; the PyPI wheels include it)"
    quality_range = (2, 10000)
    integer_quality = False
    log_quality, quality_resolution = True, 0.005  # 0.5 % of the ratio

    def missing_feature(self) -> str | None:
        from PIL import features

        return None if features.check("jpg_2000") else f"Pillow was built without OpenJPEG: {self.install}"

    def versions(self) -> dict[str, str]:
        from PIL import features

        return {"pillow": self.library().__version__, "openjpeg": str(features.version("jpg_2000"))}

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image).save(
            buffer,
            "JPEG2000",
            quality_mode="rates",
            quality_layers=[self.quality(quality)],
            irreversible=True,
            mct=1,
        )
        return buffer.getvalue()

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        check_header(data, "jp2", shape)

        with Image.open(io.BytesIO(data)) as image:
            return as_rgb(image.convert("RGB"))


jpeg2k = Jpeg2000Codec  # the factory that bench.codec.BUILTIN_ADAPTERS names
