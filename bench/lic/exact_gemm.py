"""lic's exact convolutions as int8 GEMMs with int32 accumulation (``torch._int_mm``), on the CPU.

The integer programs (bench.lic.integer) multiply 16-bit weights by 16-bit activations. Each operand,
offset by -128, splits exactly into two int8 halves, ``v - 128 = 256 hi + lo`` (hi, lo in [-128, 127]
for every v in [-32767, 32767]), so one 16 x 16-bit product sum is four int8 GEMMs:

    sum w x = 65536 Wh.Xh + 256 (Wh.Xl + Wl.Xh) + Wl.Xl + 128 sum x' + 128 sum w

(Wh, Wl the halves of w - 128, Xh, Xl those of x' = x - 128; the last two sums from a row of ones in
the GEMM and from the weights). An int8 GEMM's partial sums stay under K 2^14 (2^26 for the programs'
largest K, 3200), far inside int32, and the parts are combined in float64 below 2^53 (the program's
accumulator bound, checked at export), so the result is the exact integer whatever the summation order:
the same bits as bench.lic.integer's float64 convolutions, at the speed of the CPU's int8 units
(AVX-512 VNNI: about 380 GMAC/s on one core of this project's machine, against 22 for float64 GEMMs;
scripts/bench-lic-decoder.py).

A stride-1 convolution reads its im2col columns straight from the flattened, padded input: the window
of output position (i, j) starts at flat index i Wp + j (Wp the padded width), so the columns of a band
of output rows, computed across the whole padded width, are one strided copy with long contiguous runs
(the few columns past the right edge are computed and dropped). A transposed convolution with many
output channels runs as one such convolution per output phase (polyphase), written into every s-th
output pixel; with few output channels (the synthesis' last layer, 3) as a GEMM over the input channels
followed by col2im, which keeps the GEMM wide. Bias and a per-channel ``finish`` (the stage's
activation and any inverse GDN after it) are applied band by band while the band is in cache, and a
stage can write its result straight into the next stage's input plane (int8 halves, already padded).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

FOLD_MAX_CHANNELS = 16  # transposed convolutions with at most this many outputs use GEMM + col2im
BAND_BYTES = 4 << 20  # the int32 GEMM output of one band of rows stays near this (cache-sized)

Finish = Callable[[Tensor], object]  # in place on a channels x values float64 accumulator


def plane(values: Tensor, pad: int) -> Tensor:
    """The int8 halves (hi, lo) of integer values (C x H x W, in [-32767, 32767]) with
    ``values - 128 = 256 hi + lo``, as one 2 x C x (H + 2 pad + 1) x (W + 2 pad) tensor: zero-padded by
    ``pad`` on every side (a zero is hi 0, lo -128) and by one more row at the bottom, which the shifted
    reads of a last band may touch."""
    out = _blank_plane(*values.shape, pad)
    _store(_inside(out, pad), values)
    return out


def _blank_plane(channels: int, height: int, width: int, pad: int) -> Tensor:
    out = torch.empty(2, channels, height + 2 * pad + 1, width + 2 * pad, dtype=torch.int8)
    out[0].fill_(0)
    out[1].fill_(-128)
    return out


def _inside(halves: Tensor, pad: int) -> Tensor:
    """The unpadded part of a plane (a view)."""
    return halves[:, :, pad : halves.shape[2] - pad - 1, pad : halves.shape[3] - pad]


def _store(dest: Tensor, values: Tensor) -> None:
    """``dest`` (float64 C x h x w, or the 2 x C x h x w view of a plane; any strides) set to the
    integer ``values`` (float64 C x h x w): as they are, or as their halves. hi is the high byte of the
    16-bit two's complement, lo its low byte minus 128."""
    if dest.dtype == torch.float64:
        dest.copy_(values)
        return
    pairs = values.to(torch.int16).reshape(-1).view(torch.uint8).view(*values.shape, 2)
    dest[0] = pairs[..., 1].view(torch.int8)  # little-endian: the low byte comes first
    lows = dest[1].view(torch.uint8)
    lows.copy_(pairs[..., 0])
    lows ^= 128


@dataclass(frozen=True)
class Gemm:
    """A weight matrix (M x K integers) ready for exact products: its int8 halves stacked with a row of
    ones, (2M + 1) x K, and per row 128 times its sum plus the bias (M x 1), the formula's last term."""

    stack: Tensor
    row_offsets: Tensor

    @classmethod
    def of(cls, weight: Tensor, bias: Tensor | None = None) -> Gemm:
        hi, lo = plane(weight[None], 0)[:, 0, :-1]
        ones = torch.ones(1, weight.shape[1], dtype=torch.int8)
        offsets = weight.double().sum(1, keepdim=True) * 128
        if bias is not None:
            offsets += bias.double()[:, None]
        return cls(torch.cat([hi, lo, ones]).contiguous(), offsets)

    @property
    def rows(self) -> int:
        return self.row_offsets.shape[0]

    def band_columns(self) -> int:
        """How many output values one band takes: its int32 products stay near BAND_BYTES."""
        return max(64, BAND_BYTES // (8 * self.stack.shape[0]))

    def times(self, columns: Tensor, out: Tensor) -> Tensor:
        """``out`` (float64, M x N) set to the exact product with the K x N matrix whose halves are
        ``columns`` (int8, K x 2N: the hi halves' columns, then the lo halves')."""
        rows, n = self.rows, out.shape[1]
        product = torch._int_mm(self.stack, columns)
        hh, hl = product[:rows, :n], product[:rows, n:]
        lh, ll = product[rows : 2 * rows, :n], product[rows : 2 * rows, n:]
        column_sums = product[-1, :n].double().mul_(256).add_(product[-1, n:]).mul_(128)
        middle = hl.add_(lh)  # below 2^28 in int32
        out.copy_(hh)
        torch.add(middle, out, alpha=256, out=out)
        torch.add(ll, out, alpha=256, out=out)
        return out.add_(column_sums[None, :]).add_(self.row_offsets)


def _correlate(
    gemm: Gemm,
    taps: tuple[int, int],
    halves: Tensor,
    origin: tuple[int, int],
    dest: Tensor,
    finish: Finish | None,
) -> None:
    """``dest`` (M x h x w float64, or a plane's 2 x M x h x w; any strides) set to a stride-1
    correlation of ``halves`` (a plane) with a taps[0] x taps[1] window, finished: output (i, j) is the
    window whose top-left is at (origin[0] + i, origin[1] + j), its weights in ``gemm`` with K ordered
    (row tap, column tap, channel). Computed in bands of output rows across the padded width."""
    channels, padded_width = halves.shape[1], halves.shape[3]
    height, width = dest.shape[-2:]
    band = max(1, gemm.band_columns() // padded_width)
    flat = halves.reshape(2, channels, -1)
    values = torch.empty(gemm.rows, band * padded_width, dtype=torch.float64)
    for top in range(0, height, band):
        bottom = min(top + band, height)
        n = (bottom - top) * padded_width
        start = (origin[0] + top) * padded_width + origin[1]
        windows = flat.as_strided(
            (*taps, channels, 2, n),
            (padded_width, 1, flat.stride(1), flat.stride(0), 1),
            flat.storage_offset() + start,
        )
        part = gemm.times(windows.reshape(-1, 2 * n), values[:, :n])
        if finish is not None:
            finish(part)
        _store(dest[..., top:bottom, :], part.view(gemm.rows, bottom - top, padded_width)[:, :, :width])


def _input(x: Tensor, pad: int) -> tuple[Tensor, int, int]:
    """A convolution's input as a plane padded by ``pad``, and its height and width: ``x`` is integer
    values (C x H x W, float64) or already such a plane (int8)."""
    if x.dtype == torch.int8:
        return x, x.shape[2] - 2 * pad - 1, x.shape[3] - 2 * pad
    return plane(x, pad), *x.shape[1:]


def _output(channels: int, height: int, width: int, out_pad: int | None) -> tuple[Tensor, Tensor]:
    """A stage's result, float64 (``out_pad`` None) or the next stage's input plane padded by
    ``out_pad``, and the view of it that holds the values."""
    if out_pad is None:
        result = torch.empty(channels, height, width, dtype=torch.float64)
        return result, result
    result = _blank_plane(channels, height, width, out_pad)
    return result, _inside(result, out_pad)


@dataclass(frozen=True)
class Conv:
    """A stride-1 convolution (zero padding p) of integer weights, with its bias, for exact int8 GEMMs."""

    gemm: Gemm
    taps: tuple[int, int]
    pad: int  # the padding of its input plane

    @classmethod
    def of(cls, weight: Tensor, bias: Tensor | None, padding: int) -> Conv:
        matrix = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)  # K as (row, column, channel)
        return cls(Gemm.of(matrix, bias), tuple(weight.shape[2:]), padding)

    def __call__(self, x: Tensor, finish: Finish | None = None, out_pad: int | None = None) -> Tensor:
        """The accumulator plus bias of the convolution of ``x`` (see _input), finished: float64 C x H x W,
        or with ``out_pad`` as the next stage's input plane."""
        halves, height, width = _input(x, self.pad)
        result, values = _output(
            self.gemm.rows,
            height + 2 * self.pad - self.taps[0] + 1,
            width + 2 * self.pad - self.taps[1] + 1,
            out_pad,
        )
        _correlate(self.gemm, self.taps, halves, (0, 0), values, finish)
        return result


@dataclass(frozen=True)
class Deconv:
    """A transposed convolution (stride s, padding p, output padding at most p) of integer weights
    (in x out x k x k), with its bias, for exact int8 GEMMs: per output phase a stride-1 convolution, or
    for few output channels one GEMM and col2im."""

    phases: tuple[tuple[int, int, Conv], ...]  # (row phase, column phase, its convolution)
    folded: Gemm | None  # (out k k) x in, for few output channels
    bias: Tensor
    shape: tuple[int, int, int, int]  # in, out, rows, cols
    stride: int
    padding: int
    output_padding: int
    pad: int  # the padding of its input plane: the most taps of a phase, less one (0 when folded)

    @classmethod
    def of(cls, weight: Tensor, bias: Tensor, stride: int, padding: int, output_padding: int) -> Deconv:
        if output_padding > padding:
            raise ValueError("output padding beyond the padding has no exact GEMM form here")
        channels_in, channels_out, rows = weight.shape[:3]
        folded, phases, pad = None, [], -(-rows // stride) - 1
        if channels_out <= FOLD_MAX_CHANNELS:
            folded, pad = Gemm.of(weight.reshape(channels_in, -1).t()), 0
        else:
            for r in range(stride):
                for c in range(stride):
                    sub = weight[:, :, r::stride, c::stride].flip(2, 3).transpose(0, 1)
                    phases.append((r, c, Conv.of(sub, bias, 0)))
        shape = tuple(weight.shape)
        return cls(tuple(phases), folded, bias.double(), shape, stride, padding, output_padding, pad)

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        s, k, p, extra = self.stride, self.shape[2], self.padding, self.output_padding
        return (height - 1) * s + k - 2 * p + extra, (width - 1) * s + k - 2 * p + extra

    def __call__(self, x: Tensor, finish: Finish | None = None, out_pad: int | None = None) -> Tensor:
        """The accumulator plus bias of the transposed convolution of ``x`` (see _input), finished:
        float64 C x H x W, or with ``out_pad`` as the next stage's input plane."""
        halves, height, width = _input(x, self.pad)
        if self.folded is not None:
            result = self._folded(halves, height, width, finish)
            return result if out_pad is None else plane(result, out_pad)
        s, p = self.stride, self.padding
        result, values = _output(self.shape[1], *self.out_size(height, width), out_pad)
        for r, c, conv in self.phases:
            # output pixel y is pixel (y + p) of the full transposed convolution, in phase (y + p) mod s
            first_row, first_col = (r - p) % s, (c - p) % s
            dest = values[..., first_row::s, first_col::s]
            if dest.numel():
                origin = (
                    (first_row + p) // s + self.pad - conv.taps[0] + 1,
                    (first_col + p) // s + self.pad - conv.taps[1] + 1,
                )
                _correlate(conv.gemm, conv.taps, halves, origin, dest, finish)
        return result

    def _folded(self, halves: Tensor, height: int, width: int, finish: Finish | None) -> Tensor:
        """One GEMM over the input channels per band of input rows, each band's taps added in place."""
        _, out, rows, cols = self.shape
        channels = halves.shape[1]
        s, p = self.stride, self.padding
        full = torch.zeros(out, (height - 1) * s + rows, (width - 1) * s + cols, dtype=torch.float64)
        flat = halves[:, :, :height].reshape(2, channels, -1)
        band = max(1, self.folded.band_columns() // width)
        columns = torch.empty(out * rows * cols, band * width, dtype=torch.float64)
        for top in range(0, height, band):
            bottom = min(top + band, height)
            n = (bottom - top) * width
            part = self.folded.times(
                flat[:, :, top * width : bottom * width].transpose(0, 1).reshape(channels, 2 * n),
                columns[:, :n],
            )
            span = (bottom - top - 1) * s + rows
            full[:, top * s : top * s + span] += F.fold(
                part[None], (span, full.shape[2]), (rows, cols), stride=s
            )[0]
        out_height, out_width = self.out_size(height, width)
        result = full[:, p : p + out_height, p : p + out_width].contiguous()
        result.view(out, -1).add_(self.bias[:, None])
        if finish is not None:
            finish(result.view(out, -1))
        return result


@functools.cache
def available() -> bool:
    """Whether this process has exact, fast int8 GEMMs with int32 accumulation on the CPU: oneDNN with
    VNNI (vpdpbusd sums u8 x s8 products in int32). Without VNNI, oneDNN's AVX2 kernels sum pairs of
    products in saturating int16 (vpmaddubsw): a probe at the extremes, in both operand orders and at the
    programs' shapes, catches that, and lic then takes the float64 route (the same bits, slower)."""
    if sys.byteorder != "little":  # plane() reads the low byte of each 16-bit value first
        return False
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False  # without oneDNN, torch's int8 GEMM is a slow reference loop
    try:
        for rows, depth, width in ((151, 128, 1024), (257, 1152, 256)):
            for a, b in ((127, -128), (-128, 127), (127, 127), (-128, -128)):
                left = torch.full((rows, depth), a, dtype=torch.int8)
                product = torch._int_mm(left, torch.full((depth, width), b, dtype=torch.int8))
                if not bool((product == a * b * depth).all()):
                    return False
    except (AttributeError, RuntimeError):
        return False
    return True
