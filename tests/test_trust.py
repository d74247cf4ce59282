"""Someone else's run directory or bitstream folder is data, never code: commands and module adapters
read from a run.json or a bitstream manifest run only when the local catalog holds them as they are;
manifest files stay inside their folder, regular files only."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def hostile(marker: Path) -> dict:
    """A catalog entry's adapter and extra keys that would run a shell command leaving ``marker``."""
    shell = ["/bin/sh", "-c", f"touch {marker}; exit 1"]
    return {
        "adapter": "subprocess",
        "extra": {"encode": shell, "decode": shell, "version": shell, "format": "ppm"},
    }


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:96, :128]).save(photos / "astronaut.png")
    out = tmp_path / "run"
    result = invoke("run", "--codecs", "jpeg,webp", "--dataset", photos, "--qualities", "jpeg=30,60,90",
                    "--qualities", "webp=30,60,90", "--executor", "inline", "--keep-bitstreams",
                    "--metrics", "psnr_rgb", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def tamper(run_dir: Path, marker: Path) -> None:
    """Rewrite the run's jpeg entry as a subprocess codec whose commands would leave ``marker``."""
    document = json.loads((run_dir / "run.json").read_text())
    for codec in document["config"]["codecs"]:
        if codec["name"] == "jpeg":
            codec["entry"] |= hostile(marker)
    (run_dir / "run.json").write_text(json.dumps(document))


def test_report_does_not_run_a_run_jsons_commands(run_dir, tmp_path):
    marker = tmp_path / "pwned"
    tamper(run_dir, marker)
    result = invoke("report", run_dir, "--out", tmp_path / "report", "--rates", "1", "--metrics", "psnr_rgb")
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert (
        "jpeg: not re-encoded for the visual comparison: jpeg is unavailable: "
        f"{run_dir}/run.json gives it commands or code to run (adapter 'subprocess') that the local catalog "
        "does not hold as they are: not run"
    ) in result.output


def test_config_and_rescore_refuse_a_run_jsons_commands(run_dir, tmp_path):
    marker = tmp_path / "pwned"
    tamper(run_dir, marker)
    result = invoke("run", "--config", run_dir / "run.json", "--out", tmp_path / "again")
    assert (
        result.exit_code == 2 and "gives it commands or code to run (adapter 'subprocess')" in result.output
    )
    rescored = invoke("rescore", run_dir)
    assert rescored.exit_code == 1 and "rescored 3 row(s)" in rescored.output  # webp's, jpeg's refused
    refused = [line for line in rescored.output.splitlines() if line.startswith("not rescored: jpeg")]
    assert len(refused) == 3 and all("the local catalog does not hold" in line for line in refused)
    assert not marker.exists()


def test_a_codec_name_from_a_run_json_cannot_forge_a_line(run_dir, tmp_path):
    document = json.loads((run_dir / "run.json").read_text())
    codec = next(c for c in document["config"]["codecs"] if c["name"] == "jpeg")
    codec["name"] = codec["entry"]["name"] = "evil\nnote: all images verified \x1b[2J"
    codec["entry"]["adapter"] = "builtins:eval"
    (run_dir / "run.json").write_text(json.dumps(document))
    result = invoke("run", "--config", run_dir / "run.json", "--out", tmp_path / "again")
    assert result.exit_code == 2 and "\x1b" not in result.output
    expected = (
        "bench: error: 'evil\\nnote: all images verified \\x1b[2J' is unavailable: "
        f"{run_dir}/run.json gives it commands or code to run (adapter 'builtins:eval') that the local catalog "
        "does not hold as they are: not run"
    )
    assert [line for line in result.output.splitlines() if line] == [expected]


def test_image_names_in_a_run_json_stay_inside_its_dataset_root(run_dir, tmp_path):
    """A run.json chooses no file outside its dataset's folder, even one holding the very pixels."""
    shutil.copy(tmp_path / "photos" / "astronaut.png", tmp_path / "elsewhere.png")
    (tmp_path / "photos" / "astronaut.png").unlink()
    document = json.loads((run_dir / "run.json").read_text())
    document["config"]["dataset"]["images"][0]["name"] = "../elsewhere.png"
    (run_dir / "run.json").write_text(json.dumps(document))
    with sqlite3.connect(run_dir / "results.sqlite") as db:  # the report takes the name from the rows
        db.execute("UPDATE results SET image = '../elsewhere.png'")
    rescored = invoke("rescore", run_dir)
    refused = [line for line in rescored.output.splitlines() if line.startswith("not rescored: ")]
    assert rescored.exit_code == 1 and "rescored 0 row(s)" in rescored.output
    assert len(refused) == 6
    assert all("run.json names the image '../elsewhere.png' outside its dataset root" in x for x in refused)
    report = invoke("report", run_dir, "--out", tmp_path / "report", "--rates", "1", "--metrics", "psnr_rgb")
    assert report.exit_code == 0, report.output
    assert "the original image is not where run.json says (run.json names the image" in report.output
    # the same name inside the root is read: the refusal is the path rule, not a missing file
    shutil.copy(tmp_path / "elsewhere.png", tmp_path / "photos" / "elsewhere.png")
    document["config"]["dataset"]["images"][0]["name"] = "elsewhere.png"
    (run_dir / "run.json").write_text(json.dumps(document))
    assert "rescored 6 row(s)" in invoke("rescore", run_dir).output


@pytest.mark.slow
def test_verify_builds_no_code_and_reads_no_file_outside_its_folder(tmp_path):
    folder = tmp_path / "bitstreams"
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:64, :64]).save(photos / "a.png")
    written = invoke("verify", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=30,50,70,90",
                     "--write-bitstreams", folder, "--variants", "1-thread")  # fmt: skip
    assert written.exit_code == 0, written.output
    marker = tmp_path / "pwned"
    outside = tmp_path / "outside.bin"
    outside.write_bytes((folder / "jpeg" / "a-q30.bin").read_bytes())
    os.mkfifo(folder / "jpeg" / "fifo.bin")
    manifest = json.loads((folder / "manifest.json").read_text())
    items = manifest["items"]
    items[0]["entry"] |= {"adapter": "builtins:eval", "name": f"__import__('os').system('touch {marker}')"}
    items[1]["file"] = "../outside.bin"
    items[2]["file"] = "/dev/zero"
    items[3]["file"] = "jpeg/fifo.bin"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("verify", "--bitstreams", folder, "--variants", "1-thread")
    assert result.exit_code == 1 and not marker.exists()
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4
    assert "gives it commands or code to run (adapter 'builtins:eval')" in errors[0]
    assert "'../outside.bin' is not a file inside" in errors[1]
    assert "'/dev/zero' is not a file inside" in errors[2]
    assert "'jpeg/fifo.bin' is not a regular file" in errors[3]


def test_non_finite_qualities_are_refused_up_front(tmp_path):
    for value in ("jpeg=nan", "jpeg=50,inf"):
        result = invoke("run", "--codecs", "jpeg", "--qualities", value, "--out", tmp_path / "run")
        assert result.exit_code == 2 and "expected CODEC=Q1,Q2,... with finite numbers" in result.output
    assert not (tmp_path / "run").exists()


def test_a_run_whose_every_task_failed_exits_1_and_one_with_some_failures_0(run_dir, tmp_path):
    photos = run_dir.parent / "photos"
    failing = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=1000",
                     "--executor", "inline", "--out", tmp_path / "failing")  # fmt: skip
    assert failing.exit_code == 1
    assert "bench: error: every task of the run failed (1): see the error column of" in failing.output
    some = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=50,1000",
                  "--executor", "inline", "--out", tmp_path / "some")  # fmt: skip
    assert some.exit_code == 0 and "1 task(s) failed: see the error column" in some.output


def catalog_with(tmp_path: Path, monkeypatch, name: str, body: str) -> None:
    """A local catalog holding one entry ``name`` with ``body`` after its common keys."""
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / f"{name}.toml").write_text(
        f'name = "{name}"\ndescription = "test"\nreference = "-"\nquality_label = "q"\nqualities = [50]\n'
        + body
    )
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))


def test_a_factory_that_returns_no_codec_makes_the_codec_unavailable(tmp_path, monkeypatch):
    catalog_with(tmp_path, monkeypatch, "printer", 'adapter = "builtins:print"\n')
    result = invoke("codecs")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "printer {}",  # what print, called as the factory, wrote
        "printer: unavailable - test",
        "    why: adapter 'builtins:print' returned NoneType, not a codec",
        "    quality: q (a higher value raises the rate); sweep 50",
        "    options: -; adapter builtins:print",
    ]


@pytest.mark.parametrize(
    "placeholder, written",
    [
        ("{quality:>200000000}", "quality:>200000000"),
        ("{quality:q}", "quality:q"),
        ("{quality!r}", "quality!r"),
    ],
)
def test_a_template_with_a_format_spec_is_refused_when_the_catalog_is_read(
    placeholder, written, tmp_path, monkeypatch
):
    catalog_with(
        tmp_path,
        monkeypatch,
        "enc",
        f'adapter = "subprocess"\nencode = ["cjpeg", "-quality", "{placeholder}", "-outfile", "{{output}}", '
        '"{input}"]\ndecode = ["djpeg", "-outfile", "{output}", "{input}"]\nformat = "ppm"\n'
        'version = ["cjpeg", "-version"]\n',
    )
    for args in (["codecs"], ["run", "--codecs", "enc", "--out", tmp_path / "run"]):
        result = invoke(*args)
        assert result.exit_code != 0
        catalog = tmp_path / "catalog" / "enc.toml"
        message = f"codec 'enc': placeholder {{{written}}} in {placeholder!r} is not a plain name"
        assert result.output.strip().splitlines() == [f"bench: error: {catalog}: {message}"]
    assert not (tmp_path / "run").exists()
