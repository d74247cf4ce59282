"""`bench run --target-bpp / --target / --budget-bpp`: searches that meet their targets, checked against
fresh encodes by the real codecs; resume, determinism, the cache and clear refusals."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench import measures, runner
from bench.catalog import load_catalog
from bench.cli import cli
from bench.codec import codec_for, knob, open_codec
from bench.images import load_image
from tests.conftest import interrupt_when

IN_PROCESS = "jpeg,webp,jxl,avif,heic,jp2,lic"
TOLERANCE = 0.01


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _bpp(name: str, image: np.ndarray, quality: float) -> float:
    """The rate of a fresh encode by the codec itself."""
    data = open_codec(load_catalog()[name]).encode(image, quality)
    return len(data) * 8 / (image.shape[0] * image.shape[1])


def _step_up(name: str, quality: float) -> float:
    """The next knob value towards higher rates, by the knob's resolution."""
    entry = load_catalog()[name]
    declared = knob(codec_for(entry), entry.rate_rises_with_quality)
    sign = 1 if declared.rate_rises else -1
    if declared.log_scale:
        return quality * math.exp(sign * declared.resolution)
    return quality + sign * (1 if declared.discrete else declared.resolution)


@pytest.fixture(scope="module")
def kodak_rows(data_dir, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("matched") / "run"
    return runner.run(
        IN_PROCESS,
        "kodak",
        data_dir=str(data_dir),
        images=1,
        target_bpp="0.25,0.5",
        metrics="psnr_rgb",
        out=str(out),
    )


@pytest.mark.slow
def test_every_in_process_codec_meets_the_rates_or_says_why(kodak_rows, data_dir):
    image = load_image(data_dir / "kodak" / "kodim01.png").rgb
    assert len(kodak_rows) == 7 * 2 and kodak_rows["error"].isna().all()
    for row in kodak_rows.itertuples():
        target = float(row.target.split("=")[1])
        if pd.isna(row.bpp):  # out of reach: the knob's rate-lowest end is still over the target
            assert row.target_met == 0 and row.target_note.startswith("unreachable"), row
            assert _bpp(row.codec, image, row.quality) > target * (1 + TOLERANCE)
            continue
        assert _bpp(row.codec, image, row.quality) == pytest.approx(row.bpp, abs=1e-12)  # the real rate
        if row.target_met:
            assert abs(row.bpp - target) <= TOLERANCE * target and pd.isna(row.target_note)
            continue
        # missed: the closest point at or under the target, and one step up overshoots the window
        assert row.bpp < target * (1 - TOLERANCE) and "lands within 1%" in row.target_note, row
        assert _bpp(row.codec, image, _step_up(row.codec, row.quality)) > target * (1 + TOLERANCE)
    assert kodak_rows["target_met"].sum() >= 7  # most points are met (the rest said why above)


@pytest.fixture()
def one_image(tmp_path, data_dir) -> Path:
    """A folder dataset of one Kodak image cropped to 256 x 384 (a link to the original is refused)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    image = load_image(data_dir / "kodak" / "kodim05.png").rgb[:256, :384]
    Image.fromarray(image).save(folder / "crop.png")
    return folder


def test_equal_quality_is_the_fewest_bytes_that_reach_the_metric(one_image, tmp_path):
    rows = runner.run(
        "jpeg,webp", str(one_image), target="psnr_y=33", metrics="psnr_rgb", out=str(tmp_path / "r")
    )
    image = load_image(one_image / "crop.png").rgb
    for row in rows.itertuples():
        assert row.target == "psnr_y=33" and row.target_met == 1 and row.psnr_y >= 33
        codec = open_codec(load_catalog()[row.codec])
        lower = row.quality - (1 if row.codec == "jpeg" else 0.5)  # one resolution step towards lower rates
        decoded = codec.decode(codec.encode(image, lower), image.shape[:2])
        assert measures.compute(["psnr_y"], image, decoded)["psnr_y"] < 33
    assert "psnr_rgb" in rows.columns and rows["psnr_rgb"].notna().all()  # the run's metrics too


def test_lower_is_better_target_and_an_unreachable_one(one_image, tmp_path):
    rows = runner.run(
        "jpeg", str(one_image), target="ciede2000=3,0.01", metrics="psnr_rgb", out=str(tmp_path / "r")
    )
    reached = rows[rows["target"] == "ciede2000=3"].iloc[0]
    assert reached["target_met"] == 1 and reached["ciede2000"] <= 3
    image = load_image(one_image / "crop.png").rgb
    codec = open_codec(load_catalog()["jpeg"])
    decoded = codec.decode(codec.encode(image, reached["quality"] - 1), image.shape[:2])
    assert measures.compute(["ciede2000"], image, decoded)["ciede2000"] > 3
    out_of_reach = rows[rows["target"] == "ciede2000=0.01"].iloc[0]
    assert out_of_reach["target_met"] == 0 and "unreachable" in out_of_reach["target_note"]
    assert (
        pd.isna(out_of_reach["bytes"])
        and pd.isna(out_of_reach["ciede2000"])
        and pd.isna(out_of_reach["error"])
    )


def test_a_rate_below_the_codecs_reach_is_a_row_that_says_so(one_image, tmp_path):
    result = invoke(
        "run",
        "--codecs",
        "jpeg",
        "--dataset",
        str(one_image),
        "--target-bpp",
        "0.01,0.5",
        "--out",
        str(tmp_path / "r"),
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "r" / "results.csv").set_index("target")
    assert rows.loc["bpp=0.01", "target_met"] == 0 and pd.isna(rows.loc["bpp=0.01", "bpp"])
    assert (
        "unreachable" in rows.loc["bpp=0.01", "target_note"]
        and "quality 1" in rows.loc["bpp=0.01", "target_note"]
    )
    assert rows.loc["bpp=0.5", "bpp"] > 0
    assert "1 target(s) out of a codec's reach" in result.output


def test_budget_fits_and_one_step_more_would_not(data_dir, tmp_path):
    rows = runner.run(
        "jpeg",
        "kodak",
        data_dir=str(data_dir),
        images=3,
        budget_bpp="0.5",
        metrics="psnr_rgb",
        out=str(tmp_path / "r"),
    )
    assert len(rows) == 3 and rows["quality"].nunique() == 1 and rows["target_met"].all()
    pixels = (rows["width"] * rows["height"]).sum()
    assert rows["bytes"].sum() * 8 / pixels <= 0.5
    quality = rows["quality"].iloc[0]
    images = [load_image(data_dir / "kodak" / name).rgb for name in rows["image"]]
    codec = open_codec(load_catalog()["jpeg"])
    assert sum(len(codec.encode(image, quality + 1)) for image in images) * 8 / pixels > 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "bpp=0.3"], "not a quality metric"),
        (["--target", "enc_s=1"], "not a quality metric"),
        (["--target", "psnr_y"], "expected METRIC=VALUE"),
        (["--target-bpp", "0.25", "--budget-bpp", "0.1"], "give one of them"),
        (["--target-bpp", "0.25", "--qualities", "jpeg=50"], "does not take --qualities"),
        (["--target-bpp", "-1"], "positive finite number"),
        (["--target-bpp", "0.25,0.25"], "given twice"),
        (["--target-bpp", "0.25", "--rate-tolerance", "2"], "--rate-tolerance"),
    ],
)
def test_bad_search_requests_are_one_line(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["run", "--codecs", "jpeg", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_codec_without_a_searchable_knob_is_left_out_and_the_rest_run(tmp_path, monkeypatch):
    catalog = tmp_path / "codecs"
    catalog.mkdir()
    source = (Path(__file__).parents[1] / "codecs" / "cjpeg.toml").read_text()
    (catalog / "cjpeg.toml").write_text(source)
    (catalog / "fixedjpeg.toml").write_text(
        source.replace('name = "cjpeg"', 'name = "fixedjpeg"').replace("quality_range = [1, 100]\n", "")
    )
    (catalog / "jpeg.toml").write_text((Path(__file__).parents[1] / "codecs" / "jpeg.toml").read_text())
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    result = invoke(
        "run",
        "--codecs",
        "jpeg,fixedjpeg",
        "--target-bpp",
        "0.5",
        "--images",
        "1",
        "--out",
        str(tmp_path / "r"),
    )
    assert result.exit_code == 0, result.output
    assert "left out: fixedjpeg has no searchable quality knob" in result.output
    assert set(pd.read_csv(tmp_path / "r" / "results.csv")["codec"]) == {"jpeg"}


def _probes(out: Path) -> int:
    try:
        with sqlite3.connect(out / "results.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM probes").fetchone()[0]
    except sqlite3.Error:
        return 0


def _final(out: Path) -> pd.DataFrame:
    rows = pd.read_csv(out / "results.csv")
    return rows.sort_values(["codec", "image", "target"])[
        ["codec", "image", "target", "quality", "bytes", "probes"]
    ]


SEARCH = [
    "--codecs",
    "jpeg,webp,jp2",
    "--dataset",
    "sample",
    "--target-bpp",
    "0.3,0.6",
    "--metrics",
    "psnr_rgb",
]


@pytest.mark.slow
def test_a_search_killed_midway_resumes_without_encoding_a_probe_twice(tmp_path):
    """kill -9 mid-search, then resume: the same rows as one uninterrupted run (with another number
    of jobs: the search does not depend on it), and every probe encoded once."""
    whole = tmp_path / "whole"
    assert invoke("run", *SEARCH, "--jobs", "1", "--out", str(whole)).exit_code == 0
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "bench.cli", "run", *SEARCH, "--jobs", "2", "--out", str(out)]
    interrupt_when(command, lambda: _probes(out) >= 10)
    recorded = _probes(out)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr
    encoded_now = int(resumed.stderr.split("searches: ")[1].split(" probe(s)")[0])
    assert recorded + encoded_now == _probes(whole) == _probes(out)  # no probe encoded twice
    pd.testing.assert_frame_equal(_final(out).reset_index(drop=True), _final(whole).reset_index(drop=True))


def test_the_cache_serves_probes_to_a_second_search_and_rows_to_a_fixed_run(tmp_path):
    cache = tmp_path / "cache"
    common = ["--codecs", "jpeg", "--images", "2", "--metrics", "psnr_rgb", "--cache", str(cache)]
    first = invoke("run", *common, "--target-bpp", "0.4", "--out", str(tmp_path / "a"))
    assert "probe(s) encoded now, 0 taken from the cache" in first.output
    again = invoke("run", *common, "--target-bpp", "0.4,0.8", "--out", str(tmp_path / "b"))
    reused = int(again.output.split("probe(s) encoded now, ")[1].split(" taken")[0])
    assert reused == _probes(tmp_path / "a") > 0  # the first target's search, replayed from the cache
    found = pd.read_csv(tmp_path / "a" / "results.csv")
    qualities = ",".join(f"{q:g}" for q in sorted(set(found["quality"])))
    fixed = invoke("run", *common, "--qualities", f"jpeg={qualities}", "--out", str(tmp_path / "c"))
    assert f"{len(found)} task(s) taken from the cache" in fixed.output  # of 2 images x 2 qualities
    rows = pd.read_csv(tmp_path / "c" / "results.csv")
    same = rows.merge(found, on=["image", "quality"], suffixes=("", "_search"))
    assert len(same) == len(found) and same["target"].isna().all()
    assert (same["bytes"] == same["bytes_search"]).all() and (same["enc_s"] == same["enc_s_search"]).all()


def test_a_search_on_a_dask_cluster_gives_the_inline_rows(tmp_path):
    """The Dask executor takes each probe as the search asks for it (its feed refills as rows come back)."""
    search = {"images": 2, "target_bpp": "0.3,0.6", "metrics": "psnr_rgb"}
    inline = runner.run("jpeg,webp", "sample", out=str(tmp_path / "i"), executor="inline", **search)
    dask = runner.run("jpeg,webp", "sample", out=str(tmp_path / "d"), executor="dask", jobs=2, **search)
    columns = ["codec", "image", "target", "quality", "bytes", "probes", "target_met"]
    order = ["codec", "image", "target"]
    pd.testing.assert_frame_equal(
        inline.sort_values(order)[columns].reset_index(drop=True),
        dask.sort_values(order)[columns].reset_index(drop=True),
    )


def test_rescore_adds_a_metric_to_a_search_runs_rows(tmp_path):
    out = tmp_path / "r"
    first = invoke("run", "--codecs", "jpeg", "--images", "2", "--target-bpp", "0.3,0.6", "--metrics",
                   "psnr_rgb", "--keep-bitstreams", "--out", str(out))  # fmt: skip
    assert first.exit_code == 0, first.output
    assert invoke("rescore", str(out), "--metrics", "psnr_rgb,psnr_y").exit_code == 0
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 4 and rows["psnr_y"].notna().all() and set(rows["target"]) == {"bpp=0.3", "bpp=0.6"}


def test_two_targets_on_one_quality_keep_a_row_each_also_from_the_cache(tmp_path):
    common = ["--codecs", "jpeg", "--images", "1", "--metrics", "psnr_rgb", "--rate-tolerance", "0.05"]
    common += ["--target-bpp", "0.5,0.505", "--cache", str(tmp_path / "cache")]
    for out in ("a", "b"):
        result = invoke("run", *common, "--out", str(tmp_path / out))
        rows = pd.read_csv(tmp_path / out / "results.csv")
        assert (
            len(rows) == 2
            and rows["quality"].nunique() == 1
            and set(rows["target"]) == {"bpp=0.5", "bpp=0.505"}
        )
    assert "2 task(s) taken from the cache" in result.output
