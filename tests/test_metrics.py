"""Metrics against independent truth: closed forms, scikit-image, pytorch-msssim's own properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from bench import metrics


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


def test_identical_images_give_infinite_psnr_and_ms_ssim_one(astronaut):
    row = metrics.distortion(astronaut, astronaut.copy())
    assert row["psnr_rgb"] == math.inf and row["psnr_y"] == math.inf
    assert row["ms_ssim"] == 1.0 and row["ms_ssim_db"] == math.inf and row["note"] is None


def test_ms_ssim_matches_pytorch_msssim_on_unit_range(astronaut):
    """Same value as CompressAI's way of calling it: floats in [0, 1] with data_range 1."""
    import torch
    from pytorch_msssim import ms_ssim

    rng = np.random.default_rng(1)
    noisy = np.clip(astronaut + rng.normal(0, 12, astronaut.shape), 0, 255).astype(np.uint8)
    value, note = metrics.ms_ssim(astronaut, noisy)

    def unit(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255

    expected = float(ms_ssim(unit(astronaut), unit(noisy), data_range=1.0))
    assert note is None and 0.5 < value < 1.0
    assert value == pytest.approx(expected, abs=1e-5)
    assert metrics.ms_ssim_db(value) == pytest.approx(-10 * math.log10(1 - expected), abs=1e-3)


def test_ms_ssim_falls_with_distortion(astronaut):
    rng = np.random.default_rng(2)
    values = []
    for sigma in (2, 8, 32):
        noisy = np.clip(astronaut + rng.normal(0, sigma, astronaut.shape), 0, 255).astype(np.uint8)
        values.append(metrics.ms_ssim(astronaut, noisy)[0])
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("shape", [(160, 400), (400, 160), (20, 20)])
def test_small_image_gives_nan_ms_ssim_with_reason(shape):
    image = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    row = metrics.distortion(image, image[::-1].copy())
    assert math.isnan(row["ms_ssim"]) and math.isnan(row["ms_ssim_db"])
    assert "under 161 px" in row["note"]
    assert math.isfinite(row["psnr_rgb"])


def test_161_px_is_enough():
    image = np.random.default_rng(4).integers(0, 256, (161, 170, 3), dtype=np.uint8)
    value, note = metrics.ms_ssim(image, image)
    assert note is None and value == 1.0


def test_bpp_uses_original_size():
    assert metrics.bpp(1000, 512, 768) == pytest.approx(8000 / (512 * 768))


def test_shape_mismatch_is_an_error(astronaut):
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.psnr_rgb(astronaut, astronaut[1:])
