"""The built-in metrics: their functions and their registrations (bench.measures).

Adding a metric is one function here and one entry in METRICS (plug-ins do the same in their own
package, see bench.measures); then `make docs` regenerates the column table of docs/results.md.
"""

from __future__ import annotations

import math

import numpy as np

from bench.measure_types import HIGHER, LOWER, Metric, MetricUndefined

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


def ms_ssim(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """MS-SSIM with pytorch-msssim's defaults on RGB (data range 255, channel mean); MetricUndefined for
    an image with a side under 161 px."""
    _check_pair(reference, reconstruction)
    height, width = reference.shape[:2]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        raise MetricUndefined(f"{width}x{height} has a side under {MS_SSIM_MIN_SIDE} px")
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def as_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]

    with torch.no_grad():
        value = _ms_ssim(as_tensor(reference), as_tensor(reconstruction), data_range=255.0)
    return float(value)


def ms_ssim_db(value: float) -> float:
    """-10 log10(1 - MS-SSIM); inf for a perfect score."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of the original image."""
    return num_bytes * 8 / (width * height)


def ciede2000(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over the pixels, sRGB to CIELAB (D65) by scikit-image."""
    _check_pair(reference, reconstruction)
    from skimage.color import deltaE_ciede2000, rgb2lab

    return float(np.mean(deltaE_ciede2000(rgb2lab(reference), rgb2lab(reconstruction))))


METRICS = [
    Metric(
        name="psnr_rgb",
        label="PSNR RGB (dB)",
        unit="dB",
        direction=HIGHER,
        fmt="{:.2f}",
        doc="10 log10(255² / MSE), MSE over all pixels and the three channels; `inf` for identical images",
        compute=psnr_rgb,
        groups=("default",),
        summary=True,
        compressai_key="psnr-rgb",
    ),
    Metric(
        name="psnr_y",
        label="PSNR Y (dB)",
        unit="dB",
        direction=HIGHER,
        fmt="{:.2f}",
        doc="the same on unrounded full-range BT.709 luma Y = 0.2126 R + 0.7152 G + 0.0722 B",
        compute=psnr_y,
        reads="BT.709 luma of 8-bit RGB",
        groups=("default",),
        compressai_key="psnr-y",
    ),
    Metric(
        name="ms_ssim",
        label="MS-SSIM",
        direction=HIGHER,
        fmt="{:.5f}",
        doc="MS-SSIM: 5 scales, Gaussian window 11 / sigma 1.5, data range 255, RGB channel mean "
        "(pytorch-msssim); undefined on an image with a side under 161 px",
        compute=ms_ssim,
        requires=("torch", "pytorch_msssim"),
        cost="moderate",
        groups=("default",),
        compared=False,
        compressai_key="ms-ssim-rgb",
    ),
    Metric(
        name="ms_ssim_db",
        label="MS-SSIM (dB)",
        unit="dB",
        direction=HIGHER,
        fmt="{:.2f}",
        doc="-10 log10(1 - ms_ssim)",
        source="ms_ssim",
        derive=ms_ssim_db,
        requires=("torch", "pytorch_msssim"),
        cost="moderate",
        groups=("default",),
        summary=True,
    ),
    Metric(
        name="ciede2000",
        label="CIEDE2000 (mean ΔE00)",
        unit="ΔE00",
        direction=LOWER,
        fmt="{:.4f}",
        doc="mean CIEDE2000 colour difference over the pixels, sRGB to CIELAB (D65) by scikit-image; 0 for "
        "identical images, lower is better",
        compute=ciede2000,
        requires=("skimage",),
        cost="moderate",
        groups=("color",),
    ),
]
