"""Command-line codecs: the subprocess adapter, its colour conversion, and the catalog's CLI entries.

Real tools throughout (Debian's cjpeg, cwebp, avifenc, cjxl, heif-enc, x265 and dec265; bpgenc where
built), checked against independent truth: the in-process libraries' encoders and decoders, x265's own
reconstruction, published colour values, Pillow and scikit-image conversions, and CompressAI's
published BPG results. The only stand-in is tests/tools/misbehave.py, which crashes, hangs or writes
garbage on purpose.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image
from skimage import data

import bench
from bench.adapters import programs, yuv
from bench.adapters.subprocess_codec import SubprocessCodec
from bench.adapters.tool import ToolError
from bench.catalog import CatalogEntry, config_hash, load_catalog
from bench.codec import make_codec
from bench.errors import UserError
from bench.metrics import psnr_rgb
from tests.conftest import plugin_package, require_binary, skip_or_fail
from tests.test_yuv import kodak_images

REPO = Path(__file__).resolve().parents[1]
MISBEHAVE = str(REPO / "tests" / "tools" / "misbehave.py")
CLI_CODECS = ["cjpeg", "cwebp", "avifenc", "cjxl", "heif-enc", "x265"]
CATALOG = load_catalog(REPO / "codecs")


def catalog_codec(name: str, **options) -> SubprocessCodec:
    """A catalog entry's codec; its programs must be found, on PATH or named (``{ffmpeg}``: the wheel's),
    else skipped, or failed under CI."""
    entry = CATALOG[name].with_options(options)
    codec = make_codec(entry.name, entry.adapter, entry.options, entry.extra)
    for program in codec._programs():
        reason = programs.missing(program, entry.extra.get("install", ""))
        if reason:
            skip_or_fail(f"{name}: {reason}")
    assert codec.available() is None
    return codec


def tool_codec(encode: list[str], decode: list[str], options: dict | None = None, **extra) -> SubprocessCodec:
    """A codec built from adapter keys, with defaults for those not given."""
    keys = {"format": {"image": "ppm"}, "version": [sys.executable, "--version"]} | extra
    return make_codec("t", "subprocess", options or {}, {"encode": encode, "decode": decode} | keys)


def misbehave(mode: str, *args: str) -> list[str]:
    return [sys.executable, MISBEHAVE, mode, *args]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.chelsea()  # 300 x 451: an odd width


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The folder that tempfile uses during the test, so leftovers can be counted."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# --- the adapter: errors, timeouts, temporary files, quoting ---------------------------------------


@pytest.mark.parametrize(
    "encoder, decoder, message",
    [
        (misbehave("crash", "{output}"), None, r"exited with status 3: misbehave: cannot parse the input"),
        (misbehave("segfault", "{output}"), None, r"killed by signal SIGSEGV"),
        (misbehave("nothing", "{output}"), None, r"exited 0 but wrote no bitstream.bin"),
        (misbehave("empty", "{output}"), None, r"exited 0 but wrote an empty bitstream.bin"),
        (misbehave("chatty", "{output}"), None, r"exited with status 1: y+ misbehave: the last word$"),
        (None, misbehave("garbage", "{output}"), r"wrote an unusable decoded.ppm: .*not an image file"),
        (None, misbehave("nothing", "{output}"), r"wrote an unusable decoded.ppm: .*no such file"),
    ],
)
def test_tool_failures_raise_with_the_tools_own_words_and_leave_no_files(
    encoder, decoder, message, private_tmp, photo
):
    cjpeg = ["cjpeg", "-outfile", "{output}", "{input}"]
    if encoder is None:
        require_binary("cjpeg")
    codec = tool_codec(encoder or cjpeg, decoder or ["djpeg", "-outfile", "{output}", "{input}"])
    with pytest.raises(ToolError, match=message) as failure:
        codec.decode(codec.encode(photo, 75), photo.shape[:2])
    assert len(str(failure.value)) < 500
    assert list(private_tmp.iterdir()) == []


def test_timeout_kills_the_whole_process_group(tmp_path, private_tmp, photo):
    pidfile = tmp_path / "child.pid"
    codec = tool_codec(misbehave("hang", "{output}", str(pidfile)), ["djpeg"], timeout=1.5)
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"timed out after 1.5 s .*killed.*: misbehave: thinking very hard"):
        codec.encode(photo, 75)
    assert time.monotonic() - start < 10
    child = int(pidfile.read_text())
    for _ in range(50):  # the orphaned grandchild is gone (or a zombie awaiting its reaper)
        state = Path(f"/proc/{child}/stat")
        if not state.exists() or state.read_text().split(") ")[1].startswith("Z"):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the tool's child {child} survived the timeout")
    assert list(private_tmp.iterdir()) == []


def test_paths_with_spaces_quotes_and_shell_syntax_are_passed_as_they_are(tmp_path, monkeypatch, photo):
    require_binary("cjpeg")
    hostile = tmp_path / "a b'c\";$(touch PWNED)`touch PWNED2`&|"
    hostile.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(hostile))
    codec = catalog_codec("cjpeg")
    encoded = codec.encode(photo, 60)
    assert encoded == bytes(imagecodecs.jpeg8_encode(photo, level=60, subsampling="420", optimize=False))
    assert codec.decode(encoded, photo.shape[:2]).shape == photo.shape
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    assert list(hostile.iterdir()) == []


def test_failed_tasks_are_error_rows_and_the_run_goes_on(tmp_path, monkeypatch):
    require_binary("cjpeg")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    shutil.copy(REPO / "codecs" / "cjpeg.toml", catalog)
    crash = (REPO / "codecs" / "cjpeg.toml").read_text().replace('name = "cjpeg"', 'name = "crashing"')
    crash = crash.replace('encode = ["cjpeg", ', f'encode = ["{sys.executable}", "{MISBEHAVE}", "crash", ')
    (catalog / "crashing.toml").write_text(crash)
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:200, :240]).save(photos / "astronaut.png")
    Image.fromarray(data.coffee()[:180, :220]).save(photos / "coffee.png")
    rows = bench.run(
        "crashing,cjpeg",
        str(photos),
        out=str(tmp_path / "run"),
        jobs=1,
        qualities={"crashing": [50], "cjpeg": [50]},
    )
    assert len(rows) == 4
    failed, passed = rows[rows.codec == "crashing"], rows[rows.codec == "cjpeg"]
    assert failed.error.str.contains(
        f"ToolError: {Path(sys.executable).name} exited with status 3: misbehave: cannot parse"
    ).all()
    assert passed.error.isna().all() and (passed.bytes > 0).all() and (passed.psnr_rgb > 30).all()


def test_missing_program_makes_the_codec_unavailable_with_an_install_hint(tmp_path, monkeypatch):
    codec = tool_codec(
        ["no-such-codec-tool", "{input}", "{output}"], ["djpeg"], install="apt-get install nct"
    )
    assert codec.available() == "it needs no-such-codec-tool, which is not found on PATH: apt-get install nct"
    codec = tool_codec([str(tmp_path / "absent" / "enc"), "{input}", "{output}"], ["djpeg"])
    assert "is not an executable file" in codec.available()
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    text = (
        (REPO / "codecs" / "cjpeg.toml").read_text().replace('"cjpeg", "-quality"', '"cjpeg-x", "-quality"')
    )
    (catalog / "cjpeg.toml").write_text(text)
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    with pytest.raises(
        UserError,
        match="cjpeg is unavailable: it needs cjpeg-x, which is not found on PATH: apt-get install libjpeg",
    ):
        bench.run("cjpeg", "sample", out=str(tmp_path / "run"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"timout": 5}, "unknown key.*timout"),
        ({"format": {"image": "tiff"}}, "format.image 'tiff'"),
        ({"format": {"image": "ppm", "bitstream": "../x"}}, "not a plain file suffix"),
        ({"format": {"image": "ppm", "matrix": "bt709"}}, "apply to yuv only"),
        ({"format": {"image": "yuv", "matrix": "bt999"}}, "matrix 'bt999'"),
        ({"encode": ["enc", "{qualty}", "{output}"]}, r"unknown placeholder\(s\) qualty"),
        ({"encode": ["enc", "{input.name}"]}, "not a plain name"),
        ({"decode": ["dec", "{quality}"]}, r"decode template uses unknown placeholder\(s\) quality"),
        ({"encode": ["{input}", "x"]}, "cannot hold a placeholder other than"),
        ({"encode": "cjpeg {input}"}, "must be a non-empty list of strings"),
        ({"timeout": 0}, "must be positive"),
        ({"choices": {"effort": {"1": "x"}}}, "choices.effort names no option"),
        ({"choices": {"effort": 5}}, "choices must be a table of tables"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        encode, decode = ["enc", "{input}", "{output}", "{quality}"], ["dec", "{input}", "{output}"]
        make_codec(
            "t",
            "subprocess",
            {},
            {"encode": encode, "decode": decode, "format": "ppm", "version": ["v"]} | change,
        )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"speed": 3}, r"option\(s\) speed appear in neither"),
        ({"input": 3}, "reserved for placeholders"),
        ({"threads": 0}, "threads=0 must be a whole number of at least 1"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        tool_codec(["enc", "{input}", "{output}"], ["dec", "{input}", "{output}"], options)


def test_option_choices_and_quality_limits(photo):
    require_binary("cjpeg")
    with pytest.raises(ValueError, match="subsampling='411' must be one of 420, 422, 444"):
        catalog_codec("cjpeg", subsampling="411")
    codec = catalog_codec("cjpeg", subsampling=444)  # typed as TOML types it on the command line
    assert codec.encode(photo, 20.0) == bytes(imagecodecs.jpeg8_encode(photo, level=20, subsampling="444"))
    with pytest.raises(ValueError, match="quality 101 is outside"):
        codec.encode(photo, 101)
    with pytest.raises(ValueError, match="quality 20.5 must be a whole number"):
        codec.encode(photo, 20.5)


def test_the_entrys_adapter_keys_reach_the_codec_and_the_config_hash():
    entry = CATALOG["cjpeg"]
    assert CatalogEntry.from_dict(entry.to_dict()) == entry
    assert set(entry.extra) >= {"encode", "decode", "format", "version", "timeout"}
    changed = CatalogEntry.from_dict(entry.to_dict() | {"extra": entry.extra | {"timeout": 61}})
    assert config_hash(entry, 1, {"cjpeg": "2.1.5"}) != config_hash(changed, 1, {"cjpeg": "2.1.5"})
    codec = make_codec(entry.name, entry.adapter, entry.options, entry.extra)
    assert codec.spec.timeout == 60 and codec.spec.encode[0] == "cjpeg"


def test_third_party_adapters_receive_the_entrys_extra_keys_through_the_entry_point(tmp_path, monkeypatch):
    """A package installed on sys.path registers a factory under the bench.codecs entry-point group."""
    source = (
        "from bench.adapters.subprocess_codec import SubprocessCodec\n"
        "def factory(name, options, extra=None):\n"
        "    codec = SubprocessCodec(name, options, extra)\n"
        "    codec.seen = extra\n"
        "    return codec\n"
    )
    plugin_package(tmp_path, "mycodecs", source, "bench.codecs", {"mine": "factory"})
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = CATALOG["cjpeg"]
    codec = make_codec("mine", "mine", entry.options, entry.extra)
    assert codec.seen == entry.extra and codec.spec.decode[0] == "djpeg"


# --- the Debian tools, against independent encoders and decoders -----------------------------------


def test_cjpeg_makes_the_same_bytes_as_libjpeg_turbo_in_process(photo):
    for subsampling in ("420", "444"):
        codec = catalog_codec("cjpeg", subsampling=subsampling)
        for quality in (1, 50):  # quality 1: -baseline clamps the tables as imagecodecs does
            encoded = codec.encode(photo, quality)
            expected = imagecodecs.jpeg8_encode(photo, level=quality, subsampling=subsampling, optimize=False)
            assert encoded == bytes(expected)
            assert np.array_equal(codec.decode(encoded, photo.shape[:2]), imagecodecs.jpeg8_decode(encoded))


def _pillow_heif_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    return np.asarray(pillow_heif.open_heif(data, convert_hdr_to_8bit=True))


@pytest.mark.parametrize(
    "name, quality, library_decode, tolerance",
    [
        ("cwebp", 50, imagecodecs.webp_decode, 0),
        ("avifenc", 35, imagecodecs.avif_decode, 0),
        ("heif-enc", 34, _pillow_heif_decode, 0),
        ("cjxl", 50, imagecodecs.jpegxl_decode, 1),  # libjxl 0.7 and 0.11 round XYB -> sRGB differently
    ],
)
def test_cli_bitstreams_decode_alike_in_the_library(name, quality, library_decode, tolerance, photo):
    codec = catalog_codec(name)
    encoded = codec.encode(photo, quality)
    ours = codec.decode(encoded, photo.shape[:2])
    theirs = np.asarray(library_decode(encoded))
    assert ours.shape == theirs.shape == photo.shape
    assert np.abs(ours.astype(int) - theirs).max() <= tolerance
    assert 28 < psnr_rgb(photo, ours) < 45


def test_x265_raw_yuv_decodes_to_the_encoders_own_reconstruction(tmp_path, photo):
    codec = catalog_codec("x265")
    encoded = codec.encode(photo, 34)
    source, recon = tmp_path / "in.yuv", tmp_path / "recon.yuv"
    yuv.write_yuv(source, photo, codec.spec.yuv)
    argv = codec._command(
        codec.spec.encode, input=source, output=tmp_path / "out.hevc", quality=34, width=451, height=300
    )
    subprocess.run([*argv, "--recon", str(recon)], check=True, capture_output=True)
    assert (tmp_path / "out.hevc").read_bytes() == encoded
    reconstruction = yuv.read_yuv(recon, photo.shape[:2], codec.spec.yuv)
    assert np.array_equal(codec.decode(encoded, photo.shape[:2]), reconstruction)


@pytest.mark.parametrize("name", CLI_CODECS)
def test_default_sweep_ends_order_rate_and_quality(name, photo):
    codec, entry = catalog_codec(name), CATALOG[name]
    low, high = sorted(entry.qualities, reverse=not entry.rate_rises_with_quality)[
        :: len(entry.qualities) - 1
    ]
    crop = np.ascontiguousarray(photo[:128, :160])
    small, large = codec.encode(crop, low), codec.encode(crop, high)
    assert len(small) < len(large)
    assert psnr_rgb(crop, codec.decode(small, crop.shape[:2])) < psnr_rgb(
        crop, codec.decode(large, crop.shape[:2])
    )
    versions = codec.versions()
    assert versions and all(v and v != "unknown" for v in versions.values())


def test_bench_codecs_lists_the_command_line_codecs_with_their_versions():
    from click.testing import CliRunner

    from bench.cli import cli

    require_binary("cjpeg")
    output = CliRunner().invoke(cli, ["codecs"], catch_exceptions=False).output
    assert "cjpeg: available - JPEG with the command-line cjpeg/djpeg" in output
    assert "versions: cjpeg 2.1" in output and "adapter subprocess" in output


def test_default_run_leaves_the_command_line_codecs_out():
    from bench.runner import RunRequest, _selected_entries

    names = {entry.name for entry in _selected_entries(RunRequest(), [])}
    assert names.isdisjoint(CLI_CODECS + ["bpg", "bpg420", "vtm", "vtm420", "hm"]) and "jpeg" in names


# --- BPG: only where bpgenc was built (no package offers it) ---------------------------------------


def require_bpg() -> None:
    if not (shutil.which("bpgenc") and shutil.which("bpgdec")):
        pytest.skip("bpgenc/bpgdec not on PATH: no package offers them; build libbpg 0.9.8 (see the README)")


@pytest.mark.parametrize("name, flag", [("bpg", "444"), ("bpg420", "420")])
def test_bpg_bytes_equal_compressais_command(name, flag, kodak_dir, tmp_path):
    require_bpg()
    source = kodak_dir / "kodim23.png"
    out = tmp_path / "out.bpg"
    argv = [
        "bpgenc",
        "-o",
        str(out),
        "-q",
        "37",
        "-f",
        flag,
        "-e",
        "x265",
        "-c",
        "ycbcr",
        "-b",
        "8",
        str(source),
    ]
    subprocess.run(argv, check=True, capture_output=True)  # CompressAI's BPG command
    codec = catalog_codec(name)
    image = np.asarray(Image.open(source).convert("RGB"))
    encoded = codec.encode(image, 37)
    assert encoded == out.read_bytes()
    assert codec.versions() == {"bpgenc": "0.9.8"}
    assert 30 < psnr_rgb(image, codec.decode(encoded, image.shape[:2])) < 40


# --- Kodak-wide (slow, run in CI) -------------------------------------------------------------------


@pytest.mark.slow
def test_bpg_on_kodak_reproduces_compressais_published_results(kodak_dir):
    """CompressAI results/image/kodak/bpg_444_x265_ycbcr.json, first point (QP 47)."""
    require_bpg()
    codec = catalog_codec("bpg")
    bpp, psnr = [], []
    for image in kodak_images(kodak_dir):
        encoded = codec.encode(image, 47)
        bpp.append(len(encoded) * 8 / (image.shape[0] * image.shape[1]))
        psnr.append(psnr_rgb(image, codec.decode(encoded, image.shape[:2])))
    assert np.mean(bpp) == pytest.approx(0.06776767306857638, abs=1e-12)
    assert np.mean(psnr) == pytest.approx(26.19512806390954, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("subsampling", ["420", "444"])
def test_jpeg_and_cjpeg_agree_on_kodak(kodak_dir, subsampling):
    cjpeg, jpeg = (
        catalog_codec("cjpeg", subsampling=subsampling),
        make_codec("jpeg", "imagecodecs.jpeg", {"subsampling": subsampling}),
    )
    for image in kodak_images(kodak_dir):
        for quality in (5, 30, 75, 95):
            ours, theirs = cjpeg.encode(image, quality), jpeg.encode(image, quality)
            assert abs(len(ours) / len(theirs) - 1) <= 0.02
            shape = image.shape[:2]
            difference = psnr_rgb(image, cjpeg.decode(ours, shape)) - psnr_rgb(
                image, jpeg.decode(theirs, shape)
            )
            assert abs(difference) <= 0.1
