"""`bench bd`, `compare`, `export` and `report` on runs made in a search mode (matched rates, equal
quality, budgets), each written row by row into a real store with values chosen so that every mean, CI and
ratio has a closed form."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.catalog import load_catalog
from bench.rundir import CodecRecord, DatasetRecord, ImageRecord, Manifest, write_csv, write_manifest
from bench.store import Store
from tests.test_report import bd_json, invoke

SIZES = {"a.png": (100, 100), "b.png": (200, 100), "c.png": (100, 50)}  # width, height
SHA = {name: name[0] * 64 for name in SIZES}
RATE_TARGETS = (0.25, 0.5, 1.0)
OFFSET = {"a.png": 0.0, "b.png": 1.0, "c.png": 3.0}  # dB: each image's own curve
ERROR = {"a.png": -0.004, "b.png": 0.002, "c.png": 0.0}  # achieved bpp = target x (1 + error)
SCALE = {"jpeg": 1.0, "webp": 0.8}  # webp reaches jpeg's PSNR at 80 % of its rate: BD-rate -20 %


def psnr(codec: str, image: str, bpp: float) -> float:
    """Each codec's curve on each image: a line in log rate, webp's at 0.8 of jpeg's rate."""
    return 10 * math.log2(bpp / SCALE[codec]) + 40 + OFFSET[image]


def row(codec: str, image: str, target: str, quality: float, size: int | None, met: int, **values) -> dict:
    """A stored row: ``size`` bytes (None: the target is out of reach, no rate, metrics or times)."""
    width, height = SIZES[image]
    reached = size is not None
    return {
        "dataset": "made",
        "image": image,
        "image_sha256": SHA[image],
        "codec": codec,
        "config_hash": config_hash(codec),
        "quality": quality,
        "target": target,
        "width": width,
        "height": height,
        "bytes": size,
        "bpp": size * 8 / (width * height) if reached else None,
        "target_met": met,
        "probes": 5,
        "target_note": None if met else ("missed" if reached else "out of reach"),
        "enc_s": 0.01 if reached else None,
        "dec_s": 0.005 if reached else None,
        "error": None,
    } | (values if reached else {})


def config_hash(codec: str) -> str:
    return f"{codec:0<16}"[:16]


def make_run(folder: Path, rows: list[dict]) -> Path:
    """A run directory: ``rows`` in results.sqlite and a run.json naming their codecs and images."""
    folder.mkdir(parents=True)
    catalog = load_catalog()
    codecs = dict.fromkeys(r["codec"] for r in rows)
    images = [ImageRecord(name, SHA[name], *SIZES[name]) for name in SIZES]
    manifest = Manifest(
        "0" * 64,
        DatasetRecord("made", "made", str(folder), None, None, images),
        [CodecRecord(catalog[codec], 1, {}, config_hash(codec), ()) for codec in codecs],
        1,
        1,
        "inline",
        {},
        ["psnr_rgb", "psnr_y"],
        {},
    )
    write_manifest(folder, manifest)
    with Store(folder / "results.sqlite") as store:
        for values in rows:
            store.add(values)
        write_csv(folder, store.frame())
    return folder


def achieved(codec: str, target: float, image: str) -> float | None:
    """The bpp of ``codec`` at ``target`` on ``image`` (a whole number of bytes); None: out of reach."""
    if codec == "jpeg" and target == 0.25 and image == "c.png":
        return None
    if codec == "webp" and target == 1.0 and image == "b.png":
        return 0.9  # missed: the closest point under 1 bpp
    pixels = math.prod(SIZES[image])
    return round(target * (1 + ERROR[image]) * pixels / 8) * 8 / pixels


def rate_rows(webp_bytes: float = 1.0) -> list[dict]:
    """jpeg and webp at 0.25, 0.5 and 1 bpp on three images, each point on its codec's line; jpeg cannot
    reach 0.25 bpp on c.png, webp misses 1 bpp on b.png. The knob values differ per image. With
    ``webp_bytes``, webp's rows keep their PSNR at that fraction of their bytes."""
    rows = []
    for codec, target in ((codec, target) for codec in ("jpeg", "webp") for target in RATE_TARGETS):
        for i, image in enumerate(SIZES):
            label, bpp = f"bpp={target:g}", achieved(codec, target, image)
            if bpp is None:
                rows.append(row(codec, image, label, 0, None, 0))
                continue
            size = bpp * math.prod(SIZES[image]) / 8 * (webp_bytes if codec == "webp" else 1.0)
            met = int(abs(bpp / target - 1) < 0.01)
            rows.append(
                row(codec, image, label, 10 * target + i, size, met, psnr_rgb=psnr(codec, image, bpp))
            )
    return rows


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("targets") / "rate", rate_rows())


def records(document: dict, ident: str) -> dict[tuple, dict]:
    table = next(t for t in document["targets"] if t["id"] == ident)
    return {(r["codec"], r["target"]): r for r in table["records"]}


def test_bd_of_a_rate_run_is_taken_across_its_targets(rate_run):
    """Per image, both codecs' points lie on lines 20 % apart in rate: BD-rate is -20 % on every image,
    c.png included, where jpeg has two points only."""
    document = bd_json(rate_run, "--anchor", "jpeg", "--metrics", "psnr_rgb")
    cell = next(r for r in document["rows"] if r["codec"] == "webp")
    assert cell["value"] == pytest.approx(-20, abs=1e-9) and cell["images"] == 3 and cell["undefined"] == 0
    assert cell["ci_low"] == pytest.approx(-20, abs=1e-9) and cell["ci_high"] == pytest.approx(-20, abs=1e-9)


def test_matched_rates_give_each_codecs_means_at_each_target(rate_run):
    document = bd_json(rate_run, "--anchor", "jpeg", "--metrics", "psnr_rgb")
    rates, means = records(document, "achieved-rates"), records(document, "matched-psnr_rgb")
    for codec in ("jpeg", "webp"):
        for target in RATE_TARGETS:
            bpps = [b for image in SIZES if (b := achieved(codec, target, image)) is not None]
            values = [psnr(codec, image, b) for image in SIZES if (b := achieved(codec, target, image))]
            rate, mean = rates[(codec, f"bpp={target:g}")], means[(codec, f"bpp={target:g}")]
            assert rate["bpp"] == pytest.approx(np.mean(bpps), rel=1e-12) and rate["images"] == len(bpps)
            assert mean["mean"] == pytest.approx(np.mean(values), rel=1e-12) and mean["images"] == len(values)
            # two or three values: the 2.5th and 97.5th percentiles of the resampled means are the extremes
            assert (mean["ci_low"], mean["ci_high"]) == pytest.approx((min(values), max(values)), rel=1e-12)
    assert (rates[("jpeg", "bpp=0.25")]["met"], rates[("jpeg", "bpp=0.25")]["unreachable"]) == (2, 1)
    assert (rates[("webp", "bpp=1")]["met"], rates[("webp", "bpp=1")]["unreachable"]) == (2, 0)
    assert rates[("webp", "bpp=1")]["total"] == 3
    assert document["targets"][0]["notes"] == [
        "jpeg: 1 of 3 images unreachable at 0.25 bpp",
        "the codecs' means at 0.25 bpp are over different images (out of reach or failed on some)",
    ]


def test_matched_rates_as_text(rate_run):
    result = invoke("bd", rate_run, "--anchor", "jpeg", "--metrics", "psnr_rgb")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Rates achieved at each rate target" in text and "psnr_rgb at matched rates" in text
    jpeg = next(line for line in text.splitlines() if line.startswith("jpeg ") and "met" in line)
    assert "2/3 met" in jpeg and "3/3 met" in jpeg
    assert "note: jpeg: 1 of 3 images unreachable at 0.25 bpp" in text


def test_a_text_only_target_run_reads_as_the_store(rate_run, tmp_path):
    """results.csv writes an empty target as an empty cell: it must read as the store's ''."""
    copy = tmp_path / "text"
    copy.mkdir()
    for name in ("results.csv", "run.json"):
        shutil.copy(rate_run / name, copy / name)
    args = ("--anchor", "jpeg", "--metrics", "psnr_rgb")
    assert bd_json(copy, *args)["targets"] == bd_json(rate_run, *args)["targets"]


QUALITY_BYTES = {  # codec -> target -> bytes on a, b, c (None: out of reach)
    "jpeg": {35: (1000, 1500, 2000), 40: (2000, 3000, None)},
    "webp": {35: (500, 1200, 2000), 40: (1200, None, 1000)},
    "jxl": {35: (800, 1500, 1000), 40: (1000, 1500, 1200)},
}


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory) -> Path:
    rows = [
        row(codec, image, f"psnr_y={target}", 50 + i, size, int(size is not None), psnr_y=target + 0.1)
        for codec, by_target in QUALITY_BYTES.items()
        for target, sizes in by_target.items()
        for i, (image, size) in enumerate(zip(SIZES, sizes, strict=True))
    ]
    return make_run(tmp_path_factory.mktemp("targets") / "quality", rows)


def test_bytes_at_equal_quality_are_ratios_to_the_anchor_on_the_same_image(quality_run):
    document = bd_json(quality_run, "--anchor", "jpeg", "--metrics", "psnr_y")
    ratios = records(document, "equal-quality")
    expected = {  # (mean, CI) by hand; images where either codec is out of reach left out
        ("webp", "psnr_y=35"): ((0.5 + 0.8 + 1.0) / 3, (0.5, 1.0), 0),
        ("webp", "psnr_y=40"): (0.6, (None, None), 2),  # one image: no CI
        ("jxl", "psnr_y=35"): ((0.8 + 1.0 + 0.5) / 3, (0.5, 1.0), 0),
        ("jxl", "psnr_y=40"): (0.5, (0.5, 0.5), 1),
    }
    for key, (mean, (low, high), left_out) in expected.items():
        found = ratios[key]
        assert found["ratio"] == pytest.approx(mean, rel=1e-12) and found["left_out"] == left_out, key
        assert (found["ci_low"], found["ci_high"]) == (pytest.approx(low), pytest.approx(high)), key
        assert found["anchor"] == "jpeg"
    notes = next(t for t in document["targets"] if t["id"] == "equal-quality")["notes"]
    assert "webp vs jpeg at psnr_y 40: 2 of 3 images left out of the bytes ratio (the target not reached by " \
        "webp on 1, by jpeg on 1)" in notes  # fmt: skip
    assert "jpeg: 1 of 3 images unreachable at psnr_y 40" in notes


def test_the_equal_quality_anchor_is_bds(quality_run):
    ratios = records(bd_json(quality_run, "--anchor", "webp", "--metrics", "psnr_y"), "equal-quality")
    assert ratios[("jpeg", "psnr_y=35")]["ratio"] == pytest.approx((2 + 1.5 / 1.2 + 1) / 3, rel=1e-12)
    assert set(ratios) == {(codec, f"psnr_y={t}") for codec in ("jpeg", "jxl") for t in (35, 40)}


BUDGET_BYTES = {"a.png": 500, "b.png": 1200, "c.png": 200}  # 0.4, 0.48 and 0.32 bpp


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory) -> Path:
    """jpeg at one knob value for every image within 0.5 bpp; webp cannot get that low."""
    rows = [
        row("jpeg", image, "budget_bpp=0.5", 42, size, 1, psnr_rgb=30 + i)
        for i, (image, size) in enumerate(BUDGET_BYTES.items())
    ]
    rows += [row("webp", image, "budget_bpp=0.5", 0, None, 0) for image in SIZES]
    return make_run(tmp_path_factory.mktemp("targets") / "budget", rows)


def test_a_budget_gives_the_knob_the_corpus_rate_and_the_spread(budget_run):
    document = bd_json(budget_run, "--anchor", "jpeg", "--metrics", "psnr_rgb")
    table = records(document, "budget-0.5")
    jpeg = table[("jpeg", "budget_bpp=0.5")]
    bits, pixels = 8 * sum(BUDGET_BYTES.values()), sum(w * h for w, h in SIZES.values())
    assert jpeg["knob"] == "42" and jpeg["corpus_bpp"] == pytest.approx(bits / pixels, rel=1e-12)
    assert (jpeg["bpp_min"], jpeg["bpp_median"], jpeg["bpp_max"]) == pytest.approx((0.32, 0.4, 0.48))
    assert jpeg["means"] == {"psnr_rgb": pytest.approx(31.0)} and (jpeg["met"], jpeg["total"]) == (3, 3)
    assert table[("webp", "budget_bpp=0.5")]["images"] == 0
    notes = next(t for t in document["targets"] if t["id"] == "budget-0.5")["notes"]
    assert notes == ["webp: 3 of 3 images unreachable at a budget of 0.5 bpp"]
    text = invoke("bd", budget_run, "--anchor", "jpeg", "--metrics", "psnr_rgb").stdout
    assert "At a budget of 0.5 bpp" in text and "unreachable" in text and "0.434" in text


def test_compare_pairs_the_targets_of_two_rate_runs(rate_run, tmp_path):
    """NEW's webp reaches the same PSNR on each image with 90 % of the bytes, at other knob values: its
    mean curve over the targets is BASE's at 0.9 of the rate (-10 %); jpeg's is the same."""
    new = make_run(tmp_path / "new", rate_rows(webp_bytes=0.9))
    result = invoke("compare", rate_run, new)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert lines["webp"][1] == "-10.00" and lines["jpeg"][1] == "+0.00"
    assert "BASE ran at" not in result.stderr


def test_compare_says_when_the_runs_ran_at_other_points(rate_run, budget_run):
    result = invoke("compare", rate_run, budget_run)
    assert result.exit_code == 0, result.output
    assert (
        "note: BASE ran at targets bpp=0.25, bpp=0.5, bpp=1, NEW at targets budget_bpp=0.5" in result.stderr
    )


def test_export_writes_one_point_per_target(rate_run, tmp_path):
    result = invoke("export", rate_run, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    jpeg = json.loads((tmp_path / "jpeg.json").read_text())
    assert jpeg["meta"]["targets"] == ["bpp=0.25", "bpp=0.5", "bpp=1"] and "quality" not in jpeg["results"]
    expected = [np.mean([b for image in SIZES if (b := achieved("jpeg", t, image))]) for t in RATE_TARGETS]
    assert jpeg["results"]["bpp"] == pytest.approx(expected, rel=1e-12)


def test_reports_of_target_runs_hold_their_tables(rate_run, quality_run, budget_run, tmp_path):
    for run, tables in (
        (rate_run, ["achieved-rates", "matched-psnr_rgb"]),
        (quality_run, ["equal-quality"]),
        (budget_run, ["budget-0.5"]),
    ):
        out = tmp_path / run.name
        result = invoke("report", run, "--out", out, "--no-visual", "--anchor", "jpeg")
        assert result.exit_code == 0, result.output
        page = (out / "index.html").read_text()
        assert '<section id="targets"><h2>Targets</h2>' in page
        assert all(f'<table id="{ident}">' in page for ident in tables)
    assert (tmp_path / "quality" / "figures" / "bytes_at_equal_quality.svg").is_file()
    page = (tmp_path / "rate" / "index.html").read_text()
    assert "jpeg: 1 of 3 images unreachable at 0.25 bpp" in page and "targets (" in page
