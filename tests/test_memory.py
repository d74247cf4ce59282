"""Peak RSS of codec calls: clear_refs / VmHWM on Linux, NaN for calls that run external tools."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

import bench
from bench.adapters import tool
from bench.memory import peak_rss, reset_peak, status_mb
from tests.conftest import require_binary

MB = 1e6


def build_200_mb() -> float:
    """Allocate and touch a 200 MB array (np.ones writes every page), then free it."""
    array = np.ones(int(200 * MB) // 8)
    return float(array[:: 4096 // 8].sum())


@pytest.fixture()
def linux_peak():
    if not reset_peak():
        pytest.skip("/proc/self/clear_refs is not writable here (not Linux?)")


def test_peak_of_a_call_includes_what_it_allocates_and_is_reset_between_calls(linux_peak):
    baseline = status_mb("VmRSS")
    _, peak = peak_rss(build_200_mb)
    assert peak - baseline >= 195  # the array, give or take pages freed meanwhile
    _, small = peak_rss(lambda: sum(range(1000)))  # the 200 MB peak is not carried over
    assert baseline - 20 < small < baseline + 50


def test_a_call_that_runs_a_tool_is_not_measured(tmp_path, linux_peak):
    _, peak = peak_rss(lambda: tool.run_tool([sys.executable, "-c", "pass"], tmp_path, 60))
    assert math.isnan(peak)


def test_rows_carry_plausible_peaks_for_in_process_codecs_and_nan_for_tools(tmp_path, linux_peak):
    require_binary("cjpeg")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()).save(photos / "astronaut.png")
    rows = bench.run(
        "jpeg,cjpeg",
        str(photos),
        out=str(tmp_path / "run"),
        executor="inline",
        qualities={"jpeg": [75], "cjpeg": [75]},
    ).set_index("codec")
    assert rows["error"].isna().all()
    for column in ("enc_peak_rss_mb", "dec_peak_rss_mb"):
        # this process's peak (Python, numpy, the image) during the call: tens to hundreds of MB
        assert 10 < rows.loc["jpeg", column] < 20_000
        assert math.isnan(rows.loc["cjpeg", column])
    assert rows[["enc_gpu_peak_mb", "dec_gpu_peak_mb"]].isna().all().all()  # on the CPU: no GPU peak
