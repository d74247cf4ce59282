"""`bench run` end to end: real codecs over real images into a real SQLite store."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

import bench
from bench.cli import cli
from bench.store import columns
from tests.conftest import interrupt_when

TWO_JPEG_POINTS = ("--qualities", "jpeg=30,80")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run_two_points(folder: Path, out: Path, *extra: str, codecs: str = "jpeg"):
    """`bench run` of ``codecs`` at jpeg qualities 30 and 80 over ``folder`` into ``out``."""
    return invoke(
        "run", "--codecs", codecs, "--dataset", str(folder), "--out", str(out), *TWO_JPEG_POINTS, *extra
    )


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """A folder of three real photographs (one of them small enough that MS-SSIM is undefined)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()[:256, :320]).save(folder / "astronaut.png")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()[:150, :200]).save(folder / "coffee_small.png")
    return folder


def test_run_stores_one_row_per_task_with_true_metrics(photo_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "run",
        "--codecs",
        "jpeg,webp",
        "--dataset",
        str(photo_dir),
        "--out",
        str(out),
        "--qualities",
        "jpeg=20,90",
        "--qualities",
        "webp=50,80",
        "--executor",
        "inline",
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    assert list(rows.columns) == list(columns())
    assert len(rows) == 3 * 2 * 2 and rows["error"].isna().all()
    assert not rows.duplicated(["image_sha256", "codec", "config_hash", "quality"]).any()
    assert list(rows["bpp"]) == pytest.approx(
        list(rows["bytes"] * 8 / (rows["width"] * rows["height"])), rel=1e-12
    )
    assert list(rows["enc_mps"]) == pytest.approx(list(rows["width"] * rows["height"] / 1e6 / rows["enc_s"]))
    # a higher quality costs more bytes and gives a higher PSNR, image by image
    for _, group in rows.groupby(["codec", "image"]):
        group = group.sort_values("quality")
        assert group["bytes"].is_monotonic_increasing and group["psnr_rgb"].is_monotonic_increasing
    small = rows[rows["image"] == "coffee_small.png"]
    notes = small["metric_notes"].map(json.loads)
    assert small["ms_ssim"].isna().all() and notes.map(lambda n: "under 161 px" in n["ms_ssim"]).all()
    versions = {"psnr_rgb": "1", "psnr_y": "1", "ms_ssim": "1", "ms_ssim_db": "1"}
    assert all(json.loads(text) == versions for text in rows["metric_versions"])
    # the stored PSNR is the PSNR of what a second decoder (Pillow) makes of the same JPEG bytes
    from io import BytesIO

    from bench.catalog import load_catalog
    from bench.codec import make_codec

    entry = load_catalog()["jpeg"]
    codec = make_codec("jpeg", entry.adapter, entry.options)
    original = np.asarray(Image.open(photo_dir / "chelsea.png").convert("RGB"))
    encoded = codec.encode(original, 20)
    decoded = np.asarray(Image.open(BytesIO(encoded)).convert("RGB")).astype(float)
    expected = 10 * math.log10(255**2 / np.mean((decoded - original) ** 2))
    stored = rows[(rows["codec"] == "jpeg") & (rows["quality"] == 20) & (rows["image"] == "chelsea.png")]
    assert stored["bytes"].item() == len(encoded)
    assert stored["psnr_rgb"].item() == pytest.approx(expected, abs=0.05)  # Pillow's IDCT may differ slightly
    # run.json: schema version, resolved configuration, provenance
    document = json.loads((out / "run.json").read_text())
    assert document["schema_version"] >= 1
    assert [c["name"] for c in document["config"]["codecs"]] == ["jpeg", "webp"]
    assert document["config"]["codecs"][0]["versions"]
    assert len(document["config"]["dataset"]["images"]) == 3
    assert document["provenance"]["python"] and document["provenance"]["machine"]["cpu"]
    # summary table and closing line
    assert "psnr_rgb" in result.output and "harness overhead" in result.output


def test_rerun_resumes_and_different_config_is_refused(photo_dir, tmp_path):
    out = tmp_path / "run"
    assert run_two_points(photo_dir, out, "--executor", "inline").exit_code == 0
    first = pd.read_csv(out / "results.csv")
    again = run_two_points(photo_dir, out, "--executor", "inline")
    assert again.exit_code == 0 and "0 task(s) run, 6 already stored" in again.output
    pd.testing.assert_frame_equal(first, pd.read_csv(out / "results.csv"))
    other = run_two_points(photo_dir, out, codecs="jpeg:subsampling=444")
    assert other.exit_code == 2 and "holds a different run configuration" in other.output


def test_unavailable_codec_refused_in_one_line_and_nothing_runs(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--codecs", "jpeg,jp2,lic:weights=/nonexistent/lic.pt", "--out", str(out))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if "lic" in line]
    assert len(lines) == 1 and "lic is unavailable" in lines[0], result.output
    assert not out.exists()


def test_skip_unavailable_runs_the_rest(photo_dir, tmp_path):
    out = tmp_path / "run"
    result = run_two_points(
        photo_dir, out, "--skip-unavailable", "--images", "1", codecs="jpeg,lic:weights=/nonexistent/lic.pt"
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    assert set(rows["codec"]) == {"jpeg"} and len(rows) == 2


def test_bad_images_listed_up_front_then_skipped_on_request(photo_dir, tmp_path):
    (photo_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (photo_dir / "truncated.png").write_bytes((photo_dir / "chelsea.png").read_bytes()[:5000])
    out = tmp_path / "run"
    refused = run_two_points(photo_dir, out)
    assert refused.exit_code == 2
    assert (
        "broken.png" in refused.output
        and "truncated.png" in refused.output
        and "--skip-bad" in refused.output
    )
    assert not out.exists()
    skipped = run_two_points(photo_dir, out, "--skip-bad", "--executor", "inline")
    assert skipped.exit_code == 0, skipped.output
    assert len(pd.read_csv(out / "results.csv")) == 3 * 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--codecs", "nosuch"], "unknown codec 'nosuch'"),
        (["--codecs", "jpeg:colour=blue"], "colour"),
        (["--codecs", "jpeg", "--qualities", "jpeg=high"], "expected CODEC=Q1,Q2"),
        (["--codecs", "jpeg", "--qualities", "webp=50"], "not in this run"),
        (["--codecs", "jpeg", "--dataset", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--codecs", "jpeg", "--jobs", "0"], "--jobs"),
        (["--codecs", "jpeg", "--images", "0"], "--images"),
    ],
)
def test_bad_requests_exit_2_with_one_clear_line(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["run", *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_failed_task_is_an_error_row_and_the_run_goes_on(photo_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "run",
        "--codecs",
        "jpeg",
        "--dataset",
        str(photo_dir),
        "--images",
        "1",
        "--out",
        str(out),
        "--qualities",
        "jpeg=50,1000",
        "--executor",
        "inline",
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv").set_index("quality")
    assert pd.isna(rows.loc[50.0, "error"]) and rows.loc[50.0, "bytes"] > 0
    assert isinstance(rows.loc[1000.0, "error"], str) and pd.isna(rows.loc[1000.0, "bytes"])
    assert "1 task(s) failed" in result.output


def test_config_repeats_a_run_exactly(photo_dir, tmp_path):
    first = tmp_path / "first"
    assert (
        invoke(
            "run",
            "--codecs",
            "jpeg:subsampling=444,webp",
            "--dataset",
            str(photo_dir),
            "--out",
            str(first),
            "--qualities",
            "jpeg=40",
            "--qualities",
            "webp=60",
            "--executor",
            "inline",
        ).exit_code
        == 0
    )
    second = tmp_path / "second"
    result = invoke("run", "--config", str(first / "run.json"), "--out", str(second), "--executor", "inline")
    assert result.exit_code == 0, result.output
    columns = ["image", "codec", "config_hash", "quality", "bytes", "psnr_rgb", "ms_ssim"]
    a, b = (pd.read_csv(d / "results.csv")[columns] for d in (first, second))
    pd.testing.assert_frame_equal(a, b)


def test_python_api_returns_the_rows(photo_dir, tmp_path):
    rows = bench.run(
        "jpeg", str(photo_dir), images=2, qualities={"jpeg": [50]}, out=str(tmp_path / "r"), jobs=2
    )
    assert isinstance(rows, pd.DataFrame) and len(rows) == 2 and rows["psnr_rgb"].gt(25).all()
    assert set(rows["jobs"]) == {2}


def _stored(out: Path) -> int:
    try:
        with sqlite3.connect(out / "results.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_with_every_task_exactly_once(sig, tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "bench.cli",
        "run",
        "--codecs",
        "jpeg,webp,jp2",
        "--dataset",
        "sample",
        "--jobs",
        "2",
        "--out",
        str(out),
    ]
    interrupt_when(command, lambda: _stored(out) >= 5, sig)
    before = pd.read_sql_query("SELECT * FROM results", sqlite3.connect(out / "results.sqlite"))
    assert 0 < len(before)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} already stored" in resumed.stdout
    after = pd.read_csv(out / "results.csv", float_precision="round_trip")
    plan = json.loads((out / "run.json").read_text())["config"]
    expected = len(plan["dataset"]["images"]) * sum(len(c["qualities"]) for c in plan["codecs"])
    assert len(after) == expected and after["error"].isna().all()
    assert not after.duplicated(["image_sha256", "codec", "config_hash", "quality"]).any()
    # rows stored before the interruption were kept as they were, not recomputed
    merged = before.merge(
        after, on=["image_sha256", "codec", "config_hash", "quality"], suffixes=("", "_after")
    )
    assert len(merged) == len(before) and (merged["enc_s"] == merged["enc_s_after"]).all()


@pytest.mark.slow
def test_readme_main_job_runs_every_available_codec_on_the_sample_set(tmp_path):
    """`bench run` with no arguments, as the README's quick start runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    left_out = [line for line in result.stderr.splitlines() if line.startswith("note: left out:")]
    assert all(line.startswith("note: left out: cai-") for line in left_out)  # no published weights here
    [run_dir] = (tmp_path / "reports" / "runs").iterdir()
    assert run_dir.name.startswith("sample-")
    rows = pd.read_csv(run_dir / "results.csv")
    assert set(rows["codec"]) == {"jpeg", "jp2", "webp", "jxl", "avif", "heic", "lic", "lic-factorized"}
    assert rows["error"].isna().all() and set(rows["image"]) == {
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "motorcycle_left.png",
        "rocket.jpg",
    }
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "codec",
        "quality",
        "images",
        "errors",
        "bpp",
        "psnr_rgb",
        "ms_ssim_db",
        "enc_ms",
        "dec_ms",
        "enc_rel",
        "dec_rel",
    ]
    summary = table[: table.index("")]  # one line per (codec, quality), then a blank and the per-codec times
    assert len(rows) == 5 * (len(summary) - 1)
    assert "median times per codec; rel = time / jp2's time on the same image:" in table


def test_store_of_an_older_schema_gains_the_new_columns_and_resumes(tmp_path):
    """A results.sqlite written before the repeats, peak RSS and target columns existed stays usable:
    its rows keep their values under the empty target, the key of a run at fixed qualities."""
    from bench.store import KEY, Store, row_key

    added = ("repeats", "enc_peak_rss_mb", "dec_peak_rss_mb", "enc_gpu_peak_mb", "dec_gpu_peak_mb")
    newer = (*added, "kmac_px_enc", "kmac_px_dec", "metric_versions", "metric_notes")
    newer += ("target", "target_met", "probes", "target_note")
    old = [name for name in columns() if name not in newer]
    database = tmp_path / "results.sqlite"
    connection = sqlite3.connect(database)
    connection.execute(f"CREATE TABLE results ({', '.join(old)}, PRIMARY KEY ({', '.join(KEY[:4])}))")
    connection.execute(
        "INSERT INTO results (image_sha256, codec, config_hash, quality, bytes, psnr_rgb) "
        "VALUES ('a', 'jpeg', 'h', 50, 1234, 31.5)"
    )
    connection.commit()
    connection.close()
    with Store(database) as store:
        assert {row_key(row) for row in store.frame().to_dict("records")} == {("a", "jpeg", "h", 50.0, "")}
        store.add({"image_sha256": "b", "codec": "jpeg", "config_hash": "h", "quality": 60.0, "repeats": 3})
        store.add(
            {"image_sha256": "a", "codec": "jpeg", "config_hash": "h", "quality": 50.0, "target": "bpp=1"}
        )
        frame = store.frame()
    assert list(frame.columns) == list(columns())
    assert len(frame) == 3  # the same quality under another target is another row
    stored = frame.set_index(["image_sha256", "target"])
    assert pd.isna(stored.loc[("a", ""), "repeats"]) and stored.loc[("b", ""), "repeats"] == 3
    assert stored.loc[("a", ""), "bytes"] == 1234 and stored.loc[("a", ""), "psnr_rgb"] == 31.5


def test_summary_gives_each_configuration_of_a_codec_its_own_lines():
    from bench.summary import by_configuration, summary

    rows = pd.DataFrame(
        {
            "codec": ["lic", "lic", "jpeg"],
            "config_hash": ["aaaaaaaa11", "bbbbbbbb22", "cccccccc33"],
            "quality": [0.0, 0.0, 50.0],
            "image": ["a.png"] * 3,
            "bpp": [0.2, 0.3, 0.8],
            "psnr_rgb": [25.0, 25.0, 31.0],
            "ms_ssim_db": [9.0, 9.0, 15.0],
            "enc_s": [0.5, 0.5, 0.001],
            "dec_s": [2.0, 1.0, 0.001],
            "error": [None, None, None],
        }
    )
    options = {"aaaaaaaa11": {"threads": 1}, "bbbbbbbb22": {"threads": 1, "exact": False}}
    table = summary(by_configuration(rows, options))
    assert table["codec"].tolist() == ["jpeg", "lic", "lic:exact=false"]
    assert table["bpp"].tolist() == [0.8, 0.2, 0.3]
    same_options = {"aaaaaaaa11": {"threads": 1}, "bbbbbbbb22": {"threads": 1}}  # other library versions
    assert summary(by_configuration(rows, same_options))["codec"].tolist() == [
        "jpeg",
        "lic:aaaaaaaa",
        "lic:bbbbbbbb",
    ]


def one_photo(folder: Path, name: str, height: int, width: int) -> Path:
    """A folder holding one crop of scikit-image's astronaut photograph."""
    folder.mkdir()
    Image.fromarray(data.astronaut()[:height, :width]).save(folder / name)
    return folder


def test_a_cache_shared_by_runs_gives_finished_tasks_to_the_next_run(tmp_path):
    """Same image pixels, codec configuration and quality: taken from --cache, not run; another
    configuration (a different config hash) is run."""
    photos = one_photo(tmp_path / "photos", "astronaut.png", 96, 128)
    cache = tmp_path / "cache"
    first = CliRunner().invoke(
        cli, ["run", "--codecs", "jpeg", "--dataset", str(photos), "--qualities", "jpeg=30,60", "--executor",
              "inline", "--cache", str(cache), "--out", str(tmp_path / "a")],
    )  # fmt: skip
    assert first.exit_code == 0 and "2 task(s) run" in first.output
    second = CliRunner().invoke(
        cli, ["run", "--codecs", "jpeg,jpeg:subsampling=444", "--dataset", str(photos), "--qualities",
              "jpeg=30,60", "--executor", "inline", "--cache", str(cache), "--out", str(tmp_path / "b")],
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "note: 2 task(s) taken from the cache" in second.output and "2 task(s) run" in second.output
    a = pd.read_csv(tmp_path / "a" / "results.csv")
    b = pd.read_csv(tmp_path / "b" / "results.csv")
    assert len(b) == 4
    same = b[b["config_hash"].isin(a["config_hash"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(same, a)  # the cached rows, timings included, as first measured


def test_kept_bitstreams_let_rescore_recompute_the_metrics(tmp_path):
    photos = one_photo(tmp_path / "photos", "astronaut.png", 96, 128)
    out = tmp_path / "run"
    args = ["run", "--codecs", "jpeg,webp", "--dataset", str(photos), "--qualities", "jpeg=30,60"]
    args += ["--qualities", "webp=50", "--executor", "inline", "--keep-bitstreams", "--out", str(out)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    measured = pd.read_csv(out / "results.csv")
    assert len(list((out / "bitstreams").rglob("*.bin"))) == 3
    connection = sqlite3.connect(out / "results.sqlite")
    connection.execute("UPDATE results SET psnr_rgb = 0, ms_ssim = 0, ms_ssim_db = 0, psnr_y = 0")
    connection.commit()
    connection.close()
    result = CliRunner().invoke(cli, ["rescore", str(out)])
    assert result.exit_code == 0 and "rescored 3 row(s)" in result.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), measured)  # the metrics as measured
    next((out / "bitstreams").rglob("*.bin")).unlink()
    result = CliRunner().invoke(cli, ["rescore", str(out)])
    assert result.exit_code == 1 and "no kept bitstream" in result.output


def test_rescore_without_kept_bitstreams_is_refused(tmp_path):
    photos = one_photo(tmp_path / "photos", "a.png", 64, 64)
    out = tmp_path / "run"
    args = ["run", "--codecs", "jpeg", "--dataset", str(photos), "--qualities", "jpeg=50"]
    assert CliRunner().invoke(cli, [*args, "--executor", "inline", "--out", str(out)]).exit_code == 0
    result = CliRunner().invoke(cli, ["rescore", str(out)])
    assert result.exit_code == 2 and "has no kept bitstreams: run it with --keep-bitstreams" in result.output
