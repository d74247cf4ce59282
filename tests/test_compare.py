"""`bench compare BASE NEW`: real runs of webp at two efforts, with jp2 as the time reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

import bench
from bench.cli import cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, Path]:
    """Run directories of webp at method 0 (fast, more bytes) and method 6 (slow, fewer bytes)."""
    root = tmp_path_factory.mktemp("compare")
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:256, :256]).save(photos / "astronaut.png")
    made = {}
    for method in (0, 6):
        made[method] = root / f"method{method}"
        bench.run(
            f"webp:method={method},jp2",
            str(photos),
            out=str(made[method]),
            executor="inline",
            repeat=3,
            qualities={"webp": [30, 50, 70, 90], "jp2": [24]},
        )
    return made


def compare(base: Path, new: Path, *options: str):
    return CliRunner().invoke(cli, ["compare", str(base), str(new), *options], catch_exceptions=False)


def test_a_run_against_itself_passes(runs):
    result = compare(runs[6], runs[6], "--max-bd-loss", "1", "--max-time-ratio", "1.5")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("webp"))
    assert line.split()[1:4] == ["+0.00", "1.00", "1.00"]


def test_a_bd_rate_loss_fails_the_gate(runs):
    result = compare(runs[6], runs[0], "--max-bd-loss", "1")
    assert result.exit_code == 1 and "bd_rate_psnr_rgb > 1 %" in result.output
    assert "bench compare: FAIL" in result.output


def test_a_slowdown_relative_to_the_reference_fails_the_gate(runs):
    result = compare(runs[0], runs[6], "--max-time-ratio", "1.5")
    assert result.exit_code == 1 and "enc_ratio > 1.5" in result.output
    assert "bd_rate_psnr_rgb > " not in result.output  # method 6 saves rate


def test_unusable_input_exits_2(runs, tmp_path):
    assert compare(runs[0], tmp_path / "missing").exit_code == 2


def on_another_machine(run: Path, tmp_path: Path, key: str, value: str) -> Path:
    """A copy of ``run`` whose run.json says it ran on a machine whose ``key`` (provenance.machine) was
    ``value``."""
    other = tmp_path / "other"
    shutil.copytree(run, other)
    document = json.loads((other / "run.json").read_text())
    document["provenance"]["machine"][key] = value
    (other / "run.json").write_text(json.dumps(document))
    return other


def test_provenance_differences_are_noted(runs, tmp_path):
    other = on_another_machine(runs[6], tmp_path, "cpu", "Another CPU")
    result = compare(runs[6], other)
    assert result.exit_code == 0
    assert "note: provenance differs: machine.cpu:" in result.output and "Another CPU (NEW)" in result.output


def test_a_heavier_learned_codec_fails_the_kmac_gate(tmp_path):
    """lic's hyperprior counts more MACs per pixel than its factorized model: as NEW it passes the gate."""
    from bench.lic.codec import LicCodec

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.coffee()[:64, :96]).save(photos / "coffee.png")
    made = {}
    for architecture in ("factorized", "hyperprior"):
        made[architecture] = tmp_path / architecture
        bench.run(
            f"lic:architecture={architecture}",
            str(photos),
            out=str(made[architecture]),
            executor="inline",
            qualities={"lic": [0, 4, 7]},
        )
    counts = {a: LicCodec("lic", {"architecture": a}).complexity() for a in made}
    expected = max(counts["hyperprior"][k] / counts["factorized"][k] for k in ("kmac_px_enc", "kmac_px_dec"))
    result = compare(made["factorized"], made["hyperprior"], "--max-kmac-ratio", "1.1")
    assert result.exit_code == 1 and "kmac_ratio > 1.1" in result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("lic"))
    assert f"{expected:.2f}" in line.split() and expected > 1.1
    assert compare(made["hyperprior"], made["factorized"], "--max-kmac-ratio", "1.1").exit_code == 0


def test_time_is_gated_only_between_runs_on_the_same_cpu_model(runs, tmp_path):
    other = on_another_machine(runs[6], tmp_path, "cpu_id", "GenuineIntel family 6 model 85 stepping 7")
    result = compare(runs[0], other, "--max-time-ratio", "1.5", "--max-kmac-ratio", "1.1")
    assert "note: time ratios not gated: the runs were measured on different CPU models" in result.output
    assert result.exit_code == 0 and "enc_ratio > 1.5" not in result.output  # failed on the same CPU
    assert "enc_ratio" in result.output  # still shown
    result = compare(other, runs[0], "--max-time-ratio", "1.5", "--max-bd-loss", "1")
    assert result.exit_code == 1 and "bd_rate_psnr_rgb > 1 %" in result.output  # BD gated always
