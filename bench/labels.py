"""One label per codec configuration, for every table that shows several: the run summary, bd, report,
export, compare and verify.

A codec name seen in one configuration is labelled by its name. Configurations of one name are told
apart by their options that differ from the catalog's (``lic`` and ``lic:exact=false``; threads and
device are left to the next step), then by the options in which they still differ, then by run
(``jpeg@base`` and ``jpeg@new``), and last by config hash (``jpeg@base:0123abcd``: the same options in
the same run, with other library versions).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RUN_WIDE_OPTIONS = ("threads", "device")  # set for every codec of a run by --threads and --device


@dataclass(frozen=True)
class Configuration:
    """A codec configuration as it appears in a table: name, resolved options, run and config hash."""

    codec: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    run: str = ""
    config_hash: str = ""


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _suffix(options: dict[str, Any], keys: Sequence[str]) -> str:
    return "".join(f":{key}={_value(options.get(key))}" for key in sorted(keys))


def _catalog_options() -> dict[str, dict[str, Any]]:
    from bench.catalog import load_catalog
    from bench.errors import UserError

    try:
        return {name: entry.options for name, entry in load_catalog().items()}
    except UserError:
        return {}


def _differing(group: list[Configuration], indexes: list[int]) -> list[str]:
    keys = {key for i in indexes for key in group[i].options}
    return [key for key in keys if len({_value(group[i].options.get(key)) for i in indexes}) > 1]


def _by_options(group: list[Configuration], label: str, ix: list[int]) -> list[str]:
    return [label + _suffix(group[i].options, _differing(group, ix)) for i in ix]


def _by_run(group: list[Configuration], label: str, ix: list[int]) -> list[str]:
    several = len({group[i].run for i in ix}) > 1
    return [f"{label}@{group[i].run}" if several else label for i in ix]


def _by_hash(group: list[Configuration], label: str, ix: list[int]) -> list[str]:
    return [f"{label}:{group[i].config_hash[:8]}" for i in ix]


def _refine(labels: list[str], group: list[Configuration], step) -> list[str]:
    """Relabel with ``step(group, label, indexes)`` every set of configurations that share a label."""
    out = list(labels)
    for label, count in Counter(labels).items():
        if count > 1:
            indexes = [i for i, other in enumerate(labels) if other == label]
            for i, new in zip(indexes, step(group, label, indexes), strict=True):
                out[i] = new
    return out


def _changed(options: dict[str, Any], defaults: dict[str, Any] | None) -> list[str]:
    """The options set otherwise than the catalog's (not threads and device); none for a codec the
    catalog does not have."""
    if defaults is None:
        return []
    return [k for k in options if k not in RUN_WIDE_OPTIONS and defaults.get(k) != options[k]]


def configuration_labels(
    configurations: Sequence[Configuration], catalog: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    """A unique label per configuration (equal configurations get equal labels), in the given order.

    ``catalog``: each catalog codec's default options [the local catalog's].
    """
    unique = list(dict.fromkeys(configurations))
    names = Counter(c.codec for c in unique)
    if catalog is None and any(count > 1 for count in names.values()):
        catalog = _catalog_options()
    labels: dict[Configuration, str] = {}
    for name in names:
        group = [c for c in unique if c.codec == name]
        found = [name] * len(group)
        if len(group) > 1:
            found = [name + _suffix(c.options, _changed(c.options, (catalog or {}).get(name))) for c in group]
            for step in (_by_options, _by_run, _by_hash):
                found = _refine(found, group, step)
        labels.update(zip(group, found, strict=True))
    return [labels[c] for c in configurations]


def file_stem(label: str) -> str:
    """A label as a file name: ``lic:exact=false`` -> ``lic_exact_false``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "codec"
