"""Timing protocol: repeated timed calls with the median kept, and times relative to a reference codec."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_REFERENCE = "jp2"
TIMING_PRESET_REPEAT = 3


@dataclass(frozen=True)
class TimingPlan:
    """How a run times its calls; recorded in run.json under config.timing."""

    repeat: int = 1  # timed encodes and decodes per task; the median is kept
    warmup_per_task: bool = False  # an untimed round trip of each task before its timed calls
    preset: bool = False  # --timing
    reference: str | None = DEFAULT_REFERENCE  # codec the relative times divide by; None: not in the run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_timing(
    repeat: int | None, preset: bool, reference: str | None, jobs: int, codecs: list[str], cores: int
) -> tuple[TimingPlan, int, list[str]]:
    """The timing plan, the jobs to run with (--timing forces 1) and notes for the user.

    Raises ValueError for a repeat under 1 or a reference (named explicitly) that is not in the run.
    """
    if repeat is not None and repeat < 1:
        raise ValueError("--repeat must be at least 1")
    notes = []
    if preset:
        repeat = max(repeat or TIMING_PRESET_REPEAT, TIMING_PRESET_REPEAT)
        if jobs > 1:
            notes.append(f"--timing runs one job (not {jobs}), so that no two codec calls share the cores")
        jobs = 1
    elif jobs > 1:
        notes.append(
            f"times are taken with {jobs} jobs sharing {cores} core(s) and may be inflated; "
            "--timing runs one job with a warm-up and 3 repeats per task"
        )
    if reference is not None and reference not in codecs:
        raise ValueError(f"--time-reference {reference}: not a codec of this run ({', '.join(codecs)})")
    if reference is None:
        reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in codecs else None
    plan = TimingPlan(repeat=repeat or 1, warmup_per_task=preset, preset=preset, reference=reference)
    return plan, jobs, notes


class NotRepeatableError(RuntimeError):
    """A codec call whose output differs from one repetition to the next."""


def _same(first: Any, other: Any) -> bool:
    if isinstance(first, np.ndarray):
        return isinstance(other, np.ndarray) and first.shape == other.shape and np.array_equal(first, other)
    return bytes(first) == bytes(other)


def timed_median(
    call: Callable[[], Any], repeat: int, sync: Callable[[], None], what: str
) -> tuple[Any, float]:
    """Run ``call`` ``repeat`` times, each timed with perf_counter up to ``sync()``.

    Returns the first result and the median time. Raises NotRepeatableError if a repetition returns
    other bytes (or pixels) than the first: repeating must not change what is measured.
    """
    result, times = None, []
    for index in range(repeat):
        start = time.perf_counter()
        output = call()
        sync()
        times.append(time.perf_counter() - start)
        if index == 0:
            result = output
        elif not _same(result, output):
            raise NotRepeatableError(f"{what} output differs between repeats 1 and {index + 1} of {repeat}")
    return result, statistics.median(times)


def relative_times(rows: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Rows with ``enc_rel`` and ``dec_rel``: each time over the reference codec's median on that image.

    The reference's median runs over its qualities on the same image in the same run; rows of images
    the reference did not code get NaN.
    """
    ok = rows[rows["error"].isna()]
    medians = ok[ok["codec"] == reference].groupby("image")[["enc_s", "dec_s"]].median()
    joined = rows.join(medians, on="image", rsuffix="_ref")
    return rows.assign(
        enc_rel=joined["enc_s"] / joined["enc_s_ref"], dec_rel=joined["dec_s"] / joined["dec_s_ref"]
    )


def relative_table(rows: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per codec: median encode/decode ms and MP/s, and median time relative to ``reference``."""
    ok = relative_times(rows, reference)
    ok = ok[ok["error"].isna()].assign(enc_ms=ok["enc_s"] * 1e3, dec_ms=ok["dec_s"] * 1e3)
    columns = ["enc_ms", "dec_ms", "enc_mps", "dec_mps", "enc_rel", "dec_rel"]
    table = ok.groupby("codec")[columns].median()
    return table.assign(tasks=ok.groupby("codec").size())[["tasks", *columns]].reset_index()
