"""What the in-process adapters share: checked options, a checked quality, the library's import."""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from bench.knob import Knob


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (TOML and the command line give int, float, bool or str)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not isinstance(value, bool) and number.is_integer():
            return int(number)
    elif isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    else:
        return str(value)
    raise ValueError(f"{name}: option {key}={value!r} must be {type(default).__name__}")


def check_options(name: str, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``options``; an unknown key or a value of the wrong type raises ValueError."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise ValueError(f"{name}: unknown option {listed}; valid options: {', '.join(sorted(defaults))}")
    resolved = {key: _coerce(name, key, options.get(key, value), value) for key, value in defaults.items()}
    if resolved["threads"] < 1:
        raise ValueError(f"{name}: option threads={resolved['threads']} must be at least 1")
    return resolved


def subsampling(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Chroma subsampling given as 444, "444" or "4:4:4", normalised to "444"."""
    value = value.replace(":", "")
    if value not in allowed:
        raise ValueError(f"{name}: option subsampling={value!r} must be one of {', '.join(allowed)}")
    return value


def as_rgb(image: Any) -> np.ndarray:
    """A decoded image as H x W x 3 uint8, or TypeError."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise TypeError(f"decoder returned {array.dtype} {array.shape}, not H x W x 3 uint8")
    return array


class LibraryCodec:
    """Base of the in-process codecs: checked options, a checked quality, and the library's import."""

    defaults: ClassVar[dict[str, Any]] = {"threads": 1}
    quality_range: ClassVar[tuple[float, float]] = (0, 100)
    integer_quality: ClassVar[bool] = True
    quality_resolution: ClassVar[float] = 1.0  # continuous knobs: the smallest step that matters
    log_quality: ClassVar[bool] = False  # search the knob on a log scale (a compression ratio)
    module: ClassVar[str] = "imagecodecs"
    install: ClassVar[str] = "pip install imagecodecs"

    def __init__(self, name: str, options: dict[str, Any]):
        self.name = name
        self.options = check_options(name, options, self.defaults)
        self.threads: int = self.options["threads"]

    def library(self) -> ModuleType:
        """The library module (import on first use, so that ``bench`` starts fast)."""
        return importlib.import_module(self.module)

    def available(self) -> str | None:
        try:
            self.library()
        except ImportError as exc:
            return f"{self.module} is not installed ({exc}): {self.install}"
        return self.missing_feature()

    def missing_feature(self) -> str | None:
        """Why the installed library cannot run this codec, or None."""
        return None

    def knob(self) -> Knob:
        """The quality knob for the matched-rate searches (direction: the catalog entry's)."""
        low, high = self.quality_range
        domain = "integer" if self.integer_quality else "continuous"
        return Knob(domain, low, high, resolution=self.quality_resolution, log_scale=self.log_quality)

    def quality(self, quality: float) -> float | int:
        """``quality`` checked against the codec's range; int where the library needs one."""
        low, high = self.quality_range
        if not low <= quality <= high:
            raise ValueError(f"{self.name}: quality {quality} is outside [{low}, {high}]")
        if self.integer_quality:
            if not float(quality).is_integer():
                raise ValueError(f"{self.name}: quality {quality} must be a whole number")
            return int(quality)
        return float(quality)
