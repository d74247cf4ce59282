"""lic's networks: variable-rate factorized-prior and mean-scale hyperprior autoencoders.

Built on compressai's layers and entropy models. One set of weights serves a ladder of rates: the
latent is multiplied by a learned per-channel gain vector for the chosen rate before quantisation
and by a learned inverse gain before synthesis (the "gained" variable-rate scheme of Cui et al. 2021),
and training draws the rate (and so the lambda) per batch.

Imports only torch and compressai (bench.lic must run where the codec libraries are not installed).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn
from torch.nn import functional as F

from bench.lic import integer, tiles

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


Check = Callable[[str, Tensor], None]


def _no_check(name: str, values: Tensor) -> None:
    """The default ``check`` of decompress: accept every integer map."""


def in_float32(entropy_model: nn.Module, *inputs: Tensor, **named: Tensor):
    """Call an entropy model on float32 inputs with autocast off: its likelihoods, and so the rate, stay
    float32 wherever training runs the transforms in bfloat16."""
    with torch.autocast(inputs[0].device.type, enabled=False):
        return entropy_model(*(t.float() for t in inputs), **{k: v.float() for k, v in named.items()})


class GainedModel(CompressionModel):
    """Shared parts: the transforms, the per-rate gains on the latent, and the coding steps.

    ``program`` (set by bench.lic.weights.load) is the exact integer decoder side; without it the
    decoder side runs in float, which is faster but may decode differently on another machine. With
    ``float_synthesis`` the scale path stays exact (every machine decodes the same symbols) and only the
    synthesis runs in float32 (pixels may differ by a grey level across machines).
    """

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
        self.program: dict | None = None
        self.float_synthesis = False
        self.tile_budget = tiles.BUDGET  # bytes for one tile of the synthesis (bench.lic.tiles)

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

    def latent(self, x: Tensor, level: int) -> Tensor:
        """The gained latent of padded images ``x`` at a rate level (float, encoder side)."""
        gain, _ = self.gains(torch.tensor([level], device=x.device))
        return self.g_a(x) * gain

    def synthesis(self, symbols: Tensor, means: Tensor, level: int) -> Tensor:
        """8-bit pixels (B x 3 x H x W) from the latent symbols and their means, in tiles whose memory
        stays within ``tile_budget`` bytes (bench.lic.tiles: the same pixels as one whole-image call)."""
        synthesis = partial(self._synthesis, level=level)
        return tiles.run(synthesis, (symbols, means), self.g_s, self.tile_route("g_s"), self.tile_budget)

    def tile_route(self, part: str) -> str:
        """How the convolutions of ``part`` (g_s or h_s) run, one of bench.lic.tiles.ROUTES."""
        if self.program is None or (part == "g_s" and self.float_synthesis):
            return "float32"
        return "int8" if "gemm" in self.program[part][0] else "float64"

    def _synthesis(self, symbols: Tensor, means: Tensor, level: int) -> Tensor:
        if self.program is None or self.float_synthesis:
            _, inverse = self.gains(torch.tensor([level], device=symbols.device))
            x_hat = self.g_s(((symbols + means) * inverse).float()).clamp(0, 1)
            return torch.round(x_hat * 255).to(torch.uint8)
        program = self.program
        x = integer.latent_to_synthesis_input(
            symbols,
            means * 2.0**integer.MEAN_EXPONENT,
            program["inverse_gain"][level],
            program["latent_exponent"],
        )
        acc, exponent = integer.run_stages(program["g_s"], x, program["latent_exponent"])
        return integer.to_pixels(acc, exponent)

    def build_program(self, images: list[Tensor]) -> dict:
        """The exact integer decoder side, activation ranges calibrated on ``images`` at every level."""
        with torch.no_grad():
            means, inputs = self._calibration_latents(images)
            latent_exponent = integer.exponent_for(inputs)
            return means | {
                "version": 1,
                "g_s": integer.build_stages(self.g_s, inputs, latent_exponent),
                "latent_exponent": latent_exponent,
                "inverse_gain": integer.quantised_gains(self.log_inverse_gain),
            }

    def _calibration_latents(self, images: list[Tensor]) -> tuple[dict, list[Tensor]]:
        """The architecture's own program parts, and the synthesis inputs seen on ``images``."""
        raise NotImplementedError

    def compress(self, x: Tensor, level: int) -> tuple[list[bytes], Tensor, Tensor]:
        """The coded streams, the integer symbols and the scale index map (empty when none)."""
        raise NotImplementedError

    def decompress(
        self, strings: list[bytes], level: int, size: tuple[int, int], check: Check = _no_check
    ) -> Tensor:
        """8-bit pixels; ``check(name, integer_map)`` sees the index map and the symbols as they are decoded."""
        raise NotImplementedError

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
        y_hat, y_likelihoods = in_float32(self.entropy_bottleneck, y)
        return {"x_hat": self.g_s(y_hat * inverse), "likelihoods": {"y": y_likelihoods}}

    def _medians(self) -> Tensor:
        """The latent's per-channel medians (B x M x 1 x 1); in the integer program, on its 12-bit grid."""
        if self.program is None:
            return self.entropy_bottleneck._get_medians().detach().double()
        return self.program["medians"][None, :, None, None] * 2.0**-integer.MEAN_EXPONENT

    def _calibration_latents(self, images: list[Tensor]) -> tuple[dict, list[Tensor]]:
        medians = self.entropy_bottleneck._get_medians().detach().double()
        inputs = []
        for x in images:
            for level in range(self.levels):
                _, inverse = self.gains(torch.tensor([level]))
                inputs.append((torch.round(self.latent(x, level) - medians) + medians) * inverse)
        q_medians = torch.round(medians.flatten() * 2.0**integer.MEAN_EXPONENT).to(torch.int64)
        return {"medians": q_medians}, inputs

    def compress(self, x: Tensor, level: int) -> tuple[list[bytes], Tensor, Tensor]:
        y = self.latent(x, level)
        symbols = torch.round(y.double() - self._medians())
        strings = self.entropy_bottleneck.compress((symbols + self.entropy_bottleneck._get_medians()).float())
        return strings, symbols.to(torch.int32), torch.empty(0, dtype=torch.int32)

    def decompress(
        self, strings: list[bytes], level: int, size: tuple[int, int], check: Check = _no_check
    ) -> Tensor:
        eb = self.entropy_bottleneck
        symbols = torch.round(eb.decompress([strings[0]], size).double() - eb._get_medians().double())
        check("symbols", symbols.to(torch.int32))
        return self.synthesis(symbols, self._medians(), level)


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
        z_hat, z_likelihoods = in_float32(self.entropy_bottleneck, self.h_a(y))
        scales, means = self.h_s(z_hat).chunk(2, 1)
        y_hat, y_likelihoods = in_float32(self.gaussian_conditional, y, scales, means=means)
        return {"x_hat": self.g_s(y_hat * inverse), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def scale_path(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Coding-table indexes and means (float64) of the latent from the decoded hyper-latent."""
        if self.program is None:
            scales, means = self.h_s(z_hat).chunk(2, 1)
            return self.gaussian_conditional.build_indexes(scales), means.double()
        return tiles.run(self._exact_scale_path, (z_hat,), self.h_s, self.tile_route("h_s"), self.tile_budget)

    def _exact_scale_path(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        program = self.program
        x = integer.to_integer(z_hat, program["z_exponent"])
        acc, exponent = integer.run_stages(program["h_s"], x, program["z_exponent"])
        scales, means = acc.chunk(2, 1)
        mean_exponent = exponent[self.m :]
        means = torch.round(integer.rescale(means, mean_exponent, integer.MEAN_EXPONENT))
        return integer.scale_indexes(scales, program["thresholds"]), means * 2.0**-integer.MEAN_EXPONENT

    def _calibration_latents(self, images: list[Tensor]) -> tuple[dict, list[Tensor]]:
        eb = self.entropy_bottleneck
        z_hats, inputs = [], []
        for x in images:
            for level in range(self.levels):
                y = self.latent(x, level)
                z_hat = eb.quantize(self.h_a(y), "dequantize", eb._get_medians())
                _, means = self.h_s(z_hat).chunk(2, 1)
                _, inverse = self.gains(torch.tensor([level]))
                z_hats.append(z_hat)
                inputs.append((torch.round(y - means) + means) * inverse)
        z_exponent = integer.exponent_for(z_hats)
        h_s = integer.build_stages(self.h_s, z_hats, z_exponent)
        scale_exponent = h_s[-1]["acc_exponent"][: self.m]
        thresholds = integer.scale_thresholds(self.gaussian_conditional.scale_table, scale_exponent)
        return {"h_s": h_s, "z_exponent": z_exponent, "thresholds": thresholds}, inputs

    def compress(self, x: Tensor, level: int) -> tuple[list[bytes], Tensor, Tensor]:
        y = self.latent(x, level)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        indexes, means = self.scale_path(z_hat)
        symbols = torch.round(y.double() - means)
        y_strings = self.gaussian_conditional.compress(symbols.float(), indexes)
        return [z_strings[0], y_strings[0]], symbols.to(torch.int32), indexes

    def decompress(
        self, strings: list[bytes], level: int, size: tuple[int, int], check: Check = _no_check
    ) -> Tensor:
        z_hat = self.entropy_bottleneck.decompress([strings[0]], size)
        indexes, means = self.scale_path(z_hat)
        check("indexes", indexes)
        symbols = self.gaussian_conditional.decompress([strings[1]], indexes).double()
        check("symbols", symbols.to(torch.int32))
        return self.synthesis(symbols, means, level)


ARCHITECTURES: dict[str, type[GainedModel]] = {"factorized": Factorized, "hyperprior": Hyperprior}


def build(architecture: str, n: int = 128, m: int = 192, levels: int = len(MSE_LADDER)) -> GainedModel:
    try:
        return ARCHITECTURES[architecture](n, m, levels)
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}"
        ) from None
