"""A test-only codec adapter (jpeg inside) that needs a Dask worker resource and says where it ran.

Catalog entries name it ``tools.pinned:pinned`` (tests/ on PYTHONPATH). Options: ``marker``, a folder
where ``warmup()`` leaves ``load-<pid>-*`` (the harness warms a codec configuration up once per
process, where a learned codec loads its model) and each encode of a full image leaves
``encode-<pid>-*``; ``resource``, the worker resource it asks for (one unit); ``sleep``, seconds each
encode waits first (a slow codec, to interrupt a run mid-way).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.codec import make_codec


class Pinned:
    def __init__(self, name: str, options: dict[str, Any]):
        self.name = name
        self.marker = Path(options["marker"])
        self.resource = options.get("resource")
        self.sleep = float(options.get("sleep", 0))
        self.inner = make_codec(name, "imagecodecs.jpeg", {"threads": options.get("threads", 1)})

    def _mark(self, what: str) -> None:
        (self.marker / f"{what}-{os.getpid()}-{uuid.uuid4().hex}").touch()

    def resources(self) -> dict[str, float]:
        return {self.resource: 1} if self.resource else {}

    def available(self) -> str | None:
        return self.inner.available()

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    def warmup(self) -> None:
        self._mark("load")

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        time.sleep(self.sleep)
        self._mark("encode")
        return self.inner.encode(image, quality)

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        return self.inner.decode(data, shape)


def pinned(name: str, options: dict[str, Any]) -> Pinned:
    return Pinned(name, options)
