"""JPEG AI's overall score (`jpegai_overall`): the mean of a codec's BD-rates over the metrics of the group
`jpegai`, checked against the bjontegaard package metric by metric. Seven stand-in metrics of a plug-in
package form the group here (some higher-, some lower-is-better; one undefined on the small image)."""

from __future__ import annotations

import math
import shutil
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

import bench
from bench import measures
from tests.conftest import plugin_package
from tests.test_bd import bjontegaard_package  # noqa: F401 - the `bj` fixture
from tests.test_report import bd_json, cells, invoke, reference_bd

PLUGIN = """
import numpy as np
from bench.measures import HIGHER, LOWER, Metric, MetricUndefined


def _error(reference, reconstruction):
    return reference.astype(float) - reconstruction.astype(float)


def _psnr(squared):
    return float(10 * np.log10(255.0**2 / np.mean(squared)))


def psnr_channel(channel):
    return lambda reference, reconstruction: _psnr(_error(reference, reconstruction)[..., channel] ** 2)


def mae(reference, reconstruction):
    return float(np.mean(np.abs(_error(reference, reconstruction))))


def rmse(reference, reconstruction):
    return float(np.sqrt(np.mean(_error(reference, reconstruction) ** 2)))


def gradient_error(reference, reconstruction):
    return float(np.mean(np.abs(np.diff(_error(reference, reconstruction), axis=1))))


def psnr_large(reference, reconstruction):
    if min(reference.shape[:2]) < 200:
        raise MetricUndefined("a side under 200 px")
    return _psnr(_error(reference, reconstruction) ** 2)


def stand_in(name, direction, compute):
    return Metric(name=name, label=name, doc="a stand-in", direction=direction, compute=compute,
                  groups=("jpegai",))


METRICS = [
    stand_in("ai_psnr_r", HIGHER, psnr_channel(0)),
    stand_in("ai_psnr_g", HIGHER, psnr_channel(1)),
    stand_in("ai_psnr_b", HIGHER, psnr_channel(2)),
    stand_in("ai_mae", LOWER, mae),
    stand_in("ai_rmse", LOWER, rmse),
    stand_in("ai_gradient", LOWER, gradient_error),
    stand_in("ai_psnr_large", HIGHER, psnr_large),
]
"""
STAND_INS = ["ai_psnr_r", "ai_psnr_g", "ai_psnr_b", "ai_mae", "ai_rmse", "ai_gradient", "ai_psnr_large"]
LOWER_IS_BETTER = {"ai_mae", "ai_rmse", "ai_gradient"}
SMALL = "coffee.png"  # 180 px high: ai_psnr_large is undefined there
OVERALL = "jpegai_overall"
LABEL = "JPEG AI overall (mean BD-rate of 7)"


@pytest.fixture(scope="module", autouse=True)
def stand_ins(tmp_path_factory):
    """The seven stand-ins, registered by a plug-in package in the group jpegai; the group is narrowed to
    them, so that the tests hold once the real JPEG AI metrics are registered too."""
    entries = {"stand_ins": "METRICS"}
    folder = plugin_package(
        tmp_path_factory.mktemp("plugin"), "jpegai_stand_ins", PLUGIN, "bench.metrics", entries
    )
    real = measures.groups
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        patch.setattr(
            measures, "groups", lambda: real() | {"jpegai": [m for m in real()["jpegai"] if m in STAND_INS]}
        )
        measures.all_metrics.cache_clear()
        yield
    measures.all_metrics.cache_clear()


@pytest.fixture(scope="module")
def run(stand_ins, tmp_path_factory) -> Path:
    """jpeg and webp at four qualities on four photographs (one under 200 px high) under the stand-ins,
    plus jpeg80: jpeg's rows at 80 % of their rate (BD-rate -20 % under every metric); rows as text."""
    photos = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()[:256, :256]).save(photos / "astronaut.png")
    Image.fromarray(data.chelsea()[:256, :256]).save(photos / "chelsea.png")
    Image.fromarray(data.rocket()[:256, :256]).save(photos / "rocket.png")
    Image.fromarray(data.coffee()[:180, :240]).save(photos / SMALL)
    out = tmp_path_factory.mktemp("runs") / "jpegai"
    qualities = {"jpeg": [20, 40, 60, 80], "webp": [20, 40, 60, 80]}
    bench.run(
        "jpeg,webp", str(photos), out=str(out), qualities=qualities, executor="inline", metrics="jpegai"
    )
    (out / "results.sqlite").unlink()
    rows = pd.read_csv(out / "results.csv")
    assert rows["error"].isna().all() and len(rows) == 32
    assert (
        rows.loc[rows.image == SMALL, "ai_psnr_large"].isna().all()
        and rows[STAND_INS].notna().sum().min() == 24
    )
    jpeg80 = rows[rows.codec == "jpeg"].assign(
        codec="jpeg80", config_hash="8" * 16, bpp=lambda r: r.bpp * 0.8
    )
    pd.concat([rows, jpeg80]).to_csv(out / "results.csv", index=False)
    return out


def copy_with(run: Path, folder: Path, change) -> Path:
    """A copy of the run whose rows ``change`` edits in place."""
    folder.mkdir()
    shutil.copy(run / "run.json", folder / "run.json")
    rows = pd.read_csv(run / "results.csv")
    change(rows)
    rows.to_csv(folder / "results.csv", index=False)
    return folder


def per_image_bd(bj, rows: pd.DataFrame, codec: str, metric: str) -> dict[str, float]:
    """BD-rate of ``codec`` against jpeg on each image where ``metric`` is defined."""
    rows = rows[rows[metric].notna()]
    anchor = rows[rows.codec == "jpeg"]
    return {
        image: reference_bd(bj, anchor[anchor.image == image], group, metric, LOWER_IS_BETTER)
        for image, group in rows[rows.codec == codec].groupby("image")
    }


def curve_bd(bj, rows: pd.DataFrame, codec: str, metric: str) -> float:
    """BD-rate of ``codec``'s mean curve against jpeg's: at each quality, the means over the images where
    ``metric`` is defined."""
    means = rows[rows[metric].notna()].groupby(["codec", "quality"])[["bpp", metric]].mean().reset_index()
    return reference_bd(
        bj, means[means.codec == "jpeg"], means[means.codec == codec], metric, LOWER_IS_BETTER
    )


def bootstrap(matrix: np.ndarray) -> tuple[float, float]:
    """The percentile bootstrap 95 % interval of the mean over columns of each column's mean over its
    defined rows, drawing the resamples as bench.report.bdtable.bootstrap_ci does (seed 0, 10,000)."""
    picks = np.random.default_rng(0).integers(0, len(matrix), size=(10000, len(matrix)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample without a defined value of a column: NaN, left out
        means = np.nanmean(matrix[picks], axis=1).mean(axis=1)
    return tuple(np.percentile(means[~np.isnan(means)], [2.5, 97.5]))


def test_the_bootstrap_resamples_images_of_the_mean_of_the_metric_means():
    from bench.report.bdtable import bootstrap_ci, bootstrap_ci_of_means

    matrix = np.random.default_rng(5).normal(-20, 8, size=(8, 7))  # images x metrics
    assert bootstrap_ci_of_means(matrix) == pytest.approx(bootstrap_ci(matrix.mean(axis=1)), rel=1e-12)
    matrix[[1, 4], 6] = math.nan
    matrix[[0, 1, 2, 4, 5, 6, 7], 5] = math.nan  # defined on one image: some resamples lack it
    assert bootstrap_ci_of_means(matrix) == pytest.approx(bootstrap(matrix), rel=1e-12)
    complete = matrix[~np.isnan(matrix).any(axis=1)].mean(axis=1)  # not the bootstrap of complete images
    assert bootstrap_ci_of_means(matrix) != pytest.approx(bootstrap_ci(complete), rel=1e-3)


def test_image_mode_overall_is_the_mean_of_the_seven_mean_bd_rates(run, bj):
    rows = pd.read_csv(run / "results.csv")
    document = bd_json(run, "--anchor", "jpeg", "--metrics", "jpegai")
    found = cells(document)
    assert document["metrics"] == STAND_INS
    assert document["overall"] == {OVERALL: {"label": LABEL, "metrics": STAND_INS}}
    assert all(cell["dropped"] == 0 for cell in found.values())  # the package keeps every point too
    for codec in ("webp", "jpeg80"):
        reference = {metric: per_image_bd(bj, rows, codec, metric) for metric in STAND_INS}
        means = [np.mean(list(reference[metric].values())) for metric in STAND_INS]
        cell = found[(codec, OVERALL)]
        assert cell["value"] == pytest.approx(np.mean(means), rel=1e-9)
        assert (cell["images"], cell["undefined"]) == (4, 1)  # the small image lacks ai_psnr_large
        per_image = document["per_image"][f"{codec}/{OVERALL}"]
        for image, value in per_image.items():
            if image == SMALL:
                assert value is None
            else:
                assert value == pytest.approx(np.mean([reference[m][image] for m in STAND_INS]), rel=1e-9)
        matrix = np.array([[reference[m].get(image, math.nan) for m in STAND_INS] for image in per_image])
        assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(bootstrap(matrix), rel=1e-9)
    webp = found[("webp", OVERALL)]
    assert webp["ci_low"] < webp["value"] < webp["ci_high"]
    assert found[("jpeg80", OVERALL)]["value"] == pytest.approx(-20.0, abs=1e-9)
    # the mean over the seven of the means over images, not the mean over complete images of per-image means
    complete = [v for v in document["per_image"][f"webp/{OVERALL}"].values() if v is not None]
    assert abs(np.mean(complete) - found[("webp", OVERALL)]["value"]) > 0.01


def test_curve_mode_overall_is_the_mean_of_the_seven_bd_rates_of_the_mean_curves(run, bj):
    rows = pd.read_csv(run / "results.csv")
    found = cells(bd_json(run, "--anchor", "jpeg", "--mode", "curve", "--metrics", "jpegai"))
    for codec in ("webp", "jpeg80"):
        cell = found[(codec, OVERALL)]
        assert cell["value"] == pytest.approx(
            np.mean([curve_bd(bj, rows, codec, m) for m in STAND_INS]), rel=1e-9
        )
        assert cell["ci_low"] is None and cell["ci_high"] is None
    assert found[("jpeg80", OVERALL)]["value"] == pytest.approx(-20.0, abs=1e-9)


def test_overall_is_na_with_the_metric_named_never_a_mean_of_six(run, tmp_path):
    def no_webp_mae(rows):
        rows.loc[rows.codec == "webp", "ai_mae"] = math.nan

    broken = copy_with(run, tmp_path / "no-webp-mae", no_webp_mae)
    for mode in ("image", "curve"):
        found = cells(bd_json(broken, "--anchor", "jpeg", "--mode", mode, "--metrics", "jpegai"))
        assert found[("webp", "ai_mae")]["value"] is None
        assert found[("webp", OVERALL)]["value"] is None
        assert found[("webp", OVERALL)]["reason"] == "BD-rate undefined under ai_mae"
        assert found[("jpeg80", OVERALL)]["value"] == pytest.approx(-20.0, abs=1e-9)
    text = invoke("bd", broken, "--anchor", "jpeg", "--metrics", "jpegai").stdout.splitlines()
    assert next(line for line in text if line.startswith("webp ")).endswith(" n/a")
    assert "note: webp jpegai_overall: undefined: BD-rate undefined under ai_mae" in text

    def no_gradient(rows):
        rows["ai_gradient"] = math.nan

    missing = copy_with(run, tmp_path / "no-gradient", no_gradient)
    found = cells(bd_json(missing, "--anchor", "jpeg", "--metrics", "jpegai"))
    assert ("webp", "ai_gradient") not in found  # the group's other metrics are compared
    assert found[("webp", OVERALL)]["reason"] == "no BD-rate under ai_gradient (not computed in these runs)"
    quality = cells(bd_json(run, "--anchor", "jpeg", "--metrics", "jpegai", "--delta", "quality"))
    assert math.isfinite(quality[("webp", "ai_mae")]["value"]) and quality[("webp", OVERALL)]["value"] is None
    assert "not defined for BD-quality" in quality[("webp", OVERALL)]["reason"]


def test_overall_in_every_format_and_ranked(run):
    found = cells(bd_json(run, "--anchor", "jpeg", "--metrics", "jpegai"))
    webp = found[("webp", OVERALL)]
    shown = f"{webp['value']:.2f} [{webp['ci_low']:.2f}, {webp['ci_high']:.2f}]"
    text = invoke("bd", run, "--anchor", "jpeg", "--metrics", "jpegai").stdout.splitlines()
    assert text[2].split() == ["codec", *STAND_INS, OVERALL]
    assert next(line for line in text if line.startswith("webp ")).endswith(f"  {shown}")
    assert (
        f"note: {OVERALL}: {LABEL}: the mean of each metric's mean BD-rate over images under "
        + ", ".join(STAND_INS)
        in text
    )
    markdown = invoke("bd", run, "--anchor", "jpeg", "--metrics", "jpegai", "--format", "markdown").stdout
    assert f"| codec | {' | '.join(STAND_INS)} | {OVERALL} |" in markdown and f" | {shown} |\n" in markdown
    latex = invoke("bd", run, "--anchor", "jpeg", "--metrics", "+jpegai", "--format", "latex").stdout
    assert r"ai\_psnr\_large & jpegai\_overall \\" in latex
    csv = pd.read_csv(
        pd.io.common.StringIO(
            invoke("bd", run, "--anchor", "jpeg", "--metrics", "jpegai", "--format", "csv").stdout
        )
    )
    assert csv.loc[(csv.codec == "webp") & (csv.metric == OVERALL), "value"].item() == pytest.approx(
        webp["value"]
    )
    ranked = bd_json(run, "--anchor", "jpeg", "--metrics", "jpegai", "--ranks")
    scores = {"jpeg": 0.0} | {codec: found[(codec, OVERALL)]["value"] for codec in ("webp", "jpeg80")}
    order = sorted(scores, key=scores.get)
    assert {r["codec"]: r["rank"] for r in ranked["rows"] if r["metric"] == OVERALL} == {
        codec: order.index(codec) + 1 for codec in order
    }
    assert set(ranked["rank_correlation"][OVERALL]) == {*STAND_INS, OVERALL}
    named = bd_json(
        run, "--anchor", "jpeg", "--metrics", ",".join(STAND_INS)
    )  # the group not named: no score
    assert named["overall"] == {} and {m for _, m in cells(named)} == set(STAND_INS)


class _Tables(HTMLParser):
    """The cells of every table with an id: rows of (text, class), the header row first."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str]]]] = {}
        self._table: list | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs["id"], []) if attrs.get("id") else None
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = ["", attrs.get("class") or ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(tuple(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def test_report_shows_the_overall_in_both_bd_tables_and_the_ranks(run, tmp_path):
    result = invoke("report", run, "--metrics", "jpegai", "--no-visual", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    parser = _Tables()
    parser.feed(page)
    for ident, mode in (("bd-image", "image"), ("bd-curve", "curve")):
        found = cells(bd_json(run, "--anchor", "jpeg", "--mode", mode, "--metrics", "jpegai"))
        header, *body = parser.tables[ident]
        assert [text for text, _ in header] == ["codec", *STAND_INS, OVERALL]
        for row in body[1:]:  # the anchor's row says anchor
            value = found[(row[0][0], OVERALL)]["value"]
            text, css = row[-1]
            assert float(text.split()[0]) == pytest.approx(value, abs=0.005)
            assert css == ("good" if value < 0 else "bad")
    assert [text for text, _ in parser.tables["codec-ranks"][0]][-1] == OVERALL
    assert f"{LABEL}: the mean of each metric" in page
    assert f"BD-rate (%) on {OVERALL} vs jpeg, per image" in page
