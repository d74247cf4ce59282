"""The Dask executor: a real LocalCluster and real worker processes, then a scheduler and workers started
as separate processes on loopback. Rows must equal the inline executor's (timings aside), one per task,
whatever dies."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from distributed import Client
from PIL import Image
from skimage import data

import bench
import bench.errors
from bench.catalog import CatalogEntry
from bench.cli import cli
from bench.request import RunRequest
from bench.runner import manifest, resolve
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


@contextlib.contextmanager
def dask_cluster(folder: Path, *workers: tuple[str, ...], cwd: Path | None = None) -> Iterator[str]:
    """A scheduler and one worker per argument (extra `dask worker` options), each a separate process
    on loopback (workers in ``cwd``); yields the scheduler's address once every worker has joined."""
    scheduler_file = folder / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    processes = [
        subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                          "--scheduler-file", str(scheduler_file)], stderr=subprocess.DEVNULL)
    ]  # fmt: skip
    try:
        _wait_for(scheduler_file)
        address = json.loads(scheduler_file.read_text())["address"]
        for options in workers:
            processes.append(
                subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                  "--no-dashboard", *options], stderr=subprocess.DEVNULL, cwd=cwd)
            )  # fmt: skip
        with Client(address, timeout=30) as client:
            client.wait_for_workers(len(workers), timeout=60)
        yield address
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_a_scheduler_and_workers_started_as_separate_processes(photos, inline_rows, tmp_path):
    with dask_cluster(tmp_path, (), ()) as address:
        out = tmp_path / "d"
        result = CliRunner().invoke(
            cli,
            ["run", "--codecs", CODECS, "--dataset", str(photos), "--executor", "dask", "--scheduler", address,
             "--qualities", "jpeg=30,70", "--qualities", "webp=50", "--qualities", "jp2=24", "--out", str(out)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "the client sends them" not in result.output  # the workers read the images themselves
        assert (
            f"note: the scheduler at {address} retries a task whose worker died 3 time(s) itself: a crashing "
            "codec can take down up to 12 workers per task" in result.output
        )  # dask's default allowed-failures, on a scheduler started without bench's settings
        with Store(out / "results.sqlite") as store:
            same_rows(inline_rows, store.frame())


def test_an_unreachable_scheduler_is_refused_in_one_line(photos, tmp_path):
    result = CliRunner().invoke(
        cli, ["run", "--codecs", "jpeg", "--dataset", str(photos), "--executor", "dask", "--scheduler",
              "tcp://127.0.0.1:9", "--out", str(tmp_path / "d")],
    )  # fmt: skip
    assert result.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    result = CliRunner().invoke(cli, ["run", "--codecs", "jpeg", "--scheduler", "tcp://127.0.0.1:9"])
    assert (
        result.exit_code == 2
        and "--scheduler, --task-timeout and --ship-images need --executor dask" in result.output
    )


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


def _copy_photos(photos: Path, folder: Path, flip: str | None = None) -> Path:
    """A copy of the photos folder under ``folder`` (same name); ``flip``: that image upside down."""
    copy = folder / photos.name
    copy.mkdir(parents=True)
    for path in photos.iterdir():
        image = Image.open(path)
        (image.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if path.name == flip else image).save(
            copy / path.name
        )
    return copy


RUN_ARGS = ["--codecs", CODECS, "--qualities", "jpeg=30,70", "--qualities", "webp=50", "--qualities", "jp2=24",
            "--executor", "dask"]  # fmt: skip


def test_workers_that_do_not_see_the_images_get_them_from_the_client(
    photos, inline_rows, tmp_path, monkeypatch
):
    """The client names the images (and the run directory) by paths relative to its folder; the
    workers run elsewhere. The kept bitstreams come back to the client's run directory too."""
    client_side = tmp_path / "client"
    _copy_photos(photos, client_side)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(client_side)
    with dask_cluster(tmp_path, (), (), cwd=tmp_path / "elsewhere") as address:
        result = CliRunner().invoke(
            cli,
            [
                "run",
                *RUN_ARGS,
                "--scheduler",
                address,
                "--dataset",
                photos.name,
                "--out",
                "d",
                "--keep-bitstreams",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "note: 2 Dask worker(s) do not see the images: the client sends them" in result.output
    with Store(client_side / "d" / "results.sqlite") as store:
        rows = store.frame()
    same_rows(inline_rows.drop(columns="bitstream_sha256"), rows.drop(columns="bitstream_sha256"))
    kept = sorted((client_side / "d" / "bitstreams").glob("*/*.bin"))
    assert sorted(p.stat().st_size for p in kept) == sorted(rows["bytes"])
    assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in kept) == sorted(
        rows["bitstream_sha256"]
    )
    assert not (tmp_path / "elsewhere" / "d").exists()  # nothing written on the workers' side


def test_a_worker_whose_file_holds_other_pixels_scores_nothing_unless_the_images_are_shipped(
    photos, inline_rows, tmp_path, monkeypatch
):
    """Workers whose folder has the same file names, one of them another picture: its tasks become
    error rows (the pixel hash differs), never scores against the wrong image; --ship-images mends it."""
    client_side = tmp_path / "client"
    _copy_photos(photos, client_side)
    _copy_photos(photos, tmp_path / "elsewhere", flip="astronaut.png")
    monkeypatch.chdir(client_side)
    with dask_cluster(tmp_path, (), (), cwd=tmp_path / "elsewhere") as address:
        read = CliRunner().invoke(cli, ["run", *RUN_ARGS, "--scheduler", address, "--dataset", photos.name,
                                        "--out", "read"])  # fmt: skip
        shipped = CliRunner().invoke(cli, ["run", *RUN_ARGS, "--scheduler", address, "--dataset", photos.name,
                                           "--out", "shipped", "--ship-images"])  # fmt: skip
    assert read.exit_code == 0 and shipped.exit_code == 0, read.output + shipped.output
    rows = Store(client_side / "read" / "results.sqlite").frame().set_index("image")
    assert rows.loc["coffee.png", "error"].isna().all()
    assert (
        rows.loc["astronaut.png", "error"]
        == f"ValueError: {photos.name}/astronaut.png: not the image the run was planned with (its pixel hash differs)"
    ).all()
    with Store(client_side / "shipped" / "results.sqlite") as store:
        same_rows(inline_rows, store.frame())


def test_tasks_that_ask_for_a_gpu_run_on_the_gpu_worker_which_loads_the_codec_once(
    photos, tmp_path, tools_on_path
):
    """A worker started with --resources GPU=1 and one without: the codec asking for GPU runs only on the
    first, which warms it up (loads its model) once for all its tasks; jpeg runs on both."""
    marker = tmp_path / "marks"
    marker.mkdir()
    gpu = entry("gpu", "tools.pinned:pinned", marker=str(marker), resource="GPU")
    gpu = CatalogEntry.from_dict(gpu.to_dict() | {"qualities": [20, 40, 60, 80]})
    jpeg = entry("jpeg", "imagecodecs.jpeg")
    with dask_cluster(tmp_path, ("--resources", "GPU=1"), ()) as address:
        with Client(address) as client:
            pids = client.run(os.getpid)
            gpu_pid = next(pids[a] for a, w in client.scheduler_info()["workers"].items() if w["resources"])
        rows = bench.run(
            None,
            str(photos),
            out=str(tmp_path / "d"),
            executor="dask",
            scheduler=address,
            entries=[gpu, jpeg],
        )
    assert len(rows) == 12 and rows["error"].isna().all()
    encodes = [int(p.name.split("-")[1]) for p in marker.glob("encode-*")]
    assert len(encodes) == 8 and set(encodes) == {gpu_pid}
    assert [int(p.name.split("-")[1]) for p in marker.glob("load-*")] == [gpu_pid]


def test_a_codec_that_needs_a_gpu_worker_is_refused_where_the_cluster_has_none(
    photos, tmp_path, tools_on_path
):
    gpu = entry("gpu", "tools.pinned:pinned", marker=str(tmp_path), resource="GPU")
    with dask_cluster(tmp_path, ()) as address, pytest.raises(bench.errors.UserError) as refused:
        bench.run(
            None, str(photos), out=str(tmp_path / "d"), executor="dask", scheduler=address, entries=[gpu]
        )
    assert str(refused.value) == (
        f"gpu is unavailable: it needs a Dask worker offering GPU=1; none of the 1 at {address} does "
        f"(start one with `dask worker {address} --resources GPU=1`) (--skip-unavailable runs the others)"
    )
    assert not (tmp_path / "d").exists()


def _stored(run_dir: Path) -> int:
    path = run_dir / "results.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not made yet
            return 0


@pytest.mark.parametrize("how", ["ctrl-c, LocalCluster", "kill -9, running cluster"])
def test_a_client_interrupted_mid_run_resumes_with_one_row_per_task(
    photos, tmp_path, tools_on_path, how, monkeypatch
):
    """bench run on Dask (a slow codec: 12 tasks), stopped once 2 rows are stored: by Ctrl-C (SIGINT to
    its process group, workers included) or by SIGKILL of the client alone while the cluster runs on.
    The same command again runs only what is missing; at the end one row per task."""
    slow = entry("slow", "tools.pinned:pinned", marker=str(tmp_path), sleep=0.4)
    slow = CatalogEntry.from_dict(slow.to_dict() | {"qualities": [10, 20, 30, 40, 50, 60]})
    catalog = tmp_path / "catalog"  # a run.json's module adapter runs only if the local catalog holds it
    catalog.mkdir()
    (catalog / "slow.toml").write_text(
        'name = "slow"\nadapter = "tools.pinned:pinned"\ndescription = "test"\nreference = "-"\n'
        'quality_label = "JPEG quality"\nqualities = [10, 20, 30, 40, 50, 60]\n'
    )
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    config = tmp_path / "run.json"  # the run.json of this configuration, as bench run writes it
    plan = resolve(RunRequest(dataset=str(photos), entries=[slow], jobs=2))
    config.write_text(json.dumps(manifest(plan).to_dict()))
    out = tmp_path / "d"
    with contextlib.ExitStack() as stack:
        command = [sys.executable, "-m", "bench.cli", "run", "--config", str(config), "--executor", "dask",
                   "--out", str(out)]  # fmt: skip
        if how.startswith("kill"):
            command += ["--scheduler", stack.enter_context(dask_cluster(tmp_path, (), ()))]
        else:
            command += ["--jobs", "2"]
        client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while _stored(out) < 2:
            assert client.poll() is None and time.monotonic() < deadline, client.communicate()
            time.sleep(0.1)
        if how.startswith("ctrl-c"):
            os.killpg(client.pid, signal.SIGINT)
            _, stderr = client.communicate(timeout=60)
            assert client.returncode == 130 and "bench: interrupted; finished tasks are stored in" in stderr
        else:
            client.kill()
            client.wait(timeout=30)
        before = _stored(out)
        assert 2 <= before < 12
        again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert f"{12 - before} task(s) run, {before} already stored" in again.stdout
    rows = Store(out / "results.sqlite").frame()
    assert len(rows) == 12 and rows["error"].isna().all()
    assert not rows.duplicated(["image", "quality"]).any()


def test_a_worker_with_other_library_versions_gives_error_rows(photos, tmp_path, monkeypatch):
    """Config hashes hold the planning machine's versions; a worker whose libraries differ must not
    add rows under them."""
    import dataclasses

    from bench.runner import RunRequest, _tasks, resolve
    from bench.worker import run_task

    plan = resolve(
        RunRequest(codecs="jpeg", dataset=str(photos), qualities={"jpeg": [50]}, out=str(tmp_path))
    )
    task = _tasks(plan)[0]
    planned = dict(task.versions)
    library = next(iter(planned))
    row = run_task(dataclasses.replace(task, versions=planned | {library: "0.0"}))
    assert row["error"] == (
        f"CodecUnavailable: jpeg is unavailable: its versions differ from the run's: {library} "
        f"{planned[library]} here, 0.0 planned"
    )
    assert run_task(task).get("error") is None


def test_a_local_cluster_offers_a_gpu_to_tasks_that_ask_for_one(photos, tmp_path, tools_on_path):
    """Without a scheduler, the LocalCluster's workers offer GPU=1 (they share this machine's GPUs) when
    a task asks for it; otherwise such tasks would wait for a worker forever."""
    gpu = entry("gpu", "tools.pinned:pinned", marker=str(tmp_path), resource="GPU")
    rows = bench.run(None, str(photos), out=str(tmp_path / "d"), executor="dask", jobs=2, entries=[gpu])
    assert len(rows) == 4 and rows["error"].isna().all()
