"""A run holding two configurations of one codec (`--codecs lic,lic:exact=false`): each is told apart by
its config hash and labelled by its options in the summary, bd, report (visual comparison included),
export and compare; across runs, configurations pair by codec name and options."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench.cli import cli
from bench.labels import Configuration, configuration_labels


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_lics(tmp_path_factory) -> Path:
    """A run of lic with the exact and the float decoder on two 192x192 photographs."""
    root = tmp_path_factory.mktemp("two-lics")
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[64:256, 160:352]).save(photos / "astronaut.png")
    Image.fromarray(data.chelsea()[:192, 100:292]).save(photos / "chelsea.png")
    out = root / "run"
    result = invoke("run", "--codecs", "lic,lic:exact=false", "--dataset", photos, "--qualities", "lic=0,3,6",
                    "--executor", "inline", "--metrics", "psnr_rgb,psnr_y", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    out.joinpath("stdout.txt").write_text(result.stdout)
    return out


def hashes(run: Path) -> dict[str, bool]:
    """config hash -> the lic configuration's exact option, from run.json."""
    codecs = json.loads((run / "run.json").read_text())["config"]["codecs"]
    return {c["config_hash"]: c["entry"]["options"].get("exact", True) for c in codecs}


def test_labels_tell_configurations_apart_by_options_then_run_then_hash():
    catalog = {"lic": {"threads": 1, "device": "cpu"}, "jpeg": {"threads": 1}}
    lic, floating = (
        Configuration("lic", {"threads": 1}, "a", "1" * 16),
        Configuration("lic", {"threads": 1, "exact": False}, "a", "2" * 16),
    )
    assert configuration_labels([lic, floating, lic], catalog) == ["lic", "lic:exact=false", "lic"]
    one, other = (
        Configuration("jpeg", {"threads": 1}, "base", "3" * 16),
        Configuration("jpeg", {"threads": 1}, "new", "4" * 16),
    )
    assert configuration_labels([one, other], catalog) == ["jpeg@base", "jpeg@new"]
    versions = Configuration("jpeg", {"threads": 1}, "base", "5" * 16)
    assert configuration_labels([one, versions], catalog) == ["jpeg:33333333", "jpeg:55555555"]
    threads = Configuration("jpeg", {"threads": 2}, "base", "6" * 16)
    assert configuration_labels([one, threads], catalog) == ["jpeg:threads=1", "jpeg:threads=2"]
    assert configuration_labels([one], catalog) == ["jpeg"]


@pytest.mark.slow
def test_the_summary_has_a_line_per_configuration(two_lics):
    lines = (two_lics / "stdout.txt").read_text().splitlines()
    labels = {line.split()[0] for line in lines[1:7]}
    assert labels == {"lic", "lic:exact=false"}
    rows = pd.read_csv(two_lics / "results.csv")
    assert rows.groupby("config_hash").size().tolist() == [6, 6] and rows["error"].isna().all()


@pytest.mark.slow
def test_bd_and_compare_pair_each_configuration_with_itself(two_lics, tmp_path):
    bd = invoke(
        "bd", two_lics, "--anchor", "lic", "--metrics", "psnr_rgb", "--mode", "curve", "--format", "json"
    )
    assert bd.exit_code == 0, bd.output
    tested = [row for row in json.loads(bd.output)["rows"] if row["role"] == "test"]
    assert [row["codec"] for row in tested] == ["lic:exact=false"]
    assert abs(tested[0]["value"]) < 5  # the float decoder makes nearly the exact decoder's pixels
    compared = invoke("compare", two_lics, two_lics)
    assert compared.exit_code == 0, compared.output
    table = compared.stdout.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["lic", "lic:exact=false"]
    assert all(line.split()[1] == "+0.00" for line in table[1:])  # each against itself, not a mean of both


@pytest.mark.slow
def test_export_writes_each_configuration_with_its_own_entry(two_lics, tmp_path):
    result = invoke("export", two_lics, "--out", tmp_path / "export")
    assert result.exit_code == 0, result.output
    documents = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "export").glob("*.json")}
    assert set(documents) == {"lic", "lic_exact_false"}
    exact = hashes(two_lics)
    for stem, expected in (("lic", True), ("lic_exact_false", False)):
        meta = documents[stem]["meta"]
        assert exact[meta["config_hash"]] is expected and meta["options"].get("exact", True) is expected
    rows = pd.read_csv(two_lics / "results.csv")
    for stem, document in documents.items():
        config = document["meta"]["config_hash"]
        means = rows[rows["config_hash"] == config].groupby("quality")["bpp"].mean().sort_values()
        assert document["results"]["bpp"] == pytest.approx(means.tolist())


@pytest.mark.slow
def test_report_and_its_visual_comparison_use_each_configuration(two_lics, tmp_path):
    result = invoke(
        "report", two_lics, "--out", tmp_path / "report", "--rates", "0.5", "--metrics", "psnr_rgb"
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    for config_hash, exact in hashes(two_lics).items():
        row = re.search(r"<tr><td>(lic[^<]*)</td>(?:(?!</tr>).)*" + config_hash, page, re.DOTALL)
        assert row and row.group(1) == ("lic" if exact else "lic:exact=false")
    assert "not re-encoded" not in result.output and "re-encoded to" not in result.output
    crops = sorted(p.name for p in (tmp_path / "report" / "crops").glob("*.png"))
    assert crops == sorted(
        ["0.5bpp_lic.png", "0.5bpp_lic_exact_false.png", "0.5bpp_original.png"]
        + ["0.5bpp_lic_butteraugli.png", "0.5bpp_lic_exact_false_butteraugli.png"]  # each codec's heat map
    )
