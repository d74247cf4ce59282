"""The in-process codecs and their catalog entries, on real photos, checked against other decoders."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bench.codec import Codec, make_codec
from tests.conftest import skip_or_fail

CATALOG = Path(__file__).resolve().parents[1] / "codecs"
IN_PROCESS = ["jpeg", "jp2", "webp", "jxl", "avif", "heic"]
CATALOG_KEYS = {
    "name",
    "adapter",
    "description",
    "reference",
    "quality_label",
    "rate_rises_with_quality",
    "qualities",
    "options",
}


def entry(name: str) -> dict:
    return tomllib.loads((CATALOG / f"{name}.toml").read_text())


def codec(name: str, **options) -> Codec:
    """The catalog's codec, options overridden; skipped (failed in CI) when its library is missing."""
    spec = entry(name)
    made = make_codec(name, spec["adapter"], {**spec["options"], **options})
    reason = made.available()
    if reason is not None:
        skip_or_fail(f"{name}: {reason}")
    return made


def by_rate(name: str) -> list[float]:
    """The catalog's sweep from the lowest rate to the highest."""
    spec = entry(name)
    return sorted(spec["qualities"], reverse=not spec["rate_rises_with_quality"])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def pillow_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return data.chelsea()  # 300 x 451: an odd width


@pytest.mark.parametrize("name", IN_PROCESS)
def test_round_trip_rate_and_psnr_rise_along_the_sweep(name, photo):
    coder = codec(name)
    sweep = by_rate(name)
    sizes, psnrs = [], []
    for quality in (sweep[0], sweep[len(sweep) // 2], sweep[-1]):
        data = coder.encode(photo, quality)
        decoded = coder.decode(data, photo.shape[:2])
        assert isinstance(data, bytes)
        assert decoded.shape == photo.shape and decoded.dtype == np.uint8
        sizes.append(len(data))
        psnrs.append(psnr(photo, decoded))
    assert sizes == sorted(set(sizes)), sizes
    assert psnrs == sorted(set(psnrs)), psnrs
    assert psnrs[0] > 20 and psnrs[-1] > 36, psnrs
    assert coder.versions()


@pytest.mark.parametrize("name", IN_PROCESS)
def test_odd_sized_crop(name, photo):
    crop = np.ascontiguousarray(photo[100:167, 150:251])  # 67 x 101
    coder = codec(name)
    decoded = coder.decode(coder.encode(crop, by_rate(name)[-1]), crop.shape[:2])
    assert decoded.shape == (67, 101, 3) and decoded.dtype == np.uint8
    assert psnr(crop, decoded) > 33  # a misplaced row or column of padding would cost far more


def imagecodecs_jpeg2k_decode(data: bytes) -> np.ndarray:
    try:
        import imagecodecs
    except ImportError:
        skip_or_fail("imagecodecs is not installed")
    return imagecodecs.jpeg2k_decode(data)


def heif_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    return np.asarray(pillow_heif.open_heif(data).to_pillow())


@pytest.mark.parametrize(
    "name, other_decoder",
    [
        ("jpeg", pillow_decode),
        ("webp", pillow_decode),
        ("avif", pillow_decode),
        ("jp2", imagecodecs_jpeg2k_decode),
        ("heic", heif_decode),
    ],
)
def test_bytes_decode_identically_elsewhere(name, other_decoder, photo):
    coder = codec(name)
    data = coder.encode(photo, by_rate(name)[3])
    np.testing.assert_array_equal(other_decoder(data), coder.decode(data, photo.shape[:2]))


def test_jxl_bytes_are_a_jpeg_xl_file(photo):
    import imagecodecs

    assert imagecodecs.jpegxl_check(codec("jxl").encode(photo, 50))


@pytest.mark.parametrize("value", [444, "444", "4:4:4"])
def test_jpeg_subsampling_444_costs_more_than_420(value, photo):
    from PIL import JpegImagePlugin

    full = codec("jpeg", subsampling=value).encode(photo, 75)
    half = codec("jpeg").encode(photo, 75)
    assert len(full) > len(half)
    assert JpegImagePlugin.get_sampling(pillow_image(full)) == 0  # 4:4:4
    assert JpegImagePlugin.get_sampling(pillow_image(half)) == 2  # 4:2:0


def pillow_image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def test_avif_subsampling_420_costs_less_than_444(photo):
    assert len(codec("avif", subsampling=420).encode(photo, 60)) < len(codec("avif").encode(photo, 60))


def test_heic_is_x265_444_and_its_qp_sweep_is_monotone(photo):
    import pillow_heif

    coder = codec("heic")
    assert coder.versions()["x265"]
    sizes = [len(coder.encode(photo, qp)) for qp in (22, 30, 38, 46)]
    assert sizes == sorted(set(sizes), reverse=True), sizes
    heif = pillow_heif.open_heif(coder.encode(photo, 30))
    assert heif.mimetype == "image/heic"
    assert heif.info["chroma"] == 444 and heif.info["bit_depth"] == 8


def test_heic_x265_parameters_take_effect(photo, monkeypatch):
    from bench.adapters import heif

    coder = codec("heic")
    small = np.ascontiguousarray(photo[:128, :128])
    base = coder.encode(small, 30)
    assert codec("heic", threads=2).encode(small, 30) == base  # x265's pool does not change the bits
    assert codec("heic", preset="ultrafast").encode(small, 30) != base
    monkeypatch.setitem(heif.X265_PARAMS, "x265:psy-rd", "2")
    assert coder.encode(small, 30) != base
    monkeypatch.setitem(heif.X265_PARAMS, "x265:no-such-parameter", "1")
    with pytest.raises(ValueError):
        coder.encode(small, 30)


@pytest.mark.parametrize("name", IN_PROCESS)
def test_unknown_or_mistyped_option_raises(name):
    spec = entry(name)
    with pytest.raises(ValueError, match=r"no_such_option.*valid options:.*threads"):
        make_codec(name, spec["adapter"], {**spec["options"], "no_such_option": 1})
    with pytest.raises(ValueError, match="threads"):
        make_codec(name, spec["adapter"], {**spec["options"], "threads": "many"})


@pytest.mark.parametrize("name, quality", [("jxl", 100), ("avif", 100), ("jpeg", 0), ("jpeg", 50.5)])
def test_quality_outside_the_lossy_range_raises(name, quality, photo):
    with pytest.raises(ValueError, match="quality"):
        codec(name).encode(photo, quality)


def test_whole_float_quality_is_the_int_quality(photo):
    coder = codec("jpeg")
    assert coder.encode(photo, 75.0) == coder.encode(photo, 75)


@pytest.mark.parametrize("name", [*IN_PROCESS, "lic", "lic-factorized"])
def test_catalog_entry(name):
    spec = entry(name)
    assert set(spec) == CATALOG_KEYS and spec["name"] == name
    assert len(spec["qualities"]) >= 6 and spec["options"]["threads"] == 1
