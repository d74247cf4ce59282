"""Metrics computed by external programs, each described by a TOML entry alone (metrics/NAME.toml).

An entry gives an argv template, run once per pair in a private folder on the two images written as
files (as the subprocess codecs write theirs), how to read the number (a regular expression's first
group or a JSON key path, in stdout, stderr or an output file), its direction, a version command and a
timeout (docs/results.md, "Metric tools"). Only the local metrics folder defines them: a run directory
names its metrics, never their commands.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.adapters.programs import PROGRAMS, check_program, missing, resolved
from bench.adapters.subprocess_codec import (
    DEFAULT_TIMEOUT,
    DEFAULT_VERSION_PATTERN,
    VERSION_TIMEOUT,
    argv_template,
    image_format,
    placeholders,
    version_in,
    write_image,
)
from bench.adapters.tool import TAIL_CHARS, ToolError, run_tool, tool_output
from bench.errors import UserError
from bench.measure_types import HIGHER, LOWER, Metric, MetricUndefined
from bench.quoting import one_line
from bench.resources import metrics_dir

REQUIRED = ("name", "label", "doc", "direction", "command", "format", "read", "version")
KEYS = REQUIRED + ("unit", "groups", "cost", "ceiling", "version_pattern", "timeout", "install")
FIELDS = {"reference", "distorted", "width", "height", "output"}
SOURCES = ("stdout", "stderr", "output")
COSTS = ("cheap", "moderate", "expensive")
NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")  # a metric's name is also a column of the store
FILE_LIMIT_BYTES = 64 << 20  # the largest file a metric tool may write: stdout, stderr, its output file


def _string(data: dict[str, Any], key: str, default: str | None = None, empty: bool = False) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not (value or empty):
        raise ValueError(f"{key} must be a{'' if empty else ' non-empty'} string, got {value!r}")
    return value


def _number(data: dict[str, Any], key: str, default: float | None = None) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


class MetricTool:
    """One metric entry, checked when it is read; called once per pair (``__call__``)."""

    def __init__(self, data: dict[str, Any]):
        self._version: str | None = None
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; a metric entry has {', '.join(KEYS)}")
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise ValueError(f"missing key(s) {', '.join(missing)}")
        self.name = _string(data, "name")
        if not NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} is not lower-case letters, digits and _ (a letter first)")
        self.direction = _string(data, "direction")
        if self.direction not in (HIGHER, LOWER):
            raise ValueError(f"direction {self.direction!r} is not {HIGHER} or {LOWER}")
        self.cost = _string(data, "cost", "moderate")
        if self.cost not in COSTS:
            raise ValueError(f"cost {self.cost!r} is not one of {', '.join(COSTS)}")
        groups = data.get("groups", [])
        if not (isinstance(groups, list) and all(isinstance(g, str) and NAME.fullmatch(g) for g in groups)):
            raise ValueError(f"groups must be a list of names, got {groups!r}")
        if "all" in groups:
            raise ValueError("groups cannot hold 'all' (it means every metric)")
        self.groups = tuple(groups)
        self.timeout = _number(data, "timeout", DEFAULT_TIMEOUT)
        if self.timeout <= 0:
            raise ValueError(f"timeout {self.timeout:g} must be positive")
        self.ceiling = _number(data, "ceiling")
        self.install = _string(data, "install", "install it or put it on PATH")
        self.version_pattern = _string(data, "version_pattern", DEFAULT_VERSION_PATTERN)
        try:
            re.compile(self.version_pattern)
        except re.error as exc:
            raise ValueError(
                f"version_pattern {self.version_pattern!r} is not a regular expression: {exc}"
            ) from None
        fmt = data["format"]
        if not isinstance(fmt, dict | str):
            raise TypeError(f"format must be a string or a table, got {fmt!r}")
        self.image, self.yuv = image_format(fmt if isinstance(fmt, dict) else {"image": fmt})
        self._read(data["read"])
        self.command = argv_template("command", data["command"])
        self.version_command = argv_template("version", data["version"])
        self._check_templates()
        self.metric = Metric(
            name=self.name,
            label=_string(data, "label"),
            doc=_string(data, "doc"),
            unit=_string(data, "unit", "", empty=True),
            direction=self.direction,
            compute=self,
            reads=self._reads(),
            version=self._definition(data),
            requires=tuple(PROGRAMS[p][1] for p in self._programs() if p in PROGRAMS),
            cost=self.cost,
            groups=self.groups,
            probe=self.probe,
            tool_version=self.version,
            ceiling=self.ceiling,
        )

    def _read(self, read: Any) -> None:
        if not isinstance(read, dict):
            raise TypeError(f"read must be a table (source and regex, or source and json), got {read!r}")
        unknown = sorted(set(read) - {"source", "regex", "json"})
        if unknown:
            raise ValueError(f"unknown read key(s) {', '.join(unknown)}; read has source, regex, json")
        self.source = read.get("source")
        if self.source not in SOURCES:
            raise ValueError(f"read.source {self.source!r} is not one of {', '.join(SOURCES)}")
        if ("regex" in read) == ("json" in read):
            raise ValueError("read needs one of regex (its first group is the number) and json (a key path)")
        self.regex: re.Pattern[str] | None = None
        self.json_path: tuple[str, ...] = ()
        if "regex" in read:
            try:
                self.regex = re.compile(_string(read, "regex"))
            except re.error as exc:
                raise ValueError(f"read.regex {read['regex']!r} is not a regular expression: {exc}") from None
            if not self.regex.groups:
                raise ValueError(f"read.regex {read['regex']!r} has no group (the number is its first)")
        else:
            self.json_path = tuple(_string(read, "json").split("."))
            if not all(self.json_path):
                raise ValueError(f"read.json {read['json']!r} is not a dotted key path (a.b.0)")

    def _check_templates(self) -> None:
        check_program("command", self.command[0])
        used = placeholders(self.command[1:])
        unknown = sorted(used - FIELDS)
        if unknown:
            raise ValueError(
                f"command uses unknown placeholder(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(FIELDS))}"
            )
        if not {"reference", "distorted"} <= used:
            raise ValueError("command must pass both {reference} and {distorted}")
        if self.source == "output" and "output" not in used:
            raise ValueError('read.source = "output" needs {output} in the command')
        check_program("version", self.version_command[0])
        if placeholders(self.version_command[1:]):
            raise ValueError("the version command takes no placeholder after its program")

    def _definition(self, data: dict[str, Any]) -> str:
        """8 hex of sha256 over what defines the value (command, files, reading): a changed entry makes
        its stored values stale."""
        defining = {key: data[key] for key in ("command", "format", "read")}
        return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:8]

    def _reads(self) -> str:
        if self.yuv is None:
            return f"8-bit RGB as {self.image.upper()} files"
        yuv = self.yuv
        return (
            f"8-bit RGB as raw YUV {yuv.subsampling} {yuv.matrix} {yuv.range}-range {yuv.bitdepth}-bit files"
        )

    def _programs(self) -> list[str]:
        return list(dict.fromkeys((self.command[0], self.version_command[0])))

    def probe(self) -> str | None:
        """Why the metric cannot run here (a missing program, a version command that does not run), or
        None."""
        for program in self._programs():
            reason = missing(program, self.install)
            if reason:
                return one_line(reason)
        try:
            self.version()
        except ToolError as exc:
            return f"its version command does not run: {exc}"
        return None

    def version(self) -> str:
        """The version command's first match of ``version_pattern`` (group 1 if it has one), run once per
        process."""
        if self._version is None:
            argv = [resolved(self.version_command[0])] + [e.format() for e in self.version_command[1:]]
            with tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-") as folder:
                text = tool_output(argv, Path(folder), VERSION_TIMEOUT)
            self._version = version_in(text, self.version_pattern)
        return self._version

    def __call__(self, reference: np.ndarray, distorted: np.ndarray) -> float:
        """The tool's number for one pair; MetricUndefined, in one line, for a tool that fails, hangs past
        its timeout or prints no number."""
        height, width = reference.shape[:2]
        with tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-") as name:
            folder = Path(name)
            files = {key: folder / f"{key}.{self.image}" for key in ("reference", "distorted")}
            write_image(files["reference"], reference, self.image, self.yuv)
            write_image(files["distorted"], distorted, self.image, self.yuv)
            output = folder / ("output.json" if self.json_path else "output.txt")
            fields = files | {"output": output, "width": width, "height": height}
            argv = [resolved(self.command[0])] + [e.format(**fields) for e in self.command[1:]]
            tool = os.path.basename(argv[0])
            try:
                run_tool(argv, folder, self.timeout, max_file_bytes=FILE_LIMIT_BYTES)
            except ToolError as exc:
                raise MetricUndefined(str(exc)) from None
            path = (
                folder / {"stdout": "stdout.txt", "stderr": "stderr.txt", "output": output.name}[self.source]
            )
            if not path.is_file():
                raise MetricUndefined(f"{tool} exited with status 0 but wrote no {path.name}")
            return self._value(path.read_bytes().decode("utf-8", "replace"), f"{tool}'s {self.source}")

    def _value(self, text: str, where: str) -> float:
        tail = one_line(" ".join(text.split())[-TAIL_CHARS:]) or "(empty)"
        if self.regex is not None:
            found = self.regex.search(text)
            if found is None:
                raise MetricUndefined(f"{where} does not match {self.regex.pattern!r}: {tail}")
            value: Any = found.group(1)
        else:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise MetricUndefined(f"{where} is not JSON ({exc}): {tail}") from None
            for depth, key in enumerate(self.json_path):
                if isinstance(value, dict) and key in value:
                    value = value[key]
                elif isinstance(value, list) and key.isdecimal() and int(key) < len(value):
                    value = value[int(key)]
                else:
                    raise MetricUndefined(f"{where} has no {'.'.join(self.json_path[: depth + 1])}: {tail}")
        number = math.nan
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and self.regex is not None:
            try:
                number = float(value)
            except ValueError:
                pass
        if math.isnan(number):
            raise MetricUndefined(
                f"{where} gives {one_line(repr(value))[:TAIL_CHARS]} where a number was expected"
            )
        return number


def load_metric_catalog(directory: Path | None = None, taken: Iterable[str] = ()) -> list[Metric]:
    """The metrics of the metrics folder ($BENCH_METRICS_DIR, else metrics/), in file-name order; a
    UserError naming the file for an entry that is not valid or whose name is ``taken`` or used twice."""
    directory = directory or metrics_dir()
    taken = set(taken)
    metrics: dict[str, Metric] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UserError(f"{path}: cannot read metric entry: {exc}") from None
        try:
            metric = MetricTool(data).metric
        except (ValueError, TypeError) as exc:
            raise UserError(one_line(f"{path}: {exc}")) from None
        if metric.name in taken:
            raise UserError(f"{path}: metric name {metric.name!r} is taken by a built-in metric or column")
        if metric.name in metrics:
            raise UserError(f"{path}: metric name {metric.name!r} is defined twice in {directory}")
        metrics[metric.name] = metric
    return list(metrics.values())
