"""Metric tools (metrics/NAME.toml): the shipped ssimulacra1 and xpsnr_y against their programs run here
directly, a fake tool written by the test for each way of reading a number and each way of failing, strict
entry checks with one-line errors naming the file, and a run that stores ssimulacra1."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench import measures
from bench.cli import cli
from tests.conftest import skip_or_fail

REPO = Path(__file__).resolve().parent.parent
SSIMULACRA = Path("/usr/bin/ssimulacra_main")
FAKE = """#!{python}
import json, sys, time
import numpy as np
from PIL import Image

mode = sys.argv[1]
if mode == "version":
    print("fake metric tool 1.2.3 (test build)")
    sys.exit(0)
reference, distorted = sys.argv[2:4]
if mode == "yuv":  # the byte count of the raw reference, then the size it was given
    print(len(open(reference, "rb").read()), *sys.argv[4:])
    sys.exit(0)
pixels = [np.asarray(Image.open(path), float) for path in (reference, distorted)]
mae = float(np.abs(pixels[0] - pixels[1]).mean())
if mode == "stdout":
    print(f"mean absolute error = {{mae:.6f}} levels")
elif mode == "stderr":
    print("a log line", file=sys.stderr)
    print(f"mae: {{mae!r}}", file=sys.stderr)
elif mode == "json":
    print(json.dumps({{"pooled": {{"scores": [0, {{"mae": mae}}]}}}}))
elif mode == "file":
    json.dump({{"mae": mae}}, open(sys.argv[4], "w"))
elif mode == "fail":
    print("cannot read\\nthe images", file=sys.stderr)
    sys.exit(3)
elif mode == "hang":
    time.sleep(60)
elif mode == "garbage":
    print("mean absolute error = lots levels")
elif mode == "nan":
    print("mean absolute error = nan levels")
elif mode == "text":
    print("no number\\x1b[31m here")
"""


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def toml(value) -> str:
    """``value`` written as TOML: inline tables, JSON strings, numbers and lists (valid TOML as they are)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml(item)}" for key, item in value.items()) + " }"
    return json.dumps(value)


@pytest.fixture()
def folder(tmp_path, monkeypatch) -> Path:
    """An empty metrics folder in place of metrics/ ($BENCH_METRICS_DIR), the registry reloaded from it."""
    path = tmp_path / "metrics"
    path.mkdir()
    monkeypatch.setenv("BENCH_METRICS_DIR", str(path))
    measures.all_metrics.cache_clear()
    yield path
    measures.all_metrics.cache_clear()


@pytest.fixture()
def fake(tmp_path) -> Path:
    path = tmp_path / "fake.py"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    return path


def entry(fake: Path, mode: str, **changes) -> dict:
    """A metric entry ``fake`` running the fake tool in ``mode``; ``changes`` replace or add keys."""
    return {
        "name": "fake",
        "label": "Fake MAE (levels)",
        "doc": "mean absolute error, by a script",
        "direction": "lower",
        "command": [str(fake), mode, "{reference}", "{distorted}"],
        "format": "png",
        "read": {"source": "stdout", "regex": r"= (\S+) levels"},
        "version": [str(fake), "version"],
        "timeout": 20,
    } | changes


def write(folder: Path, entry: dict, name: str = "fake") -> Path:
    path = folder / f"{name}.toml"
    path.write_text("".join(f"{key} = {toml(value)}\n" for key, value in entry.items()))
    measures.all_metrics.cache_clear()
    return path


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A 37 x 53 photograph (odd sides) and its quality-30 JPEG, decoded."""
    original = data.astronaut()[100:137, 200:253]
    buffer = io.BytesIO()
    Image.fromarray(original).save(buffer, format="JPEG", quality=30)
    return original, np.asarray(Image.open(buffer).convert("RGB"))


def mae(pair) -> float:
    return float(np.abs(pair[0].astype(float) - pair[1].astype(float)).mean())


def require_ssimulacra() -> None:
    if not os.access(SSIMULACRA, os.X_OK):
        skip_or_fail(f"{SSIMULACRA} is missing (Debian libjxl-devtools)")


def tool_run(argv: list, **options) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True, **options)


# --- the shipped entries -----------------------------------------------------------------------------


def test_ssimulacra1_is_the_value_ssimulacra_main_prints(kodim01_q50, tmp_path):
    require_ssimulacra()
    original, decoded = kodim01_q50
    Image.fromarray(original).save(tmp_path / "original.png")
    Image.fromarray(decoded).save(tmp_path / "decoded.png")
    printed = tool_run([SSIMULACRA, tmp_path / "original.png", tmp_path / "decoded.png"]).stdout
    row = measures.compute(["ssimulacra1"], original, decoded)
    assert row["ssimulacra1"] == float(printed) and 0.01 < row["ssimulacra1"] < 0.2, printed
    package = tool_run(["dpkg-query", "--show", "--showformat=${Version}", "libjxl-devtools"]).stdout
    metric = measures.all_metrics()["ssimulacra1"]
    assert re.fullmatch(r"[0-9a-f]{8}", metric.version)
    assert row["metric_versions"] == {"ssimulacra1": f"{metric.version}+{package}"}
    assert (metric.direction, metric.groups, metric.label) == ("lower", ("external",), "SSIMULACRA 1")


def test_ssimulacra1_of_identical_images_is_0():
    require_ssimulacra()
    image = data.astronaut()[:96, :128]
    row = measures.compute(["ssimulacra1"], image, image.copy())
    assert row["ssimulacra1"] == 0.0 and row["metric_notes"] == {}


def test_xpsnr_y_is_ffmpegs_own_on_its_own_bt709_conversion(pair, tmp_path):
    """The harness writes raw YUV; ffmpeg converting the PNGs itself (swscale, BT.709 limited range) gives
    the same luma but for rounding, so the two XPSNRs agree to a few hundredths of a dB."""
    import imageio_ffmpeg

    original, decoded = pair
    Image.fromarray(original).save(tmp_path / "original.png")
    Image.fromarray(decoded).save(tmp_path / "decoded.png")
    convert = "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p"
    graph = f"[0]{convert}[a];[1]{convert}[b];[a][b]xpsnr"
    argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", tmp_path / "original.png",
            "-i", tmp_path / "decoded.png", "-lavfi", graph, "-f", "null", "-"]  # fmt: skip
    own = float(re.search(r"XPSNR\s+y:\s*(\S+)", tool_run(argv).stderr).group(1))
    row = measures.compute(["xpsnr_y"], original, decoded)
    assert row["xpsnr_y"] == pytest.approx(own, abs=0.05) and 25 < own < 50
    assert measures.compute(["xpsnr_y"], original, original.copy())["xpsnr_y"] == math.inf


def test_a_missing_ffmpeg_makes_xpsnr_y_unavailable(monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", "/nonexistent/ffmpeg")
    measures.all_metrics.cache_clear()
    try:
        reason = measures.all_metrics()["xpsnr_y"].unavailable()
    finally:
        measures.all_metrics.cache_clear()
    assert reason == (
        "it needs {ffmpeg} (/nonexistent/ffmpeg), which is not an executable file: "
        "pip install imageio-ffmpeg (an ffmpeg with the xpsnr filter)"
    )


# --- reading the number ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, changes, tolerance",
    [
        ("stdout", {}, 1e-6),  # printed with 6 decimals
        ("stdout", {"format": "ppm"}, 1e-6),
        ("stderr", {"read": {"source": "stderr", "regex": r"mae: (\S+)"}}, 0),
        ("json", {"read": {"source": "stdout", "json": "pooled.scores.1.mae"}}, 0),
        ("file", {"read": {"source": "output", "json": "mae"}}, 0),
    ],
)
def test_the_number_is_read_from_stdout_stderr_or_a_file_by_regex_or_json(
    mode, changes, tolerance, folder, fake, pair
):
    item = entry(fake, mode, **changes)
    if mode == "file":
        item["command"].append("{output}")
    write(folder, item)
    row = measures.compute(["fake"], *pair)
    assert row["fake"] == pytest.approx(mae(pair), abs=tolerance) and mae(pair) > 1
    assert row["metric_notes"] == {}
    metric = measures.all_metrics()["fake"]
    assert row["metric_versions"] == {"fake": f"{metric.version}+1.2.3"}
    assert metric.reads == f"8-bit RGB as {item['format'].upper()} files"


def test_raw_yuv_files_have_the_declared_layout_and_size(folder, fake, pair):
    height, width = pair[0].shape[:2]  # 37 x 53: chroma planes of 19 x 27 at 4:2:0
    layout = {"image": "yuv", "matrix": "bt601", "range": "full", "subsampling": "420", "bitdepth": 10}
    command = [str(fake), "yuv", "{reference}", "{distorted}", "{width}", "{height}"]
    read = {"source": "stdout", "regex": rf"^(\d+) {width} {height}$"}
    write(folder, entry(fake, "yuv", command=command, format=layout, read=read))
    assert measures.compute(["fake"], *pair)["fake"] == 2 * (37 * 53 + 2 * 19 * 27)
    assert measures.all_metrics()["fake"].reads == "8-bit RGB as raw YUV 420 bt601 full-range 10-bit files"


@pytest.mark.parametrize(
    "mode, changes, note",
    [
        ("fail", {}, "fake.py exited with status 3: cannot read the images"),
        ("garbage", {}, "fake.py's stdout gives 'lots' where a number was expected"),
        ("nan", {}, "fake.py's stdout gives 'nan' where a number was expected"),
        ("text", {}, r"fake.py's stdout does not match '= (\\S+) levels': no number\x1b[31m here"),
        ("json", {"read": {"source": "stdout", "json": "pooled.scores.2"}},
         'fake.py\'s stdout has no pooled.scores.2: {"pooled": {"scores": [0, {"mae": '),
        ("stdout", {"read": {"source": "stdout", "json": "mae"}},
         "fake.py's stdout is not JSON (Expecting value: line 1 column 1 (char 0)): mean absolute error = "),
        ("stdout", {"read": {"source": "output", "json": "mae"},
                    "command": ["FAKE", "stdout", "{reference}", "{distorted}", "{output}"]},
         "fake.py exited with status 0 but wrote no output.json"),
    ],
)  # fmt: skip
def test_a_failing_tool_gives_nan_and_a_one_line_note(mode, changes, note, folder, fake, pair):
    if "command" in changes:
        changes["command"][0] = str(fake)
    write(folder, entry(fake, mode, **changes))
    row = measures.compute(["fake", "psnr_rgb"], *pair)
    assert math.isnan(row["fake"]) and row["psnr_rgb"] > 20
    assert row["metric_notes"]["fake"].startswith(f"fake undefined: {note}"), row["metric_notes"]
    assert "\n" not in row["metric_notes"]["fake"]


def test_a_tool_that_hangs_is_killed_at_its_timeout(folder, fake, pair):
    write(folder, entry(fake, "hang", timeout=1))
    start = time.monotonic()
    row = measures.compute(["fake"], *pair)
    assert time.monotonic() - start < 15 and math.isnan(row["fake"])
    assert row["metric_notes"]["fake"].startswith(
        "fake undefined: fake.py timed out after 1 s (it and the processes it started were killed)"
    )


# --- availability and the catalog's checks -----------------------------------------------------------


def test_a_missing_program_makes_the_metric_unavailable_in_one_line(folder, fake, tmp_path):
    write(folder, entry(fake, "stdout", command=["no-such-metric-tool", "{reference}", "{distorted}"]))
    gone = entry(fake, "stdout", name="gone", command=[str(tmp_path / "gone"), "{reference}", "{distorted}"])
    write(folder, gone | {"install": "build it"}, "gone")
    reasons = {
        "fake": "it needs no-such-metric-tool, which is not found on PATH: install it or put it on PATH",
        "gone": f"it needs {tmp_path}/gone, which is not an executable file: build it",
    }
    assert {name: measures.all_metrics()[name].unavailable() for name in reasons} == reasons
    listed = invoke("metrics", "--no-cost")
    assert listed.exit_code == 0, listed.output
    assert f"fake: unavailable - Fake MAE (levels)\n    why: {reasons['fake']}\n" in listed.output
    run = invoke("run", "--codecs", "jpeg", "--metrics", "+fake", "--out", tmp_path / "run")
    assert run.exit_code == 2 and run.output.splitlines() == [
        f"bench: error: metric fake: {reasons['fake']} (--skip-unavailable computes the others)"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"colour": "red"}, ("unknown key(s) colour; a metric entry has name, label, doc, direction, "
                             "command, format, read, version, unit, groups, cost, ceiling, version_pattern, "
                             "timeout, install")),
        ({"read": None}, "missing key(s) read"),
        ({"direction": "up"}, "direction 'up' is not higher or lower"),
        ({"name": "Fake-MAE"}, "name 'Fake-MAE' is not lower-case letters, digits and _ (a letter first)"),
        ({"command": ["FAKE", "{reference}", "{distorted}", "{quality}"]},
         "command uses unknown placeholder(s) quality; known: distorted, height, output, reference, width"),
        ({"command": ["FAKE", "{reference:>200000000}", "{distorted}"]},
         "placeholder {reference:>200000000} in '{reference:>200000000}' is not a plain name"),
        ({"command": ["FAKE", "{reference}", "{distorted!r}"]},
         "placeholder {distorted!r} in '{distorted!r}' is not a plain name"),
        ({"command": ["{reference}", "{distorted}"]},
         "the program of command ('{reference}') cannot hold a placeholder other than {ffmpeg}"),
        ({"command": ["FAKE", "{reference}"]}, "command must pass both {reference} and {distorted}"),
        ({"command": "FAKE {reference} {distorted}"},
         "'command' must be a non-empty list of strings (an argv), got 'FAKE {reference} {distorted}'"),
        ({"version": ["FAKE", "{width}"]}, "the version command takes no placeholder after its program"),
        ({"format": "jpeg"}, "format.image 'jpeg' is not one of png, ppm, yuv"),
        ({"format": {"image": "yuv", "subsampling": "411"}},
         "YUV subsampling '411' is not one of 444, 422, 420"),
        ({"read": {"source": "stdin", "regex": "(.*)"}},
         "read.source 'stdin' is not one of stdout, stderr, output"),
        ({"read": {"source": "stdout", "regex": r"\S+"}},
         r"read.regex '\\S+' has no group (the number is its first)"),
        ({"read": {"source": "stdout", "regex": "(", "json": "a"}},
         "read needs one of regex (its first group is the number) and json (a key path)"),
        ({"read": {"source": "stdout", "regex": "("}},
         "read.regex '(' is not a regular expression: missing ), unterminated subpattern at position 0"),
        ({"read": {"source": "stdout", "json": "a..b"}}, "read.json 'a..b' is not a dotted key path (a.b.0)"),
        ({"read": {"source": "output", "json": "a"}}, 'read.source = "output" needs {output} in the command'),
        ({"timeout": 0}, "timeout 0 must be positive"),
        ({"ceiling": "1"}, "ceiling must be a finite number, got '1'"),
        ({"groups": ["external", "all"]}, "groups cannot hold 'all' (it means every metric)"),
        ({"cost": "free"}, "cost 'free' is not one of cheap, moderate, expensive"),
        ({"name": "psnr_rgb"}, "metric name 'psnr_rgb' is taken by a built-in metric or column"),
        ({"name": "bpp"}, "metric name 'bpp' is taken by a built-in metric or column"),
    ],
)  # fmt: skip
def test_a_bad_entry_is_refused_in_one_line_naming_its_file(changes, message, folder, fake):
    item = {key: value for key, value in entry(fake, "stdout", **changes).items() if value is not None}
    for key in ("command", "version"):
        if isinstance(item[key], list):
            item[key] = [str(fake) if part == "FAKE" else part for part in item[key]]
    path = write(folder, item)
    for args in (["metrics", "--no-cost"], ["run", "--codecs", "jpeg", "--out", folder / "run"]):
        result = invoke(*args)
        assert result.exit_code == 2 and result.output.splitlines() == [f"bench: error: {path}: {message}"]
    assert not (folder / "run").exists()


def test_a_name_twice_and_unreadable_toml_are_refused_naming_the_file(folder, fake):
    write(folder, entry(fake, "stdout"), "a")
    second = write(folder, entry(fake, "stderr"), "b")
    result = invoke("metrics", "--no-cost")
    assert result.output.splitlines() == [
        f"bench: error: {second}: metric name 'fake' is defined twice in {folder}"
    ]
    second.write_text('name = "fake"\nlabel = \n')
    measures.all_metrics.cache_clear()
    result = invoke("metrics", "--no-cost")
    assert result.output.splitlines() == [
        f"bench: error: {second}: cannot read metric entry: Invalid value (at line 2, column 9)"
    ]


# --- through a run -----------------------------------------------------------------------------------


def test_a_run_stores_ssimulacra1_as_the_tool_measures_its_decoded_image(tmp_path):
    """One sample image, one JPEG quality, in a worker process: the stored value is ssimulacra_main's on
    the original and the kept bitstream decoded again; `bench metrics` lists the metric."""
    require_ssimulacra()
    out = tmp_path / "run"
    result = invoke("run", "--codecs", "jpeg", "--images", "1", "--qualities", "jpeg=40", "--jobs", "1",
                    "--metrics", "psnr_rgb,+ssimulacra1", "--keep-bitstreams", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split()[-4:] == ["psnr_rgb", "ssimulacra1", "enc_ms", "dec_ms"]
    [row] = pd.read_csv(out / "results.csv").to_dict("records")
    metric = measures.all_metrics()["ssimulacra1"]
    assert json.loads(row["metric_versions"])["ssimulacra1"] == metric.current_version()
    assert json.loads((out / "run.json").read_text())["config"]["metrics"] == ["psnr_rgb", "ssimulacra1"]

    from bench.catalog import load_catalog
    from bench.codec import open_codec

    [bitstream] = (out / "bitstreams").glob("*/*.bin")
    decoded = open_codec(load_catalog()["jpeg"]).decode(bitstream.read_bytes(), (row["height"], row["width"]))
    Image.open(data.data_dir + "/" + row["image"]).convert("RGB").save(tmp_path / "original.png")
    Image.fromarray(decoded).save(tmp_path / "decoded.png")
    printed = tool_run([SSIMULACRA, tmp_path / "original.png", tmp_path / "decoded.png"]).stdout
    assert row["ssimulacra1"] == float(printed) > 0

    listed = invoke("metrics", "--no-cost")
    assert (
        "ssimulacra1: available - SSIMULACRA 1\n"
        f"    version {metric.current_version()}; lower is better; reads 8-bit RGB as PNG files\n"
        "    groups: external; cost per 768x512 image: [moderate]\n"
    ) in listed.output


def test_a_run_json_names_metrics_and_never_defines_one(tmp_path, fake):
    """A run.json's metrics are names of the local registry: a command written there is never run."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:64, :64]).save(photos / "a.png")
    first = tmp_path / "first"
    result = invoke("run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=50",
                    "--executor", "inline", "--metrics", "psnr_rgb", "--out", first)  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((first / "run.json").read_text())
    marker = tmp_path / "pwned"
    item = entry(fake, "stdout", command=["/bin/sh", "-c", f"touch {marker}", "{reference}", "{distorted}"])
    document["config"]["metrics"] = ["psnr_rgb", item]
    (first / "run.json").write_text(json.dumps(document))
    again = invoke("run", "--config", first / "run.json", "--out", tmp_path / "again")
    assert again.exit_code == 2 and "no metric or group" in again.output and not marker.exists()
