"""SSIMULACRA 2.1 on 8-bit sRGB arrays, as the reference tool computes it.

A port to NumPy of ``tools/ssimulacra2.cc`` of libjxl (the same code as github.com/cloudinary/ssimulacra2),
by Jon Sneyers (Cloudinary) and the JPEG XL Project Authors, under the BSD 3-clause licence: Copyright (c)
the JPEG XL Project Authors; Copyright (c) Cloudinary. The blur is libjxl's recursive Gaussian
(``CreateRecursiveGaussian`` of ``gauss_blur.cc``, after Charalampidis 2016), evaluated as the FIR filter
that its recursion sums (see ``gaussian_taps``).

Pipeline: sRGB to linear RGB; at 6 scales (each a 2x2 box downsampling of the previous one in linear RGB,
while the previous one has both sides of at least 8 px), XYB rescaled to positive values; per channel the
blurred means, variances and covariance give a SSIM map without the luminance denominator, and the
blurred means the edge-difference maps (artifacts, detail lost); the 1-norms and 4-norms of these 54
maps, weighted by 108 weights, go through a cubic and a power into a score: 100 for identical images,
lower for worse ones.
"""

from __future__ import annotations

import math

import numpy as np

from bench.measure_types import MetricUndefined

MIN_SIDE = 8  # the reference tool's minimum image size, and the smallest scale it downsamples from
NUM_SCALES = 6
SIGMA = 1.5
C2 = np.float32(0.0009)

# kOpsinAbsorbanceMatrix and kOpsinAbsorbanceBias of lib/jxl/cms/opsin_params.h, as float32.
_OPSIN = np.array(
    [
        [0.30, 1.0 - 0.078 - 0.30, 0.078],
        [0.23, 1.0 - 0.078 - 0.23, 0.078],
        [0.24342268924547819, 0.20476744424496821, 1.0 - 0.24342268924547819 - 0.20476744424496821],
    ],
    np.float32,
)
_OPSIN_BIAS = np.float32(0.0037930732552754493)
_NEG_BIAS_CBRT = -np.cbrt(_OPSIN_BIAS)

# Msssim::Score's weights, in the order channel (X, Y, B), scale, norm (1, 4), map (SSIM, artifact,
# detail lost).
WEIGHTS = (
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379, 0.0,
    1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0,
    1.8422455520539298, 11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833, 0.0,
    0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063, 0.0, 0.0,
    0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0,
    0.0, 34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0, 0.0020827005846636437,
    0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682,
    0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0,
    0.0005130064588990679, 0.0, 0.00010854057858411537,
)  # fmt: skip


def _srgb_to_linear_table() -> np.ndarray:
    """The IEC 61966-2-1 sRGB decoding of the 256 8-bit codes, float32."""
    v = np.arange(256) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB_TO_LINEAR = _srgb_to_linear_table()


def gaussian_taps(sigma: float = SIGMA) -> np.ndarray:
    """The FIR taps (float32, odd length) that libjxl's recursive Gaussian computes.

    CreateRecursiveGaussian solves (53) for the weights beta_k of three truncated cosines cos(omega_k j),
    omega_k = k pi / 2N, k = 1, 3, 5, |j| <= N; its recursion (33)-(35) sums exactly that FIR filter
    (the terms of y[n] - 2 cos(omega) y[n-1] + y[n-2] cancel but at the window's ends). The end taps
    cos(k pi / 2) are 0, so 2N - 1 taps remain.
    """
    radius = round(3.2795 * sigma + 0.2546)  # (57), N
    omega = np.array([1.0, 3.0, 5.0]) * math.pi / (2.0 * radius)
    p = 1.0 / np.tan(0.5 * omega) * np.array([1.0, -1.0, 1.0])  # (37)
    r = p * p / np.sin(omega) * np.array([1.0, -1.0, 1.0])  # (44)
    rho = np.exp(-0.5 * sigma * sigma * omega * omega) / radius  # (50)
    d_13 = p[0] * r[1] - r[0] * p[1]  # (52)
    zeta_15 = (p[1] * r[2] - r[1] * p[2]) / d_13
    zeta_35 = (p[2] * r[0] - r[2] * p[0]) / d_13
    matrix = np.array([p, r, [zeta_15, zeta_35, 1.0]])  # (56)
    gamma = np.array([1.0, radius * radius - sigma * sigma, zeta_15 * rho[0] + zeta_35 * rho[1] + rho[2]])
    beta = np.linalg.solve(matrix, gamma)  # (53)
    j = np.arange(-radius + 1, radius)
    return (beta @ np.cos(np.outer(omega, j))).astype(np.float32)


_TAPS = gaussian_taps()


class _Blur:
    """Separable zero-padded correlation with ``_TAPS`` of C x H x W planes, in buffers reused per call."""

    def __init__(self, planes: int, height: int, width: int):
        self.half = half = len(_TAPS) // 2
        self.taps = [float(t) for t in _TAPS[half:]]  # symmetric: centre, then distance 1, 2, ...
        self.rows = np.zeros((planes, height, width + 2 * half), np.float32)  # between zero columns
        self.columns = np.zeros((planes, height + 2 * half, width), np.float32)  # between zero rows
        self.scratch = np.empty((planes, height, width), np.float32)

    def __call__(self, planes: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Blur ``planes`` into ``out``."""
        half, taps, rows, columns, scratch = self.half, self.taps, self.rows, self.columns, self.scratch
        height, width = planes.shape[1:]
        rows[:, :, half : half + width] = planes
        inner = columns[:, half : half + height]
        np.multiply(planes, taps[0], out=inner)
        for k in range(1, half + 1):
            np.add(
                rows[:, :, half - k : half - k + width], rows[:, :, half + k : half + k + width], out=scratch
            )
            scratch *= taps[k]
            inner += scratch
        np.multiply(inner, taps[0], out=out)
        for k in range(1, half + 1):
            np.add(
                columns[:, half - k : half - k + height],
                columns[:, half + k : half + k + height],
                out=scratch,
            )
            scratch *= taps[k]
            out += scratch
        return out


def blur(planes: np.ndarray) -> np.ndarray:
    """libjxl's recursive Gaussian (sigma 1.5, zero outside the image) of C x H x W planes, float32."""
    planes = np.ascontiguousarray(planes, np.float32)
    return _Blur(*planes.shape)(planes, np.empty_like(planes))


def _downsample(linear: np.ndarray) -> np.ndarray:
    """2x2 box average of 3 x H x W planes, the last row and column repeated for an odd side."""
    _, height, width = linear.shape
    if height % 2 or width % 2:
        linear = np.pad(linear, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
    rows = linear[:, 0::2] + linear[:, 1::2]
    total = rows[:, :, 0::2] + rows[:, :, 1::2]
    total *= np.float32(0.25)
    return total


def positive_xyb(linear: np.ndarray) -> np.ndarray:
    """libjxl's XYB of 3 x H x W linear RGB planes, made positive as MakePositiveXYB does:
    (14 X + 0.42, Y + 0.01, B - Y + 0.55)."""
    cones = np.matmul(_OPSIN, linear.reshape(3, -1)).reshape(linear.shape)
    cones += _OPSIN_BIAS  # > 0 (a positive matrix, non-negative RGB): libjxl clamps at 0 in vain
    np.cbrt(cones, out=cones)
    cones += _NEG_BIAS_CBRT
    long, medium, short = cones  # become X, Y, B in place
    twice_x = long - medium
    np.add(long, medium, out=medium)
    medium *= np.float32(0.5)
    short -= medium
    short += np.float32(0.55)
    np.multiply(twice_x, np.float32(0.5 * 14.0), out=long)
    long += np.float32(0.42)
    medium += np.float32(0.01)
    return cones


def _norms(error: np.ndarray, square: np.ndarray) -> list[tuple[float, float]]:
    """Per plane of non-negative C x H x W maps: the mean, and the fourth root of the mean of the fourth
    power (float32 pairwise sums)."""
    np.multiply(error, error, out=square)
    square *= square
    pixels = error[0].size
    means = error.reshape(len(error), -1).sum(axis=1) / pixels
    quartics = square.reshape(len(square), -1).sum(axis=1) / pixels
    return [(float(mean), float(quartic) ** 0.25) for mean, quartic in zip(means, quartics, strict=True)]


# Planes of at least this many pixels go one channel at a time (their buffers stay in the CPU's cache),
# smaller ones three at a time (fewer calls).
_CHANNEL_AT_A_TIME = 1 << 16


def _norms_of_scale(xyb1: np.ndarray, xyb2: np.ndarray) -> list[list[tuple[float, float]]]:
    """Per channel, the (1-norm, 4-norm) of the SSIM, artifact and detail-lost maps of one scale."""
    channels, height, width = xyb1.shape
    group = 1 if height * width >= _CHANNEL_AT_A_TIME else channels
    blur = _Blur(group, height, width)
    mu1, mu2, sigma12, sigma_sum, work, work2 = np.empty((6, group, height, width), np.float32)
    result = []
    for start in range(0, channels, group):
        image1, image2 = xyb1[start : start + group], xyb2[start : start + group]
        blur(image1, mu1)
        blur(image2, mu2)
        np.multiply(image1, image2, out=work)
        blur(work, sigma12)
        # The blur is linear: blur(image1^2 + image2^2) is the sum of the reference's two blurs.
        np.multiply(image1, image1, out=work)
        np.multiply(image2, image2, out=work2)
        work += work2
        blur(work, sigma_sum)
        # SSIM without the luminance denominator:
        # 1 - (1 - (mu1 - mu2)^2) (2 (s12 - mu1 mu2) + C2) / (s11 - mu1^2 + s22 - mu2^2 + C2)
        np.multiply(mu1, mu2, out=work)
        sigma12 -= work
        sigma12 *= np.float32(2.0)
        sigma12 += C2
        np.multiply(mu1, mu1, out=work)
        np.multiply(mu2, mu2, out=work2)
        work += work2
        sigma_sum -= work
        sigma_sum += C2
        np.subtract(mu1, mu2, out=work)
        work *= work
        np.subtract(np.float32(1.0), work, out=work)
        work *= sigma12
        work /= sigma_sum
        np.subtract(np.float32(1.0), work, out=work)
        np.maximum(work, np.float32(0.0), out=work)
        ssim = _norms(work, work2)
        # Edge difference d = (1 + |image2 - mu2|) / (1 + |image1 - mu1|) - 1, computed as
        # (|image2 - mu2| - |image1 - mu1|) / (1 + |image1 - mu1|); artifact max(d, 0), detail lost max(-d, 0).
        np.subtract(image1, mu1, out=mu1)
        np.abs(mu1, out=mu1)
        np.subtract(image2, mu2, out=mu2)
        np.abs(mu2, out=mu2)
        mu2 -= mu1
        mu1 += np.float32(1.0)
        mu2 /= mu1
        np.maximum(mu2, np.float32(0.0), out=work)
        artifact = _norms(work, work2)
        np.subtract(work, mu2, out=work)
        detail_lost = _norms(work, work2)
        result.extend(zip(ssim, artifact, detail_lost, strict=True))
    return [list(maps) for maps in result]


def score(scales: list[list[list[tuple[float, float]]]]) -> float:
    """Msssim::Score of ``scale_norms``: the weighted sum of the norms, through its cubic and power. With
    fewer than 6 scales the weights are taken in sequence, as the tool's running index takes them."""
    weights = iter(WEIGHTS)
    total = 0.0
    for channel in range(3):
        for norms in scales:
            for n in range(2):
                for map_norms in norms[channel]:
                    total += next(weights) * abs(map_norms[n])
    total *= 0.9562382616834844
    total = 2.326765642916932 * total - 0.020884521182843837 * total**2 + 6.248496625763138e-05 * total**3
    return 100.0 - 10.0 * total**0.6276336467831387 if total > 0 else 100.0


def scale_norms(reference: np.ndarray, reconstruction: np.ndarray) -> list[list[list[tuple[float, float]]]]:
    """The norms of each scale computed: ``[scale][channel][map] = (1-norm, 4-norm)``, maps SSIM, artifact,
    detail lost. A scale is computed while the previous one has both sides of at least 8 px."""
    if reference.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {reconstruction.shape}")
    if (
        reference.ndim != 3
        or reference.shape[2] != 3
        or not reference.dtype == reconstruction.dtype == np.uint8
    ):
        raise ValueError(
            f"expected H x W x 3 uint8 arrays, got {reference.shape} {reference.dtype} / {reconstruction.dtype}"
        )
    height, width = reference.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise MetricUndefined(f"{width}x{height} is under the reference tool's minimum of 8x8 px")
    linear1 = np.take(_SRGB_TO_LINEAR, reference.transpose(2, 0, 1))
    linear2 = np.take(_SRGB_TO_LINEAR, reconstruction.transpose(2, 0, 1))
    scales = []
    for scale in range(NUM_SCALES):
        if scale:
            if min(linear1.shape[1:]) < MIN_SIDE:
                break
            linear1, linear2 = _downsample(linear1), _downsample(linear2)
        scales.append(_norms_of_scale(positive_xyb(linear1), positive_xyb(linear2)))
    return scales


def ssimulacra2(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """SSIMULACRA 2.1 of two H x W x 3 uint8 sRGB images: 100 for identical ones, lower for worse; raises
    MetricUndefined for a side under 8 px (the reference tool refuses those)."""
    return score(scale_norms(reference, reconstruction))
