"""CompressAI's published models (the ``compressai.zoo`` architectures) with real bitstreams.

Weights are never downloaded here (`bench codecs fetch` does that: bench/zoo_fetch.py): each quality is
one checkpoint, read from the file compressai would have downloaded into the torch hub cache
(``torch.hub.get_dir()/checkpoints``), from a folder holding those files, from a path with ``{quality}``
in it, or from one file used at every quality. Images are padded as in compressai's evaluation (centred
zeros up to a multiple of 64) and cropped after decoding.

Bitstream (big-endian): magic ``CAI``, format version, architecture, metric and quality (1 byte each),
the first 4 bytes of the checkpoint's sha256, image height and width (2 bytes each), CRC-32 of
all the other bytes; then compressai's strings, each but the last preceded by its length (4 bytes),
each a whole number of the range coder's 32-bit words, at least two (its final state). The decoder
compares the image size in the header with the expected one before it allocates anything.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.adapters.base import check_options
from bench.headers import check_size
from bench.knob import Knob

# name: (bitstream code, highest quality, downsampling of the latent whose shape decompress() takes)
ARCHITECTURES: dict[str, tuple[int, int, int]] = {
    "bmshj2018-factorized": (1, 8, 16),
    "bmshj2018-hyperprior": (2, 8, 64),
    "mbt2018-mean": (3, 8, 64),
    "mbt2018": (4, 8, 64),
    "cheng2020-anchor": (5, 6, 64),
    "cheng2020-attn": (6, 6, 64),
}
AUTOREGRESSIVE = ("mbt2018", "cheng2020-anchor", "cheng2020-attn")
METRICS = {"mse": 1, "ms-ssim": 2}
OPTION_DEFAULTS: dict[str, Any] = {
    "architecture": "bmshj2018-hyperprior",
    "metric": "mse",
    "weights": "",
    "device": "cpu",
    "threads": 1,
}
MAGIC = b"CAI"
FORMAT_VERSION = 1
FIELDS = struct.Struct(">3sBBBB4sHH")
LENGTH = struct.Struct(">I")  # also the CRC's
HEADER_SIZE = FIELDS.size + LENGTH.size
WORD = 4  # compressai's range coder writes 32-bit words
PAD = 64  # compressai's evaluation pads every model's input to a multiple of 2**6


class CompressAIBitstreamError(ValueError):
    """Bytes that this codec cannot decode: truncated, corrupted, foreign or from other weights."""


@dataclass(frozen=True)
class Header:
    architecture: int
    metric: int
    quality: int
    weights_id: bytes
    height: int
    width: int


def pack(header: Header, streams: list[bytes]) -> bytes:
    """The header, then the streams (each but the last after its length)."""
    if not (0 < header.height < 65536 and 0 < header.width < 65536):
        raise ValueError(f"images up to 65535 px a side, not {header.width}x{header.height}")
    body = b"".join(LENGTH.pack(len(s)) + s for s in streams[:-1]) + streams[-1]
    fields = FIELDS.pack(
        MAGIC,
        FORMAT_VERSION,
        header.architecture,
        header.metric,
        header.quality,
        header.weights_id,
        header.height,
        header.width,
    )
    return fields + LENGTH.pack(zlib.crc32(fields + body)) + body


def stream_count(code: int) -> int:
    """How many strings the architecture with bitstream code ``code`` writes (0: unknown code)."""
    factors = {c: factor for c, _, factor in ARCHITECTURES.values()}
    return {16: 1, 64: 2}[factors[code]] if code in factors else 0


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse and check a bitstream; raises CompressAIBitstreamError with the reason."""
    if len(data) < HEADER_SIZE or data[:3] != MAGIC:
        raise CompressAIBitstreamError(
            "not a compressai-zoo bitstream (bad magic or shorter than the header)"
        )
    _, version, *fields, height, width = FIELDS.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CompressAIBitstreamError(f"bitstream format {version}; this decoder reads {FORMAT_VERSION}")
    (crc,), body = LENGTH.unpack_from(data, FIELDS.size), data[HEADER_SIZE:]
    if zlib.crc32(data[: FIELDS.size] + body) != crc:
        raise CompressAIBitstreamError("bitstream is truncated or corrupted (CRC mismatch)")
    if not height or not width:
        raise CompressAIBitstreamError("image size 0 in the header")
    count = stream_count(fields[0])
    if not count:
        raise CompressAIBitstreamError(f"unknown architecture code {fields[0]}")
    streams, offset = [], 0
    for _ in range(count - 1):
        if offset + LENGTH.size > len(body):
            raise CompressAIBitstreamError("truncated stream length")
        (length,), offset = LENGTH.unpack_from(body, offset), offset + LENGTH.size
        if offset + length > len(body):
            raise CompressAIBitstreamError("truncated stream")
        streams.append(body[offset : offset + length])
        offset += length
    streams.append(body[offset:])
    if any(len(s) < 2 * WORD or len(s) % WORD for s in streams):
        lengths = ", ".join(str(len(s)) for s in streams)
        raise CompressAIBitstreamError(
            f"stream lengths {lengths} are not whole numbers of 32-bit words, at least 2"
        )
    return Header(*fields, height, width), streams


@dataclass
class Loaded:
    model: Any
    weights_id: bytes


class CompressAIZooCodec:
    """One compressai zoo architecture and metric; quality is the zoo's quality index (1 = lowest rate)."""

    def __init__(self, name: str, options: dict[str, Any]):
        self.name = name
        self.options = check_options(name, options, OPTION_DEFAULTS)
        self.architecture: str = self.options["architecture"]
        self.metric: str = self.options["metric"]
        self.threads: int = self.options["threads"]
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"{name}: architecture must be one of {', '.join(ARCHITECTURES)}")
        if self.metric not in METRICS:
            raise ValueError(f"{name}: metric must be one of {', '.join(METRICS)}")
        if self.options["device"] not in ("cpu", "cuda", "auto"):
            raise ValueError(f"{name}: device must be cpu, cuda or auto")
        self.code, top, self.factor = ARCHITECTURES[self.architecture]
        self.qualities = tuple(range(1, top + 1))
        self._models: dict[int, Loaded] = {}
        self.load_s: float | None = None

    def knob(self) -> Knob:
        """The zoo's ladder: one checkpoint per quality."""
        return Knob("ladder", self.qualities[0], self.qualities[-1])

    @property
    def device(self) -> str:
        """cpu or cuda; ``auto`` picks CUDA when present, except for autoregressive models (CPU only)."""
        requested = self.options["device"]
        if requested != "auto":
            return requested
        import torch

        return "cuda" if torch.cuda.is_available() and self.architecture not in AUTOREGRESSIVE else "cpu"

    def file_name(self, quality: int) -> str:
        """The file name compressai downloads for this architecture, metric and quality."""
        from compressai.zoo.image import model_urls

        return model_urls[self.architecture][self.metric][quality].rsplit("/", 1)[1]

    def checkpoint(self, quality: int) -> Path:
        """Where the checkpoint for ``quality`` is looked for."""
        weights = self.options["weights"]
        if not weights:
            import torch

            return Path(torch.hub.get_dir()) / "checkpoints" / self.file_name(quality)
        if "{quality}" in weights:
            return Path(weights.replace("{quality}", str(quality))).expanduser()
        path = Path(weights).expanduser()
        return path / self.file_name(quality) if path.is_dir() else path

    def _missing(self, qualities: tuple[int, ...]) -> str:
        paths = [self.checkpoint(q) for q in qualities]
        folders = {p.parent for p in paths}
        names = paths[0].name if len(paths) == 1 else f"{paths[0].name} ... {paths[-1].name}"
        where = (
            f"in {folders.pop()}: expected {names}" if len(folders) == 1 else f"at {paths[0]} ... {paths[-1]}"
        )
        func = self.architecture.replace("-", "_")
        call = f"{func}(quality={{}}, metric='{self.metric}', pretrained=True)"
        loop = f"[{call.format('q')} for q in range({qualities[0]}, {qualities[-1] + 1})]"
        fetch = f"from compressai.zoo import {func}; " + (
            loop if len(qualities) > 1 else call.format(qualities[0])
        )
        return (
            f"no {self.architecture} ({self.metric}) checkpoint {where}; get them with "
            f"`bench codecs fetch {self.name}`, or with "
            f'python -c "{fetch}" where there is internet, then copy them here or set option weights'
        )

    def available(self) -> str | None:
        try:
            import compressai  # noqa: F401
            import torch
        except ImportError as exc:
            return f"{exc.name} is not installed: pip install torch compressai"
        if self.device == "cuda" and self.architecture in AUTOREGRESSIVE:
            return (
                f"{self.architecture} is autoregressive: compressai codes it reliably on CPU only "
                "(sequential entropy coding); use device=cpu"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            return "device cuda asked for, but torch sees no CUDA GPU"
        if not any(self.checkpoint(q).is_file() for q in self.qualities):
            return self._missing(self.qualities)
        return None

    def _present(self) -> list[int]:
        return [q for q in self.qualities if self.checkpoint(q).is_file()]

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        import torch

        present = self._present()
        digest = hashlib.sha256()
        for quality in present:
            digest.update(
                f"{quality}:".encode() + hashlib.sha256(self.checkpoint(quality).read_bytes()).digest()
            )
        return {
            "torch": torch.__version__,
            "compressai": version("compressai"),
            "checkpoints": f"qualities {','.join(map(str, present))} of {self.architecture} ({self.metric})",
            "weights": digest.hexdigest()[:16],
            "bitstream format": str(FORMAT_VERSION),
        }

    def _quality(self, quality: float) -> int:
        if not float(quality).is_integer() or int(quality) not in self.qualities:
            raise ValueError(
                f"{self.name}: quality must be a whole number 1..{self.qualities[-1]}, not {quality}"
            )
        return int(quality)

    def _load(self, quality: int) -> Loaded:
        """The model for ``quality`` from its checkpoint (loading time added to load_s)."""
        if quality in self._models:
            return self._models[quality]
        import io

        import torch
        from compressai.zoo import load_state_dict
        from compressai.zoo.image import model_architectures

        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        path = self.checkpoint(quality)
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.name}: quality {quality} is not available: {self._missing((quality,))}"
            )
        start = time.perf_counter()
        raw = path.read_bytes()
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        for key in ("network", "state_dict", "model_state_dict"):  # training checkpoints (compressai's eval)
            state = state.get(key, state) if isinstance(state, dict) else state
        try:
            model = model_architectures[self.architecture].from_state_dict(load_state_dict(state))
        except (KeyError, RuntimeError, AttributeError) as exc:
            raise ValueError(f"{path} is not a {self.architecture} checkpoint: {exc}") from None
        model.update()  # builds the coding tables only where the checkpoint has none
        loaded = Loaded(model.to(self.device).eval(), hashlib.sha256(raw).digest()[:4])
        self.sync()
        self.load_s = (self.load_s or 0.0) + time.perf_counter() - start
        self._models[quality] = loaded
        return loaded

    def warmup(self) -> None:
        """Load every present checkpoint (timed apart as load_s) and run a small round trip with each."""
        image = np.zeros((64, 64, 3), np.uint8)
        for quality in self._present():
            self._load(quality)
            self.decode(self.encode(image, quality), (64, 64))

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        level = self._quality(quality)
        loaded = self._load(level)
        torch.set_num_threads(self.threads)
        height, width = image.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255
        pad, _ = compute_padding(height, width, min_div=PAD)
        with torch.no_grad():
            out = loaded.model.compress(F.pad(x, pad, mode="constant", value=0))
        streams = [strings[0] for strings in out["strings"]]
        header = Header(self.code, METRICS[self.metric], level, loaded.weights_id, height, width)
        return pack(header, streams)

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        header, streams = unpack(data)
        check_size("compressai-zoo bitstream", (header.height, header.width), shape, CompressAIBitstreamError)
        if (header.architecture, header.metric) != (self.code, METRICS[self.metric]):
            raise CompressAIBitstreamError(
                f"bitstream of architecture code {header.architecture}, metric code {header.metric}; "
                f"this codec is {self.architecture} ({self.metric})"
            )
        if header.quality not in self.qualities:
            raise CompressAIBitstreamError(f"quality {header.quality} is not one of {self.architecture}'s")
        loaded = self._load(header.quality)
        if header.weights_id != loaded.weights_id:
            raise CompressAIBitstreamError(
                f"bitstream made with weights {header.weights_id.hex()}, not with these "
                f"({loaded.weights_id.hex()} at quality {header.quality})"
            )
        torch.set_num_threads(self.threads)
        pad, unpad = compute_padding(header.height, header.width, min_div=PAD)
        size = (
            (header.height + pad[2] + pad[3]) // self.factor,
            (header.width + pad[0] + pad[1]) // self.factor,
        )
        with torch.no_grad():
            x_hat = loaded.model.decompress([[s] for s in streams], size)["x_hat"]
        pixels = (F.pad(x_hat, unpad)[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0)
        return np.ascontiguousarray(pixels.cpu().numpy())


def compressai_zoo(name: str, options: dict[str, Any]) -> CompressAIZooCodec:
    """Factory registered as the built-in adapter ``compressai``."""
    return CompressAIZooCodec(name, options)
