"""The CI gate (`make gate`: re-run reports/baseline's configuration, `bench compare` with GATE_LIMITS)
fails for a codec that got three times as slow or 5 % worse in rate, and passes for the same codec."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench import codec as codec_registry
from bench.cli import cli

REPO = Path(__file__).resolve().parent.parent


def gate_limits() -> list[str]:
    """The thresholds `make gate` uses, read from the Makefile."""
    match = re.search(r"^GATE_LIMITS \?= (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile has no GATE_LIMITS"
    return shlex.split(match.group(1))


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A timing-preset run of jpeg (the codec under test) and jp2 (the time reference) on two photographs."""
    root = tmp_path_factory.mktemp("gate")
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:192, :256]).save(photos / "astronaut.png")
    Image.fromarray(data.coffee()[:192, :256]).save(photos / "coffee.png")
    out = root / "base"
    result = invoke(
        "run", "--codecs", "jpeg,jp2", "--dataset", photos, "--qualities", "jpeg=30,50,70,90",
        "--qualities", "jp2=48,24,12", "--timing", "--repeat", "5", "--executor", "inline", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def rerun(base: Path, tmp_path: Path, adapter: str | None, monkeypatch) -> Path:
    """`make gate`'s re-run of BASE's configuration, with jpeg's adapter swapped for a test wrapper."""
    document = json.loads((base / "run.json").read_text())
    if adapter:
        name = f"gate-test.{adapter}"  # one name per wrapper: the config hash (and worker cache) follow it
        monkeypatch.setitem(codec_registry.BUILTIN_ADAPTERS, name, f"tools.gate_codecs:{adapter}")
        for codec in document["config"]["codecs"]:
            if codec["name"] == "jpeg":
                codec["entry"]["adapter"] = name
    config = tmp_path / "run.json"
    config.write_text(json.dumps(document))
    out = tmp_path / "new"
    result = invoke("run", "--config", config, "--executor", "inline", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_the_same_codec_passes_the_gate(base, tmp_path, monkeypatch):
    result = invoke("compare", base, rerun(base, tmp_path, None, monkeypatch), *gate_limits())
    assert result.exit_code == 0, result.output


def test_a_codec_three_times_as_slow_fails_the_gate(base, tmp_path, monkeypatch):
    result = invoke("compare", base, rerun(base, tmp_path, "slow", monkeypatch), *gate_limits())
    assert result.exit_code == 1, result.output
    assert "enc_ratio > " in result.output and "dec_ratio > " in result.output, result.output
    assert "bd_rate_psnr_rgb > " not in result.output


def test_a_codec_five_percent_worse_in_rate_fails_the_gate(base, tmp_path, monkeypatch):
    result = invoke("compare", base, rerun(base, tmp_path, "padded", monkeypatch), *gate_limits())
    assert result.exit_code == 1 and "bd_rate_psnr_rgb > " in result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("jpeg"))
    assert 5.0 <= float(line.split()[1]) < 6.0  # 5 % padding plus 4 bytes: BD-rate just above +5 %
