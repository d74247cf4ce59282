"""The timing protocol: repeats with the median kept, the --timing preset, times relative to a reference."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

import bench
from bench.cli import cli
from bench.runner import RunRequest, resolve
from bench.timing import NotRepeatableError, relative_times, timed_median

REPO = Path(__file__).resolve().parent.parent
MISBEHAVE = str(REPO / "tests" / "tools" / "misbehave.py")


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()[:192, :256]).save(folder / "astronaut.png")
    Image.fromarray(data.coffee()[:176, :224]).save(folder / "coffee.png")
    return folder


def test_timed_median_keeps_the_median_and_refuses_varying_output():
    calls = iter([b"same", b"same", b"same"])
    result, seconds = timed_median(lambda: next(calls), 3, lambda: None, "encode")
    assert result == b"same" and seconds >= 0
    with pytest.raises(NotRepeatableError, match="encode output differs between repeats 1 and 2 of 2"):
        timed_median(lambda: os.urandom(8), 2, lambda: None, "encode")


def test_timing_preset_records_its_settings_and_reports_relative_times(photos, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--codecs", "jpeg,jp2", "--dataset", str(photos), "--out", str(out), "--jobs", "2"]
    args += ["--qualities", "jpeg=50", "--qualities", "jp2=24", "--timing", "--repeat", "2"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "--timing runs one job (not 2)" in result.output and "sharing" not in result.output
    assert "enc_rel" in result.output and "rel = time / jp2's time on the same image" in result.output
    document = json.loads((out / "run.json").read_text())
    assert document["config"]["jobs"] == 1
    assert document["config"]["timing"] == {
        "repeat": 3,
        "warmup_per_task": True,
        "preset": True,
        "reference": "jp2",
    }
    rows = pd.read_csv(out / "results.csv")
    assert (rows["repeats"] == 3).all() and (rows["jobs"] == 1).all() and rows["error"].isna().all()
    relative = relative_times(rows, "jp2")
    assert (relative[relative.codec == "jp2"]["enc_rel"] == 1).all()
    assert (relative[relative.codec == "jpeg"]["enc_rel"] < 1).all()  # JPEG codes far faster than JPEG 2000
    # --config repeats the timing settings too
    again = bench.runner.request_from_run_json(out / "run.json")
    assert (again.repeat, again.timing, again.time_reference) == (3, True, "jp2")


def test_repeats_change_neither_bytes_nor_metrics(photos, tmp_path):
    kept = ["image", "codec", "quality", "bytes", "psnr_rgb", "psnr_y", "ms_ssim"]
    once, thrice = (
        bench.run(
            "jpeg,webp",
            str(photos),
            out=str(tmp_path / f"r{k}"),
            executor="inline",
            repeat=k,
            qualities={"jpeg": [40], "webp": [60]},
        )
        for k in (1, 3)
    )
    pd.testing.assert_frame_equal(once[kept], thrice[kept])
    assert (once["repeats"] == 1).all() and (thrice["repeats"] == 3).all()


def test_several_jobs_warn_and_bad_timing_requests_are_refused(photos):
    plan = resolve(RunRequest(codecs="jpeg", dataset=str(photos), jobs=2, repeat=2))
    assert any("2 jobs sharing" in note for note in plan.notes)
    assert plan.timing.repeat == 2 and plan.timing.reference is None  # jp2 is not in this run
    single = resolve(RunRequest(codecs="jpeg", dataset=str(photos), jobs=1))
    assert not any("sharing" in note for note in single.notes)
    for args, message in (
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--time-reference", "webp"], "--time-reference webp: not a codec of this run (jpeg)"),
    ):
        result = CliRunner().invoke(cli, ["run", "--codecs", "jpeg", "--dataset", str(photos), *args])
        assert result.exit_code == 2 and message in result.output


NOISY_TOML = """name = "noisy"
adapter = "subprocess"
description = "Test only: copies the PPM through, adding 16 random bytes at each call."
reference = "tests/tools/misbehave.py"
quality_label = "ignored"
qualities = [50]
encode = [{tool}, "{{output}}", "{{input}}"]
decode = [{tool}, "{{output}}", "{{input}}"]
format = {{ image = "ppm", bitstream = "ppm" }}
version = ["{python}", "--version"]
timeout = 60
"""


def test_codec_whose_output_varies_across_repeats_gives_an_error_row(photos, tmp_path, monkeypatch):
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    shutil.copy(REPO / "codecs" / "jpeg.toml", catalog)
    tool = f'"{sys.executable}", "{MISBEHAVE}", "noisy"'
    (catalog / "noisy.toml").write_text(NOISY_TOML.format(tool=tool, python=sys.executable))
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    rows = bench.run(
        "noisy,jpeg",
        str(photos),
        out=str(tmp_path / "run"),
        executor="inline",
        repeat=2,
        images=1,
        qualities={"noisy": [50], "jpeg": [50]},
    )
    noisy_row, jpeg_row = rows[rows.codec == "noisy"], rows[rows.codec == "jpeg"]
    assert (
        noisy_row["error"].item() == "NotRepeatableError: encode output differs between repeats 1 and 2 of 2"
    )
    assert jpeg_row["error"].isna().all() and (jpeg_row["bytes"] > 0).all()
