"""The registry of measures: the --metrics grammar, the generated docs table, direction-aware BD against
the bjontegaard package, a metric installed from a plug-in package and seen everywhere, metric versions
on resume, in the cache and in `bench rescore`."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench import measures, metrics
from bench.bd import bd_details, bd_rate, monotone_points
from bench.cli import cli
from bench.errors import UserError
from tests.conftest import plugin_package

REPOSITORY = Path(__file__).resolve().parent.parent
PLUGIN = """
import numpy as np
from bench.measures import LOWER, Metric


def mean_abs_error(reference, reconstruction):
    return float(np.mean(np.abs(reference.astype(float) - reconstruction.astype(float))))


METRIC = Metric(name="mae", label="MAE", unit="levels", direction=LOWER, fmt="{:.3f}",
                doc="mean absolute error over pixels and channels", compute=mean_abs_error, version="2")
UNRANKED = Metric(name="unranked", label="Unranked", doc="a measure with no better direction",
                  compute=mean_abs_error)
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()[:192, :192]).save(folder / "astronaut.png")
    Image.fromarray(data.chelsea()[:192, :192]).save(folder / "chelsea.png")
    return folder


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch) -> None:
    """A package on sys.path (and PYTHONPATH, for worker processes) that registers the metric ``mae``."""
    entries = {"mae": "METRIC", "unranked": "UNRANKED"}
    folder = plugin_package(tmp_path / "plugin", "mymetrics", PLUGIN, "bench.metrics", entries)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    measures.all_metrics.cache_clear()
    yield
    measures.all_metrics.cache_clear()


# --- the grammar ----------------------------------------------------------------------------------


def test_metrics_grammar_names_groups_additions_and_all():
    default = ["psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db"]
    assert measures.resolve_metrics(None, default) == default
    assert measures.resolve_metrics("default", default) == default
    assert measures.resolve_metrics("psnr_y", default) == ["psnr_y"]
    assert measures.resolve_metrics("+ciede2000", default) == [*default, "ciede2000"]
    assert measures.resolve_metrics("+color", default) == [*default, "ciede2000"]
    yuv = [m.name for m in metrics.YUV_METRICS]
    in_registry_order = [name for name in measures.all_metrics() if name in default + yuv]
    assert measures.resolve_metrics("+yuv", default) == in_registry_order
    assert measures.resolve_metrics("psnr_rgb,color", default) == ["psnr_rgb", "ciede2000"]
    assert measures.resolve_metrics("all", default) == list(measures.all_metrics())
    assert measures.with_sources(["ms_ssim_db"]) == ["ms_ssim", "ms_ssim_db"]
    with pytest.raises(
        UserError,
        match=r"no metric or group 'enc_s'; choose from all, default, yuv, hvs, color, perceptual, jpegai, "
        r"external, psnr_rgb",
    ):
        measures.resolve_metrics("enc_s", default)


def test_bench_metrics_lists_each_metric_with_its_measured_cost():
    result = invoke("metrics")
    assert result.exit_code == 0, result.output
    available = 0
    for name, metric in measures.all_metrics().items():
        reason = metric.unavailable()  # a metric tool whose program is not installed here
        if reason is None:
            available += 1
            assert f"{name}: available - {metric.label}" in result.output
        else:
            assert f"{name}: unavailable - {metric.label}\n    why: {reason}\n" in result.output
    costs = re.findall(r"cost per 768x512 image: ([0-9.]+) s \[(\w+)\]", result.output)
    assert len(costs) == available >= len(measures.builtin_metrics()) and all(float(s) > 0 for s, _ in costs)
    assert "version 1; lower is better; reads 8-bit RGB" in result.output  # ciede2000


def test_the_docs_column_table_is_the_registrys():
    text = (REPOSITORY / "docs" / "results.md").read_text()
    found = re.search(r"<!-- columns: [^\n]*-->\n(.*?)<!-- /columns -->", text, re.DOTALL)
    assert found, "docs/results.md lost its generated column table"
    assert found.group(1) == measures.docs_table(), "docs/results.md is stale: run `make docs`"


def test_store_columns_and_csv_order_come_from_the_registry(photos, tmp_path):
    from bench.store import columns

    out = tmp_path / "run"
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=50",
                    "--executor", "inline", "--metrics", "psnr_rgb,ciede2000", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    assert list(rows.columns) == list(columns()) == list(measures.measures())
    assert rows["ciede2000"].gt(0).all() and rows["psnr_y"].isna().all()
    assert json.loads((out / "run.json").read_text())["config"]["metrics"] == ["psnr_rgb", "ciede2000"]
    # the summary shows the metrics flagged for it and the one named
    header = result.stdout.splitlines()[0].split()
    assert header == [
        "codec",
        "quality",
        "images",
        "errors",
        "bpp",
        "psnr_rgb",
        "ciede2000",
        "enc_ms",
        "dec_ms",
    ]


# --- direction-aware BD ---------------------------------------------------------------------------


def lower_is_better_curves():
    """A metric that falls with rate (a distortion), for an anchor and a test that needs less rate."""
    rates = np.array([0.2, 0.4, 0.8, 1.6])
    anchor = [(r, 6.0 / (1 + 2 * r)) for r in rates]
    test = [(r * 0.8, 6.0 / (1 + 2 * r) + 0.01 * i) for i, r in enumerate(rates)]
    return anchor, test


def test_bd_on_a_lower_is_better_metric_matches_bjontegaard_on_the_negated_curve():
    import bjontegaard

    anchor, test = lower_is_better_curves()
    ours = bd_rate(anchor, test, "pchip", higher_is_better=False)
    ra, qa = zip(*anchor, strict=True)
    rt, qt = zip(*test, strict=True)
    theirs = bjontegaard.bd_rate(ra, [-q for q in qa], rt, [-q for q in qt], method="pchip")
    assert ours == pytest.approx(theirs, abs=1e-9) and ours < 0
    quality = bd_details(anchor, test, "pchip", "quality", higher_is_better=False)["value"]
    theirs = bjontegaard.bd_psnr(ra, [-q for q in qa], rt, [-q for q in qt], method="pchip")
    assert quality == pytest.approx(-theirs, abs=1e-9) and quality < 0  # less distortion: better
    # read as higher-is-better, the same curves are not monotone: undefined, never a wrong number
    assert math.isnan(bd_rate(anchor, test, "pchip"))


def test_monotone_filter_keeps_the_front_in_the_metrics_own_direction():
    rates = [0.1, 0.2, 0.3, 0.4]
    distortion = [5.0, 3.0, 3.5, 1.0]  # the third point is worse than the second at a higher rate
    assert monotone_points(rates, distortion, higher_is_better=False).tolist() == [True, True, False, True]
    assert monotone_points(rates, distortion).tolist() == [True, False, False, False]  # 5.0 beats all


def test_bd_table_and_report_colour_a_lower_is_better_metric_by_its_direction():
    from bench.report.bdtable import bd_table
    from bench.report.build import bd_html

    anchor, test = lower_is_better_curves()
    records = []
    for label, curve in (("anchor", anchor), ("better", test)):
        for quality, (bpp, value) in enumerate(curve):
            records.append({"label": label, "image_sha256": "x", "image": "x.png", "quality": quality,
                            "bpp": bpp, "ciede2000": value, "error": None})  # fmt: skip
    rows = pd.DataFrame.from_records(records)
    for delta in ("rate", "quality"):
        table = bd_table(rows, "anchor", ["ciede2000"], "curve", delta=delta)
        assert table.cells[("better", "ciede2000")].value < 0
        assert re.search(r'<td class="good">-', bd_html(table)), delta


def test_only_registered_quality_metrics_are_bd_metrics(photos, tmp_path):
    out = tmp_path / "run"
    args = ("run", "--codecs", "jpeg,webp", "--dataset", photos, "--qualities", "jpeg=30,60,90")
    assert invoke(*args, "--qualities", "webp=30,60,90", "--executor", "inline", "--out", out).exit_code == 0
    result = invoke("bd", out, "--anchor", "jpeg", "--metrics", "enc_s")
    assert result.exit_code == 2 and "no metric or group 'enc_s'; choose from all, default" in result.output
    result = invoke("bd", out, "--anchor", "jpeg", "--metrics", "ciede2000")
    assert result.exit_code == 2 and "ciede2000 not computed in these runs (`bench rescore" in result.output
    result = invoke("bd", out, "--anchor", "jpeg", "--metrics", "+color", "--format", "csv")
    assert result.exit_code == 0 and "psnr_rgb" in result.output and "ciede2000" not in result.output


# --- a plug-in metric, everywhere ------------------------------------------------------------------


@pytest.mark.slow
def test_a_plugin_metric_reaches_workers_store_bd_report_and_export(plugin, photos, tmp_path):
    out = tmp_path / "run"
    args = ("run", "--codecs", "jpeg,webp", "--dataset", photos, "--qualities", "jpeg=30,60,90")
    result = invoke(
        *args, "--qualities", "webp=30,60,90", "--jobs", "2", "--metrics", "+mae,+unranked", "--out", out
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    assert rows["error"].isna().all() and rows["mae"].gt(0).all()
    assert rows["metric_versions"].map(lambda v: json.loads(v)["mae"]).eq("2").all()
    metrics = invoke("metrics", "--no-cost")
    assert "mae: available - MAE" in metrics.output and "version 2; lower is better" in metrics.output
    bd = invoke(
        "bd", out, "--anchor", "jpeg", "--metrics", "mae,psnr_rgb", "--mode", "curve", "--format", "json"
    )
    assert bd.exit_code == 0, bd.output
    rows = json.loads(bd.output)["rows"]
    cells = {(c["codec"], c["metric"]): c["value"] for c in rows if c["role"] == "test"}
    assert set(cells) == {("webp", "mae"), ("webp", "psnr_rgb")}
    assert np.sign(cells[("webp", "mae")]) == np.sign(cells[("webp", "psnr_rgb")])  # both say the same
    report = invoke("report", out, "--metrics", "+mae", "--no-visual", "--out", tmp_path / "report")
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "figures" / "rd_mae.svg").is_file()
    assert "bpp vs MAE" in (tmp_path / "report" / "index.html").read_text()
    export = invoke("export", out, "--out", tmp_path / "export")
    assert export.exit_code == 0, export.output
    document = json.loads((tmp_path / "export" / "webp.json").read_text())
    assert len(document["results"]["mae"]) == 3 and document["results"]["psnr-rgb"]


@pytest.mark.slow
def test_dask_workers_compute_a_plugin_metric(plugin, photos, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=50", "--jobs", "2",
                    "--executor", "dask", "--metrics", "psnr_rgb,mae", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 2 and rows["error"].isna().all() and rows["mae"].gt(0).all()


# --- versions: resume, cache, rescore -------------------------------------------------------------


def run_jpeg(photos: Path, out: Path, *extra):
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=40,80",
                    "--executor", "inline", "--out", out, *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


def test_resuming_with_more_metrics_rescores_from_kept_bitstreams_only_what_rows_lack(photos, tmp_path):
    out = tmp_path / "run"
    run_jpeg(photos, out, "--keep-bitstreams", "--metrics", "psnr_rgb")
    first = pd.read_csv(out / "results.csv")
    result = run_jpeg(photos, out, "--keep-bitstreams", "--metrics", "psnr_rgb,ciede2000")
    assert "4 stored row(s) lacked a metric: rescored from their kept bitstreams" in result.output
    assert re.search(r"rescore: 100%.*\| 4/4 ", result.output)  # a bar of its own, before the tasks'
    assert "0 task(s) run, 4 already stored" in result.output
    second = pd.read_csv(out / "results.csv")
    for column in ("bytes", "enc_s", "dec_s", "psnr_rgb"):  # measured once, kept
        assert second[column].tolist() == first[column].tolist()
    assert second["ciede2000"].gt(0).all()
    assert json.loads((out / "run.json").read_text())["config"]["metrics"] == ["psnr_rgb", "ciede2000"]
    third = run_jpeg(photos, out, "--keep-bitstreams", "--metrics", "psnr_rgb")
    assert "lacked" not in third.output and "0 task(s) run, 4 already stored" in third.output


def test_a_newer_metric_version_runs_stale_rows_again_without_kept_bitstreams(photos, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_jpeg(photos, out, "--metrics", "psnr_rgb")
    connection = sqlite3.connect(out / "results.sqlite")
    connection.execute('UPDATE results SET metric_versions = \'{"psnr_rgb": "0"}\', psnr_rgb = -1')
    connection.commit()
    connection.close()
    result = run_jpeg(photos, out, "--metrics", "psnr_rgb")
    assert (
        "4 stored row(s) lacked a metric and were not rescored from a kept bitstream: run again"
        in result.output
    )
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 4 and rows["psnr_rgb"].gt(20).all()
    assert rows["metric_versions"].map(json.loads).eq({"psnr_rgb": "1"}).all()


def test_the_cache_never_returns_a_row_lacking_a_requested_metric(photos, tmp_path):
    cache = tmp_path / "cache"
    run_jpeg(photos, tmp_path / "a", "--metrics", "psnr_rgb", "--cache", cache)
    plain = run_jpeg(photos, tmp_path / "b", "--metrics", "psnr_rgb,ciede2000", "--cache", cache)
    assert "taken from the cache" not in plain.output and "4 task(s) run" in plain.output
    assert pd.read_csv(tmp_path / "b" / "results.csv")["ciede2000"].gt(0).all()
    # a cache that keeps bitstreams rescored a row instead of running it again
    run_jpeg(
        photos, tmp_path / "c", "--metrics", "psnr_rgb", "--cache", tmp_path / "cache2", "--keep-bitstreams"
    )
    kept = run_jpeg(
        photos, tmp_path / "d", "--metrics", "psnr_y", "--cache", tmp_path / "cache2", "--keep-bitstreams"
    )
    assert "4 task(s) taken from the cache" in kept.output and "0 task(s) run" in kept.output
    c, d = (pd.read_csv(tmp_path / name / "results.csv") for name in ("c", "d"))
    assert d["enc_s"].tolist() == c["enc_s"].tolist() and d["psnr_y"].gt(20).all()
    assert len(list((tmp_path / "d" / "bitstreams").rglob("*.bin"))) == 4


def test_rescore_adds_metrics_and_reports_each_row_it_cannot_use(photos, tmp_path):
    out = tmp_path / "run"
    run_jpeg(photos, out, "--keep-bitstreams", "--metrics", "psnr_rgb")
    bitstreams = sorted((out / "bitstreams").rglob("*.bin"))
    bitstreams[0].write_bytes(b"\xff\xd8 not a jpeg" + bytes(bitstreams[0].stat().st_size - 13))
    bitstreams[1].unlink()
    result = invoke("rescore", out, "--metrics", "+ciede2000")
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("not rescored: ")]
    assert len(problems) == 2 and any("no kept bitstream" in line for line in problems)
    assert "rescored 2 row(s)" in result.output
    assert re.search(r"bench rescore: 100%.*\| 4/4 ", result.output)  # every row counted, rescored or not
    rows = pd.read_csv(out / "results.csv")
    assert rows["ciede2000"].notna().sum() == 2
    assert json.loads((out / "run.json").read_text())["config"]["metrics"] == ["psnr_rgb", "ciede2000"]


def test_a_schema_5_store_keeps_its_metrics_as_version_1_and_its_note_per_metric(tmp_path):
    from bench.store import Store

    database = tmp_path / "results.sqlite"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE results (image_sha256 TEXT NOT NULL, codec TEXT NOT NULL, config_hash TEXT "
                       "NOT NULL, quality REAL NOT NULL, psnr_rgb REAL, psnr_y REAL, ms_ssim REAL, ms_ssim_db REAL, "
                       "note TEXT, error TEXT, PRIMARY KEY (image_sha256, codec, config_hash, quality))")  # fmt: skip
    connection.execute("INSERT INTO results VALUES ('a', 'jpeg', 'h', 50, 30, 31, NULL, NULL, 'ms_ssim undefined: "
                       "small', NULL), ('b', 'jpeg', 'h', 50, NULL, NULL, NULL, NULL, NULL, 'Boom: x')")  # fmt: skip
    connection.commit()
    connection.close()
    with Store(database) as store:
        rows = {row["image_sha256"]: row for row in store.frame().to_dict("records")}
    assert json.loads(rows["a"]["metric_versions"]) == dict.fromkeys(
        ("psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db"), "1"
    )
    assert json.loads(rows["a"]["metric_notes"]) == dict.fromkeys(
        ("ms_ssim", "ms_ssim_db"), "ms_ssim undefined: small"
    )
    assert pd.isna(rows["b"]["metric_versions"])  # a failed task holds no metric
    stored = ["psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db"]  # the default metrics of schema 5: current
    assert measures.stale(rows["a"], measures.default_metrics()) == [
        name for name in measures.default_metrics() if name not in stored
    ]
