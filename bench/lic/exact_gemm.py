"""lic's exact convolutions as int8 GEMMs with int32 accumulation (``torch._int_mm``), on the CPU.

The integer programs (bench.lic.integer) multiply 16-bit weights by 16-bit activations. Each operand,
offset by -128, splits exactly into two int8 halves, ``v - 128 = 256 hi + lo`` (hi, lo in [-128, 127]
for every v in [-32767, 32767]), so one 16 x 16-bit product sum is four int8 GEMMs:

    sum w x = 65536 Wh.Xh + 256 (Wh.Xl + Wl.Xh) + Wl.Xl + 128 sum x' + 128 sum w

(Wh, Wl the halves of w - 128, Xh, Xl those of x' = x - 128; the last two sums from a row of ones in
the GEMM and from the weights). An int8 GEMM's
partial sums stay under K 2^14 (2^26 for the programs' largest K, 3200), far inside int32, and the
parts are combined in float64 below 2^53 (the program's accumulator bound, checked at export), so the
result is the exact integer whatever the summation order: the same bits as bench.lic.integer's float64
convolutions, at the speed of the CPU's int8 units (AVX-512 VNNI: about 380 GMAC/s on one core of this
project's machine, against 22 for float64 GEMMs; scripts/bench-lic-decoder.py). Transposed convolutions with many output channels run as one stride-1 convolution per
output phase (polyphase); with few (the synthesis' last layer, 3), as a GEMM over the input channels
followed by col2im, which keeps the GEMM wide.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

FOLD_MAX_CHANNELS = 16  # transposed convolutions with at most this many outputs use GEMM + col2im
BAND_BYTES = 4 << 20  # the int32 GEMM output of one band of rows stays near this (cache-sized)


def halves(values: Tensor) -> tuple[Tensor, Tensor]:
    """int8 (hi, lo) with ``values - 128 = 256 hi + lo`` for integer values in [-32767, 32767]: hi is the
    high byte of the 16-bit two's complement (floor(v / 256)), lo its low byte minus 128."""
    pairs = values.to(torch.int16).reshape(-1).view(torch.uint8).reshape(-1, 2)  # low byte first
    hi, lo = pairs[:, 1].view(torch.int8), (pairs[:, 0] ^ 128).view(torch.int8)
    return hi.reshape(values.shape), lo.reshape(values.shape)


@dataclass(frozen=True)
class Gemm:
    """A weight matrix (M x K integers) ready for exact products: its int8 halves stacked with a row of
    ones, (2M + 1) x K, and 128 times its row sums (M x 1), the formula's last term."""

    stack: Tensor
    row_offsets: Tensor

    @classmethod
    def of(cls, weight: Tensor) -> Gemm:
        hi, lo = halves(weight)
        ones = torch.ones(1, weight.shape[1], dtype=torch.int8)
        return cls(torch.cat([hi, lo, ones]).contiguous(), weight.double().sum(1, keepdim=True) * 128)

    def band_columns(self) -> int:
        """How many GEMM columns one band takes: its int32 products stay near BAND_BYTES."""
        return max(64, BAND_BYTES // (8 * self.stack.shape[0]))

    def times(self, x_hi: Tensor, x_lo: Tensor, out: Tensor) -> Tensor:
        """``out`` (float64, M x N) set to the exact product with the K x N matrix whose halves are
        ``x_hi`` and ``x_lo``."""
        rows, n = self.row_offsets.shape[0], x_hi.shape[1]
        product = torch._int_mm(self.stack, torch.cat([x_hi, x_lo], dim=1))
        hh, hl = product[:rows, :n], product[:rows, n:]
        lh, ll = product[rows : 2 * rows, :n], product[rows : 2 * rows, n:]
        column_sums = product[-1, :n].double().mul_(256).add_(product[-1, n:]).mul_(128)
        out.copy_(hh).mul_(256).add_(hl.add_(lh)).mul_(256).add_(ll)
        return out.add_(column_sums[None, :]).add_(self.row_offsets)


def _columns(plane: Tensor, rows: int, cols: int, stride: int = 1) -> Tensor:
    """im2col of an int8 C x H x W plane for a rows x cols window: (C rows cols) x (H' W')."""
    channels = plane.shape[0]
    windows = plane.unfold(1, rows, stride).unfold(2, cols, stride)  # C, H', W', rows, cols
    return windows.permute(0, 3, 4, 1, 2).reshape(channels * rows * cols, -1)


def _padded(hi: Tensor, lo: Tensor, rows: int, cols: int) -> tuple[Tensor, Tensor]:
    """The halves of the input zero-padded by ``rows`` and ``cols``: a zero is hi 0, lo -128."""
    if not rows and not cols:
        return hi, lo
    pad = (cols, cols, rows, rows)
    return F.pad(hi, pad, value=0), F.pad(lo, pad, value=-128)


@dataclass(frozen=True)
class Conv:
    """A convolution (stride s, zero padding p) of integer weights, ready for exact int8 GEMMs."""

    gemm: Gemm
    shape: tuple[int, int, int, int]  # out, in, rows, cols
    stride: int
    padding: int

    @classmethod
    def of(cls, weight: Tensor, stride: int, padding: int) -> Conv:
        return cls(Gemm.of(weight.reshape(weight.shape[0], -1)), tuple(weight.shape), stride, padding)

    def __call__(self, hi: Tensor, lo: Tensor) -> Tensor:
        """The accumulator (no bias) of the convolution of the input given by its halves (C x H x W),
        computed in bands of output rows so that each band's columns and products stay small."""
        out, _, rows, cols = self.shape
        hi, lo = _padded(hi, lo, self.padding, self.padding)
        height = (hi.shape[1] - rows) // self.stride + 1
        width = (hi.shape[2] - cols) // self.stride + 1
        result = torch.empty(out, height, width, dtype=torch.float64)
        band = max(1, self.gemm.band_columns() // width)
        for top in range(0, height, band):
            bottom = min(top + band, height)
            first, last = top * self.stride, (bottom - 1) * self.stride + rows
            x_hi = _columns(hi[:, first:last], rows, cols, self.stride)
            x_lo = _columns(lo[:, first:last], rows, cols, self.stride)
            self.gemm.times(x_hi, x_lo, result[:, top:bottom].view(out, -1))
        return result


@dataclass(frozen=True)
class Deconv:
    """A transposed convolution (stride s, padding p, output padding) of integer weights (in x out x k x k),
    ready for exact int8 GEMMs: per output phase a stride-1 convolution, or one GEMM and col2im."""

    phases: tuple[tuple[int, int, Conv], ...]  # (row phase, column phase, its convolution)
    folded: Gemm | None  # (out k k) x in, for few output channels
    shape: tuple[int, int, int, int]  # in, out, rows, cols
    stride: int
    padding: int
    output_padding: int

    @classmethod
    def of(cls, weight: Tensor, stride: int, padding: int, output_padding: int) -> Deconv:
        channels_in, channels_out = weight.shape[:2]
        folded, phases = None, []
        if channels_out <= FOLD_MAX_CHANNELS:
            folded = Gemm.of(weight.reshape(channels_in, -1).t())
        else:
            for r in range(stride):
                for c in range(stride):
                    sub = weight[:, :, r::stride, c::stride].flip(2, 3).transpose(0, 1)
                    phases.append((r, c, Conv.of(sub, 1, 0)))
        return cls(tuple(phases), folded, tuple(weight.shape), stride, padding, output_padding)

    def __call__(self, hi: Tensor, lo: Tensor) -> Tensor:
        """The accumulator (no bias) of the transposed convolution of the input given by its halves."""
        _, out, rows, cols = self.shape
        height, width = hi.shape[1:]
        s = self.stride
        full_height, full_width = (height - 1) * s + rows, (width - 1) * s + cols
        if self.folded is not None:
            full = torch.zeros(out, full_height, full_width, dtype=torch.float64)
            band = max(1, self.folded.band_columns() // width)
            columns = torch.empty(out * rows * cols, band * width, dtype=torch.float64)
            for top in range(0, height, band):
                bottom = min(top + band, height)
                part = columns[:, : (bottom - top) * width]
                self.folded.times(hi[:, top:bottom].reshape(hi.shape[0], -1),
                                  lo[:, top:bottom].reshape(lo.shape[0], -1), part)  # fmt: skip
                span = (bottom - top - 1) * s + rows
                full[:, top * s : top * s + span] += F.fold(
                    part[None], (span, full_width), (rows, cols), stride=s
                )[0]
        else:
            full = torch.empty(out, full_height, full_width, dtype=torch.float64)
            for r, c, conv in self.phases:
                taps_r, taps_c = conv.shape[2:]
                full[:, r::s, c::s] = conv(*_padded(hi, lo, taps_r - 1, taps_c - 1))
        p, extra = self.padding, self.output_padding
        out_height, out_width = full_height - 2 * p + extra, full_width - 2 * p + extra
        result = full[:, p : p + out_height, p : p + out_width]
        missing_rows, missing_cols = out_height - result.shape[1], out_width - result.shape[2]
        return F.pad(result, (0, missing_cols, 0, missing_rows)) if missing_rows or missing_cols else result


@functools.cache
def available() -> bool:
    """Whether this process has exact, fast int8 GEMMs with int32 accumulation on the CPU: oneDNN with
    VNNI (vpdpbusd sums u8 x s8 products in int32). Without VNNI, oneDNN's AVX2 kernels sum pairs of
    products in saturating int16 (vpmaddubsw): a probe at the extremes, in both operand orders and at the
    programs' shapes, catches that, and lic then takes the float64 route (the same bits, slower)."""
    if sys.byteorder != "little":  # halves() reads the low byte of each 16-bit value first
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
