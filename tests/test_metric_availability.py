"""Metrics that cannot run where the tasks run: left out of a default run with a note, refused when named
unless --skip-unavailable, answered by each Dask worker; and the default set itself."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench import measure_types, measures
from bench.cli import cli
from tests.conftest import plugin_package
from tests.test_dask import dask_cluster

PLUGIN = """
import os
import numpy as np
from bench.measures import HIGHER, Metric


def tool_here():
    return None if os.environ.get("FAKE_TOOL_HERE") else "the fake tool is not installed (install fake-tool)"


def difference(reference, reconstruction):
    return float(np.mean(reference != reconstruction))


NEEDS_TOOL = Metric(name="needs_tool", label="Needs a tool", direction=HIGHER, doc="a metric with a probe",
                    compute=difference, probe=tool_here, groups=("default", "fake"))
"""


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()[:96, :128]).save(folder / "astronaut.png")
    return folder


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch) -> None:
    """A package (on sys.path and PYTHONPATH) registering ``needs_tool``, in the default group, whose
    probe finds its tool only where $FAKE_TOOL_HERE is set (unset here)."""
    entries = {"needs_tool": "NEEDS_TOOL"}
    folder = plugin_package(tmp_path / "plugin", "toolmetric", PLUGIN, "bench.metrics", entries)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.delenv("FAKE_TOOL_HERE", raising=False)
    monkeypatch.setenv("BENCH_DEFAULT_METRICS", "psnr_rgb,needs_tool")
    measures.all_metrics.cache_clear()
    measure_types._probed.cache_clear()
    yield
    measures.all_metrics.cache_clear()
    measure_types._probed.cache_clear()


def run(photos: Path, out: Path, *extra: str):
    return CliRunner().invoke(
        cli,
        ["run", "--codecs", "jpeg", "--dataset", str(photos), "--qualities", "jpeg=50", "--executor", "inline",
         "--out", str(out), *extra],
    )  # fmt: skip


REASON = "metric needs_tool: the fake tool is not installed (install fake-tool)"


def test_an_unavailable_default_metric_is_left_out_with_a_note(plugin, photos, tmp_path):
    result = run(photos, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"left out: {REASON}" in result.output
    rows = pd.read_csv(tmp_path / "run" / "results.csv")
    assert rows["psnr_rgb"].notna().all() and rows["needs_tool"].isna().all()


@pytest.mark.parametrize("spec", ["psnr_rgb,needs_tool", "+fake", "needs_tool"])
def test_a_named_unavailable_metric_is_refused_up_front_unless_skipped(plugin, photos, tmp_path, spec):
    result = run(photos, tmp_path / "run", "--metrics", spec)
    assert result.exit_code == 2
    assert f"error: {REASON} (--skip-unavailable computes the others)" in result.output
    assert not (tmp_path / "run").exists()
    skipped = run(photos, tmp_path / "run", "--metrics", spec, "--skip-unavailable")
    if spec == "needs_tool":
        assert skipped.exit_code == 2 and "no available metric to compute" in skipped.output
    else:
        assert skipped.exit_code == 0, skipped.output
        assert f"left out: {REASON}" in skipped.output


def test_a_metric_whose_tool_is_here_is_computed(plugin, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TOOL_HERE", "1")
    result = run(photos, tmp_path / "run", "--metrics", "psnr_rgb,needs_tool")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "run" / "results.csv")["needs_tool"].gt(0).all()


@pytest.mark.slow
def test_dask_workers_say_which_metrics_they_can_compute(plugin, photos, tmp_path, monkeypatch):
    """The client has the tool, the worker does not: the worker's answer counts."""
    with dask_cluster(tmp_path, ()) as address:
        monkeypatch.setenv("FAKE_TOOL_HERE", "1")
        args = ("--executor", "dask", "--scheduler", address, "--metrics", "psnr_rgb,needs_tool")
        result = run(photos, tmp_path / "run", *args)
        assert result.exit_code == 2
        assert f"{REASON} (on 1 of the 1 Dask workers at {address})" in result.output
        result = run(photos, tmp_path / "run", *args, "--skip-unavailable")
        assert result.exit_code == 0, result.output
        assert pd.read_csv(tmp_path / "run" / "results.csv")["needs_tool"].isna().all()


def test_the_default_set_is_the_default_group_unless_the_environment_says(full_default_metrics, monkeypatch):
    default = measures.default_metrics()
    assert default == measures.groups()["default"]
    for name in ("psnr_rgb", "psnr_yuv10", "psnr_hvs", "psnr_hvs_m", "ciede2000", "ms_ssim_db"):
        assert name in default
    monkeypatch.setenv("BENCH_DEFAULT_METRICS", "+all")
    assert measures.default_metrics() == list(measures.all_metrics())
    monkeypatch.setenv("BENCH_DEFAULT_METRICS", "nonesuch")
    with pytest.raises(Exception, match=r"\$BENCH_DEFAULT_METRICS: no metric or group 'nonesuch'"):
        measures.default_metrics()


def test_every_default_metric_of_identical_images_is_its_ceiling(full_default_metrics):
    image = data.astronaut()[:200, :248]
    row = measures.compute(measures.default_metrics(), image, image.copy())
    for name in measures.default_metrics():
        ceiling = measures.all_metrics()[name].ceiling
        assert ceiling is not None, name
        if name == "vmaf":  # a still's VMAF stops short of 100: its ceiling is where it stops
            assert ceiling <= row[name] < ceiling + 0.005
        else:
            assert row[name] == pytest.approx(ceiling, abs=1e-9), name
