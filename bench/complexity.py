"""Complexity of learned codecs: multiply-accumulates per pixel, counted with torch's FlopCounterMode.

MACs are FLOPs / 2 of convolutions and matrix products (GDN's 1x1 convolutions included); element-wise
operations and entropy coding are not counted. Counted on a 768 x 512 input (a Kodak image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

COUNT_SHAPE = (512, 768)


def macs(function: Callable[..., Any], *args: Any) -> float:
    """Multiply-accumulates of one call."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        function(*args)
    return counter.get_total_flops() / 2


def kmac_per_pixel(model: Any) -> tuple[float, float]:
    """Encoder and decoder kMAC per pixel of a model with g_a and g_s (and h_a, h_s for a hyperprior)."""
    import torch

    height, width = COUNT_SHAPE
    parameter = next(model.parameters())
    x = torch.zeros(1, 3, height, width, dtype=parameter.dtype, device=parameter.device)
    with torch.no_grad():
        y = model.g_a(x)
    if hasattr(model, "h_a"):
        with torch.no_grad():
            z = model.h_a(y)
        encoder = macs(model.g_a, x) + macs(model.h_a, y) + macs(model.h_s, z)
        decoder = macs(model.h_s, z) + macs(model.g_s, y)
    else:
        encoder, decoder = macs(model.g_a, x), macs(model.g_s, y)
    pixels = height * width
    return encoder / pixels / 1e3, decoder / pixels / 1e3
