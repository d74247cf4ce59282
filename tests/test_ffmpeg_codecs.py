"""The catalog's codecs run through imageio-ffmpeg's static ffmpeg (`{ffmpeg}`): vvc, svtav1, x265-10bit-444,
kvazaar. Round trips on real images, rate and quality against the knob, decodes that repeat to the pixel,
the codec measured against its own YUV input, a second decoder where one is packaged, truncated bitstreams.
The wheel is a dependency: under CI=true a missing codec fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.adapters import programs, yuv
from bench.adapters.subprocess_codec import SubprocessCodec, version_in
from bench.adapters.tool import ToolError
from bench.catalog import load_catalog
from bench.codec import make_codec
from bench.metrics import psnr_rgb
from tests.conftest import skip_or_fail
from tests.test_subprocess_codecs import catalog_codec

REPO = Path(__file__).resolve().parents[1]
CATALOG = load_catalog(REPO / "codecs")
FFMPEG_CODECS = ["vvc", "svtav1", "x265-10bit-444", "kvazaar"]


@pytest.fixture(scope="module")
def crop(kodak_dir) -> np.ndarray:
    """Detail and flat sky of kodim23, 96 x 160 (VVenC's medium preset on it: well under a second)."""
    return np.asarray(Image.open(kodak_dir / "kodim23.png").convert("RGB"))[40:136, 300:460]


def psnr_planes(a: list[np.ndarray], b: list[np.ndarray], bitdepth: int) -> list[float]:
    peak = (2**bitdepth - 1) ** 2
    return [10 * np.log10(peak / np.mean((x.astype(float) - y) ** 2)) for x, y in zip(a, b, strict=True)]


def yuv_planes(path: Path, codec: SubprocessCodec, shape: tuple[int, int]) -> list[np.ndarray]:
    fmt = codec.spec.yuv
    samples = np.frombuffer(path.read_bytes(), np.uint8 if fmt.bitdepth == 8 else "<u2")
    planes, start = [], 0
    for h, w in fmt.plane_shapes(*shape):
        planes.append(samples[start : start + h * w].reshape(h, w))
        start += h * w
    return planes


@pytest.mark.parametrize("name", FFMPEG_CODECS)
def test_round_trips_with_rate_falling_and_quality_rising_along_the_knob(name, crop):
    codec = catalog_codec(name)
    qps = {"vvc": [44, 34, 24], "svtav1": [56, 38, 20]}.get(name, [44, 34, 24])
    rates, quality = [], []
    for qp in qps:
        data = codec.encode(crop, qp)
        decoded = codec.decode(data, crop.shape[:2])
        assert decoded.shape == crop.shape and decoded.dtype == np.uint8
        rates.append(len(data))
        quality.append(psnr_rgb(crop, decoded))
    assert rates == sorted(rates) and len(set(rates)) == 3
    assert quality == sorted(quality) and quality[-1] > quality[0] + 4
    assert 20 < quality[0] and quality[-1] < 50


def test_vvc_decodes_to_the_same_pixels_twice_and_with_one_or_two_threads(crop):
    one, two = catalog_codec("vvc"), catalog_codec("vvc", threads=2)
    data = one.encode(crop, 30)
    assert two.encode(crop, 30) == data  # the bitstream does not depend on the threads either
    first = one.decode(data, crop.shape[:2])
    assert np.array_equal(one.decode(data, crop.shape[:2]), first)
    assert np.array_equal(two.decode(data, crop.shape[:2]), first)
    assert data[:4] == b"\x00\x00\x00\x01"  # a raw Annex B stream: its bytes are the rate


def test_vvc_against_its_own_yuv_input_and_what_420_costs_by_itself(crop, tmp_path):
    """Measured on the 10-bit planes the harness wrote, VVenC at QP 4 is near-transparent (Y above 50 dB): ffmpeg
    converts nothing between the harness and the codec. Back in RGB the same decode is capped by 4:2:0 itself:
    within 1.5 dB of the codec-free 4:2:0 round trip (under 50 dB), where the 4:4:4 one is exact."""
    codec = catalog_codec("vvc")
    fmt = codec.spec.yuv
    source, bitstream, decoded = tmp_path / "in.yuv", tmp_path / "s.266", tmp_path / "out.yuv"
    yuv.write_yuv(source, crop, fmt)
    bitstream.write_bytes(codec.encode(crop, 4))
    height, width = crop.shape[:2]
    argv = codec._command(codec.spec.decode, input=bitstream, output=decoded, width=width, height=height)
    subprocess.run(argv, check=True, capture_output=True)
    shape = crop.shape[:2]
    y, cb, cr = psnr_planes(yuv_planes(source, codec, shape), yuv_planes(decoded, codec, shape), 10)
    assert y > 50 and cb > 50 and cr > 50
    rgb = psnr_rgb(crop, yuv.read_yuv(decoded, shape, fmt))
    codec_free = psnr_rgb(crop, yuv.planes_to_rgb(yuv.rgb_to_planes(crop, fmt), fmt))
    fmt444 = yuv.YuvFormat(fmt.matrix, fmt.range, "444", 10)
    assert np.array_equal(yuv.planes_to_rgb(yuv.rgb_to_planes(crop, fmt444), fmt444), crop)
    assert codec_free - 1.5 < rgb <= codec_free + 0.1 and codec_free < 50


@pytest.mark.parametrize("name", ["vvc", "svtav1"])
def test_truncated_bitstreams_are_errors_not_pictures(name, crop):
    """VVC and AV1 (ffmpeg's decoders, errors made fatal). ffmpeg's HEVC decoder, like libde265, conceals a
    slice cut short without any error: the x265-10bit-444 and kvazaar descriptions say so."""
    codec = catalog_codec(name)
    data = codec.encode(crop, 30)
    for size in (len(data) // 2, len(data) * 3 // 4, 60):
        with pytest.raises(ToolError, match="exited with status"):
            codec.decode(data[:size], crop.shape[:2])


@pytest.mark.parametrize(
    "name, decoder",
    [("x265-10bit-444", ["-c:v", "hevc"]), ("kvazaar", ["-c:v", "hevc"]), ("svtav1", ["-c:v", "libaom-av1"])],
)
def test_a_second_decoder_gives_the_same_pixels(name, decoder, crop, tmp_path):
    """HEVC: libde265 (Debian's dec265) against ffmpeg's own decoder; AV1: libaom against dav1d."""
    codec = catalog_codec(name)
    data = codec.encode(crop, 30)
    ours = codec.decode(data, crop.shape[:2])
    stream, out = tmp_path / f"s.{codec.spec.bitstream}", tmp_path / "out.yuv"
    stream.write_bytes(data)
    if decoder[1] == "hevc":
        dec265 = programs.executable("libde265-dec265")
        if dec265 is None:
            skip_or_fail("libde265-dec265 not found on PATH")
        argv = [dec265, "--quiet", "--output", str(out), str(stream)]
    else:
        pix_fmt = {8: "yuv420p", 10: "yuv420p10le"}[codec.spec.yuv.bitdepth]
        argv = [programs.ffmpeg(), "-nostdin", "-loglevel", "error", *decoder, "-i", str(stream)]
        argv += ["-f", "rawvideo", "-pix_fmt", pix_fmt, str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    assert np.array_equal(yuv.read_yuv(out, crop.shape[:2], codec.spec.yuv), ours)


def test_versions_name_ffmpeg_and_the_encoder_library():
    versions = {name: catalog_codec(name).versions()["ffmpeg"] for name in FFMPEG_CODECS}
    library = {"vvc": "libvvenc", "svtav1": "svtav1", "x265-10bit-444": "x265", "kvazaar": "kvazaar"}
    for name, text in versions.items():
        parts = dict(part.split(" ", 1) for part in text.split(", "))
        assert set(parts) == {"ffmpeg", "libavcodec", library[name]}, text
        assert "unknown" not in parts.values(), text


def test_named_groups_of_a_version_pattern_are_all_recorded():
    text = "ffmpeg version n9.0.2 Copyright\n  libavcodec     63.  1.102 /\n[x] libvvenc version: 1.15.0"
    pattern = r"(?s)ffmpeg version (?P<ffmpeg>\S+).*?libvvenc version: (?P<libvvenc>\S+)"
    assert version_in(text, pattern) == "ffmpeg n9.0.2, libvvenc 1.15.0"
    assert version_in("nothing here", pattern) == "unknown"
    assert version_in("tool 2.1.5 (build 7)", r"tool (\S+)") == "2.1.5"


def test_the_ffmpeg_placeholder_names_the_wheels_binary_and_only_it(monkeypatch, tmp_path):
    codec = catalog_codec("vvc")
    argv = codec._command(codec.spec.decode, input="a", output="b", width=1, height=1)
    assert argv[0] == programs.ffmpeg() and Path(argv[0]).is_file()
    entry = CATALOG["vvc"]
    with pytest.raises(ValueError, match=r"cannot hold a placeholder other than \{ffmpeg\}"):
        make_codec("v", "subprocess", entry.options, entry.extra | {"decode": ["{ffprobe}", "{input}"]})
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "none"))
    gone = make_codec("v", "subprocess", entry.options, entry.extra)
    assert gone.available() == (
        f"it needs {{ffmpeg}} ({tmp_path}/none), which is not an executable file: pip install imageio-ffmpeg "
        "(its static ffmpeg has libvvenc and the VVC decoder)"
    )
