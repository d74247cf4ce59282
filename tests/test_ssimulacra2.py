"""SSIMULACRA 2.1 against the reference tool: its value on kodim01 / Pillow q50, its XYB range comments,
and libjxl's recursive Gaussian transcribed here from tools/gauss_blur.cc."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import ssimulacra2 as s2
from bench.measure_types import MetricUndefined


def create_recursive_gaussian(sigma: float) -> tuple[int, np.ndarray, np.ndarray]:
    """CreateRecursiveGaussian of libjxl tools/gauss_blur.cc: radius N, and n2, d1 for k = 1, 3, 5 as the
    float32 values the blur uses."""
    radius = round(3.2795 * sigma + 0.2546)  # (57), "N"
    pi_div_2r = math.pi / (2.0 * radius)
    omega = [pi_div_2r, 3.0 * pi_div_2r, 5.0 * pi_div_2r]
    p_1 = +1.0 / math.tan(0.5 * omega[0])  # (37)
    p_3 = -1.0 / math.tan(0.5 * omega[1])
    p_5 = +1.0 / math.tan(0.5 * omega[2])
    r_1 = +p_1 * p_1 / math.sin(omega[0])  # (44)
    r_3 = -p_3 * p_3 / math.sin(omega[1])
    r_5 = +p_5 * p_5 / math.sin(omega[2])
    neg_half_sigma2 = -0.5 * sigma * sigma
    recip_radius = 1.0 / radius
    rho = [math.exp(neg_half_sigma2 * w * w) * recip_radius for w in omega]  # (50)
    d_13 = p_1 * r_3 - r_1 * p_3  # (52)
    d_35 = p_3 * r_5 - r_3 * p_5
    d_51 = p_5 * r_1 - r_5 * p_1
    zeta_15 = d_35 / d_13
    zeta_35 = d_51 / d_13
    a = np.linalg.inv([[p_1, p_3, p_5], [r_1, r_3, r_5], [zeta_15, zeta_35, 1.0]])  # (56)
    gamma = [1.0, radius * radius - sigma * sigma, zeta_15 * rho[0] + zeta_35 * rho[1] + rho[2]]  # (55)
    beta = a @ gamma  # (53)
    assert abs(beta[0] * p_1 + beta[1] * p_3 + beta[2] * p_5 - 1.0) < 1e-12  # (39)
    n2 = [-beta[i] * math.cos(omega[i] * (radius + 1.0)) for i in range(3)]  # (33)
    d1 = [-2.0 * math.cos(omega[i]) for i in range(3)]
    return radius, np.array(n2, np.float32), np.array(d1, np.float32)


def recursive_gaussian_1d(planes: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """FastGaussian1D's recursion (35) along the last axis, float32, zero outside: for k = 1, 3, 5,
    y_k[n] = n2_k (in[n - N - 1] + in[n + N - 1]) - d1_k y_k[n - 1] - y_k[n - 2] from n = 1 - N, and
    out[n] = y_1[n] + y_3[n] + y_5[n] for n >= 0."""
    radius, n2, d1 = create_recursive_gaussian(sigma)
    size = planes.shape[-1]
    out = np.zeros_like(planes)
    zero = np.zeros(planes.shape[:-1], np.float32)
    prev, prev2 = [zero] * 3, [zero] * 3
    for n in range(1 - radius, size):
        left, right = n - radius - 1, n + radius - 1
        total = (planes[..., left] if left >= 0 else zero) + (planes[..., right] if right < size else zero)
        outs = []
        for k in range(3):
            value = n2[k] * total - d1[k] * prev[k] - prev2[k]
            prev2[k], prev[k] = prev[k], value
            outs.append(value)
        if n >= 0:
            out[..., n] = outs[0] + (outs[1] + outs[2])
    return out


def fast_gaussian(planes: np.ndarray) -> np.ndarray:
    """FastGaussian: the recursion along rows, then along columns."""
    rows = recursive_gaussian_1d(planes)
    return recursive_gaussian_1d(rows.swapaxes(-1, -2)).swapaxes(-1, -2)


def test_the_recursion_is_the_fir_filter_of_gaussian_taps():
    taps = s2.gaussian_taps()
    assert len(taps) == 9  # 2N + 1 = 11 taps, of which the two ends cos(k pi / 2) are 0
    assert taps.sum() == pytest.approx(1.0, abs=1e-6)
    impulse = np.zeros((1, 41), np.float32)
    impulse[0, 20] = 1.0
    response = recursive_gaussian_1d(impulse)[0]
    np.testing.assert_allclose(response[16:25], taps, rtol=0, atol=2e-7)
    outside = np.concatenate([response[:16], response[25:]])
    assert np.abs(outside).max() < 2e-7  # float32 rounding of n2 and d1 only


@pytest.mark.parametrize("shape", [(2, 37, 53), (1, 64, 400), (1, 3, 7)])
def test_blur_matches_libjxl_recursive_gaussian(shape):
    planes = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
    np.testing.assert_allclose(s2.blur(planes), fast_gaussian(planes), rtol=0, atol=1e-5)


def test_positive_xyb_spans_the_reference_tools_srgb_range():
    """MakePositiveXYB's comment: over sRGB, X 0.204594..0.813402, Y 0.010000..0.855308, B 0.272295..0.938012
    (reached at the cube's corners: green / red, black / white, green / blue)."""
    corners = np.array(np.meshgrid([0, 255], [0, 255], [0, 255], indexing="ij"), np.uint8).reshape(3, 8, 1)
    xyb = s2.positive_xyb(s2._SRGB_TO_LINEAR[corners]).reshape(3, 8)
    np.testing.assert_allclose(xyb.min(axis=1), [0.204594, 0.010000, 0.272295], atol=1.5e-6)
    np.testing.assert_allclose(xyb.max(axis=1), [0.813402, 0.855308, 0.938012], atol=1.5e-6)


def test_kodim01_against_pillow_q50_gives_the_reference_tools_value(kodim01_q50):
    """The C++ tool gives 62.2509, this port 62.2621: the same pipeline in float64 gives 62.2611, and
    the rounding of the tool's float32 recursive blur moves its score by about 0.01."""
    assert s2.ssimulacra2(*kodim01_q50) == pytest.approx(62.2509, abs=0.05)


def test_identical_images_give_100():
    image = np.random.default_rng(3).integers(0, 256, (40, 56, 3), np.uint8)
    assert s2.ssimulacra2(image, image.copy()) == 100.0


def test_stronger_noise_gives_lower_scores():
    rng = np.random.default_rng(4)
    image = np.clip(rng.normal(128, 40, (64, 96, 3)), 0, 255).astype(np.uint8)
    scores = [
        s2.ssimulacra2(image, np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8))
        for sigma in (2, 8, 32)
    ]
    assert 100 > scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize(("height", "width", "scales"), [(8, 9, 2), (14, 16, 2), (15, 16, 3), (512, 768, 6)])
def test_scales_go_on_while_the_previous_has_8_px_sides(height, width, scales):
    """Downsampling rounds odd sides up (15 -> 8), as the tool's Downsample does."""
    image = np.random.default_rng(height).integers(0, 256, (height, width, 3), np.uint8)
    assert len(s2.scale_norms(image, 255 - image)) == scales


def test_under_8_px_is_undefined():
    image = np.zeros((7, 20, 3), np.uint8)
    with pytest.raises(MetricUndefined, match="20x7"):
        s2.ssimulacra2(image, image)


def test_fewer_scales_take_the_weights_in_sequence():
    """Msssim::Score's index runs on over the scales computed: with one scale, all ones give the first 18
    weights' sum (not the weights of scale 1:1 of each channel)."""
    total = sum(s2.WEIGHTS[:18]) * 0.9562382616834844
    total = 2.326765642916932 * total - 0.020884521182843837 * total**2 + 6.248496625763138e-05 * total**3
    assert s2.score([[[(1.0, 1.0)] * 3] * 3]) == pytest.approx(
        100 - 10 * total**0.6276336467831387, abs=1e-12
    )


def test_bad_pairs_raise_value_error():
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="shape mismatch"):
        s2.ssimulacra2(image, image[:, :15])
    with pytest.raises(ValueError, match="uint8"):
        s2.ssimulacra2(image.astype(np.float32), image.astype(np.float32))
