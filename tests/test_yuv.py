"""Raw YUV files and the RGB <-> Y'CbCr conversion of bench.adapters.yuv, against independent truth:
published colour-bar values, JFIF's conversion, scikit-image's, and every Kodak image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import color, data

from bench.adapters import yuv
from bench.metrics import psnr_rgb


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.chelsea()  # 300 x 451: an odd width


def kodak_images(kodak_dir: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted(kodak_dir.glob("kodim*.png"))]


@pytest.mark.parametrize("matrix, range_", [("bt601", "full"), ("bt709", "limited"), ("bt2020", "limited")])
def test_444_round_trip_stays_above_50_db_on_every_kodak_image(kodak_dir, matrix, range_, monkeypatch):
    fmt = yuv.YuvFormat(matrix, range_, "444", 8)
    images = kodak_images(kodak_dir)
    assert len(images) == 24
    for image in images:
        assert psnr_rgb(image, yuv.planes_to_rgb(yuv.rgb_to_planes(image, fmt), fmt)) > 50.0
    # The threshold has teeth: truncating the forward conversion alone falls below it.
    monkeypatch.setattr(yuv, "_round_clip", lambda p, n: np.clip(np.floor(p), 0, 2**n - 1).astype(np.uint16))
    worst = min(psnr_rgb(i, yuv.planes_to_rgb(yuv.rgb_to_planes(i, fmt), fmt)) for i in images[:4])
    assert worst < 48.0


@pytest.mark.parametrize(
    "rgb, expected",
    [  # BT.709 limited range, 8 and 10 bits: the published 100 % colour-bar values
        ((255, 255, 255), (235, 128, 128)),
        ((0, 0, 0), (16, 128, 128)),
        ((255, 0, 0), (63, 102, 240)),
        ((0, 255, 0), (173, 42, 26)),
        ((0, 0, 255), (32, 240, 118)),
    ],
)
def test_bt709_limited_gives_the_published_colour_bar_values(rgb, expected):
    pixel = np.array([[rgb]], dtype=np.uint8)
    planes = yuv.rgb_to_planes(pixel, yuv.YuvFormat("bt709", "limited", "444", 8))
    assert tuple(int(p[0, 0]) for p in planes) == expected
    planes10 = yuv.rgb_to_planes(pixel, yuv.YuvFormat("bt709", "limited", "444", 10))
    assert all(abs(int(p[0, 0]) - 4 * e) <= 2 for p, e in zip(planes10, expected, strict=True))


def test_bt601_full_range_agrees_with_jfif_and_limited_range_with_scikit_image(photo):
    planes = yuv.rgb_to_planes(photo, yuv.YuvFormat("bt601", "full", "444", 8))
    r, g, b = (photo[..., i].astype(np.float64) for i in range(3))
    jfif = np.stack(  # JFIF 1.02's conversion, with its 4-digit coefficients
        [
            0.299 * r + 0.587 * g + 0.114 * b,
            -0.1687 * r - 0.3313 * g + 0.5 * b + 128,
            0.5 * r - 0.4187 * g - 0.0813 * b + 128,
        ],
        axis=-1,
    )
    assert np.abs(np.stack(planes, axis=-1) - np.clip(jfif, 0, 255)).max() <= 0.5 + 0.02
    planes = yuv.rgb_to_planes(photo, yuv.YuvFormat("bt601", "limited", "444", 8))
    reference = color.rgb2ycbcr(photo)  # unrounded BT.601 limited range
    assert np.abs(np.stack(planes, axis=-1) - reference).max() <= 0.5 + 1e-9


def test_raw_yuv_layout_and_size_checks(tmp_path, photo):
    fmt = yuv.YuvFormat("bt709", "limited", "420", 10)
    assert fmt.plane_shapes(300, 451) == [(300, 451), (150, 226), (150, 226)]
    path = tmp_path / "photo.yuv"
    yuv.write_yuv(path, photo, fmt)
    raw = path.read_bytes()
    assert len(raw) == 2 * (300 * 451 + 2 * 150 * 226) == fmt.file_size(300, 451)
    y = yuv.rgb_to_planes(photo, fmt)[0]
    assert int.from_bytes(raw[:2], "little") == y[0, 0] and int.from_bytes(raw[2:4], "little") == y[0, 1]
    back = yuv.read_yuv(path, (300, 451), fmt)
    assert back.shape == photo.shape and psnr_rgb(photo, back) > 38
    flat = np.full((7, 9, 3), (200, 30, 90), dtype=np.uint8)  # one colour, odd sizes: 4:2:0 costs nothing
    fmt444, fmt420 = yuv.YuvFormat("bt601", "full", "444", 8), yuv.YuvFormat("bt601", "full", "420", 8)
    yuv.write_yuv(path, flat, fmt420)
    assert np.array_equal(
        yuv.read_yuv(path, (7, 9), fmt420), yuv.planes_to_rgb(yuv.rgb_to_planes(flat, fmt444), fmt444)
    )
    with pytest.raises(ValueError, match="raw YUV file has"):
        yuv.read_yuv(path, (8, 9), yuv.YuvFormat("bt601", "full", "420", 8))
    path.write_bytes(b"\xff\xff" * (2 * 3 * 4))
    with pytest.raises(ValueError, match="above 10 bits"):
        yuv.read_yuv(path, (2, 4), yuv.YuvFormat("bt601", "full", "444", 10))


def test_a_10_bit_444_round_trip_returns_every_8_bit_colour_exactly():
    """10-bit samples are 4x finer than the 8-bit input: with rounding done once each way, every one of the
    2^24 colours comes back unchanged (the suite's 4:4:4 path costs nothing); at 8 bits many do not."""
    index = np.arange(1 << 24, dtype=np.uint32)
    every = np.stack([index >> 16, (index >> 8) & 255, index & 255], axis=-1).astype(np.uint8)
    every = every.reshape(4096, 4096, 3)
    fmt = yuv.YuvFormat("bt709", "limited", "444", 10)
    for rows in np.split(every, 16):  # 1 Mi colours at a time: 1/16 of the memory
        assert np.array_equal(yuv.planes_to_rgb(yuv.rgb_to_planes(rows, fmt), fmt), rows)
    fmt8 = yuv.YuvFormat("bt709", "limited", "444", 8)
    assert (yuv.planes_to_rgb(yuv.rgb_to_planes(every[:256], fmt8), fmt8) != every[:256]).any(-1).mean() > 0.3


def test_10_bit_420_against_bt709s_published_matrix_by_hand(photo):
    """Y from BT.709's published coefficients at 10-bit limited range (876 Y + 64); each chroma sample the
    unrounded mean of its 2x2 block's chroma (896 C + 512), rounded once; odd edges repeat their last row
    or column. Written out here, independently of the module's Kr/Kb derivation."""
    image = photo[:7, :9]  # odd both ways
    fmt = yuv.YuvFormat("bt709", "limited", "420", 10)
    y, cb, cr = yuv.rgb_to_planes(image, fmt)
    r, g, b = (image[..., i].astype(np.float64) / 255 for i in range(3))
    luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
    blue = -0.114572 * r - 0.385428 * g + 0.5 * b  # BT.709-6, table 3, rounded to 6 digits
    red = 0.5 * r - 0.454153 * g - 0.045847 * b
    assert np.abs(y - (876 * luma + 64)).max() <= 0.5 + 1e-3
    for plane, chroma in ((cb, blue), (cr, red)):
        assert plane.shape == (4, 5)
        for row in range(4):
            for col in range(5):
                block = chroma[np.ix_([2 * row, min(2 * row + 1, 6)], [2 * col, min(2 * col + 1, 8)])]
                assert abs(int(plane[row, col]) - (896 * block.mean() + 512)) <= 0.5 + 1e-3


def test_420_upsampling_is_the_3_1_filter_in_closed_form():
    """Grey luma and one chroma step: each output chroma sample is 3/4 of its own block's value and 1/4 of
    the nearest other block's (edges repeat), so a 2-wide step a|b becomes a, 3a/4 + b/4, a/4 + 3b/4, b."""
    fmt = yuv.YuvFormat("bt709", "full", "420", 10)
    a, b = -0.25, 0.25  # Cr of the two blocks, as a fraction of the full chroma range
    y = np.full((2, 4), 512, dtype=np.uint16)
    cb = np.full((1, 2), 512, dtype=np.uint16)
    cr = np.rint(np.array([[a, b]]) * 1023 + 512).astype(np.uint16)
    rgb = yuv.planes_to_rgb([y, cb, cr], fmt)
    luma = 512 / 1023
    decoded = (cr.astype(np.float64)[0] - 512) / 1023
    expected = [
        decoded[0],
        0.75 * decoded[0] + 0.25 * decoded[1],
        0.25 * decoded[0] + 0.75 * decoded[1],
        decoded[1],
    ]
    red = np.clip(np.rint((luma + 2 * (1 - 0.2126) * np.array(expected)) * 255), 0, 255)
    assert rgb[..., 0].tolist() == [red.tolist()] * 2
