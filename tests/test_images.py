"""bench.images: odd inputs made with Pillow, and the pixel hash."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from bench.images import BadImage, load_image, pixel_sha256

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def save(tmp_path: Path, name: str, image: Image.Image, **params) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


def png16(path: Path, samples: np.ndarray, colour_type: int) -> Path:
    """Write a 16-bit PNG by hand (Pillow cannot write 48-bit RGB)."""
    h, w = samples.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = samples.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def test_rgb_png_is_taken_as_is(tmp_path):
    loaded = load_image(save(tmp_path, "rgb.png", Image.fromarray(RGB)))
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.flags.c_contiguous
    assert np.array_equal(loaded.rgb, RGB) and loaded.notes == ()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("P", ("palette converted to RGB",)),
        ("L", ("grayscale converted to RGB",)),
        ("LA", ("grayscale converted to RGB", "alpha channel dropped")),
        ("RGBA", ("alpha channel dropped",)),
        ("1", ("1-bit converted to RGB",)),
    ],
)
def test_other_modes_become_rgb_with_notes(tmp_path, mode, expected):
    image = Image.fromarray(RGB).convert(mode)
    loaded = load_image(save(tmp_path, f"{mode}.png", image))
    assert loaded.rgb.shape == (48, 64, 3) and loaded.notes == expected
    assert np.array_equal(loaded.rgb, np.asarray(image.convert("RGB")))


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.dstack([RGB, np.zeros(RGB.shape[:2], np.uint8)])  # fully transparent
    loaded = load_image(save(tmp_path, "clear.png", Image.fromarray(rgba)))
    assert np.array_equal(loaded.rgb, RGB)


@pytest.mark.parametrize(("colour_type", "channels"), [(0, 1), (2, 3), (4, 2), (6, 4)])
def test_16_bit_png_is_refused(tmp_path, colour_type, channels):
    samples = RNG.integers(0, 65536, (8, 9, channels), dtype=np.uint16)
    path = png16(tmp_path / "deep.png", samples, colour_type)
    with pytest.raises(BadImage, match="more than 8 bits per sample") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_16_bit_grayscale_from_pillow_is_refused(tmp_path):
    path = save(tmp_path, "i16.png", Image.fromarray(RNG.integers(0, 65536, (8, 9), dtype=np.uint16)))
    with pytest.raises(BadImage, match="more than 8 bits"):
        load_image(path)


def test_16_bit_ppm_is_refused(tmp_path):
    path = tmp_path / "deep.ppm"
    path.write_bytes(
        b"P6\n9 8\n65535\n" + RNG.integers(0, 65536, (8, 9, 3), dtype=np.uint16).astype(">u2").tobytes()
    )
    with pytest.raises(BadImage, match="more than 8 bits"):
        load_image(path)


def test_16_bit_tiff_is_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")  # Pillow cannot write 48-bit RGB TIFF
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, RNG.integers(0, 65536, (8, 9, 3), dtype=np.uint16), photometric="rgb")
    with pytest.raises(BadImage, match="more than 8 bits"):
        load_image(path)


def test_palette_transparency_is_noted(tmp_path):
    image = Image.fromarray(RGB).convert("P")
    loaded = load_image(save(tmp_path, "p.png", image, transparency=0))
    assert loaded.notes == ("palette converted to RGB", "palette transparency dropped")


def test_cmyk_is_refused(tmp_path):
    path = save(tmp_path, "cmyk.jpg", Image.fromarray(RGB).convert("CMYK"))
    with pytest.raises(BadImage, match="colour mode CMYK is not supported"):
        load_image(path)


@pytest.mark.parametrize("removed", [5000, 100, 12])  # 12: only the IEND chunk is missing
def test_truncated_png_is_refused(tmp_path, removed):
    data = save(tmp_path, "whole.png", Image.fromarray(RGB)).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[:-removed])
    with pytest.raises(BadImage, match="truncated") as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_png_is_refused(tmp_path):
    data = bytearray(save(tmp_path, "whole.png", Image.fromarray(RGB)).read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="unreadable"):
        load_image(path)


def test_empty_text_and_missing_files_are_refused(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image\n")
    with pytest.raises(BadImage, match="empty file"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(BadImage, match="not an image file"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(BadImage, match="no such file"):
        load_image(tmp_path / "absent.png")


def test_exif_orientation_is_noted_not_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(tmp_path, "rotated.jpg", Image.fromarray(RGB), exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.rgb.shape == (48, 64, 3)  # not rotated
    assert "EXIF orientation 6 not applied" in loaded.notes


def test_icc_profile_is_noted(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    loaded = load_image(save(tmp_path, "icc.png", Image.fromarray(RGB), icc_profile=icc))
    assert np.array_equal(loaded.rgb, RGB) and loaded.notes == ("ICC profile ignored",)


def test_multi_frame_gives_first_frame_with_note(tmp_path):
    frames = [Image.fromarray(RGB), Image.fromarray(255 - RGB)]
    path = save(tmp_path, "anim.png", frames[0], save_all=True, append_images=frames[1:])
    loaded = load_image(path)
    assert np.array_equal(loaded.rgb, RGB) and "first of 2 frames used" in loaded.notes


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels, with one tiny IDAT chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_an_image_over_max_pixels_is_refused_from_its_header_before_decoding(tmp_path):
    pillows_limit = Image.MAX_IMAGE_PIXELS
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))  # 30 GB of pixels in a 1 kB file
    with pytest.raises(BadImage, match=r"100000x100000 is 10000000000 pixels, over --max-pixels 100000000"):
        load_image(bomb)
    path = save(tmp_path, "small.png", Image.fromarray(RGB))
    height, width, _ = RGB.shape
    assert load_image(path, max_pixels=height * width).rgb.shape == RGB.shape
    with pytest.raises(BadImage, match=f"over --max-pixels {height * width - 1}"):
        load_image(path, max_pixels=height * width - 1)
    assert Image.MAX_IMAGE_PIXELS == pillows_limit  # Pillow's own setting restored


def test_bad_image_pickles():
    error = pickle.loads(pickle.dumps(BadImage(Path("x.png"), "empty file")))
    assert str(error) == "x.png: empty file" and error.reason == "empty file"


def test_pixel_hash_ignores_encoding_and_sees_pixels(tmp_path):
    image = Image.fromarray(RGB)
    a = save(tmp_path, "a.png", image, compress_level=1)
    b = save(tmp_path, "b.png", image, compress_level=9, pnginfo=_text_chunk())
    assert a.read_bytes() != b.read_bytes()
    assert pixel_sha256(load_image(a).rgb) == pixel_sha256(load_image(b).rgb) == pixel_sha256(RGB)
    changed = RGB.copy()
    changed[0, 0, 0] ^= 1
    assert pixel_sha256(changed) != pixel_sha256(RGB)
    assert pixel_sha256(RGB.reshape(64, 48, 3)) != pixel_sha256(RGB)  # same bytes, other shape


def test_pixel_hash_definition():
    import hashlib

    expected = hashlib.sha256(b"48x64x3\n" + RGB.tobytes()).hexdigest()
    assert pixel_sha256(RGB) == expected
    assert pixel_sha256(np.asfortranarray(RGB)) == expected
    with pytest.raises(ValueError):
        pixel_sha256(RGB.astype(np.uint16))


def _text_chunk():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "re-encoded copy")
    return info
