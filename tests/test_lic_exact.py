"""lic's exact integer decoder side and `bench verify`: same pixels under other numerics, or a clear report."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from compressai.entropy_models import GaussianConditional
from compressai.models.google import get_scale_table
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data
from torch import nn
from torch.nn import functional as F

from bench import verify
from bench.cli import cli
from bench.lic import bitstream, exact_gemm, integer
from bench.lic.codec import LicCodec
from bench.lic.weights import default_path

GOLDEN = Path(__file__).parent / "golden" / "lic"  # format 2
GOLDEN_3 = Path(__file__).parent / "golden" / "lic-format3"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[40:240, 60:290])  # 200 x 230


def _int64_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """A direct convolution in int64 (no float anywhere): the independent truth for the float64 path."""
    channels, height, width = x.shape
    out_channels, _, k, _ = weight.shape
    padded = np.zeros((channels, height + 2 * padding, width + 2 * padding), np.int64)
    padded[:, padding : padding + height, padding : padding + width] = x
    out_h, out_w = (height + 2 * padding - k) // stride + 1, (width + 2 * padding - k) // stride + 1
    out = np.empty((out_channels, out_h, out_w), np.int64)
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, i, j] = np.einsum("cij,ocij->o", patch, weight) + bias
    return out


def test_integer_conv_is_exact_integer_arithmetic():
    """The float64 evaluation equals int64 arithmetic bit for bit, with 16-bit weights at full scale."""
    torch.manual_seed(0)
    layer = nn.Conv2d(48, 8, 5, stride=2, padding=2)
    with torch.no_grad():
        layer.weight.mul_(40)  # large weights: the accumulator exponent must come down to keep the bound
    inputs = [torch.randn(1, 48, 16, 16) * 30]
    (stage,) = integer.build_stages(nn.Sequential(layer), inputs, in_exponent=8)
    x = torch.randint(-integer.ACT_MAX, integer.ACT_MAX + 1, (1, 48, 16, 16), dtype=torch.int64)
    acc, _ = integer.run_stages([stage], x.double(), 8)
    expected = _int64_conv(
        x[0].numpy(), stage["weight"].numpy().astype(np.int64), stage["bias"].numpy(), 2, 2
    )
    np.testing.assert_array_equal(acc[0].numpy().astype(np.int64), expected)
    bound = np.abs(stage["weight"].numpy().astype(np.int64)).reshape(8, -1).sum(1) * integer.ACT_MAX
    assert (bound + np.abs(stage["bias"].numpy()) < integer.EXACT).all()


@pytest.mark.parametrize(
    "channels_in, channels_out, height, width",
    [(7, 20, 9, 11), (12, 3, 6, 5), (1, 1, 3, 4), (64, 17, 13, 8)],
)
def test_int8_gemm_convolutions_are_exact_integer_arithmetic(channels_in, channels_out, height, width):
    """exact_gemm's convolutions (int8 halves, int32 GEMMs) against int64 arithmetic for convolutions and
    against float64 (exact here: every partial sum below 2**53) for transposed ones, polyphase (more than
    16 outputs) and folded alike; the extreme values of both operands included."""
    generator = torch.Generator().manual_seed(channels_in)
    x = torch.randint(
        -integer.ACT_MAX, integer.ACT_MAX + 1, (channels_in, height, width), generator=generator
    )
    x.view(-1)[:2] = torch.tensor([integer.ACT_MAX, -integer.ACT_MAX])
    weight = torch.randint(-integer.WEIGHT_MAX, integer.WEIGHT_MAX + 1, (channels_out, channels_in, 3, 3),
                           generator=generator)  # fmt: skip
    weight.view(-1)[:2] = torch.tensor([integer.WEIGHT_MAX, -integer.WEIGHT_MAX])
    halves = exact_gemm.plane(x.double(), 2)
    assert torch.equal(halves[0, :, 2:-3, 2:-2].long() * 256 + halves[1, :, 2:-3, 2:-2].long(), x - 128)
    assert (halves[0, :, -3:] == 0).all() and (halves[1, :, :2] == -128).all()
    bias = torch.randint(-(2**40), 2**40, (channels_out,), generator=generator)
    for padding in (1, 0, 2):
        ours = exact_gemm.Conv.of(weight.double(), bias.double(), padding)(x.double())
        truth = _int64_conv(x.numpy(), weight.numpy(), bias.numpy(), 1, padding)
        np.testing.assert_array_equal(ours.numpy().astype(np.int64), truth)
    transposed = torch.randint(-integer.WEIGHT_MAX, integer.WEIGHT_MAX + 1, (channels_in, channels_out, 5, 5),
                               generator=generator)  # fmt: skip
    for stride, padding, output_padding in [(2, 2, 1), (2, 2, 0), (1, 2, 0), (3, 2, 2), (2, 0, 0)]:
        deconv = exact_gemm.Deconv.of(transposed.double(), bias.double(), stride, padding, output_padding)
        truth = F.conv_transpose2d(
            x[None].double(), transposed.double(), bias.double(), stride, padding, output_padding
        )
        assert torch.equal(deconv(x.double()), truth[0]), (stride, padding, output_padding)
        # the same values handed on as the next stage's input plane, and taken as one
        saturated = truth[0].clamp(-integer.ACT_MAX, integer.ACT_MAX)
        clamp = lambda values: values.clamp_(-integer.ACT_MAX, integer.ACT_MAX)
        assert torch.equal(deconv(x.double(), clamp, out_pad=1), exact_gemm.plane(saturated, 1))
        conv = exact_gemm.Conv.of(weight.transpose(0, 1).double(), None, 1)
        planes = deconv(x.double(), clamp, out_pad=conv.pad)
        assert torch.equal(conv(planes), conv(saturated))
    with pytest.raises(ValueError, match="output padding"):
        exact_gemm.Deconv.of(transposed.double(), bias.double(), 2, 0, 1)


@pytest.mark.parametrize("architecture", ["hyperprior", "factorized"])
def test_int8_and_float64_routes_decode_to_the_same_pixels(architecture, image, monkeypatch):
    """The int8 GEMMs (the default on the CPU) and the portable float64 convolutions: same bits."""
    pixels = {}
    for route in ("int8", "float64"):
        monkeypatch.setenv("BENCH_LIC_GEMM", route)
        codec = LicCodec("lic", {"architecture": architecture})
        assert ("gemm" in codec._loaded().program["g_s"][0]) == (route == "int8")
        data = codec.encode(image, 4)
        pixels[route] = codec.decode(data, image.shape[:2])
    assert np.array_equal(pixels["int8"], pixels["float64"])


@pytest.mark.parametrize("architecture", ["hyperprior", "factorized"])
def test_shipped_programs_keep_every_accumulator_below_2_to_the_53(architecture):
    """Recomputed from the stored integers, independently of the export's own check."""
    program = torch.load(default_path(architecture), weights_only=True)["integer"]
    for part in ("h_s", "g_s") if architecture == "hyperprior" else ("g_s",):
        for stage in program[part]:
            if stage["op"] == "igdn":
                weight, in_max = stage["gamma"].long(), integer.ACT_MAX**2
                bias = stage["beta"]
            else:
                weight, in_max, bias = stage["weight"].long(), integer.ACT_MAX, stage["bias"]
                if stage["op"] == "deconv":
                    weight = weight.transpose(0, 1)
            assert weight.abs().max() <= integer.WEIGHT_MAX
            bound = weight.abs().flatten(1).sum(1) * in_max + bias.abs()
            assert int(bound.max()) < 2**53


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=8, max_size=8), st.integers(-20, 20))
def test_integer_thresholds_pick_compressais_table_index(accumulators, exponent):
    """Integer thresholds give the index compressai's build_indexes gives for the same scales."""
    conditional = GaussianConditional(None)
    conditional.update_scale_table(get_scale_table())
    acc = torch.tensor(accumulators, dtype=torch.float64).reshape(1, 8, 1, 1)
    exponents = torch.full((8,), exponent)
    thresholds = integer.scale_thresholds(conditional.scale_table, exponents)
    mine = integer.scale_indexes(acc, thresholds)
    theirs = conditional.build_indexes(acc * 2.0**-exponent)
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.parametrize("architecture", ["hyperprior", "factorized"])
def test_exact_decoder_stays_within_a_whisker_of_the_float_one(architecture, image):
    exact = LicCodec("lic", {"architecture": architecture})
    approx = LicCodec("lic", {"architecture": architecture, "exact": False})
    for level in (0, 7):
        a, b = exact.encode(image, level), approx.encode(image, level)
        assert abs(len(a) - len(b)) <= 0.01 * len(b) + 8
        decoded_a, decoded_b = exact.decode(a, image.shape[:2]), approx.decode(b, image.shape[:2])
        mse = np.mean((decoded_a.astype(float) - decoded_b) ** 2)
        assert mse < 10 ** (-45 / 10) * 255**2  # the two decoders agree to better than 45 dB


def test_float32_synthesis_decodes_the_exact_encoders_bitstreams(image):
    """synthesis=float32: the same bitstreams as the exact codec (the option is the decoder's), the exact
    scale path (the symbols' CRCs are checked on decode), pixels within a whisker of the exact decode."""
    exact = LicCodec("lic", {})
    mixed = LicCodec("lic", {"synthesis": "float32"})
    for level in (0, 7):
        data = exact.encode(image, level)
        assert mixed.encode(image, level) == data
        ours, theirs = mixed.decode(data, image.shape[:2]), exact.decode(data, image.shape[:2])
        difference = np.abs(ours.astype(int) - theirs)
        assert 0 < difference.max() <= 3 and np.mean(difference**2) < 10 ** (-45 / 10) * 255**2
    with pytest.raises(ValueError, match="synthesis=float32 decodes exact bitstreams"):
        LicCodec("lic", {"synthesis": "float32", "exact": False})
    with pytest.raises(ValueError, match="synthesis must be one of exact, float32"):
        LicCodec("lic", {"synthesis": "float16"})


def _perturbed(architecture: str, part: str) -> LicCodec:
    """A codec whose exact decoder side is deliberately off: the control that the checks can fail."""
    codec = LicCodec("lic", {"architecture": architecture})
    program = codec._loaded().program
    if part == "scales":
        program["thresholds"] = program["thresholds"] + 2**10  # every scale index shifts
    else:
        last = program["g_s"][-1]
        last.pop("gemm", None)  # its int8 form holds the bias it was built with
        last["bias"] = last["bias"] + 2.0 ** last["acc_exponent"] / 64
    return codec


@pytest.mark.parametrize("part, status", [("scales", "NumericsMismatch"), ("synthesis", "pixels differ")])
def test_a_perturbed_decoder_is_reported_as_a_mismatch(tmp_path, image, part, status):
    from bench.catalog import load_catalog

    entry = load_catalog()["lic"]
    info = type("Info", (), {"name": "astronaut.png", "path": tmp_path / "astronaut.png"})
    from PIL import Image

    Image.fromarray(image).save(info.path)
    manifest = verify.write_bitstreams([("lic", entry, (2.0,))], [info], tmp_path / "streams")
    honest = verify.decode_items(manifest["items"], tmp_path / "streams", lambda item: LicCodec("lic", {}))
    assert [r["status"] for r in honest] == ["match"]
    codec = _perturbed("hyperprior", part)
    results = verify.decode_items(manifest["items"], tmp_path / "streams", lambda item: codec)
    assert [r["status"] for r in results] == ["mismatch"]
    assert ("CRC mismatch" if status == "NumericsMismatch" else status) in results[0]["reason"]


def test_verify_cli_checks_lic_and_jpeg_under_every_variant(tmp_path):
    out = tmp_path / "streams"
    args = [
        "verify",
        "--codecs",
        "lic,jpeg",
        "--images",
        "1",
        "--qualities",
        "lic=1",
        "--qualities",
        "jpeg=80",
    ]
    result = CliRunner().invoke(
        cli, [*args, "--write-bitstreams", str(out), "--json", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "r.json").read_text())
    variants = {v.name for v in verify.default_variants()}
    assert {r["variant"] for r in rows} == variants and len(rows) == 2 * len(variants)
    assert all(r["status"] == "match" for r in rows)
    assert "summary: 1 image(s) checked, 2 bitstreams" in result.output and "0 mismatch(es)" in result.output
    # the folder decodes elsewhere: here, from the manifest alone; a broken bitstream fails the check
    stream = next((out / "lic").glob("*.bin"))
    stream.write_bytes(stream.read_bytes()[:-5])
    result = CliRunner().invoke(cli, ["verify", "--bitstreams", str(out), "--variants", "1-thread"])
    assert result.exit_code == 1
    assert (
        "error: lic astronaut.png q1 (1-thread): BitstreamError: lic bitstream is truncated" in result.output
    )


def test_verify_refuses_unusable_input_in_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["verify", "--bitstreams", str(tmp_path)])
    assert result.exit_code == 2 and "has no manifest.json" in result.output
    result = runner.invoke(cli, ["verify", "--codecs", "lic", "--variants", "quantum"])
    assert result.exit_code == 2 and "unknown variant(s) quantum" in result.output
    result = runner.invoke(cli, ["verify"])
    assert result.exit_code == 2 and "needs --codecs" in result.output


def test_a_decoder_process_that_dies_makes_error_rows(tmp_path):
    manifest = {
        "format": 1,
        "encoder": {"cpu": "x", "gpus": {}},
        "items": [
            {
                "file": "x.bin",
                "codec": "c",
                "entry": {"name": "c", "adapter": "no-such-adapter"},
                "image": "i.png",
                "quality": 1,
                "height": 2,
                "width": 2,
                "sha256": "0",
            }
        ],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "x.bin").write_bytes(b"x")
    (result,) = verify.decode_variant(tmp_path, verify.default_variants()[0])
    assert result["status"] == "error" and result["variant"] == "1-thread"


@pytest.mark.parametrize(
    "folder, version, count, variants", [(GOLDEN, 2, 6, slice(0, 1)), (GOLDEN_3, 3, 4, slice(None))]
)
def test_golden_bitstreams_decode_to_their_recorded_pixels_under_every_variant(
    folder, version, count, variants
):
    """Committed bitstreams of Kodak images: any change of format, weights or decoder numerics fails here.
    Format 3 (what lic writes) under every variant; format 2 (what older runs kept: the same streams, see
    the next test) stays decodable, under one variant to keep CI short. Remake them (deliberately) with
    the command in their folder's README.md."""
    manifest = verify.read_manifest(folder)
    assert len(manifest["items"]) == count and not any("error" in i for i in manifest["items"])
    assert {(folder / i["file"]).read_bytes()[3] for i in manifest["items"]} == {version}
    for variant in verify.default_variants()[variants]:
        results = verify.decode_variant(folder, variant)
        assert [r["status"] for r in results] == ["match"] * len(manifest["items"]), (variant.name, results)


def test_format_3_golden_files_are_the_format_2_streams_under_a_header_signed_whole():
    """Independent of this machine: the same encoder output as the format 2 files (made on another CPU),
    only the version byte and the integrity CRC differ, and the recorded pixels are the same."""
    old = {i["file"]: i for i in verify.read_manifest(GOLDEN)["items"]}
    for item in verify.read_manifest(GOLDEN_3)["items"]:
        new_bytes, old_bytes = (GOLDEN_3 / item["file"]).read_bytes(), (GOLDEN / item["file"]).read_bytes()
        assert len(new_bytes) == len(old_bytes) and item["sha256"] == old[item["file"]]["sha256"]
        differ = {k for k, (a, b) in enumerate(zip(new_bytes, old_bytes, strict=True)) if a != b}
        assert 3 in differ and differ <= {3, 15, 16, 17, 18}
        body = new_bytes[bitstream.HEADER.size :]
        assert zlib.crc32(new_bytes[:15] + new_bytes[19:]) == int.from_bytes(new_bytes[15:19], "big")
        assert zlib.crc32(old_bytes[:15] + body) == int.from_bytes(old_bytes[15:19], "big")


FIELD_VALUES = {  # header field index -> what a forger may put there
    1: st.integers(0, 255),  # format version
    2: st.integers(0, 255),  # architecture
    3: st.integers(0, 255),  # flags
    4: st.binary(min_size=4, max_size=4),  # model fingerprint
    5: st.integers(0, 255),  # level
    6: st.one_of(st.just(64), st.integers(0, 65535)),  # height: any other than expected is refused first
    7: st.one_of(st.just(64), st.integers(0, 65535)),  # width
    9: st.integers(0, 2**32 - 1),  # index map CRC
    10: st.integers(0, 2**32 - 1),  # symbols CRC
}


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_fuzzed_headers_are_refused_or_decoded_never_crash(data):
    """Header fields set to anything, with the first CRC left as it was (corruption: always refused) or
    recomputed (a forger's header: refused, or decoded to an image of the size it claims)."""
    codec = _header_fuzz_codec()
    encoded = _header_fuzz_stream(codec)
    fields = list(bitstream.HEADER.unpack_from(encoded))
    for index in data.draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), min_size=1)):
        fields[index] = data.draw(FIELD_VALUES[index])
    body = encoded[bitstream.HEADER.size :]
    resign = data.draw(st.booleans())
    if resign:
        signed = bitstream.signed(bitstream.HEADER.pack(*fields), fields[1])
        fields[8] = zlib.crc32(body, zlib.crc32(signed))
    forged = bitstream.HEADER.pack(*fields) + body
    try:
        decoded = codec.decode(forged, (64, 64))
    except bitstream.BitstreamError:
        return
    assert resign or forged == encoded
    assert decoded.dtype == np.uint8 and decoded.shape == (fields[6], fields[7], 3) == (64, 64, 3)


_HEADER_FUZZ: dict[str, object] = {}


def _header_fuzz_codec() -> LicCodec:
    return _HEADER_FUZZ.setdefault("codec", LicCodec("lic", {}))


def _header_fuzz_stream(codec: LicCodec) -> bytes:
    if "stream" not in _HEADER_FUZZ:
        _HEADER_FUZZ["stream"] = codec.encode(np.ascontiguousarray(data.coffee()[:64, :64]), 0)
    return _HEADER_FUZZ["stream"]


@pytest.mark.parametrize("folder", [GOLDEN, GOLDEN_3])
def test_golden_folder_has_its_remake_command(folder):
    assert "bench verify" in (folder / "README.md").read_text()


def test_strict_numerics_turns_tf32_off_for_the_call_only():
    from bench.lic.codec import strict_numerics

    matmul, saved = torch.backends.cuda.matmul, torch.backends.cuda.matmul.allow_tf32
    try:
        matmul.allow_tf32 = True  # as a training loop elsewhere in the process might leave it
        with strict_numerics():
            assert not matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert matmul.allow_tf32
    finally:
        matmul.allow_tf32 = saved
