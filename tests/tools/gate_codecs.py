"""Test-only codec adapters that wrap jpeg and misbehave measurably, to prove the CI gate fails.

- ``slow``: every encode and decode takes three times as long (the wrapped call, then a sleep twice as
  long: well past the gate's 1.8 even when the machine is noisy);
- ``padded``: 5 % more bytes for the same pixels (the jpeg bytes, zeros, then the jpeg length).
"""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import numpy as np

from bench.codec import make_codec


class _Wrapped:
    def __init__(self, name: str, options: dict[str, Any]):
        self.name = name
        self.inner = make_codec(name, "imagecodecs.jpeg", options)

    def available(self) -> str | None:
        return self.inner.available()

    def versions(self) -> dict[str, str]:
        return self.inner.versions()


class Slow(_Wrapped):
    def encode(self, image: np.ndarray, quality: float) -> bytes:
        start = time.perf_counter()
        data = self.inner.encode(image, quality)
        time.sleep(2 * (time.perf_counter() - start))
        return data

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        start = time.perf_counter()
        pixels = self.inner.decode(data, shape)
        time.sleep(2 * (time.perf_counter() - start))
        return pixels


class Padded(_Wrapped):
    def encode(self, image: np.ndarray, quality: float) -> bytes:
        data = self.inner.encode(image, quality)
        return data + bytes(math.ceil(0.05 * len(data))) + struct.pack(">I", len(data))

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        (length,) = struct.unpack(">I", data[-4:])
        return self.inner.decode(data[:length], shape)


def slow(name: str, options: dict[str, Any]) -> Slow:
    return Slow(name, options)


def padded(name: str, options: dict[str, Any]) -> Padded:
    return Padded(name, options)
