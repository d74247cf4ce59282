"""lic's networks: variable-rate factorized-prior and mean-scale hyperprior autoencoders.

Built on compressai's layers and entropy models. One set of weights serves a ladder of rates: the
latent is multiplied by a learned per-channel gain vector for the chosen rate before quantisation
and by a learned inverse gain before synthesis (the "gained" variable-rate scheme of Cui et al. 2021),
and training draws the rate (and so the lambda) per batch.

Imports only torch and compressai (bench.lic must run where the codec libraries are not installed).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn
from torch.nn import functional as F

# CompressAI's 8 MSE lambdas for its mbt2018 models (about 0.1 to 2 bpp on Kodak).
MSE_LADDER = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


def analysis(n: int, m: int) -> nn.Sequential:
    """Four stride-2 5x5 convolutions with GDN: image -> latent at 1/16 resolution."""
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis(n: int, m: int) -> nn.Sequential:
    """Four stride-2 5x5 transposed convolutions with inverse GDN: latent -> image."""
    return nn.Sequential(
        deconv(m, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, 3),
    )


class GainedModel(CompressionModel):
    """Shared parts: the transforms and the per-rate gains on the latent."""

    architecture = ""
    downsampling = 16  # how many pixels one latent position covers, per side

    def __init__(self, n: int = 128, m: int = 192, levels: int = len(MSE_LADDER)):
        super().__init__()
        self.n, self.m, self.levels = n, m, levels
        self.g_a = analysis(n, m)
        self.g_s = synthesis(n, m)
        # log-gains, initialised so that higher levels quantise finer from the start
        start = torch.linspace(-1.5, 1.0, levels)[:, None].repeat(1, m)
        self.log_gain = nn.Parameter(start.clone())
        self.log_inverse_gain = nn.Parameter(-start.clone())

    def pad(self, x: Tensor) -> Tensor:
        """Replicate the bottom and right edges up to a multiple of ``downsampling``."""
        height, width = x.shape[-2:]
        step = self.downsampling
        return F.pad(x, (0, -width % step, 0, -height % step), mode="replicate")

    def gains(self, level: Tensor) -> tuple[Tensor, Tensor]:
        """Gain and inverse gain for a level per batch element, shaped B x M x 1 x 1."""
        return (
            torch.exp(self.log_gain[level])[:, :, None, None],
            torch.exp(self.log_inverse_gain[level])[:, :, None, None],
        )

    def config(self) -> dict[str, int | str]:
        return {"architecture": self.architecture, "n": self.n, "m": self.m, "levels": self.levels}


class Factorized(GainedModel):
    """Ballé et al. 2018's factorized prior, with a gained latent for variable rate."""

    architecture = "factorized"

    def __init__(self, n: int = 128, m: int = 192, levels: int = len(MSE_LADDER)):
        super().__init__(n, m, levels)
        self.entropy_bottleneck = EntropyBottleneck(m)

    def forward(self, x: Tensor, level: Tensor) -> dict:
        gain, inverse = self.gains(level)
        y = self.g_a(x) * gain
        y_hat, y_likelihoods = self.entropy_bottleneck(y)
        return {"x_hat": self.g_s(y_hat * inverse), "likelihoods": {"y": y_likelihoods}}

    def compress(self, x: Tensor, level: int) -> tuple[list[bytes], Tensor]:
        """The coded streams and the integer symbols (for the checksum)."""
        gain, _ = self.gains(torch.tensor([level], device=x.device))
        y = self.g_a(x) * gain
        eb = self.entropy_bottleneck
        medians = eb._get_medians().detach()
        symbols = eb.quantize(y, "symbols", medians)
        return [eb.compress(y)[0]], symbols

    def decompress(self, strings: list[bytes], level: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Reconstruction and the decoded integer symbols."""
        eb = self.entropy_bottleneck
        y_hat = eb.decompress([strings[0]], size)
        symbols = torch.round(y_hat - eb._get_medians().detach()).to(torch.int32)
        _, inverse = self.gains(torch.tensor([level], device=y_hat.device))
        return self.g_s(y_hat * inverse).clamp(0, 1), symbols


class Hyperprior(GainedModel):
    """Minnen et al. 2018's mean-scale hyperprior (no autoregressive context), gained latent."""

    architecture = "hyperprior"
    downsampling = 64

    def __init__(self, n: int = 128, m: int = 192, levels: int = len(MSE_LADDER)):
        super().__init__(n, m, levels)
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional(None)
        self.h_a = nn.Sequential(
            conv(m, n, stride=1, kernel_size=3),
            nn.LeakyReLU(inplace=True),
            conv(n, n),
            nn.LeakyReLU(inplace=True),
            conv(n, n),
        )
        self.h_s = nn.Sequential(
            deconv(n, m),
            nn.LeakyReLU(inplace=True),
            deconv(m, m * 3 // 2),
            nn.LeakyReLU(inplace=True),
            conv(m * 3 // 2, m * 2, stride=1, kernel_size=3),
        )

    def forward(self, x: Tensor, level: Tensor) -> dict:
        gain, inverse = self.gains(level)
        y = self.g_a(x) * gain
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        scales, means = self.h_s(z_hat).chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        return {"x_hat": self.g_s(y_hat * inverse), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: Tensor, level: int) -> tuple[list[bytes], Tensor]:
        gain, _ = self.gains(torch.tensor([level], device=x.device))
        y = self.g_a(x) * gain
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        symbols = self.gaussian_conditional.quantize(y, "symbols", means)
        return [z_strings[0], y_strings[0]], symbols

    def decompress(self, strings: list[bytes], level: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        z_hat = self.entropy_bottleneck.decompress([strings[0]], size)
        scales, means = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_hat = self.gaussian_conditional.decompress([strings[1]], indexes, means=means)
        symbols = torch.round(y_hat - means).to(torch.int32)
        _, inverse = self.gains(torch.tensor([level], device=y_hat.device))
        return self.g_s(y_hat * inverse).clamp(0, 1), symbols


ARCHITECTURES: dict[str, type[GainedModel]] = {"factorized": Factorized, "hyperprior": Hyperprior}


def build(architecture: str, n: int = 128, m: int = 192, levels: int = len(MSE_LADDER)) -> GainedModel:
    try:
        return ARCHITECTURES[architecture](n, m, levels)
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}"
        ) from None
