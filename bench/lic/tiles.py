"""lic's decoder transforms in spatial tiles, so that decoding takes bounded memory whatever the image size.

The synthesis (latent -> pixels) is a chain of transposed convolutions (lic's: four 5x5 of stride 2,
padding 2, output padding 1) with inverse GDN between them, which acts on each pixel's channels alone;
the hyper-synthesis (hyper-latent -> scales and means) two such transposed convolutions and a 3x3
convolution, with LeakyReLU. A transposed convolution (kernel k, stride s, padding p, output padding q)
gives output o from the inputs i with s i - p + t = o for a tap t in [0, k): rows ceil((o + p - k + 1)
/ s) to floor((o + p) / s). Cut a tile's input where the whole image has more: if the tile's first
``b`` input rows differ from the whole image's (the first cut row sees zeros before it), its first
``s b + k - p - s`` output rows do; at the far edge, ``a`` rows become ``s a + k - p - s + q``. A
stride-1 convolution of "same" padding p adds p on both sides. From 0, the synthesis gives 1, 3, 7, 15
pixels before the cut and 2, 6, 14, 30 after it; the hyper-synthesis 1, 3, 4 and 2, 6, 7 latent
positions. So a halo of 1 input position before and 2 after each cut (16 and 32 pixels, 4 and 8 latent
positions) lets every output kept from a tile see exactly the inputs it sees in a whole-image decode,
the zeros past the image's own edges included (a tile at an edge ends where the image does). Each tile
is decoded with its halo and only its interior kept: the exact decoders (integer sums, any order) give
the whole-image decode's output bit for bit.

Tile size from a memory budget: a tile of h x w input positions (halo included) needs about
``bytes_per_position(layers, route) x h x w`` bytes at its widest point (the tensors alive at the layer
with the most values per input position; see bytes_per_position), so a tile has at most ``budget //
bytes_per_position`` positions. A whole input that fits decodes in one call, untiled (every Kodak image
with the default budget, on every route); a larger one in the fewest tiles that fit, then the least
halo.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from compressai.layers import GDN
from torch import Tensor, nn

BUDGET = 768 << 20  # bytes for one tile's intermediate tensors (what bytes_per_position counts)
ROUTES = ("int8", "float64", "float32")  # how the convolutions run: see bytes_per_position
PER_PIXEL = (GDN, nn.LeakyReLU, nn.ReLU, nn.Identity)  # layers that act on each position's channels alone


@dataclass(frozen=True)
class Tile:
    """A tile's input rows and columns to decode (halo included), and those of them to keep."""

    rows: slice
    cols: slice
    keep_rows: slice
    keep_cols: slice


def _geometry(layer: nn.Module) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, output padding) of a convolution, None for a per-pixel layer."""
    if isinstance(layer, PER_PIXEL):
        return None
    if not isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
        raise TypeError(f"tiles: no receptive field for {type(layer).__name__}")
    values = (layer.kernel_size, layer.stride, layer.padding, getattr(layer, "output_padding", (0, 0)))
    if any(len(set(pair)) > 1 for pair in values) or layer.dilation != (1, 1) or layer.groups != 1:
        raise ValueError("tiles: square kernels, strides and paddings only, no dilation or groups")
    k, s, p, q = (pair[0] for pair in values)
    if isinstance(layer, nn.Conv2d) and (s != 1 or 2 * p != k - 1):
        raise ValueError("tiles: convolutions must keep the size (stride 1, padding (k - 1) / 2)")
    return k, s, p, q


def scale(layers: nn.Sequential) -> int:
    """Output positions per input position, per side."""
    product = 1
    for layer in layers:
        geometry = _geometry(layer)
        product *= geometry[1] if geometry and isinstance(layer, nn.ConvTranspose2d) else 1
    return product


def halo(layers: nn.Sequential) -> tuple[int, int]:
    """Input positions of context a tile needs before and after each cut (see the module's docstring)."""
    before = after = 0
    for layer in layers:
        geometry = _geometry(layer)
        if geometry is None:
            continue
        k, s, p, q = geometry
        if isinstance(layer, nn.ConvTranspose2d):
            before, after = s * before + k - p - s, s * after + k - p - s + q
        else:
            before, after = before + p, after + p
    step = scale(layers)
    return -(-max(before, 0) // step), -(-max(after, 0) // step)


def bytes_per_position(layers: nn.Sequential, route: str) -> int:
    """Bytes held at the widest layer per input position of a tile, for the convolutions' ``route``.

    Per layer, with ``i`` and ``o`` its input and output values per input position of the tile (channels
    times pixels per position) and ``cols`` the im2col columns of torch's float64 convolutions (k^2 c_in
    values per output pixel, or k^2 c_out per input pixel when transposed), the tensors alive while it
    runs; the last layer's float64 output is then turned into pixels (or scale indexes and means)
    through about two more tensors of its size:

    - int8 (exact decoder through int8 GEMMs, bench.lic.exact_gemm): each layer reads and writes int8
      planes of two bytes per value, its GEMM columns in cache-sized bands: 2 (i + o); the last layer
      2 i + 3 x 8 o;
    - float64 (exact decoder through float64 convolutions, CPU or GPU; activations in place): 8 (i +
      cols + o); the last layer 8 (i + max(cols + o, 3 o));
    - float32 (the float decoder, and synthesis=float32): the input, the output and inverse GDN's
      temporaries (square, norm, root, product; oneDNN's reorders): 4 (i + 4 o).

    Measured with one tile on this project's CPU (per latent position of the synthesis): int8 30 KiB
    (formula 34), float64 480 KiB (480), float32 104 to 124 KiB (136); per hyper-latent position of
    the exact scale path: int8 98 KiB (153), float64 414 KiB (408). scripts/bench-lic-memory.py
    checks the whole decoder against these."""
    if route not in ROUTES:
        raise ValueError(f"tiles: route must be one of {', '.join(ROUTES)}, not {route!r}")
    convolutions = [layer for layer in layers if _geometry(layer) is not None]
    widest, area = 0, 1  # area: the layer's input pixels per input position of the tile
    for index, layer in enumerate(convolutions):
        k, s, _, _ = _geometry(layer)
        transposed = isinstance(layer, nn.ConvTranspose2d)
        out_area = area * s * s if transposed else area
        i, o = layer.in_channels * area, layer.out_channels * out_area
        last = index == len(convolutions) - 1
        if route == "int8":
            size = 2 * i + (24 * o if last else 2 * o)
        elif route == "float64":
            cols = k * k * (layer.out_channels * area if transposed else layer.in_channels * out_area)
            size = 8 * (i + (max(cols + o, 3 * o) if last else cols + o))
        else:
            size = 4 * (i + 4 * o)
        widest, area = max(widest, size), out_area
    return widest


def plan(size: tuple[int, int], max_area: int, margins: tuple[int, int] = (1, 2)) -> list[Tile]:
    """The fewest tiles (then the fewest decoded positions) covering an input of ``size`` (rows,
    columns), each at most ``max_area`` positions with its halo (``margins`` before and after each
    cut); at worst one kept position a tile."""
    height, width = size
    extra = sum(margins)
    best = (height * width, 0, height, width)  # tiles, decoded positions, grid rows, grid columns
    for grid_rows in range(1, height + 1):
        tile_rows = -(-height // grid_rows) + (extra if grid_rows > 1 else 0)
        fits = max_area // tile_rows  # the most columns a tile of these rows may have
        if fits >= width:
            grid_cols = 1
        elif fits > extra:
            grid_cols = -(-width // (fits - extra))
        else:
            continue
        tile_cols = -(-width // grid_cols) + (extra if grid_cols > 1 else 0)
        count = grid_rows * grid_cols
        best = min(best, (count, count * tile_rows * tile_cols, grid_rows, grid_cols))
    _, _, grid_rows, grid_cols = best
    return [
        Tile(rows, cols, keep_rows, keep_cols)
        for rows, keep_rows in _spans(height, grid_rows, margins)
        for cols, keep_cols in _spans(width, grid_cols, margins)
    ]


def _spans(length: int, parts: int, margins: tuple[int, int]) -> list[tuple[slice, slice]]:
    """``length`` cut into ``parts`` near-equal kept spans, each with its decoded span (halo added)."""
    cuts = [length * i // parts for i in range(parts + 1)]
    return [
        (slice(max(0, start - margins[0]), min(length, stop + margins[1])), slice(start, stop))
        for start, stop in itertools.pairwise(cuts)
    ]


def tiles_for(size: tuple[int, int], layers: nn.Sequential, route: str, budget: int = BUDGET) -> list[Tile]:
    """The tiles ``run`` decodes an input of ``size`` (rows, columns) in."""
    return plan(size, budget // bytes_per_position(layers, route), halo(layers))


def run(
    decode: Callable[..., Tensor | tuple[Tensor, ...]],
    inputs: tuple[Tensor, ...],
    layers: nn.Sequential,
    route: str,
    budget: int = BUDGET,
) -> Tensor | tuple[Tensor, ...]:
    """``decode(*inputs)``, whose outputs are ``scale(layers)`` times the inputs' size and whose
    convolutions are ``layers`` on ``route``, tile by tile in memory bounded by ``budget``: the same
    outputs as one call on the whole input. Inputs are B x C x H x W (per-channel ones, B x C x 1 x 1,
    broadcast)."""
    height, width = inputs[0].shape[-2:]
    tiles = tiles_for((height, width), layers, route, budget)
    if len(tiles) == 1:
        return decode(*inputs)
    inputs = tuple(x.expand(*x.shape[:-2], height, width) for x in inputs)
    step = scale(layers)
    outs: list[Tensor] = []
    for tile in tiles:
        result = decode(*(x[..., tile.rows, tile.cols] for x in inputs))
        parts = result if isinstance(result, tuple) else (result,)
        if not outs:
            for part in parts:
                shape = (*part.shape[:-2], height * step, width * step)
                outs.append(torch.empty(shape, dtype=part.dtype, device=part.device))
        inner = (..., _inner(tile.keep_rows, tile.rows, step), _inner(tile.keep_cols, tile.cols, step))
        outer = (..., _outer(tile.keep_rows, step), _outer(tile.keep_cols, step))
        for out, part in zip(outs, parts, strict=True):
            out[outer] = part[inner]
    return tuple(outs) if isinstance(result, tuple) else outs[0]


def _outer(keep: slice, step: int) -> slice:
    """The output positions of kept input positions ``keep`` in the whole output."""
    return slice(keep.start * step, keep.stop * step)


def _inner(keep: slice, decoded: slice, step: int) -> slice:
    """The output positions of kept input positions ``keep`` in a tile decoded from ``decoded``."""
    return slice((keep.start - decoded.start) * step, (keep.stop - decoded.start) * step)
