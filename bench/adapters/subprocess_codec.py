"""Command-line codecs described by a catalog entry alone (adapter ``subprocess``; docs/subprocess.md).

The entry's own keys (``CatalogEntry.extra``) say how to run the tools: ``encode`` and ``decode`` argv
templates, the ``format`` of the files between them, a ``version`` command and a ``timeout``. Each call
runs in a private temporary folder, removed afterwards; tools never see a shell. Rate is the size of
the file the encoder wrote, which is exactly what the decoder reads.
"""

from __future__ import annotations

import os
import re
import string
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.adapters.programs import check_program, missing, resolved, shown
from bench.adapters.tool import ToolError, output_tail, run_tool, tool_output
from bench.adapters.yuv import YuvFormat, read_yuv, write_yuv
from bench.headers import PARSERS, check_header, check_size
from bench.images import BadImage, load_image
from bench.knob import Knob

IMAGE_FORMATS = ("png", "ppm", "yuv")
FIELDS = {
    "encode": {"input", "output", "quality", "width", "height", "threads"},
    "decode": {"input", "output", "width", "height", "threads"},
}
KEYS = {"encode", "decode", "format", "version", "version_pattern", "timeout", "install", "choices"}
KEYS |= {"quality_range", "quality_integer", "quality_resolution"}
DEFAULT_TIMEOUT = 300.0
VERSION_TIMEOUT = 30.0
DEFAULT_VERSION_PATTERN = r"\d+(?:\.\d+)+\S*"  # the first dotted version number in the output


def argv_template(key: str, value: Any) -> tuple[str, ...]:
    """``value`` as an argv template; ValueError unless it is a non-empty list of strings."""
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{key!r} must be a non-empty list of strings (an argv), got {value!r}")
    return tuple(value)


def placeholders(template: tuple[str, ...]) -> set[str]:
    """The placeholder names of an argv template; ValueError for anything but ``{name}`` (no format spec
    such as ``{quality:>200000000}``, no conversion, no attribute or index)."""
    names = set()
    for element in template:
        for _, name, spec, conversion in string.Formatter().parse(element):
            if name is not None and (not name.isidentifier() or spec or conversion):
                written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                raise ValueError(f"placeholder {{{written}}} in {element!r} is not a plain name")
            names.update({name} - {None})
    return names


def image_format(fmt: dict[str, Any]) -> tuple[str, YuvFormat | None]:
    """The image kind of a ``format`` table (``image`` and, for yuv, the raw layout's keys) and its raw YUV
    layout (None for png and ppm); ValueError for anything else."""
    fmt = dict(fmt)
    image = str(fmt.pop("image", ""))
    if image not in IMAGE_FORMATS:
        raise ValueError(f"format.image {image!r} is not one of {', '.join(IMAGE_FORMATS)}")
    if fmt and image != "yuv":
        raise ValueError(f"format keys {', '.join(sorted(fmt))} apply to yuv only")
    return image, YuvFormat.from_dict(fmt) if image == "yuv" else None


def write_image(path: Path, image: np.ndarray, kind: str, yuv: YuvFormat | None) -> None:
    """Write 8-bit RGB ``image`` as a tool's input: raw YUV of ``yuv``, else ``kind`` (png, ppm) without
    ancillary chunks, PNG at zlib level 1 to keep the call fast."""
    if yuv is not None:
        write_yuv(path, image, yuv)
    else:
        Image.fromarray(np.ascontiguousarray(image), "RGB").save(path, kind, compress_level=1)


def version_in(text: str, pattern: str) -> str:
    """The first match of ``pattern`` in a version command's output, whitespace collapsed, or "unknown":
    its named groups as ``name value`` pairs (``ffmpeg n9.0.2, libvvenc 1.15.0``), else group 1 if it has
    one, else the whole match."""
    found = re.search(pattern, text)
    if found and found.re.groupindex:
        pairs = [(name, found.group(name)) for name in found.re.groupindex]
        return ", ".join(f"{name} {' '.join((value or 'unknown').split())}" for name, value in pairs)
    value = (found.group(1) if found.re.groups else found.group(0)) if found else None
    return " ".join((value or "unknown").split())


@dataclass(frozen=True)
class ToolSpec:
    """The checked adapter-specific keys of a catalog entry (see docs/subprocess.md)."""

    encode: tuple[str, ...]
    decode: tuple[str, ...]
    image: str
    bitstream: str
    yuv: YuvFormat | None
    version: tuple[tuple[str, ...], ...]
    version_pattern: str
    timeout: float
    install: str
    choices: dict[str, dict[str, str]]
    quality_range: tuple[float, float] | None
    quality_integer: bool
    quality_resolution: float | None

    @classmethod
    def from_extra(cls, extra: dict[str, Any], options: dict[str, Any]) -> ToolSpec:
        unknown = sorted(set(extra) - KEYS)
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(unknown)}; the subprocess adapter reads {sorted(KEYS)}"
            )
        missing = [key for key in ("encode", "decode", "format", "version") if key not in extra]
        if missing:
            raise ValueError(f"the catalog entry lacks {', '.join(missing)} (see docs/subprocess.md)")
        fmt = dict(extra["format"]) if isinstance(extra["format"], dict) else {"image": extra["format"]}
        bitstream = str(fmt.pop("bitstream", "bin")).lstrip(".")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", bitstream):
            raise ValueError(f"format.bitstream {bitstream!r} is not a plain file suffix")
        image, yuv = image_format(fmt)
        versions = extra["version"]
        versions = versions if versions and isinstance(versions[0], list) else [versions]
        quality_range, choices = extra.get("quality_range"), extra.get("choices", {})
        if not (isinstance(choices, dict) and all(isinstance(v, dict) for v in choices.values())):
            raise ValueError(f"choices must be a table of tables (option -> value -> text), got {choices!r}")
        spec = cls(
            encode=argv_template("encode", extra["encode"]),
            decode=argv_template("decode", extra["decode"]),
            image=image,
            bitstream=bitstream,
            yuv=yuv,
            version=tuple(argv_template("version", v) for v in versions),
            version_pattern=str(extra.get("version_pattern", DEFAULT_VERSION_PATTERN)),
            timeout=float(extra.get("timeout", DEFAULT_TIMEOUT)),
            install=str(extra.get("install", "install it or put it on PATH")),
            choices={key: {str(a): str(b) for a, b in table.items()} for key, table in choices.items()},
            quality_range=tuple(float(q) for q in quality_range) if quality_range else None,
            quality_integer=bool(extra.get("quality_integer", False)),
            quality_resolution=float(extra["quality_resolution"]) if "quality_resolution" in extra else None,
        )
        spec._check(options)
        return spec

    def _check(self, options: dict[str, Any]) -> None:
        re.compile(self.version_pattern)
        if self.timeout <= 0:
            raise ValueError(f"timeout {self.timeout:g} must be positive")
        if self.quality_range is not None and len(self.quality_range) != 2:
            raise ValueError(f"quality_range {self.quality_range} must be [low, high]")
        clash = sorted(set(options) & (FIELDS["encode"] | FIELDS["decode"]) - {"threads"})
        if clash:
            raise ValueError(f"option name(s) {', '.join(clash)} are reserved for placeholders")
        used: set[str] = set()
        for key in ("encode", "decode"):
            template = getattr(self, key)
            check_program(key, template[0])
            names = placeholders(template[1:])
            bad = sorted(names - FIELDS[key] - set(options))
            if bad:
                known = ", ".join(sorted(FIELDS[key] | set(options)))
                raise ValueError(
                    f"{key} template uses unknown placeholder(s) {', '.join(bad)}; known: {known}"
                )
            used |= names
        unused = sorted(set(options) - used - {"threads"})
        if unused:
            raise ValueError(
                f"option(s) {', '.join(unused)} appear in neither the encode nor the decode template"
            )
        for key, table in self.choices.items():
            if key not in options:
                raise ValueError(f"choices.{key} names no option")
            if str(options[key]) not in table:
                raise ValueError(f"option {key}={options[key]!r} must be one of {', '.join(table)}")


class SubprocessCodec:
    """A codec made of an encoder and a decoder program, run once per call in a private folder."""

    def __init__(self, name: str, options: dict[str, Any], extra: dict[str, Any] | None = None):
        self.name = name
        self.options = {"threads": 1} | dict(options)
        threads = self.options["threads"]
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"option threads={threads!r} must be a whole number of at least 1")
        self.threads: int = threads
        self.spec = ToolSpec.from_extra(dict(extra or {}), self.options)
        self._versions: dict[str, str] | None = None

    def _programs(self) -> list[str]:
        argvs = (self.spec.encode, self.spec.decode, *self.spec.version)
        return list(dict.fromkeys(argv[0] for argv in argvs))

    def available(self) -> str | None:
        for program in self._programs():
            reason = missing(program, self.spec.install)
            if reason:
                return reason
        try:
            self.versions()
        except ToolError as exc:
            return f"the version command does not run: {exc}"
        return None

    def versions(self) -> dict[str, str]:
        """Each version command's first match of ``version_pattern`` (group 1 if it has one)."""
        if self._versions is None:
            versions = {}
            for argv in self.spec.version:
                with self._folder() as folder:
                    text = tool_output(self._command(argv), folder, VERSION_TIMEOUT)
                versions[shown(argv[0])] = version_in(text, self.spec.version_pattern)
            self._versions = versions
        return self._versions

    @contextmanager
    def _folder(self) -> Iterator[Path]:
        prefix = "bench-" + re.sub(r"[^A-Za-z0-9_.-]", "_", self.name) + "-"
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            yield Path(folder)

    def _command(self, template: tuple[str, ...], **fields: Any) -> list[str]:
        values = {"threads": self.threads} | {
            key: self.spec.choices[key][str(value)] if key in self.spec.choices else value
            for key, value in self.options.items()
        }
        return [resolved(template[0])] + [element.format(**values, **fields) for element in template[1:]]

    def knob(self) -> Knob | None:
        """The quality knob from the entry's quality_range, quality_integer and quality_resolution (a
        continuous knob's resolution defaults to 1 % of its range); None without a quality_range."""
        if self.spec.quality_range is None:
            return None
        low, high = self.spec.quality_range
        if self.spec.quality_integer:
            return Knob("integer", low, high)
        return Knob("continuous", low, high, resolution=self.spec.quality_resolution or (high - low) / 100)

    def _quality(self, quality: float) -> int | float:
        low, high = self.spec.quality_range or (-float("inf"), float("inf"))
        if not low <= quality <= high:
            raise ValueError(f"{self.name}: quality {quality:g} is outside [{low:g}, {high:g}]")
        if float(quality).is_integer():
            return int(quality)
        if self.spec.quality_integer:
            raise ValueError(f"{self.name}: quality {quality:g} must be a whole number")
        return float(quality)

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        height, width = image.shape[:2]
        value = self._quality(quality)
        with self._folder() as folder:
            source, target = folder / f"image.{self.spec.image}", folder / f"bitstream.{self.spec.bitstream}"
            write_image(source, image, self.spec.image, self.spec.yuv)
            argv = self._command(
                self.spec.encode, input=source, output=target, quality=value, width=width, height=height
            )
            run_tool(argv, folder, self.spec.timeout)
            if not target.is_file() or target.stat().st_size == 0:
                state = "an empty" if target.is_file() else "no"
                raise ToolError(f"{os.path.basename(argv[0])} exited 0 but wrote {state} {target.name}")
            return target.read_bytes()

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """Decode with the tool; a bitstream of a known kind (its suffix) whose header claims another size
        than ``shape`` is refused before the tool runs, and so is such a decoded image before it is read."""
        height, width = shape
        if self.spec.bitstream in PARSERS:
            check_header(data, self.spec.bitstream, shape)
        with self._folder() as folder:
            source, target = (
                folder / f"bitstream.{self.spec.bitstream}",
                folder / f"decoded.{self.spec.image}",
            )
            source.write_bytes(data)
            argv = self._command(self.spec.decode, input=source, output=target, width=width, height=height)
            run_tool(argv, folder, self.spec.timeout)
            try:
                return self._read_image(target, shape)
            except (BadImage, ValueError) as exc:
                tool = os.path.basename(argv[0])
                raise ToolError(
                    f"{tool} wrote an unusable {target.name}: {exc}; {output_tail(folder)}"
                ) from None

    def _read_image(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        if self.spec.yuv is not None:
            if not path.is_file():
                raise ValueError("no such file")
            return read_yuv(path, shape, self.spec.yuv)
        claimed = _claimed_size(path)
        if claimed is not None:
            check_size(f"decoded {self.spec.image}", claimed, shape)
        return load_image(path).rgb


def _claimed_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from an image file's header (Pillow's open reads no pixels), or None where Pillow
    cannot tell: then load_image refuses the file and says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                return probe.height, probe.width
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


subprocess_codec = SubprocessCodec  # the factory ``(name, options, extra) -> Codec`` of BUILTIN_ADAPTERS
