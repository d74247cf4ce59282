"""kMAC per pixel of learned codecs, checked against the count from the layers' shapes."""

from __future__ import annotations

import pytest
import torch
from compressai.layers import GDN
from torch import nn

from bench.complexity import COUNT_SHAPE, kmac_per_pixel
from bench.lic.codec import LicCodec


def _analytic_macs(sequential: nn.Sequential, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Convolutions: C_out x C_in x k x k per output position; transposed: the same per input position;
    GDN: C x C per position (its 1x1 convolution); activations cost nothing."""
    total = 0.0
    with torch.no_grad():
        for layer in sequential:
            out = layer(x)
            if isinstance(layer, nn.Conv2d):
                k = layer.kernel_size[0] * layer.kernel_size[1]
                total += layer.out_channels * layer.in_channels * k * out.shape[2] * out.shape[3]
            elif isinstance(layer, nn.ConvTranspose2d):
                k = layer.kernel_size[0] * layer.kernel_size[1]
                total += layer.out_channels * layer.in_channels * k * x.shape[2] * x.shape[3]
            elif isinstance(layer, GDN):
                total += x.shape[1] ** 2 * x.shape[2] * x.shape[3]
            x = out
    return total, x


@pytest.mark.parametrize("architecture", ["hyperprior", "factorized"])
def test_kmac_per_pixel_matches_the_layer_shapes(architecture):
    model = LicCodec("lic", {"architecture": architecture})._loaded()
    x = torch.zeros(1, 3, *COUNT_SHAPE)
    g_a, y = _analytic_macs(model.g_a, x)
    g_s, _ = _analytic_macs(model.g_s, y)
    encoder, decoder = g_a, g_s
    if architecture == "hyperprior":
        h_a, z = _analytic_macs(model.h_a, y)
        h_s, _ = _analytic_macs(model.h_s, z)
        encoder, decoder = g_a + h_a + h_s, h_s + g_s
    pixels = COUNT_SHAPE[0] * COUNT_SHAPE[1]
    counted = kmac_per_pixel(model)
    assert counted == pytest.approx((encoder / pixels / 1e3, decoder / pixels / 1e3), rel=1e-9)
    assert LicCodec("lic", {"architecture": architecture}).complexity() == pytest.approx(
        {"kmac_px_enc": counted[0], "kmac_px_dec": counted[1]}
    )
