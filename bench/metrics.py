"""Distortion and rate metrics, exactly as DESIGN.md defines them ("Fixed definitions")."""

from __future__ import annotations

import math

import numpy as np

MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-tap window need a smaller side > (11 - 1) * 2**4 = 160
BT709_LUMA = np.array([0.2126, 0.7152, 0.0722])


def _check_pair(reference: np.ndarray, reconstruction: np.ndarray) -> None:
    if reference.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {reconstruction.shape}")


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """10 log10(peak^2 / MSE); inf for identical images."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr_rgb(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR over all pixels and the three channels of two 8-bit RGB images."""
    _check_pair(reference, reconstruction)
    diff = reference.astype(np.float64) - reconstruction.astype(np.float64)
    return psnr_from_mse(float(np.mean(diff * diff)))


def luma_bt709(image: np.ndarray) -> np.ndarray:
    """Unrounded full-range BT.709 luma of an 8-bit RGB image, in float64."""
    return image.astype(np.float64) @ BT709_LUMA


def psnr_y(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR of the unrounded BT.709 luma of both images (peak 255)."""
    _check_pair(reference, reconstruction)
    diff = luma_bt709(reference) - luma_bt709(reconstruction)
    return psnr_from_mse(float(np.mean(diff * diff)))


def ms_ssim(reference: np.ndarray, reconstruction: np.ndarray) -> tuple[float, str | None]:
    """MS-SSIM with pytorch-msssim's defaults on RGB (data range 255, channel mean).

    Returns (value, None), or (NaN, reason) for an image with a side under 161 px.
    """
    _check_pair(reference, reconstruction)
    height, width = reference.shape[:2]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        return math.nan, f"ms_ssim undefined: {width}x{height} has a side under {MS_SSIM_MIN_SIDE} px"
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def as_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]

    with torch.no_grad():
        value = _ms_ssim(as_tensor(reference), as_tensor(reconstruction), data_range=255.0)
    return float(value), None


def ms_ssim_db(value: float) -> float:
    """-10 log10(1 - MS-SSIM); inf for a perfect score."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of the original image."""
    return num_bytes * 8 / (width * height)


def distortion(reference: np.ndarray, reconstruction: np.ndarray) -> dict[str, float | str | None]:
    """Every distortion column of a row, plus a note when a metric is undefined."""
    ssim, note = ms_ssim(reference, reconstruction)
    return {
        "psnr_rgb": psnr_rgb(reference, reconstruction),
        "psnr_y": psnr_y(reference, reconstruction),
        "ms_ssim": ssim,
        "ms_ssim_db": ms_ssim_db(ssim),
        "note": note,
    }
