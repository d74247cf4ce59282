"""JPEG AI's quality metrics, computed as its quality assessment framework computes them.

JPEG AI's reference software (src/codec/metrics/metrics.py) rounds each image's RGB in [0, 1] to 10 bits,
converts it with ``yuv_planes`` and computes seven metrics (bench.metrics registers them, group
``jpegai``):

- MS-SSIM (pytorch-msssim) of Y at 10 bits, data range 1023, zero-padded to 164 px;
- FSIM, colour (FSIMc), of the 10-bit RGB, by piq (JPEG AI runs IQA_pytorch's copy: the same to 1e-5);
- VIFp, the pixel-domain VIF, of Y in [0, 1] zero-padded to 64 px, by piq (IQA_pytorch's VIFs: to 1e-5);
- NLPD of Y in [0, 1] zero-padded to 128 px: IQA_pytorch's NLPD, ported here;
- IW-SSIM of Y in [0, 255] zero-padded to 256 px: JPEG AI's own IW_SSIM_PyTorch.py, ported here, on
  pyrtools' Laplacian pyramid;
- VMAF v0.6.1 of the 10-bit YUV 4:4:4 planes (libvmaf, bench.tool_metrics);
- PSNR-HVS of Y in [0, 1], sides padded to a multiple of 8 by repeating the edge (psnr_hvsm).

Zero padding adds rows at the bottom and columns at the right, up to that side. Like JPEG AI, the
metrics on Y in [0, 1] read its float32 samples, and the torch ones compute in float32 (IW-SSIM in
float64, as on JPEG AI's CPU path: the ports give its values to float rounding). torch, piq and pyrtools
are imported on first use.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from bench import tool_metrics
from bench.measure_types import MetricUndefined, check_rgb_pair

BITS = 10  # JPEG AI's internal bit depth
PEAK = (1 << BITS) - 1
MS_SSIM_SIDE, VIF_SIDE, NLPD_SIDE, IW_SSIM_SIDE = 164, 64, 128, 256  # zero-padded up to these sides


def rgb_rounded(image: np.ndarray, bits: int) -> np.ndarray:
    """8-bit RGB in [0, 1], rounded to ``bits`` (float64)."""
    top = (1 << bits) - 1
    return np.round(image.astype(np.float64) * (top / 255.0)) / top


def yuv_planes(image: np.ndarray, bits: int) -> np.ndarray:
    """JPEG AI's conversion of 8-bit RGB: to [0, 1] rounded to ``bits``, BT.709 full range without luma
    offset (Y = 0.2126 R + 0.7152 G + 0.0722 B, U = (B - Y) / 1.8556 + 0.5, V = (R - Y) / 1.5748 + 0.5),
    clamped to [0, 1] and rounded to ``bits``: 3 x H x W integer-valued float64 planes."""
    top = (1 << bits) - 1
    rgb = rgb_rounded(image, bits)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = red * 0.2126 + green * 0.7152 + blue * 0.0722
    planes = np.stack([luma, (blue - luma) / 1.8556 + 0.5, (red - luma) / 1.5748 + 0.5])
    return np.round(np.clip(planes, 0.0, 1.0) * top)


def psnr_hvs_of_lumas(reference: np.ndarray, reconstruction: np.ndarray) -> tuple[float, float]:
    """PSNR-HVS and PSNR-HVS-M (Ponomarenko et al., the ``psnr_hvsm`` package) of two luma planes in
    [0, 1]; a side that is not a multiple of 8 is padded by repeating the last row or column (JPEG AI's
    convention). Identical planes give the package's cap, 100."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints which optional backends it lacks
        import psnr_hvsm

    backend = psnr_hvsm.BACKENDS.get("cpp", psnr_hvsm.BACKENDS["numpy"])["psnr_hvs_hvsm"]
    height, width = reference.shape
    padding = ((0, -height % 8), (0, -width % 8))
    planes = [np.pad(plane.astype(np.float64), padding, mode="edge") for plane in (reference, reconstruction)]
    with np.errstate(invalid="ignore", divide="ignore"):  # its NumPy backend divides 0 by 0 on flat blocks
        hvs, hvs_m = backend(*planes)
    return float(hvs), float(hvs_m)


def _check_pair(reference: np.ndarray, reconstruction: np.ndarray) -> None:
    check_rgb_pair(reference, reconstruction, 1, "a JPEG AI metric")


def luma(image: np.ndarray) -> np.ndarray:
    """JPEG AI's Y in [0, 1] as it holds it: the 10-bit plane / 1023, in float32."""
    return yuv_planes(image, BITS)[0].astype(np.float32) / np.float32(PEAK)


def _tensor(array: np.ndarray, side: int = 0):
    """An H x W (or H x W x C) array as a 1 x C x H x W float32 tensor, zero-padded at the bottom and right
    to at least ``side`` x ``side``."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    tensor = (tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1))[None]
    height, width = tensor.shape[-2:]
    return F.pad(tensor, (0, max(side - width, 0), 0, max(side - height, 0)))


def ms_ssim_y10(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """pytorch-msssim's MS-SSIM (5 scales, Gaussian 11 / 1.5) of the 10-bit Y planes, data range 1023,
    each zero-padded to 164 px."""
    _check_pair(reference, reconstruction)
    import torch
    from pytorch_msssim import ms_ssim

    planes = [_tensor(yuv_planes(image, BITS)[0], MS_SSIM_SIDE) for image in (reference, reconstruction)]
    with torch.no_grad():
        return float(ms_ssim(*planes, data_range=float(PEAK)))


def fsim(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """piq's FSIMc of the RGB rounded to 10 bits, in [0, 1]; MetricUndefined for an image 1 px wide or
    high (piq gives NaN there, and so does JPEG AI's copy, whose filter grid divides by the side - 1)."""
    _check_pair(reference, reconstruction)
    height, width = reference.shape[:2]
    if min(height, width) < 2:
        raise MetricUndefined(f"{width}x{height} has a side of 1 px, too small for FSIM's filters")
    import piq
    import torch

    x, y = (_tensor(rgb_rounded(image, BITS)) for image in (reconstruction, reference))
    with torch.no_grad():
        return float(piq.fsim(x, y, data_range=1.0, chromatic=True))


def vifp(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """piq's pixel-domain VIF (4 scales, noise variance 2) of Y in [0, 1], zero-padded to 64 px."""
    _check_pair(reference, reconstruction)
    import piq
    import torch

    x, y = (_tensor(luma(image), VIF_SIDE) for image in (reconstruction, reference))
    with torch.no_grad():
        return float(piq.vif_p(x, y, data_range=1.0))


# NLPD (Laparra et al. 2016) as IQA_pytorch 0.1 computes it (IQA_pytorch/NLPD.py, copyright (c) 2020 Keyan
# Ding, MIT licence; after Alex Hepburn's nlpd-tensorflow): 6 levels of a Laplacian pyramid, each level
# divided by a local amplitude estimate; the mean over levels of the RMS difference.
NLPD_FILTER = np.array(
    [
        [0.0025, 0.0125, 0.0200, 0.0125, 0.0025],
        [0.0125, 0.0625, 0.1000, 0.0625, 0.0125],
        [0.0200, 0.1000, 0.1600, 0.1000, 0.0200],
        [0.0125, 0.0625, 0.1000, 0.0625, 0.0125],
        [0.0025, 0.0125, 0.0200, 0.0125, 0.0025],
    ],
    dtype=np.float32,
)
NLPD_DIVISIVE = (  # left, right, above, below neighbours' weights of each level's amplitude estimate
    (0.1493, 0.1460, 0.1011, 0.1015),
    (0.1986, 0.1846, 0.0757, 0.0837),
    (0.2138, 0.2243, 0.0477, 0.0467),
    (0.2503, 0.2616, 0.0, 0.0),
    (0.2598, 0.2552, 0.0, 0.0),
    (0.2215, 0.0717, 0.0, 0.0),
)
NLPD_SIGMAS = (0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782)


def _nlpd_pyramid(image):
    """The normalised Laplacian pyramid of a 1 x 1 x H x W tensor: one tensor per level."""
    import torch
    import torch.nn.functional as F

    blur = torch.from_numpy(NLPD_FILTER)[None, None]
    levels = []
    for (left, right, above, below), sigma in zip(NLPD_DIVISIVE, NLPD_SIGMAS, strict=True):
        low = F.conv2d(F.pad(image, (2, 2, 2, 2), mode="reflect"), blur, stride=2)
        up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=True)
        up = F.conv2d(F.pad(up, (2, 2, 2, 2), mode="reflect"), blur)
        if up.shape != image.shape:
            up = F.interpolate(up, list(image.shape[2:]))
        residual = image - up
        weights = torch.tensor([[0, above, 0], [left, 0, right], [0, below, 0]], dtype=torch.float32)
        amplitude = F.conv2d(F.pad(residual.abs(), (1, 1, 1, 1), mode="reflect"), weights[None, None])
        levels.append(residual / (sigma + amplitude))
        image = low
    return levels


def nlpd(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """IQA_pytorch 0.1's NLPD (ported) of Y in [0, 1], zero-padded to 128 px; 0 for identical images."""
    _check_pair(reference, reconstruction)
    import torch

    x, y = (_tensor(luma(image), NLPD_SIDE) for image in (reference, reconstruction))
    with torch.no_grad():
        rms = [
            torch.sqrt(torch.mean((a - b) ** 2, (1, 2, 3)))
            for a, b in zip(_nlpd_pyramid(x), _nlpd_pyramid(y))
        ]
        return float(torch.stack(rms, dim=1).mean(1))


# IW-SSIM (Wang and Li 2011) as JPEG AI's src/codec/metrics/IW_SSIM_PyTorch.py computes it on the CPU (from
# Xinyu Guo's Python-IW-SSIM, copyright (c) 2019 Xinyu Guo, BSD licence): MS-SSIM's contrast-structure
# maps of 5 Laplacian pyramid levels (pyrtools, binom5, reflect1), each pooled with its information
# content weight (a Gaussian scale mixture of 3 x 3 neighbours and the parent band), luminance at the last.
IW_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
IW_SSIM_NOISE = 0.4  # sigma_nsq, the visual noise variance of the information content


def _gaussian_blurs(maps):
    """Each channel of a 1 x C x H x W float64 tensor filtered ('valid') by MATLAB's fspecial('gaussian', 11,
    1.5), as two 1-D passes: it is separable, none of its values being under eps x max (which fspecial
    zeroes); the result differs from the 2-D filter's by float64 rounding only."""
    import torch
    import torch.nn.functional as F

    taps = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    row = torch.from_numpy(taps / taps.sum()).repeat(maps.shape[1], 1, 1, 1)
    across = F.conv2d(maps, row.view(-1, 1, 1, 11), groups=maps.shape[1])
    return F.conv2d(across, row.view(-1, 1, 11, 1), groups=maps.shape[1])


def _enlarged(band):
    """A band upsampled x 2 as MATLAB's imenlarge2: bilinear to 4 M - 3, extrapolated by one, every other."""
    import torch
    import torch.nn.functional as F

    _, _, rows, cols = band.shape
    inner = F.interpolate(band, size=(4 * rows - 3, 4 * cols - 3), mode="bilinear", align_corners=True)
    out = torch.zeros((1, 1, 4 * rows - 1, 4 * cols - 1), dtype=band.dtype)
    out[:, :, 1:-1, 1:-1] = inner
    out[:, :, 0, :] = 2 * out[:, :, 1, :] - out[:, :, 2, :]
    out[:, :, -1, :] = 2 * out[:, :, -2, :] - out[:, :, -3, :]
    out[:, :, :, 0] = 2 * out[:, :, :, 1] - out[:, :, :, 2]
    out[:, :, :, -1] = 2 * out[:, :, :, -2] - out[:, :, :, -3]
    return out[:, :, ::2, ::2]


def _information_content(original, distorted, parent):
    """The information content weight map of one band (cropped by 1 px on each side), ``parent`` the next
    coarser band of the original or None."""
    import torch
    import torch.nn.functional as F

    tol = 1e-15
    window = (torch.ones((1, 1, 3, 3)) / 9).double()  # 1 / 9 in float32, as JPEG AI's code forms it
    mean_x, mean_y = F.conv2d(original, window, padding=1), F.conv2d(distorted, window, padding=1)
    cov_xy = F.conv2d(original * distorted, window, padding=1) - mean_x * mean_y
    ss_x = (F.conv2d(original**2, window, padding=1) - mean_x**2).clamp(min=0)
    ss_y = (F.conv2d(distorted**2, window, padding=1) - mean_y**2).clamp(min=0)
    gain = cov_xy / (ss_x + tol)
    error = ss_y - gain * cov_xy
    gain, error = gain.masked_fill(ss_x < tol, 0), torch.where(ss_x < tol, ss_y, error)
    gain, error = gain.masked_fill(ss_y < tol, 0), error.masked_fill(ss_y < tol, 0)

    # JPEG AI's code gathers the neighbourhoods from a float32 copy of the bands
    rows, cols = original.shape[2] - 2, original.shape[3] - 2
    band = original[0, 0].float().double()
    columns = [band[1 - dy : 1 - dy + rows, 1 - dx : 1 - dx + cols] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    if parent is not None:
        columns.append(_enlarged(parent)[0, 0, 1 : 1 + rows, 1 : 1 + cols].float().double())
    neighbours = torch.stack([column.flatten() for column in columns], dim=1)
    covariance = neighbours.T @ neighbours / neighbours.shape[0]
    values, vectors = torch.linalg.eig(covariance)  # as JPEG AI's code: the general solver, real parts
    eigenvalues, vectors = values.real, vectors.real
    positive = eigenvalues * (eigenvalues > 0)
    scaled = (
        torch.diag(positive) * torch.view_as_real(values).sum() / (positive.sum() + (positive.sum() == 0))
    )
    covariance = vectors @ scaled @ vectors.T
    try:
        inverse = torch.inverse(covariance)
    except torch.linalg.LinAlgError:
        raise MetricUndefined(
            "the original's 3 x 3 neighbourhoods are linearly dependent (a flat, ramp or one-line image), "
            "so IW-SSIM's information weights are not (JPEG AI's code stops there)"
        ) from None
    energy = ((neighbours @ inverse) * neighbours / len(columns)).sum(1).view(1, 1, rows, cols)
    gain, error = gain[:, :, 1 : 1 + rows, 1 : 1 + cols], error[:, :, 1 : 1 + rows, 1 : 1 + cols]
    weight = torch.zeros_like(gain)
    for eigenvalue in eigenvalues:
        spread = (error + (1 + gain * gain) * IW_SSIM_NOISE) * energy * eigenvalue + IW_SSIM_NOISE * error
        weight = weight + torch.log2(1 + spread / (IW_SSIM_NOISE * IW_SSIM_NOISE))
    return weight.masked_fill(weight < tol, 0)


def iw_ssim_of_lumas(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """IW-SSIM of two planes in [0, 255] (5 scales, K = 0.01, 0.03, L = 255), float64."""
    import pyrtools
    import torch

    bands = [
        [
            torch.from_numpy(pyramid.pyr_coeffs[(level, 0)])[None, None]
            for level in range(len(IW_SSIM_WEIGHTS))
        ]
        for pyramid in (
            pyrtools.pyramids.LaplacianPyramid(plane.astype(np.float32), height=len(IW_SSIM_WEIGHTS))
            for plane in (reference, reconstruction)
        )
    ]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    pooled = []
    for level, (original, distorted) in enumerate(zip(*bands)):
        maps = torch.cat([original, distorted, original * distorted, original**2, distorted**2], dim=1)
        mu_x, mu_y, mean_xy, mean_xx, mean_yy = _gaussian_blurs(maps).split(1, dim=1)
        sigma_xy = mean_xy - mu_x * mu_y
        sigma_x = (mean_xx - mu_x * mu_x).clamp(min=0)
        sigma_y = (mean_yy - mu_y * mu_y).clamp(min=0)
        structure = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
        if level == len(IW_SSIM_WEIGHTS) - 1:
            luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
            pooled.append(torch.sum(structure * luminance) / structure.numel())
            continue
        parent = bands[0][level + 1] if level < len(IW_SSIM_WEIGHTS) - 2 else None
        weight = _information_content(original, distorted, parent)[:, :, 4:-4, 4:-4]
        pooled.append(torch.sum(structure * weight) / torch.sum(weight))
    exponents = torch.tensor(IW_SSIM_WEIGHTS).double()  # rounded to float32 first, as JPEG AI's code does
    scores = torch.stack(pooled).abs() ** exponents
    return float(torch.prod(scores))


def iw_ssim(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """JPEG AI's IW-SSIM (ported) of Y in [0, 255] (its float32 Y x 255), zero-padded to 256 px."""
    _check_pair(reference, reconstruction)
    planes = []
    for image in (reference, reconstruction):
        plane = luma(image) * np.float32(255)
        height, width = plane.shape
        planes.append(np.pad(plane, ((0, max(IW_SSIM_SIDE - height, 0)), (0, max(IW_SSIM_SIDE - width, 0)))))
    return iw_ssim_of_lumas(*planes)


def vmaf_yuv10(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """VMAF v0.6.1 (libvmaf) of the 10-bit YUV 4:4:4 planes; MetricUndefined under 17 px."""
    check_rgb_pair(reference, reconstruction, tool_metrics.VMAF_MIN_SIDE, "libvmaf")
    planes = [list(yuv_planes(image, BITS)) for image in (reference, reconstruction)]
    return tool_metrics.vmaf_of_planes(*planes, bits=BITS)[0]


def psnr_hvs_y10(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR-HVS (not -M) of Y in [0, 1], sides padded to a multiple of 8 by repeating the edge; 100 for
    identical images."""
    _check_pair(reference, reconstruction)
    return psnr_hvs_of_lumas(luma(reference), luma(reconstruction))[0]
