"""Metrics against independent truth: closed forms, scikit-image, pytorch-msssim's own properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from bench import measures, metrics


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def test_known_mse_gives_known_psnr():
    reference = np.full((8, 8, 3), 100, np.uint8)
    reconstruction = reference.copy()
    reconstruction[..., 0] += 3  # every red sample off by 3: MSE = 9 / 3 = 3
    assert metrics.psnr_rgb(reference, reconstruction) == pytest.approx(
        10 * math.log10(255**2 / 3), abs=1e-12
    )


def test_psnr_rgb_matches_scikit_image(astronaut):
    rng = np.random.default_rng(0)
    noisy = np.clip(astronaut + rng.normal(0, 7, astronaut.shape), 0, 255).astype(np.uint8)
    expected = peak_signal_noise_ratio(astronaut, noisy, data_range=255)
    assert metrics.psnr_rgb(astronaut, noisy) == pytest.approx(expected, abs=1e-10)


def test_psnr_y_is_bt709_luma_unrounded():
    reference = np.zeros((4, 4, 3), np.uint8)
    reconstruction = reference.copy()
    reconstruction[..., 1] = 10  # luma differs by 0.7152 * 10 everywhere
    expected = 10 * math.log10(255**2 / (7.152**2))
    assert metrics.psnr_y(reference, reconstruction) == pytest.approx(expected, abs=1e-9)
    reconstruction[..., 0] = 10  # a red change adds 0.2126 * 10 to the luma difference
    expected = 10 * math.log10(255**2 / ((7.152 + 2.126) ** 2))
    assert metrics.psnr_y(reference, reconstruction) == pytest.approx(expected, abs=1e-9)


def test_identical_images_give_each_metric_its_perfect_value(astronaut):
    yuv = [m.name for m in metrics.YUV_METRICS]
    row = measures.compute(
        ["psnr_rgb", "psnr_y", "ms_ssim_db", "ciede2000", "ssimulacra2", *yuv], astronaut, astronaut.copy()
    )
    assert row["psnr_rgb"] == math.inf and row["psnr_y"] == math.inf
    assert all(row[name] == math.inf for name in yuv)
    assert row["ms_ssim"] == 1.0 and row["ms_ssim_db"] == math.inf and row["metric_notes"] == {}
    assert row["ciede2000"] == pytest.approx(0.0, abs=1e-12)  # skimage leaves ~1e-15 of rounding
    assert row["ssimulacra2"] == 100.0
    assert row["metric_versions"] == {
        name: "1"
        for name in ("psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db", "ciede2000", "ssimulacra2", *yuv)
    }


def test_ms_ssim_matches_pytorch_msssim_on_unit_range(astronaut):
    """Same value as CompressAI's way of calling it: floats in [0, 1] with data_range 1."""
    import torch
    from pytorch_msssim import ms_ssim

    rng = np.random.default_rng(1)
    noisy = np.clip(astronaut + rng.normal(0, 12, astronaut.shape), 0, 255).astype(np.uint8)
    value = metrics.ms_ssim(astronaut, noisy)

    def unit(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255

    expected = float(ms_ssim(unit(astronaut), unit(noisy), data_range=1.0))
    assert 0.5 < value < 1.0
    assert value == pytest.approx(expected, abs=1e-5)
    assert metrics.ms_ssim_db(value) == pytest.approx(-10 * math.log10(1 - expected), abs=1e-3)


def test_ms_ssim_falls_with_distortion(astronaut):
    rng = np.random.default_rng(2)
    values = []
    for sigma in (2, 8, 32):
        noisy = np.clip(astronaut + rng.normal(0, sigma, astronaut.shape), 0, 255).astype(np.uint8)
        values.append(metrics.ms_ssim(astronaut, noisy))
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("shape", [(160, 400), (400, 160), (20, 20)])
def test_small_image_gives_nan_ms_ssim_with_reason(shape):
    image = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    row = measures.compute(measures.default_metrics(), image, image[::-1].copy())
    assert math.isnan(row["ms_ssim"]) and math.isnan(row["ms_ssim_db"])
    notes = row["metric_notes"]
    assert set(notes) == {"ms_ssim", "ms_ssim_db"} and "under 161 px" in notes["ms_ssim"]
    assert math.isfinite(row["psnr_rgb"]) and math.isfinite(row["psnr_y"])


def test_161_px_is_enough():
    image = np.random.default_rng(4).integers(0, 256, (161, 170, 3), dtype=np.uint8)
    assert metrics.ms_ssim(image, image) == 1.0


def test_bpp_uses_original_size():
    assert metrics.bpp(1000, 512, 768) == pytest.approx(8000 / (512 * 768))


def test_shape_mismatch_is_an_error(astronaut):
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.psnr_rgb(astronaut, astronaut[1:])


def test_ciede2000_of_kodim01_against_pillow_q50_jpeg(kodim01_q50):
    assert metrics.ciede2000(*kodim01_q50) == pytest.approx(3.18190, abs=1e-4)


def test_psnr_yuv_of_kodim01_against_pillow_q50_jpeg_at_10_and_8_bits(kodim01_q50):
    """The reference values (JPEG AI's conversion): 33.3034 at 10 bits (Y/U/V 30.3063 / 43.2596 /
    41.3300), 33.2326 at 8 bits."""
    row = measures.compute([m.name for m in metrics.YUV_METRICS], *kodim01_q50)
    expected = {"psnr_yuv10": 33.3034, "psnr_y10": 30.3063, "psnr_u10": 43.2596, "psnr_v10": 41.3300}
    assert {name: round(row[name], 4) for name in expected} == expected
    assert round(row["psnr_yuv"], 4) == 33.2326
    y8 = metrics.yuv_psnrs(*kodim01_q50, 8)[0]  # rounded to 8 bits: not psnr_y, which is unrounded
    assert row["psnr_yuv"] == pytest.approx((6 * y8 + row["psnr_u"] + row["psnr_v"]) / 8)
    assert round(y8, 4) == 30.2976 and round(metrics.psnr_y(*kodim01_q50), 4) == 30.3103


def test_psnr_yuv_of_two_greys_is_the_closed_form():
    """Greys have U = V = 0.5 (identical planes: inf); Y at 10 bits is round(v * 1023 / 255): 514 for 128,
    518 for 129, so PSNR Y10 = 10 log10(1023^2 / 4^2); 6:1:1 of an infinite plane is infinite."""
    grey, lighter = np.full((4, 4, 3), 128, np.uint8), np.full((4, 4, 3), 129, np.uint8)
    assert metrics.yuv_planes(grey, 10)[0, 0, 0] == 514 and metrics.yuv_planes(lighter, 10)[0, 0, 0] == 518
    y10, u10, v10 = metrics.yuv_psnrs(grey, lighter, 10)
    assert y10 == pytest.approx(10 * math.log10(1023**2 / 16), abs=1e-9) and u10 == v10 == math.inf
    assert metrics.yuv_psnrs(grey, lighter, 8) == (pytest.approx(10 * math.log10(255**2)), math.inf, math.inf)


def test_ciede2000_of_two_greys_is_the_closed_form():
    """Neutral greys have a = b = 0, so Delta-E00 = |L1 - L2| / S_L, S_L = 1 + 0.015 (L - 50)^2 /
    sqrt(20 + (L - 50)^2) at the mean lightness L; L from the sRGB transfer curve and CIE's f(Y)."""

    def lightness(value: int) -> float:
        linear = ((value / 255 + 0.055) / 1.055) ** 2.4
        return 116 * linear ** (1 / 3) - 16

    l1, l2 = lightness(128), lightness(138)
    mean = (l1 + l2) / 2
    s_l = 1 + 0.015 * (mean - 50) ** 2 / math.sqrt(20 + (mean - 50) ** 2)
    grey, lighter = np.full((4, 4, 3), 128, np.uint8), np.full((4, 4, 3), 138, np.uint8)
    assert metrics.ciede2000(grey, lighter) == pytest.approx(abs(l1 - l2) / s_l, rel=1e-6)


def test_psnr_hvs_and_hvs_m_of_kodim01_against_pillow_q50_jpeg(kodim01_q50):
    """The reference values for Y unrounded, / 255 (psnr_hvsm's NumPy backend gives the same)."""
    row = measures.compute(["psnr_hvs", "psnr_hvs_m"], *kodim01_q50)
    assert round(row["psnr_hvs"], 4) == 33.8412 and round(row["psnr_hvs_m"], 4) == 43.8572


def test_psnr_hvs_pads_sides_to_a_multiple_of_8_by_repeating_the_edge():
    """psnr_hvsm itself takes only multiples of 8 (its C++ backend aborts the process otherwise)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import psnr_hvsm
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (21, 13, 3), dtype=np.uint8)
    noisy = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    padded = [np.pad(metrics.luma_bt709(x) / 255, ((0, 3), (0, 3)), mode="edge") for x in (image, noisy)]
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = psnr_hvsm.BACKENDS["numpy"]["psnr_hvs_hvsm"](*padded)
    row = metrics.psnr_hvs_family(image, noisy)
    assert (row["psnr_hvs"], row["psnr_hvs_m"]) == pytest.approx(tuple(map(float, expected)), abs=1e-9)
    assert row["psnr_hvs_m"] > row["psnr_hvs"]  # masking forgives part of the error


def test_ciede2000_gives_the_34_pairs_of_sharma_wu_and_dalal_to_4_decimals():
    """The published test data (tests/data/ciede2000_sharma.txt), both ways round (Delta E00 is symmetric).
    Pair 10's hues differ by exactly 180 degrees, where the formula's mean hue has two branches: exact
    arithmetic takes the published one, floating point may take the other, which gives pair 11's value."""
    from pathlib import Path

    table = np.loadtxt(Path(__file__).parent / "data" / "ciede2000_sharma.txt")
    assert table.shape == (34, 7)
    first, second, expected = table[:, :3], table[:, 3:6], table[:, 6]
    for found in (metrics.delta_e00(first, second), metrics.delta_e00(second, first)):
        rounded = np.round(found, 4)
        assert np.delete(rounded, 9).tolist() == np.delete(expected, 9).tolist()
        assert rounded[9] in (expected[9], expected[10])
