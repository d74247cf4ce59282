"""The Dask executor: a real LocalCluster and real worker processes, then a scheduler and workers started
as separate processes on loopback. Rows must equal the inline executor's (timings aside), one per task,
whatever dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

import bench
from bench.catalog import CatalogEntry
from bench.cli import cli
from bench.store import Store

TESTS = Path(__file__).resolve().parent
TIMING = [
    "enc_s",
    "dec_s",
    "enc_mps",
    "dec_mps",
    "metric_s",
    "load_s",
    "enc_peak_rss_mb",
    "dec_peak_rss_mb",
    "jobs",
]
CODECS = "jpeg,webp,jp2"
QUALITIES = {"jpeg": [30, 70], "webp": [50], "jp2": [24]}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()[:160, :224]).save(folder / "astronaut.png")
    Image.fromarray(data.coffee()[:160, :224]).save(folder / "coffee.png")
    return folder


@pytest.fixture(scope="module")
def inline_rows(photos, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("inline")
    return bench.run(CODECS, str(photos), out=str(out), executor="inline", qualities=QUALITIES)


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["image", "codec", "quality"]
    a = a.drop(columns=TIMING).sort_values(key).reset_index(drop=True)
    b = b.drop(columns=TIMING).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True)  # to the last digit


def entry(name: str, adapter: str, **options) -> CatalogEntry:
    return CatalogEntry.from_dict(
        {"name": name, "adapter": adapter, "description": "test", "reference": "-", "quality_label": "JPEG quality",
         "qualities": [30, 70], "options": options}
    )  # fmt: skip


@pytest.fixture
def tools_on_path(monkeypatch):
    """Worker processes import the test adapters (tools.crashy) from tests/."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.syspath_prepend(str(TESTS))


def test_local_cluster_gives_the_inline_rows(photos, inline_rows, tmp_path):
    rows = bench.run(
        CODECS, str(photos), out=str(tmp_path / "d"), executor="dask", jobs=2, qualities=QUALITIES
    )
    same_rows(inline_rows, rows)
    assert len(rows) == 8 and rows["error"].isna().all()


def test_a_worker_killed_mid_task_is_retried_elsewhere(photos, tmp_path, tools_on_path):
    once = entry("jpeg", "tools.crashy:once", marker=str(tmp_path))
    rows = bench.run(None, str(photos), out=str(tmp_path / "d"), executor="dask", jobs=2, entries=[once])
    assert len(rows) == 4 and rows["error"].isna().all()
    assert sorted(p.name for p in tmp_path.glob("q*")) == ["q30", "q70"]  # each quality killed a worker once


def test_a_codec_that_crashes_its_worker_every_time_becomes_error_rows(photos, tmp_path, tools_on_path):
    crashy, jpeg = entry("crashy", "tools.crashy:always"), entry("jpeg", "imagecodecs.jpeg")
    rows = bench.run(
        None, str(photos), out=str(tmp_path / "d"), executor="dask", jobs=2, entries=[crashy, jpeg]
    )
    assert len(rows) == 8  # one row per task, none lost, none duplicated
    errors = rows.set_index(["codec", "image"])["error"]
    assert errors.loc["jpeg"].isna().all()
    assert errors.loc["crashy"].str.startswith("WorkerDied: the task's worker process died 3 times").all()


def test_a_hanging_codec_is_cut_at_the_task_timeout_and_the_run_goes_on(photos, tmp_path, tools_on_path):
    hang, jpeg = entry("hang", "tools.crashy:hang"), entry("jpeg", "imagecodecs.jpeg")
    start = time.monotonic()
    rows = bench.run(
        None,
        str(photos),
        out=str(tmp_path / "d"),
        executor="dask",
        jobs=2,
        entries=[hang, jpeg],
        task_timeout=3,
    )
    assert time.monotonic() - start < 120  # 4 hanging tasks x 3 tries x 3 s, on 2 workers, plus restarts
    errors = rows.set_index(["codec", "image"])["error"]
    assert len(rows) == 8 and errors.loc["jpeg"].isna().all()
    assert errors.loc["hang"].str.contains("hang past --task-timeout").all()


def _wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def test_a_scheduler_and_workers_started_as_separate_processes(photos, inline_rows, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    processes = [
        subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                          "--scheduler-file", str(scheduler_file)], stderr=subprocess.DEVNULL)
    ]  # fmt: skip
    try:
        _wait_for(scheduler_file)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(
                subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                  "--no-dashboard"], stderr=subprocess.DEVNULL)
            )  # fmt: skip
        out = tmp_path / "d"
        result = CliRunner().invoke(
            cli,
            ["run", "--codecs", CODECS, "--dataset", str(photos), "--executor", "dask", "--scheduler", address,
             "--qualities", "jpeg=30,70", "--qualities", "webp=50", "--qualities", "jp2=24", "--out", str(out)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        with Store(out / "results.sqlite") as store:
            same_rows(inline_rows, store.frame())
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_an_unreachable_scheduler_is_refused_in_one_line(photos, tmp_path):
    result = CliRunner().invoke(
        cli, ["run", "--codecs", "jpeg", "--dataset", str(photos), "--executor", "dask", "--scheduler",
              "tcp://127.0.0.1:9", "--out", str(tmp_path / "d")],
    )  # fmt: skip
    assert result.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    result = CliRunner().invoke(cli, ["run", "--codecs", "jpeg", "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2 and "--scheduler and --task-timeout need --executor dask" in result.output


def test_a_second_run_into_the_same_directory_is_refused_while_the_first_runs(photos, tmp_path):
    """A run holds its directory's lock (here this test process does); another `bench run` process on
    the same --out is refused in one line, and runs once the lock is released."""
    from bench.runner import run_dir_lock

    out = tmp_path / "shared"
    command = [sys.executable, "-m", "bench.cli", "run", "--codecs", "jpeg", "--dataset", str(photos),
               "--qualities", "jpeg=50", "--executor", "inline", "--out", str(out)]  # fmt: skip
    with run_dir_lock(out):
        second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 2
    assert f"another bench run (pid {os.getpid()}) is writing to {out}" in second.stderr
    assert not (out / "results.sqlite").exists()  # refused before touching the store
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "2 task(s) run, 0 already stored" in again.stdout
