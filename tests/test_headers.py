"""bench.headers against real encoders' output, and decoders that refuse a header claiming another size.

Independent truth: the size of the image each real library or tool encoded. Before bench.headers, every
in-process and command-line decoder decoded whatever size a bitstream's header claimed.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bench import headers
from bench.adapters.heif import HevcCodec
from bench.adapters.imagecodecs_codecs import AvifCodec, JpegCodec, JpegxlCodec, WebpCodec
from bench.adapters.pillow_jpeg2k import Jpeg2000Codec
from bench.adapters.tool import ToolError
from bench.catalog import load_catalog
from bench.codec import make_codec
from tests.conftest import require_binary

SHAPES = [(37, 53), (1, 1), (129, 7), (64, 64)]


def picture(shape: tuple[int, int], channels: int = 3) -> np.ndarray:
    return np.random.default_rng(sum(shape)).integers(0, 256, (*shape, channels), dtype=np.uint8)


def pillow(shape, format: str, channels: int = 3, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture(shape, channels)).save(buffer, format, **options)
    return buffer.getvalue()


def tool(argv: list[str], shape, folder: Path, suffix: str, source: str = "png") -> bytes:
    """What a command-line encoder writes for an image of ``shape`` (argv with {input} and {output})."""
    require_binary(argv[0])
    source_path, target = folder / f"in.{source}", folder / f"out.{suffix}"
    Image.fromarray(picture(shape)).save(source_path)
    subprocess.run(
        [a.format(input=source_path, output=target) for a in argv], check=True, capture_output=True
    )
    return target.read_bytes()


def bpgenc(shape, folder: Path) -> bytes:
    if not (shutil.which("bpgenc")):
        pytest.skip("bpgenc not on PATH: no package offers it; build libbpg 0.9.8 (see the README)")
    return tool(["bpgenc", "-o", "{output}", "{input}"], shape, folder, "bpg")


ENCODERS = {  # name: (kind, encoder of an image of a shape into a folder)
    "jpeg8": ("jpeg", lambda s, f: imagecodecs.jpeg8_encode(picture(s), level=80)),
    "pillow-progressive": ("jpeg", lambda s, f: pillow(s, "JPEG", progressive=True, exif=b"Exif\0\0")),
    "cjpeg": ("jpg", lambda s, f: tool(["cjpeg", "-outfile", "{output}", "{input}"], s, f, "jpg", "ppm")),
    "pillow-jp2": ("jp2", lambda s, f: Jpeg2000Codec("jp2", {}).encode(picture(s), 20)),
    "openjpeg-j2k": ("j2k", lambda s, f: imagecodecs.jpeg2k_encode(picture(s), codecformat="j2k")),
    "webp-vp8": ("webp", lambda s, f: imagecodecs.webp_encode(picture(s), level=50)),
    "webp-vp8l": ("webp", lambda s, f: imagecodecs.webp_encode(picture(s), lossless=True)),
    "webp-vp8x": ("webp", lambda s, f: pillow(s, "WEBP", channels=4)),
    "cwebp": ("webp", lambda s, f: tool(["cwebp", "-quiet", "{input}", "-o", "{output}"], s, f, "webp")),
    "jpegxl": ("jxl", lambda s, f: imagecodecs.jpegxl_encode(picture(s), level=90)),
    "jpegxl-lossless": ("jxl", lambda s, f: imagecodecs.jpegxl_encode(picture(s), lossless=True)),
    "cjxl-container": (
        "jxl",
        lambda s, f: tool(["cjxl", "--container=1", "{input}", "{output}"], s, f, "jxl"),
    ),
    "avif": ("avif", lambda s, f: imagecodecs.avif_encode(picture(s), level=50)),
    "avif-420": ("avif", lambda s, f: AvifCodec("a", {"subsampling": "420"}).encode(picture(s), 50)),
    "heic": ("heic", lambda s, f: HevcCodec("h", {"preset": "ultrafast"}).encode(picture(s), 30)),
    "heic-420": ("heic", lambda s, f: HevcCodec("h", {"subsampling": "420"}).encode(picture(s), 30)),
    "heif-enc": (
        "heic",
        lambda s, f: tool(["heif-enc", "-q", "50", "{input}", "-o", "{output}"], s, f, "heic"),
    ),
    "bpgenc": ("bpg", bpgenc),
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_each_parser_reads_the_size_a_real_encoder_wrote(encoder, shape, tmp_path):
    kind, encode = ENCODERS[encoder]
    data = encode(shape, tmp_path)
    assert headers.claimed_size(data, kind) == shape
    headers.check_header(data, kind, shape)


def test_cjxl_wrote_a_container_and_heic_a_clean_aperture(tmp_path):
    """The container and clap paths are taken: the parsers do not just find the first numbers."""
    assert ENCODERS["cjxl-container"][1]((37, 53), tmp_path).startswith(headers.JXL_SIGNATURE)
    data = ENCODERS["heic"][1]((37, 53), tmp_path)
    assert b"clap" in data and b"ispe" in data


def test_bpg_sizes_follow_the_specification():
    """libbpg's spec: magic, two bytes of format fields, then width and height as ue7 (7 bits a byte,
    most significant first, high bit: more follows). 768 = 6 * 128 and 512 = 4 * 128."""
    assert headers.bpg(b"BPG\xfb\x00\x00\x86\x00\x84\x00") == (512, 768)
    assert headers.bpg(b"BPG\xfb\x00\x00\x01\x81\x80\x00") == (16384, 1)
    with pytest.raises(headers.HeaderError, match="longer than 32 bits"):
        headers.bpg(b"BPG\xfb\x00\x00" + b"\xff" * 6)


DECODERS = [  # adapter, kind, encoder of an image of a shape
    (JpegCodec("jpeg", {}), "jpeg", "jpeg8"),
    (WebpCodec("webp", {}), "webp", "webp-vp8"),
    (JpegxlCodec("jxl", {}), "jxl", "jpegxl"),
    (AvifCodec("avif", {}), "avif", "avif"),
    (HevcCodec("heic", {"preset": "ultrafast"}), "heic", "heic"),
    (Jpeg2000Codec("jp2", {}), "jp2", "pillow-jp2"),
]


@pytest.mark.parametrize("codec, kind, encoder", DECODERS, ids=[d[1] for d in DECODERS])
def test_library_decoders_refuse_a_header_claiming_another_size_before_decoding(
    codec, kind, encoder, tmp_path, monkeypatch
):
    data = ENCODERS[encoder][1]((37, 53), tmp_path)
    assert codec.decode(data, (37, 53)).shape == (37, 53, 3)

    def refuse(*args, **kwargs):
        raise AssertionError("the decoder was reached")

    library = codec.library()
    for name in ("jpeg8_decode", "webp_decode", "jpegxl_decode", "avif_decode", "open_heif"):
        if hasattr(library, name):
            monkeypatch.setattr(library, name, refuse)
    if kind == "jp2":
        monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(headers.HeaderError) as caught:
        codec.decode(data, (4096, 4096))
    assert str(caught.value) == f"{kind} header claims 53x37, expected 4096x4096"


@pytest.mark.parametrize("codec, kind, encoder", DECODERS, ids=[d[1] for d in DECODERS])
def test_library_decoders_refuse_an_unreadable_header_in_one_line(codec, kind, encoder, tmp_path):
    data = ENCODERS[encoder][1]((37, 53), tmp_path)
    for broken in (b"", b"\0" * 64, data[:3]):
        with pytest.raises(headers.HeaderError, match=f"^{kind} header unreadable: [^\n]+$"):
            codec.decode(broken, (37, 53))


@pytest.mark.parametrize("encoder", [name for name in ENCODERS if name != "bpgenc"])
def test_every_truncated_header_is_a_one_line_header_error(encoder, tmp_path):
    kind, encode = ENCODERS[encoder]
    data = encode((37, 53), tmp_path)
    for end in range(min(len(data), 400)):
        try:
            headers.claimed_size(data[:end], kind)
        except headers.HeaderError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(headers.PARSERS)), st.binary(max_size=200), st.binary(max_size=64))
def test_garbage_after_a_signature_is_a_header_error_or_a_size(kind, prefix, garbage):
    signatures = {
        "jpeg": b"\xff\xd8",
        "jpg": b"\xff\xd8\xff\xc0",
        "jp2": headers.JP2_SIGNATURE,
        "j2k": b"\xff\x4f\xff\x51",
        "webp": b"RIFF\0\0\0\0WEBPVP8X",
        "jxl": b"\xff\x0a",
        "avif": b"\0\0\0\x10ftypavif\0\0\0\0",
        "heic": b"\0\0\0\x08meta",
        "heif": b"",
        "bpg": b"BPG\xfb",
    }
    try:
        height, width = headers.claimed_size(signatures[kind] + prefix + garbage, kind)
    except headers.HeaderError as exc:
        assert "\n" not in str(exc)
    else:
        assert height >= 0 and width >= 0


# --- command-line codecs: the bitstream before the tool runs, the decoded image before it is read ------


def catalog_codec(name: str, **extra):
    entry = load_catalog()[name]
    codec = make_codec(entry.name, entry.adapter, entry.options, entry.extra | extra)
    for program in codec._programs():
        require_binary(program)
    return codec


def test_a_cli_bitstream_claiming_another_size_is_refused_before_the_tool_runs(tmp_path, monkeypatch):
    codec = catalog_codec("cwebp")
    data = codec.encode(picture((37, 53)), 50)
    assert codec.decode(data, (37, 53)).shape == (37, 53, 3)
    monkeypatch.setattr("bench.adapters.subprocess_codec.run_tool", None)  # running it would fail otherwise
    with pytest.raises(headers.HeaderError, match="^webp header claims 53x37, expected 54x37$"):
        codec.decode(data, (37, 54))


def test_a_decoded_image_of_another_size_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """With a bitstream suffix bench cannot parse, the check falls to the image the tool wrote."""
    codec = catalog_codec("cwebp", format={"image": "ppm", "bitstream": "bin"})
    data = codec.encode(picture((37, 53)), 50)
    monkeypatch.setattr("bench.adapters.subprocess_codec.load_image", None)  # reading it would fail otherwise
    with pytest.raises(ToolError) as caught:
        codec.decode(data, (4096, 4096))
    message = str(caught.value)
    assert "dwebp wrote an unusable decoded.ppm: decoded ppm claims 53x37, expected 4096x4096" in message
    assert "\n" not in message
