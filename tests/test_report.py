"""`bench bd`, `bench export` and `bench report` on real runs; the report opened in headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

import bench
from bench.cli import cli
from bench.report.visual import STRIDE, pick_region
from tests.chromium import chromium_browser  # noqa: F401 - the `chromium` fixture
from tests.test_bd import bjontegaard_package  # noqa: F401 - the `bj` fixture

QUALITIES = {"jpeg": [10, 30, 50, 75, 90], "webp": [10, 30, 50, 75, 90], "jp2": [160, 64, 40, 24, 12]}
CODECS = ["jp2", "jpeg", "webp"]  # the table order: run order, then codec name
# What run_dir computes, its BD metrics in registry order (ms_ssim comes as ms_ssim_db's source, not compared)
METRICS = ["psnr_rgb", "psnr_y", "psnr_yuv10", "ms_ssim_db", "ciede2000"]
LOWER_IS_BETTER = {"ciede2000"}


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def user_error(result, text: str) -> None:
    """Exit status 2 and one line on stderr holding ``text``, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ") and text in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    return folder


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, photos) -> Path:
    """A real run: jpeg, webp and jp2 at five points each over three photographs, under METRICS."""
    out = tmp_path_factory.mktemp("runs") / "three"
    rows = bench.run(
        "jpeg,webp,jp2", str(photos), out=str(out), qualities=QUALITIES, jobs=2, metrics=",".join(METRICS)
    )
    assert rows["error"].isna().all()
    return out


@pytest.fixture(scope="session")
def jpeg444_dir(tmp_path_factory, photos) -> Path:
    """A second real run with one codec: JPEG 4:4:4."""
    out = tmp_path_factory.mktemp("runs") / "jpeg444"
    bench.run("jpeg:subsampling=444", str(photos), out=str(out), qualities={"jpeg": [20, 50, 80, 95]}, jobs=2)
    return out


@pytest.fixture()
def csv_copy(run_dir, tmp_path) -> Path:
    """The run as text only: results.csv and run.json, no SQLite file."""
    copy = tmp_path / "text-run"
    copy.mkdir()
    for name in ("results.csv", "run.json"):
        shutil.copy(run_dir / name, copy / name)
    return copy


def reference_bd(
    bj, anchor: pd.DataFrame, test: pd.DataFrame, metric: str, lower_is_better: set[str] = LOWER_IS_BETTER
) -> float:
    """The bjontegaard package's BD-rate of two curves given as rows (bpp, metric); a lower-is-better
    metric (one of ``lower_is_better``) negated, so that its curves rise."""
    anchor, test = anchor.sort_values("bpp"), test.sort_values("bpp")
    sign = -1 if metric in lower_is_better else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bj.bd_rate(
            anchor["bpp"], sign * anchor[metric], test["bpp"], sign * test[metric], "pchip",
            require_matching_points=False,
        )  # fmt: skip


def reference_image_bd(bj, rows: pd.DataFrame, anchor: str, codec: str, metric: str) -> list[float]:
    """The bjontegaard package's BD-rate of ``codec`` against ``anchor`` on each image."""
    return [
        reference_bd(bj, rows[(rows.codec == anchor) & (rows.image == image)], group, metric)
        for image, group in rows[rows.codec == codec].groupby("image")
    ]


def bd_json(*args) -> dict:
    result = invoke("bd", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cells(document: dict) -> dict[tuple[str, str], dict]:
    return {(r["codec"], r["metric"]): r for r in document["rows"] if r["role"] == "test"}


def test_bd_image_mode_matches_bjontegaard_per_image(run_dir, bj):
    rows = pd.read_csv(run_dir / "results.csv")
    document = bd_json(run_dir, "--anchor", "jpeg")
    found = cells(document)
    assert document["metrics"] == METRICS  # by default, every compared metric the run holds
    assert sorted(codec for codec, _ in found) == sorted(["jp2", "webp"] * len(METRICS))
    for codec in ("jp2", "webp"):
        for metric in METRICS:
            per_image = reference_image_bd(bj, rows, "jpeg", codec, metric)
            cell = found[(codec, metric)]
            assert cell["images"] == 3 and cell["undefined"] == 0 and cell["dropped"] == 0
            assert cell["value"] == pytest.approx(np.mean(per_image), rel=1e-9)
            low, high = min(per_image) - 1e-9, max(per_image) + 1e-9
            assert low <= cell["ci_low"] < cell["value"] < cell["ci_high"] <= high
            images = document["per_image"][f"{codec}/{metric}"]
            assert sorted(images.values()) == pytest.approx(sorted(per_image), rel=1e-9)


def test_bd_curve_mode_matches_bjontegaard_on_mean_curves(run_dir, bj):
    rows = pd.read_csv(run_dir / "results.csv")
    means = rows.groupby(["codec", "quality"])[["bpp", "psnr_rgb", "ms_ssim_db"]].mean().reset_index()
    found = cells(bd_json(run_dir, "--anchor", "webp", "--mode", "curve", "--metrics", "psnr_rgb,ms_ssim_db"))
    assert set(found) == {(c, m) for c in ("jp2", "jpeg") for m in ("psnr_rgb", "ms_ssim_db")}
    for (codec, metric), cell in found.items():
        expected = reference_bd(bj, means[means.codec == "webp"], means[means.codec == codec], metric)
        assert cell["value"] == pytest.approx(expected, rel=1e-9)
        assert cell["ci_low"] is None and 0 < cell["overlap"] <= 1


def test_bd_text_markdown_latex_csv(run_dir):
    text = invoke("bd", run_dir, "--anchor", "jpeg")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].startswith("BD-rate (%) vs jpeg: BD per image, mean over 3 images [bootstrap 95 % CI]")
    assert [line.split()[0] for line in lines[2:6]] == ["codec", "jpeg", "jp2", "webp"] and lines[6] == ""
    assert lines[2].split() == ["codec", *METRICS]
    assert lines[4].split()[1:3] != ["n/a", "n/a"] and "[" in lines[4]  # a value and its CI
    markdown = invoke("bd", run_dir, "--anchor", "jpeg", "--format", "markdown", "--mode", "curve").stdout
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0] == f"| codec | {' | '.join(METRICS)} |" and rows[2].startswith("| jpeg | anchor")
    assert [r.split(" | ")[0] for r in rows[2:5]] == ["| jpeg", "| jp2", "| webp"]
    latex = invoke("bd", run_dir, "--anchor", "jpeg", "--format", "latex").stdout
    assert r"\begin{tabular}{lrrrrr}" in latex and r"psnr\_rgb" in latex and latex.count(r"\\") == 4
    csv = pd.read_csv(
        pd.io.common.StringIO(invoke("bd", run_dir, "--anchor", "jpeg", "--format", "csv").stdout)
    )
    assert len(csv) == 3 * len(METRICS) and set(csv["role"]) == {"anchor", "test"}
    quality = bd_json(run_dir, "--anchor", "jpeg", "--delta", "quality", "--method", "akima")
    # webp and jp2 beat jpeg at equal rate: a higher quality, a lower CIEDE2000
    assert all((c["value"] > 0) == (m not in LOWER_IS_BETTER) for (_, m), c in cells(quality).items())


def test_bd_reads_results_csv_when_the_database_is_absent(run_dir, csv_copy):
    from_database = bd_json(run_dir, "--anchor", "jpeg")
    from_text = bd_json(csv_copy, "--anchor", "jpeg")
    assert from_text["rows"] == from_database["rows"]


def test_non_monotonic_and_infinite_points_are_dropped_and_counted(csv_copy, bj):
    path = csv_copy / "results.csv"
    rows = pd.read_csv(path)
    webp = rows[(rows.codec == "webp") & (rows.image == "chelsea.png")].sort_values("bpp")
    rows.loc[webp.index[-1], "psnr_rgb"] = webp["psnr_rgb"].iloc[0] - 1.0  # the top point falls below all
    jpeg = rows[(rows.codec == "jpeg") & (rows.image == "coffee.png")].sort_values("bpp")
    rows.loc[jpeg.index[-1], "psnr_rgb"] = math.inf  # as a lossless point is stored
    rows.to_csv(path, index=False)
    document = bd_json(csv_copy, "--anchor", "jpeg", "--metrics", "psnr_rgb")
    cell = cells(document)[("webp", "psnr_rgb")]
    assert cell["dropped"] == 1 and cell["undefined"] == 0
    anchor = next(r for r in document["rows"] if r["role"] == "anchor")
    assert anchor["skipped"] == 1 and anchor["dropped"] == 0
    anchor_curve = rows[(rows.codec == "jpeg") & (rows.image == "chelsea.png")]
    expected = reference_bd(bj, anchor_curve, webp.iloc[:-1], "psnr_rgb")
    assert document["per_image"]["webp/psnr_rgb"]["chelsea.png"] == pytest.approx(expected, rel=1e-9)
    text = invoke("bd", csv_copy, "--anchor", "jpeg", "--metrics", "psnr_rgb").stdout
    assert "jpeg psnr_rgb: 1 saturated point(s) skipped (infinite, or at its ceiling)" in text
    assert "0 / 1 / " in text  # webp: no undefined image, one point dropped


def test_export_compressai_and_import_round_trip(run_dir):
    result = invoke("export", run_dir)
    assert result.exit_code == 0, result.output
    files = sorted(Path(line).name for line in result.stdout.split())
    assert files == ["jp2.json", "jpeg.json", "webp.json"]
    document = json.loads((run_dir / "compressai" / "webp.json").read_text())
    rows = pd.read_csv(run_dir / "results.csv")
    means = rows[rows.codec == "webp"].groupby("quality")[["bpp", "psnr_rgb", "ms_ssim"]].mean()
    means = means.sort_values("bpp")
    assert document["name"] == "webp" and document["meta"]["images"] == 3
    assert document["results"]["bpp"] == pytest.approx(list(means["bpp"]), rel=1e-12)
    assert document["results"]["psnr-rgb"] == pytest.approx(list(means["psnr_rgb"]), rel=1e-12)
    assert document["results"]["ms-ssim-rgb"] == pytest.approx(list(means["ms_ssim"]), rel=1e-12)
    # imported, the exported curve gives the same curve-mode BD as the run's own
    imported = bd_json(
        run_dir, "--anchor", "jpeg", "--mode", "curve", "--metrics", "psnr_rgb,psnr_y",
        "--import", run_dir / "compressai" / "webp.json",
    )  # fmt: skip
    found = cells(imported)
    for metric in ("psnr_rgb", "psnr_y"):
        assert found[("webp@webp", metric)]["imported"] is True
        assert found[("webp@webp", metric)]["value"] == pytest.approx(
            found[("webp", metric)]["value"], rel=1e-12
        )
    text = invoke("bd", run_dir, "--anchor", "jpeg", "--import", run_dir / "compressai" / "webp.json")
    assert "imported curves (webp@webp) have BD only between mean curves (--mode curve)" in text.stdout
    anchor_imported = invoke(
        "bd", run_dir, "--anchor", "webp@webp", "--import", run_dir / "compressai" / "webp.json"
    )
    user_error(anchor_imported, "is an imported curve: use --mode curve")


def test_import_reads_published_files_and_refuses_bad_ones(run_dir, tmp_path):
    published = tmp_path / "paper.json"
    published.write_text(
        json.dumps(
            {"name": "paper-codec", "results": {"bpp": [0.2, 0.5, 1.0, 1.6], "psnr": [27, 31, 35, 38]}}
        )
    )
    found = cells(bd_json(run_dir, "--anchor", "jpeg", "--mode", "curve", "--import", published))
    assert found[("paper-codec", "psnr_rgb")]["imported"] and math.isfinite(
        found[("paper-codec", "psnr_rgb")]["value"]
    )
    assert found[("paper-codec", "ms_ssim_db")]["value"] is None  # the file has no MS-SSIM
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30]}}))
    user_error(invoke("bd", run_dir, "--anchor", "jpeg", "--import", bad), "must be a list of 2 numbers")
    bad.write_text("{not json")
    user_error(invoke("bd", run_dir, "--anchor", "jpeg", "--import", bad), "not a readable JSON file")


def test_bd_refuses_clearly(run_dir, jpeg444_dir, tmp_path):
    user_error(
        invoke("bd", run_dir, "--anchor", "avif"),
        "anchor 'avif' is not in these runs; codecs: jp2, jpeg, webp",
    )
    user_error(invoke("bd", jpeg444_dir, "--anchor", "jpeg"), "only one codec (jpeg)")
    user_error(
        invoke("bd", run_dir, run_dir, "--anchor", "jpeg"),
        "in several runs or configurations: name one as listed",
    )
    user_error(invoke("bd", tmp_path / "nothing", "--anchor", "jpeg"), "no such run directory")
    user_error(invoke("bd", tmp_path, "--anchor", "jpeg"), "not a run directory")
    user_error(
        invoke("bd", run_dir, "--anchor", "jpeg", "--metrics", "image"),
        "no metric or group 'image'; choose from all, default",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    header = (run_dir / "results.csv").read_text().splitlines()[0]
    (empty / "results.csv").write_text(header + "\n")
    shutil.copy(run_dir / "run.json", empty / "run.json")
    user_error(invoke("bd", empty, "--anchor", "jpeg"), "no finished task to report")
    user_error(invoke("report", empty), "no finished task to report")


def test_two_runs_label_a_codec_by_its_options_then_by_run(run_dir, jpeg444_dir):
    document = bd_json(run_dir, jpeg444_dir, "--anchor", "jpeg", "--mode", "curve", "--metrics", "psnr_rgb")
    assert sorted(codec for codec, _ in cells(document)) == ["jp2", "jpeg:subsampling=444", "webp"]
    assert math.isfinite(cells(document)[("jpeg:subsampling=444", "psnr_rgb")]["value"])
    assert document["anchor"] == "jpeg"
    same = bd_json(run_dir, run_dir, "--anchor", "jpeg@three", "--mode", "curve", "--metrics", "psnr_rgb")
    assert sorted(codec for codec, _ in cells(same)) == [
        "jp2@three",
        "jp2@three#2",
        "jpeg@three#2",
        "webp@three",
        "webp@three#2",
    ]
    assert cells(same)[("jpeg@three#2", "psnr_rgb")]["value"] == 0


@pytest.fixture(scope="session")
def disagreeing(run_dir, tmp_path_factory) -> Path:
    """run_dir as text, plus jpeg80 (jpeg's rows at 80 % of their rate: BD-rate -20 % under every metric)
    and webp's CIEDE2000 doubled (worse on every image), so that ciede2000 ranks the codecs unlike the rest."""
    copy = tmp_path_factory.mktemp("runs") / "disagreeing"
    copy.mkdir()
    shutil.copy(run_dir / "run.json", copy / "run.json")
    rows = pd.read_csv(run_dir / "results.csv")
    jpeg80 = rows[rows.codec == "jpeg"].assign(
        codec="jpeg80", config_hash="8" * 16, bpp=lambda r: r.bpp * 0.8
    )
    rows.loc[rows.codec == "webp", "ciede2000"] *= 2
    pd.concat([rows, jpeg80]).to_csv(copy / "results.csv", index=False)
    return copy


def reference_ranks(bj, rows: pd.DataFrame) -> tuple[dict, dict]:
    """(mean BD-rate vs jpeg, rank: 1 = the lowest) per metric and codec, from the bjontegaard package."""
    means, ranks = {}, {}
    for metric in METRICS:
        means[metric] = {"jpeg": 0.0} | {
            codec: float(np.mean(reference_image_bd(bj, rows, "jpeg", codec, metric)))
            for codec in ("jp2", "jpeg80", "webp")
        }
        ordered = sorted(means[metric], key=means[metric].get)
        ranks[metric] = {codec: ordered.index(codec) + 1 for codec in ordered}
    return means, ranks


def test_bd_ranks_follow_each_metric_direction(disagreeing, bj):
    from scipy.stats import kendalltau

    means, ranks = reference_ranks(bj, pd.read_csv(disagreeing / "results.csv"))
    document = bd_json(disagreeing, "--anchor", "jpeg", "--ranks")
    found = cells(document)
    for metric in METRICS:
        assert found[("jpeg80", metric)]["value"] == pytest.approx(-20.0, abs=1e-9)
        for codec in ("jp2", "jpeg80", "webp"):
            assert found[(codec, metric)]["value"] == pytest.approx(means[metric][codec], rel=1e-9)
        assert {r["codec"]: r["rank"] for r in document["rows"] if r["metric"] == metric} == ranks[metric]
    # lower is better: the codec better on every image ranks first, the one worse ranks last
    assert ranks["ciede2000"]["jpeg80"] < ranks["ciede2000"]["jpeg"] < ranks["ciede2000"]["webp"]
    assert ranks["psnr_rgb"]["webp"] < ranks["psnr_rgb"]["jpeg80"]
    codecs = list(ranks["psnr_rgb"])
    for a in METRICS:
        for b in METRICS:
            tau = kendalltau([ranks[a][c] for c in codecs], [ranks[b][c] for c in codecs]).statistic
            assert document["rank_correlation"][a][b] == pytest.approx(tau, abs=1e-12)
    assert (
        document["rank_reference"] == "psnr_rgb" and document["rank_correlation"]["psnr_rgb"]["ciede2000"] < 1
    )

    args = ("bd", disagreeing, "--anchor", "jpeg", "--ranks", "--metrics", "psnr_rgb,ciede2000")
    text = invoke(*args).stdout.splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("Codecs ranked under each metric by BD"))
    order = sorted(codecs, key=ranks["psnr_rgb"].get)
    expected = [
        [codec, str(ranks["psnr_rgb"][codec]), str(ranks["ciede2000"][codec])
         + ("*" if ranks["ciede2000"][codec] != ranks["psnr_rgb"][codec] else "")]
        for codec in order
    ]  # fmt: skip
    assert [line.split() for line in text[start + 2 : start + 7]] == [
        ["codec", "psnr_rgb", "ciede2000"],
        *expected,
    ]
    assert text[start + 8].startswith("Kendall tau-b between the metrics' rankings")
    csv = pd.read_csv(pd.io.common.StringIO(invoke(*args, "--format", "csv").stdout))
    assert {(c, m): r for c, m, r in csv[["codec", "metric", "rank"]].values} == {
        (c, m): ranks[m][c] for m in ("psnr_rgb", "ciede2000") for c in codecs
    }


def test_ranks_leave_undefined_cells_out_and_follow_the_delta():
    from bench.report.bdtable import BDCell, BDTable
    from bench.report.ranks import rank_codecs

    def ranked(delta: str, values: dict[str, dict[str, float]]):
        cells = {(c, m): BDCell(c, m, v) for m, column in values.items() for c, v in column.items()}
        table = BDTable(
            "a", "curve", "pchip", delta, list(values), list(values["psnr_rgb"]), cells, {}, {}, 0
        )
        return rank_codecs(table)

    nan = math.nan
    ranking = ranked(
        "rate",
        {
            "psnr_rgb": {"x": -10.0, "w": -10.0, "y": -5.0, "z": nan},
            "ciede2000": {"x": -5.0, "w": nan, "y": -10.0, "z": 3.0},
            "psnr_y": {"x": nan, "w": nan, "y": nan, "z": nan},
        },
    )
    assert ranking.ranks.fillna(0).to_dict("index") == {
        "x": {"psnr_rgb": 1, "ciede2000": 2, "psnr_y": 0},
        "w": {"psnr_rgb": 1, "ciede2000": 0, "psnr_y": 0},  # a tie shares the best rank
        "y": {"psnr_rgb": 3, "ciede2000": 1, "psnr_y": 0},
        "a": {"psnr_rgb": 4, "ciede2000": 3, "psnr_y": 0},  # no codec has a BD under psnr_y: none ranked
        "z": {"psnr_rgb": 0, "ciede2000": 4, "psnr_y": 0},
    }
    # ranked under both: x, y and a; of their three pairs one is discordant (x, y): tau = (2 - 1) / 3
    assert ranking.tau.loc["psnr_rgb", "ciede2000"] == pytest.approx(1 / 3)
    assert math.isnan(ranking.tau.loc["psnr_rgb", "psnr_y"])
    # BD-quality: higher is better under psnr_rgb, lower under ciede2000
    quality = ranked("quality", {"psnr_rgb": {"x": 1.0, "y": -0.3}, "ciede2000": {"x": -0.5, "y": 0.2}})
    assert quality.ranks.to_dict() == {
        "psnr_rgb": {"x": 1, "a": 2, "y": 3},
        "ciede2000": {"x": 1, "a": 2, "y": 3},
    }


def test_rd_figures_put_better_up_and_say_so():
    from bench.report.plots import rd_figure, styles

    curves = pd.DataFrame({"label": "x", "bpp": [0.5, 1.0], "value": [3.0, 2.0], "imported": False})
    for metric, label, inverted in (
        ("psnr_rgb", "PSNR RGB (dB)", False),
        ("ciede2000", "CIEDE2000 (mean ΔE00), lower is better (axis inverted)", True),
    ):
        axes = rd_figure(curves, metric, styles(["x"]), "t").axes[0]
        assert axes.get_ylabel() == label and axes.yaxis_inverted() == inverted


def test_report_of_disagreeing_metrics_in_headless_chromium(disagreeing, bj, chromium, tmp_path):
    from scipy.stats import kendalltau

    means, ranks = reference_ranks(bj, pd.read_csv(disagreeing / "results.csv"))
    out = tmp_path / "report"
    assert invoke("report", disagreeing, "--out", out, "--no-visual").exit_code == 0
    assert "<script" not in (out / "index.html").read_text()
    chromium.send("Page.enable")
    chromium.send("Page.navigate", url=(out / "index.html").as_uri())
    chromium.wait_for("Page.loadEventFired")
    ids = chromium.evaluate("[...document.querySelectorAll('[id]')].map(e => e.id)")
    assert len(ids) == len(set(ids)), ids
    assert chromium.evaluate("[...document.querySelectorAll('#rd-tabs label')].map(l => l.textContent)") == [
        "all metrics",
        *METRICS,
    ]
    shown = (
        "[...document.querySelectorAll('#rd-tabs img.figure')].filter(i => i.getBoundingClientRect().width > 0)"
        ".map(i => [i.alt, i.naturalWidth, i.closest('figure').querySelector('figcaption').textContent])"
    )
    assert [alt for alt, _, _ in chromium.evaluate(shown)] == ["RD curve, psnr_rgb"]  # the first tab
    for i, metric in enumerate(METRICS):
        chromium.evaluate(f"document.querySelector('label[for=rd-{i}]').click() ?? true")
        [(alt, natural, caption)] = chromium.evaluate(shown)
        assert alt == f"RD curve, {metric}" and natural > 0
        assert ("lower is better (axis inverted)" in caption) == (metric in LOWER_IS_BETTER)
    chromium.evaluate("document.querySelector('label[for=rd-all]').click() ?? true")
    assert len(chromium.evaluate(shown)) == len(METRICS)

    def grid(ident: str) -> list[list]:
        return chromium.evaluate(
            f"[...document.querySelectorAll('#{ident} tbody tr')].map(r => [...r.cells].map(c => "
            "[c.textContent, c.className]))"
        )

    for row in grid("bd-image")[1:]:  # the anchor's row says anchor
        codec = row[0][0]
        for metric, (text, css) in zip(METRICS, row[1:]):
            value = float(text.split()[0])
            assert value == pytest.approx(means[metric][codec], abs=0.005)
            assert css == ("good" if value < 0 else "bad"), (codec, metric)
    order = sorted(ranks["psnr_rgb"], key=ranks["psnr_rgb"].get)
    rank_grid = grid("codec-ranks")
    assert [row[0][0] for row in rank_grid] == order
    shown_ranks = {metric: {} for metric in METRICS}
    for row in rank_grid:
        codec = row[0][0]
        for metric, (text, css) in zip(METRICS, row[1:]):
            shown_ranks[metric][codec] = int(text.rstrip("*"))
            differs = ranks[metric][codec] != ranks["psnr_rgb"][codec]
            assert (css == "differs") == differs == text.endswith("*"), (codec, metric)
    assert shown_ranks == ranks
    assert sum(text.endswith("*") for row in rank_grid for text, _ in row) > 0
    for a, row in zip(METRICS, grid("rank-correlation")):
        assert row[0][0] == a
        for b, (text, css) in zip(METRICS, row[1:]):
            tau = kendalltau([ranks[a][c] for c in order], [ranks[b][c] for c in order]).statistic
            assert float(text) == pytest.approx(tau, abs=0.005)
            assert css == ("" if tau == 1 else "differs" if tau > 0 else "opposed")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") or (tag == "link" and name == "href"):
                self.links.append((tag, name, value or ""))


def test_report_files_and_self_containment(run_dir):
    result = invoke("report", run_dir)
    assert result.exit_code == 0, result.output
    out = run_dir / "report"
    assert Path(result.stdout.strip()) == out / "index.html"
    for metric in METRICS:
        base = out / "figures" / f"rd_{metric}"
        assert base.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
        assert base.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
        assert Image.open(base.with_suffix(".png")).size[0] > 500
    crops = sorted(p.name for p in (out / "crops").glob("*.png"))
    heatmaps = [f"{t}bpp_{c}_butteraugli.png" for t in ("0.25", "0.5") for c in CODECS]
    assert crops == sorted(
        [f"{t}bpp_{c}.png" for t in ("0.25", "0.5") for c in ["original", *CODECS]] + heatmaps
    )
    for name in heatmaps:  # each codec's Butteraugli heat map of its crop: the crop's size, not all black
        heatmap = np.asarray(Image.open(out / "crops" / name).convert("RGB"))
        assert heatmap.shape == np.asarray(Image.open(out / "crops" / name.replace("_butteraugli", ""))).shape
        assert heatmap.max() > 0
    page = (out / "index.html").read_text()
    parser = _Links()
    parser.feed(page)
    for tag, name, value in parser.links:
        if name == "src":
            assert value.startswith("data:image/"), (tag, value[:80])
        else:
            assert value.startswith("#") or (out / value).is_file(), value
    assert "<script" not in page and "@import" not in page and "url(" not in page
    for section in (
        "What was run",
        "RD curves",
        "BD-rate",
        "Ranks",
        "Speed",
        "Per-image results",
        "Visual comparison",
    ):
        assert f">{section}</h2>" in page
    assert "anchor: jpeg (the default" in page
    assert '<table class="left">' in page  # the codec configuration table
    # webp and jp2 save rate against jpeg on every metric, in the per-image and the mean-curve tables
    assert page.count('<td class="good">') == 2 * len(METRICS) * 2 and 'class="bad"' not in page


def test_report_of_several_runs_with_an_imported_curve(run_dir, jpeg444_dir, tmp_path):
    user_error(invoke("report", run_dir, jpeg444_dir), "--out is required with several runs")
    published = tmp_path / "paper.json"
    published.write_text(
        json.dumps({"name": "paper", "results": {"bpp": [0.3, 0.6, 1.2], "psnr-rgb": [29, 33, 37]}})
    )
    out = tmp_path / "both"
    result = invoke("report", run_dir, jpeg444_dir, "--out", out, "--import", published, "--no-visual")
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    assert "<td>jpeg</td>" in page and "<td>jpeg:subsampling=444</td>" in page and "paper (imported)" in page
    assert page.count("<h3>three</h3>") == 1 and page.count("<h3>jpeg444</h3>") == 1


def test_report_of_a_single_codec_says_there_is_no_bd(jpeg444_dir, tmp_path):
    result = invoke("report", jpeg444_dir, "--out", tmp_path / "one", "--no-visual")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "one" / "index.html").read_text()
    assert "one codec only: no BD table" in page and 'id="bd-image"' not in page


def test_pick_region_finds_where_codecs_differ_most():
    rng = np.random.default_rng(7)
    original = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    noisy = [np.clip(original + rng.normal(0, 2, original.shape), 0, 255).astype(np.uint8) for _ in range(3)]
    noisy[1][120:152, 40:72] = 0  # one codec ruins a 32 x 32 patch
    top, left, side = pick_region(original, noisy, 32)
    assert side == 32 and abs(top - 120) < STRIDE and abs(left - 40) < STRIDE


def test_report_in_headless_chromium(run_dir, chromium):
    out = run_dir / "report"
    if not (out / "index.html").exists():
        assert invoke("report", run_dir).exit_code == 0
    for domain in ("Runtime", "Log", "Network", "Page"):
        chromium.send(f"{domain}.enable")
    chromium.send("Page.navigate", url=(out / "index.html").as_uri())
    chromium.wait_for("Page.loadEventFired")
    errors = [
        e
        for e in chromium.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert errors == []
    requested = [
        e["params"]["request"]["url"]
        for e in chromium.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested and all(url.startswith(("file:", "data:")) for url in requested), requested
    chromium.evaluate("document.querySelector('label[for=rd-all]').click() ?? true")  # every RD figure shown
    figures = chromium.evaluate(
        "[...document.querySelectorAll('img.figure, img.crop')].map(i => "
        "[i.className, i.naturalWidth, i.getBoundingClientRect().width, i.getBoundingClientRect().height])"
    )
    assert [f[0] for f in figures].count("figure") == len(METRICS)
    assert [f[0] for f in figures].count("crop") == 8
    assert all(natural > 0 and width > 0 and height > 0 for _, natural, width, height in figures), figures
    codecs = chromium.evaluate(
        "[...document.querySelectorAll('#bd-image tbody tr')].map(r => r.cells[0].textContent)"
    )
    assert codecs == ["jpeg", "jp2", "webp"]
    speed = chromium.evaluate(
        "[...document.querySelectorAll('#speed-table tbody tr')].map(r => r.cells[0].textContent)"
    )
    assert speed == CODECS
    complexity = chromium.evaluate(
        "[...document.querySelectorAll('#complexity-table tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [row[0] for row in complexity] == CODECS
    assert all(row[1:3] == ["-", "-"] for row in complexity)  # no kMAC count for traditional codecs


def test_a_dollar_in_a_run_name_is_drawn_as_written_not_parsed_as_mathtext(run_dir, tmp_path):
    dollars = tmp_path / "x$^$y"  # mathtext would fail on "$^$" (issue 15)
    shutil.copytree(run_dir, dollars)
    out = tmp_path / "report"
    result = invoke("report", run_dir, dollars, "--out", out, "--no-visual", "--metrics", "psnr_rgb")
    assert result.exit_code == 0, result.output
    assert "<td>jpeg@x$^$y</td>" in (out / "index.html").read_text()
    assert (out / "figures" / "rd_psnr_rgb.png").stat().st_size > 0
