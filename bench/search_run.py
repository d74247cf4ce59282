"""The searches of a matched-rate, equal-quality or budget run (``--target-bpp``, ``--target``,
``--budget-bpp``), driven from the client.

Each search (one image and codec configuration; the whole dataset and one configuration for a budget)
asks bench.search for its next knob value; the probe is a task the executor runs (an encode; for an
equal-quality search also a decode and one metric) and the store records as it finishes (its probes
table, and the cache's). bench.search replays every search from the recorded probes, so a resumed or
cached search encodes nothing twice and ends on the same rows. A decided search becomes one task per
target (the row, timed and scored as any other) or, for a target out of reach, a row without
measurements that says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench import measures
from bench.datasets import ImageInfo
from bench.knob import Knob
from bench.rundir import CodecRecord
from bench.search import Goal, Result, search
from bench.store import ProbeKey, Store
from bench.targets import BUDGET, QUALITY, Target
from bench.worker import Task, base_row

MAX_PROBES = 30  # per target; a search that needs more keeps its best point with a note


class ProbeFailed(Exception):
    """A probe the search needs failed (the codec's error) or gave no value (an undefined metric)."""


@dataclass
class Search:
    """One search: its codec configuration and knob, its images (one; all for a budget), its targets."""

    codec: CodecRecord
    knob: Knob
    images: list[ImageInfo]
    targets: list[Target]
    waiting: set[ProbeKey] = field(default_factory=set)  # probes in flight it needs


def goal(target: Target, tolerance: float) -> Goal:
    """The bench.search goal of a target."""
    if target.kind == QUALITY:
        higher = measures.all_metrics()[target.metric].direction == measures.HIGHER
        return Goal("quality", target.value, higher_is_better=higher)
    return Goal(target.kind, target.value, tolerance=tolerance)


def out_of_reach_quality(knob: Knob, target: Target) -> float:
    """The quality an unreachable target's row names: the knob's end the search could not pass (its
    lowest rate for a rate or budget target, its highest for an equal-quality one)."""
    lowest_rate, highest_rate = knob.rate_ends
    return highest_rate if target.kind == QUALITY else lowest_rate


class Searches:
    """Every search of a run; ``start`` and ``record`` hand out the tasks and rows to run and store."""

    def __init__(
        self,
        targets: list[Target],
        tolerance: float,
        images: list[ImageInfo],
        codecs: list[CodecRecord],
        knobs: dict[str, Knob],
        store: Store,
        cache: Store | None,
        make_task: Callable[[ImageInfo, CodecRecord, float], Task],
    ):
        self.targets, self.tolerance, self.make_task = targets, tolerance, make_task
        self.goals = [goal(target, tolerance) for target in targets]
        self.store, self.cache = store, cache
        self.recorded = store.probes()
        self.cached = cache.probes() if cache is not None else {}
        self.pixels = {image.sha256: image.width * image.height for image in images}
        budget = targets[0].kind == BUDGET
        self.searches = [
            Search(codec, knobs[codec.config_hash], group, targets)
            for codec in codecs
            for group in ([images] if budget else [[image] for image in images])
        ]
        self.in_flight: set[ProbeKey] = set()
        self.probes_run = 0  # probes encoded by this run
        self.probes_reused = 0  # probes taken from the cache
        self.probe_s = 0.0  # seconds the probes run now took in the workers

    @property
    def metric(self) -> str | None:
        """The metric an equal-quality search probes."""
        return self.targets[0].metric if self.targets[0].kind == QUALITY else None

    def start(self) -> tuple[list[Task], list[dict[str, Any]], list[Task]]:
        """Every search advanced as far as the recorded probes take it: (the tasks of decided targets,
        the rows of targets out of reach or whose search failed, the probes to run)."""
        return self._advance(self.searches)

    def record(self, row: dict[str, Any]) -> tuple[list[Task], list[dict[str, Any]], list[Task]]:
        """A probe's row: recorded, and the searches that waited for it advanced (as ``start``)."""
        key = (row["image_sha256"], row["codec"], row["config_hash"], float(row["quality"]))
        scores = {}
        if self.metric is not None and self.metric in row:
            versions = json.loads(row.get(measures.VERSIONS_COLUMN) or "{}")
            scores[self.metric] = [row[self.metric], versions.get(self.metric)]
        entry = (row.get("bytes"), scores, row.get("error"))
        for store in (self.store, self.cache):
            if store is not None:
                store.add_probe(key, *entry)
        self.recorded[key] = self._merged(self.recorded.get(key), entry)
        self.in_flight.discard(key)
        self.probes_run += 1
        self.probe_s += row.get("probe_s") or 0.0
        waiting = [s for s in self.searches if key in s.waiting]
        for waiter in waiting:
            waiter.waiting.discard(key)
        return self._advance([s for s in waiting if not s.waiting])

    @staticmethod
    def _merged(old: tuple | None, new: tuple) -> tuple:
        return new if old is None else (new[0], old[1] | new[1], new[2])

    def _advance(self, searches: Sequence[Search]) -> tuple[list[Task], list[dict[str, Any]], list[Task]]:
        tasks: list[Task] = []
        rows: list[dict[str, Any]] = []
        probes: list[Task] = []
        for one in searches:
            missing: list[ProbeKey] = []
            try:
                outcome = search(
                    one.knob,
                    self.goals,
                    one.codec.entry.qualities,
                    lambda x, one=one, missing=missing: self._value(one, x, missing),
                    MAX_PROBES,
                )
            except ProbeFailed as exc:
                rows += self._failed(one, str(exc))
                continue
            if isinstance(outcome, list):
                decided = self._decided(one, outcome)
                tasks += [item for item in decided if isinstance(item, Task)]
                rows += [item for item in decided if isinstance(item, dict)]
                continue
            one.waiting = set(missing)
            for key in missing:
                if key not in self.in_flight:
                    self.in_flight.add(key)
                    image = next(i for i in one.images if i.sha256 == key[0])
                    probes.append(self._probe_task(image, one.codec, key[3]))
        return tasks, rows, probes

    def _probe_task(self, image: ImageInfo, codec: CodecRecord, quality: float) -> Task:
        names = measures.with_sources([self.metric]) if self.metric else []
        return replace(
            self.make_task(image, codec, quality), probe=True, metrics=tuple(names), keep_bitstream=False
        )

    def _probe(self, key: ProbeKey) -> tuple | None:
        """A recorded probe usable for this run's searches, from the run's store or else the cache."""
        for source, reused in ((self.recorded, False), (self.cached, True)):
            entry = source.get(key)
            if entry is None or not self._usable(entry):
                continue
            if reused:
                self.store.add_probe(key, *entry)
                self.recorded[key] = self._merged(self.recorded.get(key), entry)
                self.probes_reused += 1
            return entry
        return None

    def _usable(self, entry: tuple) -> bool:
        """A failed probe is final; a quality probe needs its metric at today's version."""
        size, scores, error = entry
        if error:
            return True
        if self.metric is None:
            return size is not None
        value = scores.get(self.metric)
        return value is not None and value[1] == measures.all_metrics()[self.metric].current_version()

    def _value(self, one: Search, quality: float, missing: list[ProbeKey]) -> float | None:
        """What the search measures at ``quality`` (bpp, corpus bpp or metric value), or None (the
        probes it needs are listed in ``missing``)."""
        keys = [(image.sha256, one.codec.name, one.codec.config_hash, float(quality)) for image in one.images]
        entries = [self._probe(key) for key in keys]
        missing += [key for key, entry in zip(keys, entries) if entry is None]
        if missing:
            return None
        for key, (_, _, error) in zip(keys, entries):
            if error:
                raise ProbeFailed(f"search probe at quality {quality:g} failed: {error}")
        if self.metric is not None:
            value = float(entries[0][1][self.metric][0])
            if math.isnan(value):
                raise ProbeFailed(f"search probe at quality {quality:g}: {self.metric} is undefined")
            return value
        total_bytes = sum(entry[0] for entry in entries)
        return total_bytes * 8 / sum(self.pixels[key[0]] for key in keys)

    def _decided(self, one: Search, results: list[Result]) -> list[Task | dict[str, Any]]:
        """A decided search's targets: a task per image at the chosen quality, or a row out of reach."""
        decided: list[Task | dict[str, Any]] = []
        for target, result in zip(self.targets, results):
            columns = {
                "target": target.label,
                "target_met": int(result.done.met),
                "probes": result.probes,
                "target_note": result.done.note,
            }
            for image in one.images:
                if result.done.knob is None:
                    quality = out_of_reach_quality(one.knob, target)
                    decided.append(base_row(self.make_task(image, one.codec, quality)) | columns)
                else:
                    task = self.make_task(image, one.codec, float(result.done.knob))
                    decided.append(replace(task, target=target.label, search=columns))
        return decided

    def _failed(self, one: Search, error: str) -> list[dict[str, Any]]:
        """The rows of a search that cannot go on: an error row per target and image."""
        rows = []
        for target in self.targets:
            quality = out_of_reach_quality(one.knob, target)
            for image in one.images:
                task = self.make_task(image, one.codec, quality)
                rows.append(base_row(task) | {"target": target.label, "error": error[:500]})
        return rows
