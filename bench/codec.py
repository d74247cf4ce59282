"""The codec contract and the registry of adapter factories.

An adapter factory is a callable ``(name: str, options: dict) -> Codec``; one whose catalog entries
carry adapter-specific keys also takes them as ``extra=`` (see ``make_codec``). Built-in factories are
listed in ``BUILTIN_ADAPTERS`` as ``"module:function"`` strings and imported on first use, so that
``bench`` starts fast and a missing optional library only disables the codecs that need it.
Third-party packages register factories under the entry-point group ``bench.codecs``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from bench.catalog import CatalogEntry

ENTRY_POINT_GROUP = "bench.codecs"

BUILTIN_ADAPTERS: dict[str, str] = {
    "imagecodecs.jpeg": "bench.adapters.imagecodecs_codecs:jpeg",
    "pillow.jpeg2k": "bench.adapters.pillow_jpeg2k:jpeg2k",
    "imagecodecs.webp": "bench.adapters.imagecodecs_codecs:webp",
    "imagecodecs.jpegxl": "bench.adapters.imagecodecs_codecs:jpegxl",
    "imagecodecs.avif": "bench.adapters.imagecodecs_codecs:avif",
    "pillow_heif.hevc": "bench.adapters.heif:hevc",
    "subprocess": "bench.adapters.subprocess_codec:subprocess_codec",
    "lic": "bench.lic.codec:lic",
    "compressai": "bench.adapters.compressai_zoo:compressai_zoo",
}


@runtime_checkable
class Codec(Protocol):
    """What the harness needs from a codec (see DESIGN.md, "The codec contract")."""

    name: str

    def available(self) -> str | None:
        """None when usable, else why not and how to install what is missing."""

    def versions(self) -> dict[str, str]:
        """Library, binary and model versions, for provenance and the config hash."""

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """Encode an H x W x 3 uint8 RGB image at the codec's native quality parameter."""

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """Decode to an H x W x 3 uint8 RGB image; ``shape`` is the original (H, W)."""


def resources(codec: Codec) -> dict[str, float]:
    """What a Dask worker must offer to run ``codec`` (worker resources, e.g. ``{"GPU": 1}``): the
    codec's optional ``resources()`` hook, else one GPU for a codec whose ``device`` is CUDA."""
    hook = getattr(codec, "resources", None)
    if hook is not None:
        return dict(hook())
    return {"GPU": 1} if str(getattr(codec, "device", "cpu")).startswith("cuda") else {}


CodecFactory = Callable[[str, dict[str, Any]], Codec]


class UnavailableCodec:
    """Stands in for a codec whose adapter could not be loaded; says why."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason

    def available(self) -> str | None:
        return self.reason

    def versions(self) -> dict[str, str]:
        return {}

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        raise RuntimeError(f"{self.name} is unavailable: {self.reason}")

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        raise RuntimeError(f"{self.name} is unavailable: {self.reason}")


def _entry_point_factories() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def adapter_names() -> list[str]:
    """Every adapter name that a catalog entry may use."""
    return sorted(set(BUILTIN_ADAPTERS) | set(_entry_point_factories()))


def load_factory(adapter: str) -> CodecFactory:
    """Import the factory for ``adapter``: a built-in name, an entry point's name, or ``module:function``
    (an importable module, e.g. a local adapter on PYTHONPATH); raises LookupError or ImportError."""
    if adapter in BUILTIN_ADAPTERS:
        module_name, func = BUILTIN_ADAPTERS[adapter].split(":")
        return getattr(importlib.import_module(module_name), func)
    eps = _entry_point_factories()
    if adapter in eps:
        return eps[adapter].load()
    module_name, colon, func = adapter.partition(":")
    if colon and module_name and func:
        factory = getattr(importlib.import_module(module_name), func, None)
        if callable(factory):
            return factory
    raise LookupError(
        f"no adapter named {adapter!r}: not built in, no package registers it under the entry-point group "
        f"{ENTRY_POINT_GROUP!r}, and it is not an importable module:function"
    )


def make_codec(
    name: str, adapter: str, options: dict[str, Any], extra: dict[str, Any] | None = None
) -> Codec:
    """Build a codec; a missing adapter or library gives an UnavailableCodec that says why.

    ``extra``, the entry's adapter-specific keys (``CatalogEntry.extra``), reaches the factory as the
    keyword argument ``extra`` when it is not empty: ``factory(name, options, extra=extra)``.
    """
    try:
        factory = load_factory(adapter)
    except (LookupError, ImportError) as exc:
        return UnavailableCodec(name, str(exc))
    if extra:
        return factory(name, dict(options), extra=dict(extra))
    return factory(name, dict(options))


def codec_for(entry: CatalogEntry) -> Codec:
    """The codec a resolved catalog entry describes (see ``make_codec``)."""
    return make_codec(entry.name, entry.adapter, entry.options, entry.extra)
