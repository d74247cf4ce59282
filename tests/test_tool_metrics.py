"""Metrics from external tools (bench.tool_metrics): Butteraugli by libjxl's butteraugli_main and VMAF by
libvmaf in imageio-ffmpeg's ffmpeg, against the field's reference pair (kodim01 vs Pillow's quality-50
JPEG of it); a missing tool's reason; a tool that fails, hangs or prints garbage as a one-line error."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bench import measure_types, measures, metrics, tool_metrics
from bench.adapters import tool
from bench.adapters.tool import ToolError
from bench.adapters.yuv import rgb_to_planes
from bench.errors import UserError
from tests.conftest import require_binary, skip_or_fail


@pytest.fixture(scope="module")
def butteraugli_main() -> str:
    return require_binary("butteraugli_main")


@pytest.fixture(scope="module")
def libvmaf() -> None:
    reason = tool_metrics.vmaf_unavailable()
    if reason:
        skip_or_fail(reason)


@pytest.fixture
def fresh_probes():
    """Metric.unavailable() asked anew (its answers are cached per process), before and after the test."""
    measure_types._probed.cache_clear()
    yield
    measure_types._probed.cache_clear()


def fake(folder: Path, name: str, body: str) -> Path:
    """An executable shell script ``name`` in ``folder``."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def one_line_error(call, *args) -> str:
    with pytest.raises(ToolError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_butteraugli_of_kodim01_against_pillow_q50_jpeg_runs_the_tool_once(butteraugli_main, kodim01_q50):
    """Debian's libjxl 0.7 prints 3.4766368866 and 3-norm: 1.636786 for this pair."""
    measures.all_metrics()["butteraugli"].current_version()  # asks cjxl for libjxl's version, once
    started = tool.started
    row = measures.compute(["butteraugli", "butteraugli_3n"], *kodim01_q50)
    assert tool.started == started + 1  # one run gave both distances
    assert round(row["butteraugli"], 4) == 3.4766 and round(row["butteraugli_3n"], 4) == 1.6368
    assert row["metric_notes"] == {}


def test_butteraugli_identical_images_give_0(butteraugli_main, kodim01_q50):
    original = kodim01_q50[0]
    assert tool_metrics.butteraugli_family(original, original.copy()) == {
        "butteraugli": 0.0,
        "butteraugli_3n": 0.0,
    }


def test_butteraugli_is_undefined_under_8_px_where_the_tool_reports_0(butteraugli_main):
    image = np.random.default_rng(0).integers(0, 256, (7, 40, 3), dtype=np.uint8)
    row = measures.compute(["butteraugli", "butteraugli_3n"], image, image[::-1].copy())
    assert math.isnan(row["butteraugli"]) and math.isnan(row["butteraugli_3n"])
    assert "40x7 has a side under 8 px" in row["metric_notes"]["butteraugli"]
    square = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert tool_metrics.butteraugli_family(square, square[::-1].copy())["butteraugli"] > 1


def test_butteraugli_heatmap_is_black_for_identical_images_and_bright_where_the_distortion_is(
    butteraugli_main, kodim01_q50
):
    original, jpeg = kodim01_q50
    assert not tool_metrics.butteraugli_heatmap(original, original.copy()).any()
    half = original.copy()
    half[:, :384] = jpeg[:, :384]  # only the left half distorted
    heatmap = tool_metrics.butteraugli_heatmap(original, half)
    assert heatmap.shape == original.shape and heatmap.dtype == np.uint8
    brightness = heatmap.astype(np.float64).sum(axis=2)
    assert brightness[:, :384].mean() > 100 > 10 * brightness[:, 400:].mean()


def test_libjxl_version_is_that_of_cjxl_beside_butteraugli_main(butteraugli_main, tmp_path, monkeypatch):
    cjxl = require_binary("cjxl")
    printed = subprocess.run([cjxl, "--version"], capture_output=True, text=True, check=True).stdout
    assert (
        measures.all_metrics()["butteraugli"].current_version()
        == "1+libjxl-" + re.search(r"v(\d+\.\d+\.\d+)", printed)[1]
    )
    fake(tmp_path, "butteraugli_main", "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tool_metrics.libjxl_version() == "unknown"  # no cjxl, no djxl beside it
    fake(tmp_path, "djxl", "echo 'JPEG XL decoder v0.11.1 794a5dcf [AVX2,SSE4,SSE2]'")
    assert tool_metrics.libjxl_version() == "libjxl-0.11.1"


def test_missing_butteraugli_main_is_one_reason_with_the_install_hint(tmp_path, monkeypatch, fresh_probes):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = tool_metrics.butteraugli_unavailable()
    assert reason == (
        "the butteraugli metrics need butteraugli_main, not found on PATH: install libjxl's devtools "
        "(Debian, Ubuntu: apt install libjxl-devtools)"
    )
    with pytest.raises(UserError) as caught:
        measures.check_available(["psnr_rgb", "butteraugli", "butteraugli_3n"])
    assert str(caught.value) == f"metrics butteraugli, butteraugli_3n: {reason}"  # once for both
    assert measures.all_metrics()["butteraugli"].current_version() == "1"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "echo 'Failed to read image from ref.png' >&2; exit 1",
            "exited with status 1: Failed to read image",
        ),
        ("exec sleep 30", "timed out after 1 s"),
        ("printf 'hello\\nworld\\n'", "printed no distance and 3-norm: hello world"),
        ("printf 'nan\\n3-norm: 1.0\\n'", "printed no distance and 3-norm: nan 3-norm: 1.0"),
    ],
)
def test_a_failing_butteraugli_main_is_a_one_line_error(body, expected, tmp_path, monkeypatch):
    fake(tmp_path, "butteraugli_main", body)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(tool_metrics, "TIMEOUT_S", 1.0)
    image = np.zeros((16, 16, 3), np.uint8)
    assert expected in one_line_error(tool_metrics.butteraugli_family, image, image + 1)


def test_a_heatmap_butteraugli_main_did_not_write_is_a_one_line_error(tmp_path, monkeypatch):
    fake(tmp_path, "butteraugli_main", "printf '1.5\\n3-norm: 0.7\\n'")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    image = np.zeros((16, 16, 3), np.uint8)
    message = one_line_error(tool_metrics.butteraugli_heatmap, image, image + 1)
    assert message.startswith("butteraugli_main wrote no readable heat map: ")


def test_vmaf_of_kodim01_against_pillow_q50_jpeg(libvmaf, kodim01_q50):
    """88.951 from BT.709 full-range 4:4:4 planes; the model reads luma only, so JPEG AI's conversion (chroma
    offset 127.5) gives the same; the pictures swapped (the reference as ffmpeg's first input) give 92.140."""
    original, jpeg = kodim01_q50
    row = measures.compute(["vmaf"], original, jpeg)
    assert row["vmaf"] == pytest.approx(88.951, abs=0.01) and row["metric_notes"] == {}
    h273 = [rgb_to_planes(image, tool_metrics.VMAF_YUV) for image in kodim01_q50]
    jpeg_ai = [list(metrics.yuv_planes(image, 8)) for image in kodim01_q50]
    assert np.array_equal(h273[0][0], jpeg_ai[0][0]) and not np.array_equal(h273[0][1], jpeg_ai[0][1])
    score, version = tool_metrics.vmaf_of_planes(*jpeg_ai)
    assert score == row["vmaf"] and row["metric_versions"]["vmaf"] == f"1+libvmaf-{version}"
    swapped = tool_metrics.vmaf_of_planes(h273[1], h273[0])
    assert swapped[0] == pytest.approx(92.140, abs=0.01)


def test_vmaf_of_identical_images_is_97_43_its_ceiling_for_stills(libvmaf, kodim01_q50):
    """One frame has motion 0: VMAF v0.6.1's model gives about 97.43 for identical pictures, under 100;
    that is the ceiling BD skips points at."""
    original = kodim01_q50[0]
    assert tool_metrics.vmaf(original, original.copy()) == pytest.approx(97.4285, abs=0.001)
    assert measures.all_metrics()["vmaf"].ceiling == 97.428


def test_vmaf_takes_odd_sizes_and_is_undefined_under_17_px(libvmaf, kodim01_q50):
    original, jpeg = kodim01_q50
    assert tool_metrics.vmaf(original[:511, :767], jpeg[:511, :767]) == pytest.approx(88.97, abs=0.05)
    assert 0 < tool_metrics.vmaf(original[:17, :17], jpeg[:17, :17]) < 100
    row = measures.compute(["vmaf"], original[:16, :300], jpeg[:16, :300])
    assert math.isnan(row["vmaf"]) and "300x16 has a side under 17 px" in row["metric_notes"]["vmaf"]


def test_ffmpeg_without_libvmaf_is_the_probes_reason(tmp_path, monkeypatch, fresh_probes):
    ffmpeg = fake(tmp_path, "ffmpeg", "echo \"[AVFilterGraph @ 0x1] No such filter: 'libvmaf'\" >&2; exit 8")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(ffmpeg))
    assert tool_metrics.vmaf_unavailable() == (
        "vmaf needs imageio-ffmpeg's ffmpeg with libvmaf: ffmpeg exited with status 8: "
        "[AVFilterGraph @ 0x1] No such filter: 'libvmaf'"
    )
    assert measures.all_metrics()["vmaf"].current_version() == "1"
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "none"))
    assert tool_metrics.vmaf_unavailable() == (
        "vmaf needs imageio-ffmpeg's ffmpeg with libvmaf: none could not be started: not found, or not an "
        "executable file"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("echo 'Conversion failed!' >&2; exit 1", "exited with status 1: Conversion failed!"),
        ("exec sleep 30", "timed out after 1 s"),
        ("exit 0", "ffmpeg wrote no readable libvmaf log: FileNotFoundError: "),
        ("printf '{\"frames\": [' > vmaf.json", "ffmpeg wrote no readable libvmaf log: JSONDecodeError: "),
        (
            "echo '{\"frames\": []}' > vmaf.json",
            "ffmpeg wrote no readable libvmaf log: ValueError: 0 frames, not 1",
        ),
        ('echo \'{"frames": [{"metrics": {}}]}\' > vmaf.json', "libvmaf log: KeyError: 'vmaf'"),
        ('echo \'{"frames": [{"metrics": {"vmaf": 150}}]}\' > vmaf.json', "VMAF 150.0, outside [0, 100]"),
    ],
)
def test_a_failing_ffmpeg_is_a_one_line_error(body, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake(tmp_path, "ffmpeg", body)))
    monkeypatch.setattr(tool_metrics, "TIMEOUT_S", 1.0)
    image = np.zeros((32, 32, 3), np.uint8)
    assert expected in one_line_error(tool_metrics.vmaf, image, image + 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_each_tool_metric_costs_under_a_second_single_threaded(
    butteraugli_main, libvmaf, kodim01_q50, record_property
):
    """The declared cost "moderate" (< 1 s for a 768x512 image), on one CPU (tools inherit the affinity)
    after a warm-up; `pytest -s` prints the seconds."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        seconds = {}
        for name in ("butteraugli", "butteraugli_3n", "vmaf"):
            measures.compute([name], *kodim01_q50)
            start = time.perf_counter()
            measures.compute([name], *kodim01_q50)  # butteraugli's spare 3-norm went to the warm-up
            seconds[name] = time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, cpus)
    record_property("seconds", seconds)
    print(" ".join(f"{name} {value:.3f} s" for name, value in seconds.items()))
    assert all(metric_s < 1.0 for metric_s in seconds.values()), seconds
