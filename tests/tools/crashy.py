"""Test-only codec adapters (jpeg inside) that kill their own worker process, for the Dask executor tests.

Catalog entries name them as ``tools.crashy:always`` or ``tools.crashy:once`` (module:function, with
tests/ on PYTHONPATH). Option ``marker``: a folder; ``once`` kills its process on the first encode of
each quality (leaving a marker file there) and works on the retry; ``always`` kills it every time;
``hang`` sleeps for an hour in every encode.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.codec import make_codec


class Crashy:
    def __init__(self, name: str, options: dict[str, Any], every_time: bool, hang: bool = False):
        self.name = name
        self.marker = Path(options["marker"]) if "marker" in options else None
        self.every_time = every_time
        self.hang = hang
        self.inner = make_codec(name, "imagecodecs.jpeg", {"threads": options.get("threads", 1)})

    def available(self) -> str | None:
        return self.inner.available()

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        if image.shape[0] > 64 and self.hang:  # not the harness's 64 x 64 warm-up
            time.sleep(3600)
        if image.shape[0] > 64 and self.every_time:
            os.kill(os.getpid(), signal.SIGKILL)
        if image.shape[0] > 64 and self.marker is not None:
            mark = self.marker / f"q{quality:g}"
            if not mark.exists():
                mark.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.encode(image, quality)

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        return self.inner.decode(data, shape)


def always(name: str, options: dict[str, Any]) -> Crashy:
    return Crashy(name, options, every_time=True)


def once(name: str, options: dict[str, Any]) -> Crashy:
    return Crashy(name, options, every_time=False)


def hang(name: str, options: dict[str, Any]) -> Crashy:
    return Crashy(name, options, every_time=False, hang=True)
