"""The codec catalog: codecs/*.toml entries, command-line overrides and config hashes."""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.resources import catalog_dir

REQUIRED_KEYS = ("name", "adapter", "description", "reference", "quality_label", "qualities")
KNOWN_KEYS = REQUIRED_KEYS + ("rate_rises_with_quality", "options")


@dataclass(frozen=True)
class CatalogEntry:
    """One codec of the catalog, with its options as resolved for a run."""

    name: str
    adapter: str
    description: str
    reference: str
    quality_label: str
    qualities: tuple[float, ...]
    rate_rises_with_quality: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-specific keys (argv templates, ...)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "catalog") -> CatalogEntry:
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise UserError(f"{source}: missing catalog key(s) {', '.join(missing)}")
        qualities = tuple(float(q) for q in data["qualities"])
        if not qualities:
            raise UserError(f"{source}: 'qualities' is empty")
        if not all(math.isfinite(q) for q in qualities):
            raise UserError(f"{source}: 'qualities' holds a value that is not a finite number")
        return cls(
            name=str(data["name"]),
            adapter=str(data["adapter"]),
            description=str(data["description"]),
            reference=str(data["reference"]),
            quality_label=str(data["quality_label"]),
            qualities=qualities,
            rate_rises_with_quality=bool(data.get("rate_rises_with_quality", True)),
            options=dict(data.get("options", {})),
            extra={k: v for k, v in data.items() if k not in KNOWN_KEYS and k != "extra"}
            | dict(data.get("extra", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "adapter": self.adapter,
            "description": self.description,
            "reference": self.reference,
            "quality_label": self.quality_label,
            "qualities": list(self.qualities),
            "rate_rises_with_quality": self.rate_rises_with_quality,
            "options": dict(self.options),
            "extra": dict(self.extra),
        }

    def with_options(self, overrides: dict[str, Any]) -> CatalogEntry:
        return replace(self, options=self.options | overrides)


def load_catalog(directory: Path | None = None) -> dict[str, CatalogEntry]:
    """Every entry of the catalog folder, by name."""
    directory = directory or catalog_dir()
    entries: dict[str, CatalogEntry] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UserError(f"{path}: cannot read catalog entry: {exc}") from None
        entry = CatalogEntry.from_dict(data, source=str(path))
        _check_commands(entry, path)
        if entry.name in entries:
            raise UserError(f"{path}: codec name {entry.name!r} is defined twice in the catalog")
        entries[entry.name] = entry
    return entries


def _check_commands(entry: CatalogEntry, path: Path) -> None:
    """A ``subprocess`` entry's command templates, checked when the catalog is read (not task by task)."""
    if entry.adapter != "subprocess":
        return
    from bench.adapters.subprocess_codec import ToolSpec

    try:
        ToolSpec.from_extra(dict(entry.extra), dict(entry.options))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: codec {entry.name!r}: {exc}") from None


def parse_value(text: str) -> Any:
    """A command-line option value, typed as TOML would type it (9 -> int, true -> bool, x -> str)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_codec_specs(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse ``jxl:effort=9,jpeg:subsampling=444`` into [(name, overrides), ...].

    A comma-separated part without a codec name (``jxl:effort=9,distance=1``) adds to the codec before it.
    """
    specs: list[tuple[str, dict[str, Any]]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        head, _, rest = part.partition(":")
        if "=" in head and not rest:
            if not specs:
                raise UserError(f"codec option {part!r} comes before any codec name")
            pairs = [head]
        else:
            specs.append((head, {}))
            pairs = [p for p in rest.split(":") if p]
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise UserError(f"codec option {pair!r} is not key=value (in {text!r})")
            specs[-1][1][key.strip()] = parse_value(value.strip())
    if not specs:
        raise UserError("no codec named in --codecs")
    return specs


def config_hash(entry: CatalogEntry, threads: int, versions: dict[str, str]) -> str:
    """Hash of everything that can change a codec's output: the resolved entry, threads, versions."""
    payload = json.dumps(
        {"entry": entry.to_dict(), "threads": threads, "versions": versions},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
