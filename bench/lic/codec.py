"""The `lic` codec adapter: weights from codecs/lic/, real range-coded bitstreams, any image size."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.headers import check_size
from bench.knob import Knob
from bench.lic import bitstream

OPTION_DEFAULTS: dict[str, Any] = {
    "architecture": "hyperprior",
    "weights": "",
    "device": "cpu",
    "threads": 1,
    "exact": True,  # the integer decoder side (bench.lic.integer): same pixels on every machine
    "synthesis": "exact",  # float32: with exact, the scale path exact and the synthesis in float (faster)
}
SYNTHESES = ("exact", "float32")


@contextmanager
def strict_numerics() -> Iterator[None]:
    """TF32 off and deterministic cuDNN kernels for one call, whatever the rest of the process set."""
    import torch

    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = saved


class LicCodec:
    """One lic model; quality is the index into its rate ladder (0 = lowest rate).

    With ``exact=false`` the decoder side runs in float32: faster, but a bitstream may decode
    differently (or fail its checks) on another machine. ``synthesis=float32`` decodes the exact
    encoder's bitstreams with the scale path exact (they always decode) and the synthesis in float32.
    """

    def __init__(self, name: str, options: dict[str, Any]):
        unknown = sorted(set(options) - set(OPTION_DEFAULTS))
        if unknown:
            raise ValueError(
                f"{name}: unknown option {', '.join(unknown)}; valid: {', '.join(OPTION_DEFAULTS)}"
            )
        self.name = name
        self.options = OPTION_DEFAULTS | options
        self.architecture = str(self.options["architecture"])
        if self.architecture not in bitstream.STREAMS:
            raise ValueError(f"{name}: architecture must be one of {', '.join(bitstream.STREAMS)}")
        self.threads = int(self.options["threads"])
        if not isinstance(self.options["exact"], bool):
            raise TypeError(f"{name}: exact must be true or false")
        self.exact = self.options["exact"]
        self.synthesis = self.options["synthesis"]
        if self.synthesis not in SYNTHESES:
            raise ValueError(f"{name}: synthesis must be one of {', '.join(SYNTHESES)}")
        if self.synthesis == "float32" and not self.exact:
            raise ValueError(
                f"{name}: synthesis=float32 decodes exact bitstreams; with exact=false all is float"
            )
        self._model = None
        self.load_s: float | None = None

    @property
    def decode_promise(self) -> str:
        """bench.codec.DECODE_PROMISES: ``symbols`` for synthesis=float32 (the scale path exact and checked
        by the symbols' CRCs, the synthesis in float32), ``pixels`` otherwise (the exact decoder; the float
        one, exact=false, promises neither and is held to the pixels so that verify shows where it breaks)."""
        return "symbols" if self.synthesis == "float32" else "pixels"

    @property
    def weights_path(self) -> Path:
        from bench.lic.weights import default_path

        return Path(self.options["weights"]) if self.options["weights"] else default_path(self.architecture)

    @property
    def device(self) -> str:
        requested = str(self.options["device"])
        if requested != "auto":
            return requested
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def available(self) -> str | None:
        try:
            import compressai  # noqa: F401
            import torch
        except ImportError as exc:
            return f"{exc.name} is not installed: pip install torch compressai"
        if not self.weights_path.is_file():
            return f"no weights at {self.weights_path}: train and export them with `bench train lic --export`"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            return "device cuda asked for, but torch sees no CUDA GPU"
        return None

    def versions(self) -> dict[str, str]:
        import hashlib
        from importlib.metadata import version

        import torch

        weights = hashlib.sha256(self.weights_path.read_bytes()).hexdigest()[:16]
        return {
            "torch": torch.__version__,
            "compressai": version("compressai"),
            "weights": weights,
            "bitstream format": str(bitstream.FORMAT_VERSION),
        }

    def _loaded(self):
        if self._model is None:
            from bench.lic.weights import load

            start = time.perf_counter()
            self._model, self.meta, sha = load(self.weights_path, self.device, self.exact)
            self._model.float_synthesis = self.synthesis == "float32"
            self._weights_id = bytes.fromhex(sha[:8])
            self.sync()
            self.load_s = time.perf_counter() - start
        return self._model

    def complexity(self) -> dict[str, float]:
        """Encoder and decoder kMAC per pixel (bench.complexity)."""
        from bench.complexity import kmac_per_pixel

        encoder, decoder = kmac_per_pixel(self._loaded())
        return {"kmac_px_enc": encoder, "kmac_px_dec": decoder}

    def warmup(self) -> None:
        """Load the model (timed apart as load_s) and run one small round trip."""
        self._loaded()
        image = np.zeros((64, 64, 3), np.uint8)
        self.decode(self.encode(image, 0), (64, 64))

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def knob(self) -> Knob:
        """The rate ladder: one rung per lambda of the model (loads it)."""
        return Knob("ladder", 0, self._loaded().levels - 1)

    def _level(self, quality: float) -> int:
        model = self._loaded()
        if not float(quality).is_integer() or not 0 <= quality < model.levels:
            raise ValueError(
                f"{self.name}: quality must be a ladder index 0..{model.levels - 1}, not {quality}"
            )
        return int(quality)

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        import torch

        model = self._loaded()
        level = self._level(quality)
        torch.set_num_threads(self.threads)
        height, width = image.shape[:2]
        x = torch.from_numpy(np.array(image)).to(self.device).permute(2, 0, 1)[None].float() / 255
        x = model.pad(x)
        with torch.no_grad(), strict_numerics():
            streams, symbols, indexes = model.compress(x, level)
        header = bitstream.Header(
            self.architecture,
            self.exact,
            self._weights_id,
            level,
            height,
            width,
            0,
            bitstream.map_crc(indexes.cpu().numpy()) if indexes.numel() else 0,
            bitstream.map_crc(symbols.cpu().numpy()),
        )
        return bitstream.pack(header, streams)

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        import torch

        header, streams = bitstream.unpack(data)
        check_size("lic bitstream", (header.height, header.width), shape, bitstream.BitstreamError)
        model = self._loaded()
        if header.architecture != self.architecture or header.weights_id != self._weights_id:
            raise bitstream.BitstreamError(
                f"bitstream made by lic {header.architecture} weights {header.weights_id.hex()}, "
                f"not by these weights ({self.architecture} {self._weights_id.hex()})"
            )
        if header.level >= model.levels:
            raise bitstream.BitstreamError(f"rate level {header.level} is not in this model's ladder")
        if header.exact != self.exact:
            raise bitstream.BitstreamError(
                f"bitstream coded with exact={str(header.exact).lower()}; decode it with "
                f"{self.name}:exact={str(header.exact).lower()}"
            )
        torch.set_num_threads(self.threads)
        step = model.downsampling  # the decoder starts from a tensor of padded size / step
        size = (-(-header.height // step), -(-header.width // step))
        expected = {"indexes": header.indexes_crc, "symbols": header.symbols_crc}

        # format 2's integrity CRC leaves the map CRCs out: there, a mismatch may also be a corrupt file
        blame = (
            "" if header.version >= 3 else ", or the file is corrupt (format 2 leaves these CRCs unchecked)"
        )

        def check(name: str, values) -> None:
            if bitstream.map_crc(values.cpu().numpy()) != expected[name]:
                raise bitstream.NumericsMismatch(
                    f"decoded {name} differ from the encoder's ({name} CRC mismatch): this machine's numerics "
                    f"disagree with the encoder's{blame}"
                )

        with torch.no_grad(), strict_numerics():
            pixels = model.decompress(streams, header.level, size, check)
        return np.ascontiguousarray(
            pixels[0, :, : header.height, : header.width].permute(1, 2, 0).cpu().numpy()
        )


def lic(name: str, options: dict[str, Any]) -> LicCodec:
    """Factory registered as the built-in adapter ``lic``."""
    return LicCodec(name, options)
