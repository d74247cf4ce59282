"""The codec contract, its optional hooks, the adapter registry, and the one checked way to open a codec.

The contract (``Codec``): a codec has a ``name``; ``available()`` says, without raising, whether it can
run here (None) or why not and how to install what is missing; ``versions()`` names every library,
binary and model its output depends on (they enter the config hash); ``encode(image, quality)`` turns
an H x W x 3 uint8 RGB image, at the codec's native quality parameter, into the complete bitstream (its
length is the rate); ``decode(data, shape)`` returns the H x W x 3 uint8 RGB image. A codec built with
bad options raises ValueError or TypeError. The optional members are declared on ``CodecHooks``; read
them through ``warm_up``, ``sync``, ``complexity``, ``resources``, ``device``, ``load_s``, ``knob`` and
``decode_promise``, which give the defaults for a codec without them.

An adapter factory is a callable ``(name: str, options: dict) -> Codec``; one whose catalog entries
carry adapter-specific keys also takes them as ``extra=`` (see ``make_codec``). Built-in factories are
listed in ``BUILTIN_ADAPTERS`` as ``"module:function"`` strings and imported on first use, so that
``bench`` starts fast and a missing optional library only disables the codecs that need it.
Third-party packages register factories under the entry-point group ``bench.codecs``.

``open_codec`` is how the harness gets a codec to run: built once per configuration and process (a
learned codec's model stays loaded), checked to be available and, when the run says which library
versions it expects, to have them; ``check_codec`` gives the same verdict without raising.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from bench.quoting import quoted

if TYPE_CHECKING:
    from bench.catalog import CatalogEntry
    from bench.knob import Knob

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
    """What the harness needs from every codec (the contract above)."""

    name: str

    def available(self) -> str | None:
        """None when usable, else why not and how to install what is missing."""

    def versions(self) -> dict[str, str]:
        """Library, binary and model versions, for provenance and the config hash."""

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """Encode an H x W x 3 uint8 RGB image at the codec's native quality parameter."""

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """Decode to an H x W x 3 uint8 RGB image; ``shape`` is the original (H, W)."""


class CodecHooks(Protocol):
    """What a codec may add to the contract, each member optional; read them through the functions
    below (warm_up, sync, complexity, resources, device, load_s, knob, decode_promise), which supply the
    defaults."""

    device: str  # where it computes, "cpu" or "cuda...", recorded per row [cpu]
    load_s: float | None  # seconds its model took to load, timed apart from coding [None]
    decode_promise: str  # what its decoder gives on any machine, one of DECODE_PROMISES [pixels]

    def warmup(self) -> None:
        """Runs once per process before the first timed call; learned codecs load their model here
        [an untimed round trip of a small crop]."""

    def sync(self) -> None:
        """Waits for the device to finish its queued work, before a clock stops [nothing to wait for]."""

    def complexity(self) -> dict[str, float]:
        """Thousands of multiply-accumulates per pixel: ``kmac_px_enc``, ``kmac_px_dec`` [{}]."""

    def resources(self) -> dict[str, float]:
        """The Dask worker resources a task of this codec asks for [GPU=1 on CUDA, else none]."""

    def knob(self) -> Knob | None:
        """Its quality parameter's domain, range and resolution, for the matched-rate searches (the
        direction is the catalog entry's ``rate_rises_with_quality``) [None: it cannot be searched]."""


WARMUP_SIDE = 64  # the side of the crop of the default warm-up

# What a decoder promises to give on any machine, and so what `bench verify` holds it to:
DECODE_PROMISES = {
    "pixels": "the same pixels (any difference is a failure)",
    "symbols": "the same decoded symbols, checked by the decoder itself (it raises otherwise), with "
    "pixels computed in floating point that may differ slightly (differences are reported, not failures)",
}


def warm_up(codec: Codec, image: np.ndarray, quality: float) -> None:
    """The codec's warmup(), else an untimed round trip of a small crop of ``image`` at ``quality``."""
    hook = getattr(codec, "warmup", None)
    if hook is not None:
        hook()
        return
    crop = np.ascontiguousarray(image[:WARMUP_SIDE, :WARMUP_SIDE])
    codec.decode(codec.encode(crop, quality), crop.shape[:2])


def sync(codec: Codec) -> None:
    """The codec's sync(), if it has one."""
    hook = getattr(codec, "sync", None)
    if hook is not None:
        hook()


def complexity(codec: Codec) -> dict[str, float]:
    """The codec's complexity() (learned codecs), else {}."""
    hook = getattr(codec, "complexity", None)
    return dict(hook()) if hook is not None else {}


def device(codec: Codec) -> str:
    """Where the codec computes: its ``device``, else cpu."""
    return str(getattr(codec, "device", "cpu"))


def load_s(codec: Codec) -> float | None:
    """Seconds the codec's model took to load (after its warm-up), else None."""
    return getattr(codec, "load_s", None)


def knob(codec: Codec, rate_rises: bool) -> Knob | None:
    """The codec's knob() with the catalog entry's direction, else None (a knob that cannot be searched)."""
    hook = getattr(codec, "knob", None)
    declared = hook() if hook is not None else None
    return None if declared is None else replace(declared, rate_rises=rate_rises)


def decode_promise(codec: Codec) -> str:
    """The codec's ``decode_promise`` (a key of DECODE_PROMISES), else ``pixels``: a decoder that promises
    less than the same symbols (a float entropy model, e.g. lic:exact=false) keeps the default, so that
    `bench verify` shows where it breaks."""
    promise = str(getattr(codec, "decode_promise", "pixels"))
    if promise not in DECODE_PROMISES:
        raise ValueError(
            f"{codec.name}: decode_promise {promise!r} is not one of {', '.join(DECODE_PROMISES)}"
        )
    return promise


def resources(codec: Codec) -> dict[str, float]:
    """What a Dask worker must offer to run ``codec`` (worker resources, e.g. ``{"GPU": 1}``): the
    codec's ``resources()``, else one GPU for a codec whose ``device`` is CUDA."""
    hook = getattr(codec, "resources", None)
    if hook is not None:
        return dict(hook())
    return {"GPU": 1} if device(codec).startswith("cuda") else {}


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
        raise RuntimeError(f"{quoted(self.name)} is unavailable: {self.reason}")

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        raise RuntimeError(f"{quoted(self.name)} is unavailable: {self.reason}")


def _entry_point_factories() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


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
    """Build a codec; a missing adapter or library, or a factory that returns something other than a
    codec (see ``Codec``), gives an UnavailableCodec that says why.

    ``extra``, the entry's adapter-specific keys (``CatalogEntry.extra``), reaches the factory as the
    keyword argument ``extra`` when it is not empty: ``factory(name, options, extra=extra)``.
    """
    try:
        factory = load_factory(adapter)
    except (LookupError, ImportError) as exc:
        return UnavailableCodec(name, str(exc))
    codec = factory(name, dict(options), extra=dict(extra)) if extra else factory(name, dict(options))
    if not isinstance(codec, Codec):
        return UnavailableCodec(name, f"adapter {adapter!r} returned {type(codec).__name__}, not a codec")
    return codec


def codec_for(entry: CatalogEntry) -> Codec:
    """A new, unchecked codec for a resolved catalog entry (see ``make_codec``); to run one, use
    ``open_codec``."""
    return make_codec(entry.name, entry.adapter, entry.options, entry.extra)


class CodecUnavailable(RuntimeError):
    """A codec that cannot run here: bad options, a missing library, or versions other than the run's."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{quoted(name)} is unavailable: {reason}")
        self.name = name
        self.reason = reason


_built: dict[str, Codec] = {}  # by configuration: one instance per process
_versions: dict[str, dict[str, str]] = {}  # by configuration, once it was found available


def _configuration(entry: CatalogEntry) -> str:
    return json.dumps(entry.to_dict(), sort_keys=True, default=str)


def _built_codec(entry: CatalogEntry) -> Codec:
    """The entry's codec, built once per configuration and process; bad options raise CodecUnavailable."""
    key = _configuration(entry)
    if key not in _built:
        try:
            _built[key] = codec_for(entry)
        except (ValueError, TypeError) as exc:
            raise CodecUnavailable(entry.name, f"bad options ({exc})") from None
    return _built[key]


def _version_differences(here: dict[str, str], expected: dict[str, str]) -> str:
    """``"key <here> here, <expected> planned"`` for each version that differs, in one line."""
    return "; ".join(
        sorted(
            f"{key} {here.get(key, 'missing')} here, {expected.get(key, 'missing')} planned"
            for key in set(here) | set(expected)
            if here.get(key) != expected.get(key)
        )
    )


COMMAND_ADAPTERS = ("subprocess",)  # built-in adapters whose entries carry commands to run


def trusted_entry(entry: CatalogEntry, source: str) -> CatalogEntry:
    """``entry`` as read from ``source`` (a run.json or a bitstream manifest: data, never code), if it may
    build a codec here. A built-in adapter or an installed entry point builds it with the options as
    recorded; an entry that carries commands (``subprocess``) or names a module (``module:function``) only
    when the local catalog holds that codec with the same adapter and the same adapter-specific keys.
    Raises CodecUnavailable, in one line, otherwise."""
    if entry.adapter in BUILTIN_ADAPTERS and entry.adapter not in COMMAND_ADAPTERS:
        return entry
    if entry.adapter in _entry_point_factories():
        return entry
    from bench.catalog import load_catalog

    local = load_catalog().get(entry.name)
    if local is None or (local.adapter, local.extra) != (entry.adapter, entry.extra):
        raise CodecUnavailable(
            entry.name,
            f"{source} gives it commands or code to run (adapter {entry.adapter!r}) that the local catalog "
            "does not hold as they are: not run",
        )
    return entry


def open_codec(entry: CatalogEntry, expected_versions: dict[str, str] | None = None) -> Codec:
    """The codec of a resolved catalog entry, ready to run: one instance per configuration and process
    (a learned codec's model stays loaded). Raises CodecUnavailable, in one line naming the codec, for
    bad options, a codec unavailable here, or versions other than ``expected_versions`` (the run's,
    when given)."""
    codec = _built_codec(entry)
    key = _configuration(entry)
    if key not in _versions:
        reason = codec.available()
        if reason:
            raise CodecUnavailable(entry.name, reason)
        _versions[key] = codec.versions()
    versions = _versions[key]
    if expected_versions is not None and versions != expected_versions:
        differences = _version_differences(versions, expected_versions)
        raise CodecUnavailable(entry.name, f"its versions differ from the run's: {differences}")
    return codec


def check_codec(
    entry: CatalogEntry, expected_versions: dict[str, str] | None = None
) -> tuple[str | None, dict[str, str]]:
    """(why ``open_codec`` refuses the entry here, or None; the codec's versions here, {} if refused)."""
    try:
        open_codec(entry, expected_versions)
    except CodecUnavailable as exc:
        return exc.reason, {}
    return None, dict(_versions[_configuration(entry)])


def resources_for(entry: CatalogEntry) -> dict[str, float]:
    """What a Dask worker must offer to run the entry's codec (see ``resources``), known without the
    codec being available here: the cluster's workers may have what this machine lacks. Bad options
    raise CodecUnavailable."""
    return resources(_built_codec(entry))
