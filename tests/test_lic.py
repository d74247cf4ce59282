"""lic: real bitstreams from the shipped weights, a decoder that refuses bad input, training end to end."""

from __future__ import annotations

import csv
import dataclasses
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data

from bench.lic import bitstream
from bench.lic.codec import LicCodec
from bench.lic.train import main as train_main

ARCHITECTURES = ("hyperprior", "factorized")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def codec(request) -> LicCodec:
    codec = LicCodec("lic", {"architecture": request.param})
    assert codec.available() is None, codec.available()
    return codec


@pytest.fixture(scope="module")
def odd_image() -> np.ndarray:
    """An odd-sized crop of a real photograph: the transforms need padding and a crop."""
    return np.ascontiguousarray(data.astronaut()[37:238, 101:264])  # 201 x 163


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2))


def test_round_trip_any_size_rate_rises_with_level(codec, odd_image):
    sizes, qualities = [], []
    for level in (0, 3, 7):
        encoded = codec.encode(odd_image, level)
        decoded = codec.decode(encoded, odd_image.shape[:2])
        assert decoded.shape == odd_image.shape and decoded.dtype == np.uint8
        sizes.append(len(encoded))
        qualities.append(psnr(odd_image, decoded))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert qualities[-1] > qualities[0] > 20


def test_header_says_what_the_bytes_are(codec, odd_image):
    encoded = codec.encode(odd_image, 5)
    header, streams = bitstream.unpack(encoded)
    assert (header.architecture, header.level, header.height, header.width) == (
        codec.architecture,
        5,
        201,
        163,
    )
    assert header.weights_id.hex() == codec.versions()["weights"][:8]
    assert encoded[:3] == b"LIC" and sum(map(len, streams)) < len(encoded)


def test_a_second_codec_instance_decodes_to_the_same_pixels(codec, odd_image):
    encoded = codec.encode(odd_image, 2)
    other = LicCodec("lic", {"architecture": codec.architecture})
    np.testing.assert_array_equal(codec.decode(encoded, (201, 163)), other.decode(encoded, (201, 163)))


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b[: len(b) // 2], "truncated or corrupted"),
        (lambda b: b[:10], "not a lic bitstream"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "truncated or corrupted"),
        (lambda b: b"\x89PNG\r\n\x1a\n" + b[8:], "not a lic bitstream"),
        (lambda b: b[:3] + bytes([9]) + b[4:], "format 9"),
        (lambda b: b[:6] + b"\0\0\0\0" + b[10:], "truncated or corrupted"),
        (lambda b: b[:11] + bytes([b[11] ^ 4]) + b[12:], "truncated or corrupted"),  # the height
        (lambda b: b[:5] + bytes([b[5] | 4]) + b[6:], "unknown lic header flags"),
    ],
)
def test_bad_bitstreams_give_a_clear_error(codec, odd_image, mangle, message):
    encoded = codec.encode(odd_image, 1)
    with pytest.raises(bitstream.BitstreamError, match=message):
        codec.decode(mangle(encoded), (201, 163))


def test_a_float_path_bitstream_is_refused_by_the_exact_decoder(codec, odd_image):
    approx = LicCodec("lic", {"architecture": codec.architecture, "exact": False})
    with pytest.raises(bitstream.BitstreamError, match="coded with exact=false"):
        codec.decode(approx.encode(odd_image, 1), (201, 163))


def test_a_bitstream_for_the_other_architecture_is_refused(odd_image):
    hyperprior = LicCodec("lic", {"architecture": "hyperprior"})
    factorized = LicCodec("lic", {"architecture": "factorized"})
    with pytest.raises(bitstream.BitstreamError, match="not by these weights"):
        factorized.decode(hyperprior.encode(odd_image, 1), (201, 163))


def _resigned(fields: list, body: bytes) -> bytes:
    """A header of ``fields`` with a valid integrity CRC (as a forger or a real encoder would write it)."""
    fields[8] = zlib.crc32(body, zlib.crc32(bitstream.signed(bitstream.HEADER.pack(*fields), fields[1])))
    return bitstream.HEADER.pack(*fields) + body


@pytest.mark.parametrize("field, name", [(-1, "symbols"), (-2, "indexes")])
def test_disagreeing_decoder_is_caught_by_the_checksums(codec, odd_image, field, name):
    """A decoder that computes another index map or recovers other symbols than the encoder's (as on a
    machine whose numerics disagree) must raise, not return garbage: simulate it with a header that
    claims other ones. The factorized model has no index map (its CRC field is 0 and unchecked)."""
    encoded = codec.encode(odd_image, 4)
    fields = list(bitstream.HEADER.unpack_from(encoded))
    if codec.architecture == "factorized" and name == "indexes":
        assert fields[field] == 0
        return
    fields[field] ^= 0xFFFF
    forged = _resigned(fields, encoded[bitstream.HEADER.size :])
    with pytest.raises(bitstream.NumericsMismatch, match=f"{name} CRC mismatch") as caught:
        codec.decode(forged, (201, 163))
    assert "corrupt" not in str(caught.value)  # format 3: only the numerics are left to blame


@pytest.mark.parametrize("position", range(19, 27))
def test_a_corrupted_map_crc_is_corruption_not_a_numerics_mismatch(odd_image, position):
    """Format 2 left header bytes 19-26 out of the integrity CRC: one flipped bit there was reported as
    "this machine's numerics disagree". Format 3 covers them."""
    codec = _fuzz_codec()
    encoded = bytearray(_fuzz_stream(codec, odd_image))
    assert encoded[3] == 3
    encoded[position] ^= 0x10
    with pytest.raises(bitstream.BitstreamError, match="truncated or corrupted") as caught:
        codec.decode(bytes(encoded), (201, 163))
    assert not isinstance(caught.value, bitstream.NumericsMismatch)


@pytest.mark.parametrize("claimed", [(4096, 4096), (65535, 65535), (201, 164), (1, 1)])
def test_a_header_claiming_another_size_is_refused_before_decoding(odd_image, claimed, monkeypatch):
    """A header rewritten to 4096x4096 with a valid CRC made the decoder allocate 3 GB (65535x65535:
    a crash); now the claim is compared with the size the caller expects before any tensor is built."""
    codec = _fuzz_codec()
    encoded = _fuzz_stream(codec, odd_image)
    fields = list(bitstream.HEADER.unpack_from(encoded))
    fields[6:8] = claimed
    forged = _resigned(fields, encoded[bitstream.HEADER.size :])
    model = codec._loaded()
    monkeypatch.setattr(model, "decompress", None)  # reaching the decoder at all would fail differently
    message = f"lic bitstream claims {claimed[1]}x{claimed[0]}, expected 163x201"
    with pytest.raises(bitstream.BitstreamError, match=message) as caught:
        codec.decode(forged, (201, 163))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("lengths", [(8, 0), (8, 4), (6, 12), (16, 13)])
def test_stream_lengths_that_no_encoder_writes_are_refused(lengths):
    header = bitstream.Header("hyperprior", True, b"abcd", 0, 10, 12, 0, 7, 9)
    packed = bitstream.pack(header, [b"z" * n for n in lengths])
    with pytest.raises(bitstream.BitstreamError, match="not whole numbers of 32-bit words"):
        bitstream.unpack(packed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bitstreams_never_crash_or_hang(data, odd_image):
    codec = _fuzz_codec()
    encoded = bytearray(_fuzz_stream(codec, odd_image))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        if kind == "cut" and len(encoded) > 1:
            del encoded[data.draw(st.integers(0, len(encoded) - 1)) :]
        elif kind == "insert":
            encoded.insert(data.draw(st.integers(0, len(encoded))), data.draw(st.integers(0, 255)))
        elif encoded:
            limit = bitstream.HEADER.size - 1 if kind == "header" else len(encoded) - 1
            position = data.draw(st.integers(0, min(limit, len(encoded) - 1)))
            encoded[position] ^= data.draw(st.integers(1, 255))
    try:
        decoded = codec.decode(bytes(encoded), (201, 163))
    except bitstream.BitstreamError:
        return
    assert decoded.shape[2] == 3 and decoded.dtype == np.uint8  # only a header change that kept it valid


_FUZZ: dict[str, object] = {}


def _fuzz_codec() -> LicCodec:
    if "codec" not in _FUZZ:
        _FUZZ["codec"] = LicCodec("lic", {"architecture": "hyperprior"})
    return _FUZZ["codec"]


def _fuzz_stream(codec: LicCodec, image: np.ndarray) -> bytes:
    if "stream" not in _FUZZ:
        _FUZZ["stream"] = codec.encode(image, 3)
    return _FUZZ["stream"]


def test_stream_crc_is_checked_before_range_decoding():
    header = bitstream.Header("hyperprior", True, b"abcd", 0, 10, 12, 0, 7, 9)
    packed = bitstream.pack(header, [b"z" * 8, b"y" * 12])
    parsed, streams = bitstream.unpack(packed)
    signed = packed[:15] + packed[19 : bitstream.HEADER.size] + packed[bitstream.HEADER.size :]
    assert streams == [b"z" * 8, b"y" * 12] and parsed.streams_crc == zlib.crc32(signed)
    assert struct.unpack_from(">HH", packed, 11) == (10, 12) and packed[5] == bitstream.EXACT_FLAG
    assert (parsed.indexes_crc, parsed.symbols_crc, parsed.exact, parsed.version) == (7, 9, True, 3)
    old = bitstream.pack(dataclasses.replace(header, version=2), [b"z" * 8, b"y" * 12])
    assert bitstream.unpack(old)[0].streams_crc == zlib.crc32(old[:15] + old[bitstream.HEADER.size :])


def test_missing_weights_make_lic_unavailable(tmp_path):
    codec = LicCodec("lic", {"weights": str(tmp_path / "none.pt")})
    assert "bench train lic --export" in codec.available()


def test_unknown_option_and_bad_level_are_refused(odd_image):
    with pytest.raises(ValueError, match="unknown option"):
        LicCodec("lic", {"colour": "blue"})
    with pytest.raises(ValueError, match="ladder index"):
        LicCodec("lic", {}).encode(odd_image, 8)


def test_training_end_to_end_resume_and_export(tmp_path, data_dir):
    """A few real training steps on the training photographs, resumed, exported, then coded with."""
    out, exported, photos = tmp_path / "run", tmp_path / "weights", tmp_path / "photos"
    photos.mkdir()
    for path in sorted((data_dir / "train").glob("*.png"))[:4]:  # small crops keep it fast on a CPU
        with Image.open(path) as image:
            image.convert("RGB").crop((0, 0, 128, 96)).save(photos / path.name)
    common = [
        "--architecture",
        "hyperprior",
        "--channels",
        "8",
        "8",
        "--batch",
        "2",
        "--crop",
        "64",
        "--threads",
        "2",
        "--data",
        str(photos),
        "--out",
        str(out),
        "--val-images",
        "1",
        "--val-every",
        "4",
        "--checkpoint-every",
        "2",
        "--device",
        "cpu",
    ]
    train_main([*common, "--steps", "4"])
    assert (out / "checkpoint.pt").exists()
    train_main([*common, "--steps", "6", "--resume", "--export", "--weights-dir", str(exported)])
    with (out / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows if r["kind"] == "train"] == [4, 6]  # one log, resumed
    assert {int(r["level"]) for r in rows if r["kind"] == "val"} == set(range(8))
    codec = LicCodec("lic", {"weights": str(exported / "hyperprior.pt")})
    image = np.ascontiguousarray(data.chelsea()[:70, :90])
    assert codec.decode(codec.encode(image, 7), (70, 90)).shape == (70, 90, 3)
    # parameters are stored in fp16, buffers (likelihood bounds: 1e-9 is 0 in fp16) exactly as they were
    import torch

    state = torch.load(exported / "hyperprior.pt", weights_only=True)["state_dict"]
    assert state["g_a.0.weight"].dtype == torch.float16
    assert float(state["entropy_bottleneck.likelihood_lower_bound.bound"]) == pytest.approx(1e-9, rel=1e-6)
    # so training on from exported weights gives finite losses
    again = tmp_path / "again"
    train_main([*common, "--out", str(again), "--steps", "2", "--init", str(exported / "hyperprior.pt")])
    with (again / "log.csv").open() as handle:
        losses = [float(r["loss"]) for r in csv.DictReader(handle) if r["kind"] == "train"]
    assert losses and all(np.isfinite(losses))


def test_training_refuses_kodak(tmp_path):
    with pytest.raises(SystemExit):
        train_main(["--data", str(tmp_path / "kodak"), "--out", str(tmp_path / "o")])


def test_bench_run_codes_with_lic_and_times_loading_apart(tmp_path):
    from click.testing import CliRunner

    from bench.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--codecs",
            "lic,lic-factorized",
            "--images",
            "1",
            "--qualities",
            "lic=0,7",
            "--qualities",
            "lic-factorized=0,7",
            "--executor",
            "inline",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv").sort_values(["codec", "quality"])
    assert rows["error"].isna().all() and (rows["device"] == "cpu").all()
    assert (rows["load_s"] > 0).all() and rows["psnr_rgb"].between(20, 50).all()
    for name, group in rows.groupby("codec"):
        assert group["bytes"].is_monotonic_increasing
        counted = LicCodec(
            name, {"architecture": "hyperprior" if name == "lic" else "factorized"}
        ).complexity()
        assert group["kmac_px_enc"].tolist() == [pytest.approx(counted["kmac_px_enc"])] * len(group)
        assert group["kmac_px_dec"].tolist() == [pytest.approx(counted["kmac_px_dec"])] * len(group)
    # the report's complexity table shows them beside the speed
    report = CliRunner().invoke(cli, ["report", str(out), "--no-visual"])
    assert report.exit_code == 0, report.output
    page = (out / "report" / "index.html").read_text()
    assert 'id="complexity"' in page and f"{counted['kmac_px_dec']:.2f}" in page


def test_bench_run_on_cuda_without_a_gpu_is_refused_in_one_line(tmp_path):
    import torch
    from click.testing import CliRunner

    from bench.cli import cli

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal cannot happen")
    result = CliRunner().invoke(
        cli, ["run", "--codecs", "lic", "--device", "cuda", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "torch sees no CUDA GPU" in result.output


@pytest.mark.parametrize("kind", ["mse", "l1", "ms-ssim"])
def test_distortion_terms_are_zero_for_a_perfect_reconstruction_and_grow_with_error(kind):
    import torch

    from bench.lic.train import distortion_terms

    x = torch.from_numpy(data.astronaut()[:192, :192].copy()).permute(2, 0, 1)[None].float() / 255
    noisy = (x + 0.05 * torch.randn_like(x, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    perfect, _ = distortion_terms(x, x, kind)
    small, _ = distortion_terms(x, (x + noisy) / 2, kind)
    large, mse = distortion_terms(x, noisy, kind)
    assert float(perfect) == pytest.approx(0, abs=1e-6)
    assert 0 < float(small) < float(large) and float(mse) > 0


def test_bench_lic_imports_no_codec_library():
    """bench.lic must run where only torch, compressai, numpy and Pillow are installed (the GPU machine)."""
    import subprocess
    import sys

    blocked = [
        "imagecodecs",
        "pillow_heif",
        "click",
        "skimage",
    ]  # compressai itself needs pandas, scipy, tqdm
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import bench.lic.train, bench.lic.codec, bench.lic.timing, bench.lic.card\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
