"""Exact integer evaluation of lic's decoder side, so a bitstream decodes to the same pixels everywhere.

A learned decoder in float32 gives slightly different numbers on another machine (thread count,
oneDNN or not, AVX2 or AVX-512, GPU with TF32); one predicted scale on the other side of a coding
table threshold desynchronises the range decoder. Here the hyper-synthesis (scale indexes and means)
and the synthesis run as integer programs: 16-bit weights with a power-of-two exponent per output
channel, 16-bit activations with a power-of-two exponent per tensor (saturating), integer biases, and
rounding after every layer. They are evaluated in float64, where every product and partial sum is an
integer below 2**53 (checked when the program is built), so any summation order, thread count, CPU or
GPU gives the same bits; the remaining element-wise steps (scaling by powers of two, the square root of
inverse GDN, rounding) are correctly rounded IEEE operations. The scale indexes come straight from
integer thresholds.

Program layout (what the weights file stores under ``integer``): ``h_s`` and ``g_s`` are lists of
stages, each a dict with ``op`` (conv, deconv or igdn) and integer tensors; plus the exponents of the
hyper-latent input, the means and the latent, the per-level inverse gains and, per channel, the
integer scale thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from itertools import pairwise

import torch
from compressai.layers import GDN
from torch import Tensor, nn
from torch.nn import functional as F

from bench.lic import exact_gemm

ACT_MAX = 2**15 - 1  # 16-bit signed activations
WEIGHT_MAX = 2**15 - 1  # 16-bit signed weights
EXACT = 2**53  # float64 holds every integer below this exactly
LEAK_NUMERATOR, LEAK_SHIFT = 41, 12  # LeakyReLU's slope 0.01 as the dyadic 41/4096
MEAN_EXPONENT = 12  # means and latents carry 12 fractional bits
GAIN_EXPONENT = 14
HEADROOM = 2.0  # activation ranges are the calibrated maximum times this
KEYS_2D = ("stride", "padding", "output_padding")
BAND_ELEMENTS = 1 << 17  # values per band of the element-wise steps on the CPU (1 MiB of float64)


class IntegerProgramError(ValueError):
    """A network that has no integer program here (a layer kind the programs do not cover)."""


def _fit_exponent(max_abs: float, limit: int) -> int:
    """The largest exponent e with max_abs * 2**e <= limit."""
    if max_abs <= 0:
        return 0
    return math.floor(math.log2(limit / max_abs))


def _pow2(exponents: Tensor) -> Tensor:
    return torch.pow(2.0, exponents.double())


def _channel_shape(values: Tensor) -> Tensor:
    """Per-channel values shaped to broadcast over B x C x H x W."""
    return values.reshape(1, -1, 1, 1)


def _quantise_weights(
    weight: Tensor, bias: Tensor | None, in_exponent: int, out_axis: int, in_max: int = ACT_MAX
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-output-channel 16-bit weights, integer biases and accumulator exponents, bound checked."""
    weight = weight.detach().double()
    channels = weight.shape[out_axis]
    per_channel = weight.transpose(0, out_axis).reshape(channels, -1)
    bias = torch.zeros(channels, dtype=torch.float64) if bias is None else bias.detach().double()
    exponents = []
    for c in range(channels):
        exponent = _fit_exponent(per_channel[c].abs().max().item(), WEIGHT_MAX)
        while True:
            q = torch.round(per_channel[c] * 2.0**exponent)
            b = round(bias[c].item() * 2.0 ** (exponent + in_exponent))
            if q.abs().sum().item() * in_max + abs(b) < EXACT:
                break
            exponent -= 1
        exponents.append(exponent)
    w_exp = torch.tensor(exponents, dtype=torch.int64)
    scale = _pow2(w_exp).reshape(-1, *([1] * (weight.dim() - 1)))
    q_weight = torch.round(weight.transpose(0, out_axis) * scale).transpose(0, out_axis)
    q_bias = torch.round(bias * _pow2(w_exp + in_exponent))
    return q_weight.to(torch.int16), q_bias.to(torch.int64), w_exp + in_exponent


def _saturate(values: Tensor) -> Tensor:
    return torch.clamp(torch.round(values), -ACT_MAX, ACT_MAX)


def _linear(
    stage: dict, x: Tensor, finish: exact_gemm.Finish | None = None, out_pad: int | None = None
) -> Tensor:
    """The exact integer accumulator plus bias of a conv or deconv stage (float64 holding integers),
    ``finish`` applied in place to each image's channels x values: through the stage's int8 GEMMs where
    the program has them (bench.lic.exact_gemm; there ``x`` may be a batch of input planes, and
    ``out_pad`` asks for the next stage's planes), else float64 convolutions."""
    if "gemm" in stage and x.device.type == "cpu":
        images = [stage["gemm"](image, finish, out_pad) for image in x]
        return images[0][None] if len(images) == 1 else torch.stack(images)
    bias, weight = stage["bias"].to(x.device, torch.float64), stage["weight"].to(x.device, torch.float64)
    if stage["op"] == "conv":
        acc = F.conv2d(x, weight, bias, stride=stage["stride"], padding=stage["padding"])
    else:
        acc = F.conv_transpose2d(
            x,
            weight,
            bias,
            stride=stage["stride"],
            padding=stage["padding"],
            output_padding=stage["output_padding"],
        )
    if finish is not None:
        for image in acc:
            _in_bands(image.view(image.shape[0], -1), finish)
    return acc


def _in_bands(values: Tensor, finish: exact_gemm.Finish) -> None:
    """``finish`` on bands of columns of ``values`` (channels x pixels) on the CPU, so that its temporary
    tensors stay in cache (the same values, several times faster); at once elsewhere."""
    if values.device.type != "cpu":
        finish(values)
        return
    columns = max(1, BAND_ELEMENTS // values.shape[0])
    for start in range(0, values.shape[1], columns):
        finish(values[:, start : start + columns])


def rescale(acc: Tensor, acc_exponent: Tensor, out_exponent: int) -> Tensor:
    return acc * _channel_shape(_pow2(out_exponent - acc_exponent.to(acc.device)))


def run_stages(stages: list[dict], x: Tensor, in_exponent: int) -> tuple[Tensor, Tensor]:
    """Evaluate the stages on integer input (float64); the last stage's raw accumulator and exponents.
    Each stage's activation, and the inverse GDN that follows it, run inside it as its ``finish``, on
    values still in cache."""
    with torch.backends.cudnn.flags(enabled=False):  # plain im2col + GEMM on CUDA; oneDNN has no float64
        steps = _with_finishes(stages, in_exponent, x.device)
        for (stage, finish), (following, _) in pairwise(steps):
            x = _linear(stage, x, finish, _input_pad(following, x.device))
        last = steps[-1][0]
        return _linear(last, x), last["acc_exponent"]


def _input_pad(stage: dict, device: torch.device) -> int | None:
    """The padding of the input plane a stage's int8 GEMMs take, where they run; else None."""
    return stage["gemm"].pad if "gemm" in stage and device.type == "cpu" else None


def _with_finishes(stages: list[dict], in_exponent: int, device: torch.device) -> list[tuple[dict, Callable]]:
    """Each conv or deconv stage with what follows its accumulator: its activation, then the inverse GDNs
    after it."""
    steps = []
    for stage in stages:
        if stage["op"] == "igdn":
            if not steps:
                raise IntegerProgramError("an integer program must start with a conv or deconv stage")
            linear, finish = steps[-1]
            steps[-1] = (linear, _chain(finish, _igdn(stage, in_exponent, device)))
        else:
            steps.append((stage, partial(_activation, stage)))
        in_exponent = stage["out_exponent"]
    if stages[-1]["op"] == "igdn":
        raise IntegerProgramError("an integer program must end with a conv or deconv stage")
    return steps


def _chain(first: exact_gemm.Finish, then: exact_gemm.Finish) -> exact_gemm.Finish:
    return lambda values: then(first(values))


def _activation(stage: dict, acc: Tensor) -> Tensor:
    """In place, a conv or deconv stage's accumulator (channels x values) as its 16-bit output: rescaled,
    leaky where it is (x 41/4096, a single correctly rounded product), saturated."""
    acc.mul_(_pow2(stage["out_exponent"] - stage["acc_exponent"].to(acc.device))[:, None])
    if stage["leaky"]:
        F.leaky_relu(acc, LEAK_NUMERATOR * 2.0**-LEAK_SHIFT, inplace=True)
    return acc.round_().clamp_(-ACT_MAX, ACT_MAX)


def _igdn(stage: dict, in_exponent: int, device: torch.device) -> exact_gemm.Finish:
    """Inverse GDN, in place on 16-bit values (channels x pixels): each times the rounded square root of
    (gamma x^2 + beta), rescaled and saturated. gamma and beta carry the root's power-of-two scale, so
    the scaled norm is one exact GEMM."""
    shift = _pow2(2 * stage["root_exponent"] - stage["gamma_exponent"].to(device) - 2 * in_exponent)
    gamma = stage["gamma"].to(device, torch.float64) * shift[:, None]
    beta = (stage["beta"].to(device, torch.float64) * shift)[:, None]
    factor = 2.0 ** (stage["out_exponent"] - in_exponent - stage["root_exponent"])

    def igdn(values: Tensor) -> Tensor:
        # a 1 x 1 convolution as one float64 GEMM (BLAS), every partial sum a scaled integer below 2**53
        root = torch.addmm(beta, gamma, values * values).sqrt_().round_()
        return values.mul_(root).mul_(factor).round_().clamp_(-ACT_MAX, ACT_MAX)

    return igdn


def on_device(program: dict, device: str | torch.device) -> dict:
    """The program with every tensor as float64 on ``device``, ready for run_stages."""
    if isinstance(program, dict):
        return {k: on_device(v, device) for k, v in program.items()}
    if isinstance(program, list):
        return [on_device(v, device) for v in program]
    return program.to(device, torch.float64) if isinstance(program, Tensor) else program


def with_gemms(program: dict) -> dict:
    """The program (on the CPU) with each conv and deconv stage that has an int8 GEMM form (stride-1
    convolutions, transposed convolutions with output padding at most their padding, square) holding it
    under ``gemm``: the same accumulators, bit for bit, several times faster (bench.lic.exact_gemm)."""
    prepared = dict(program)
    for part in ("h_s", "g_s"):
        if part in program:
            prepared[part] = [
                dict(stage, gemm=_gemm_of(stage)) if _has_gemm_form(stage) else stage
                for stage in program[part]
            ]
    return prepared


def _has_gemm_form(stage: dict) -> bool:
    if stage["op"] == "igdn" or not all(len(set(stage.get(key, (0,)))) == 1 for key in KEYS_2D):
        return False
    if stage["op"] == "conv":
        return stage["stride"][0] == 1
    return stage["output_padding"][0] <= stage["padding"][0]


def _gemm_of(stage: dict) -> exact_gemm.Conv | exact_gemm.Deconv:
    weight, bias = stage["weight"].to("cpu", torch.float64), stage["bias"].to("cpu", torch.float64)
    (stride, _), (padding, _) = stage["stride"], stage["padding"]
    if stage["op"] == "conv":
        return exact_gemm.Conv.of(weight, bias, padding)
    return exact_gemm.Deconv.of(weight, bias, stride, padding, stage["output_padding"][0])


def to_integer(values: Tensor, exponent: int) -> Tensor:
    """Float values as saturated 16-bit integers with ``exponent`` fractional bits (float64)."""
    return _saturate(values.double() * 2.0**exponent)


# --- building a program from a float model (at export) ---


def _stages_of(sequential: nn.Sequential) -> list[tuple[nn.Module, bool]]:
    """(layer, followed by LeakyReLU) for each conv, deconv and GDN of a Sequential."""
    layers = list(sequential)
    stages = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.LeakyReLU):
            if not stages or layer.negative_slope != 0.01:
                raise IntegerProgramError("only LeakyReLU(0.01) after a convolution is supported")
            continue
        if not isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | GDN):
            raise IntegerProgramError(f"no integer form for {type(layer).__name__}")
        if isinstance(layer, GDN) and not layer.inverse:
            raise IntegerProgramError("only inverse GDN is supported in a synthesis")
        leaky = i + 1 < len(layers) and isinstance(layers[i + 1], nn.LeakyReLU)
        stages.append((layer, leaky))
    return stages


def _gdn_parameters(layer: GDN) -> tuple[Tensor, Tensor]:
    beta = layer.beta_reparam(layer.beta).detach().double()
    gamma = layer.gamma_reparam(layer.gamma).detach().double()
    return gamma.reshape(beta.numel(), beta.numel()), beta


def _float_linear(layer: nn.Conv2d | nn.ConvTranspose2d, x: Tensor) -> Tensor:
    weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
    if isinstance(layer, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, weight, bias, layer.stride, layer.padding, layer.output_padding)
    return F.conv2d(x, weight, bias, layer.stride, layer.padding)


def _calibrate(sequential: nn.Sequential, inputs: Iterable[Tensor]) -> list[dict[str, float]]:
    """Per stage, the largest |output| (and, for GDN, the largest square root) on float inputs."""
    stages = _stages_of(sequential)
    ranges = [{"out": 0.0, "root": 0.0} for _ in stages]
    with torch.no_grad():
        for x in inputs:
            x = x.double()
            for (layer, leaky), seen in zip(stages, ranges, strict=True):
                if isinstance(layer, GDN):
                    gamma, beta = _gdn_parameters(layer)
                    root = torch.sqrt(F.conv2d(x * x, gamma[:, :, None, None], beta))
                    seen["root"] = max(seen["root"], root.abs().max().item())
                    x = x * root
                else:
                    x = _float_linear(layer, x)
                    if leaky:
                        x = F.leaky_relu(x, 0.01)
                seen["out"] = max(seen["out"], x.abs().max().item())
    return ranges


def build_stages(sequential: nn.Sequential, inputs: list[Tensor], in_exponent: int) -> list[dict]:
    """The integer program of a Sequential, its activation ranges calibrated on ``inputs``."""
    stages = []
    for (layer, leaky), seen in zip(_stages_of(sequential), _calibrate(sequential, inputs), strict=True):
        out_exponent = _fit_exponent(seen["out"] * HEADROOM, ACT_MAX)
        if isinstance(layer, GDN):
            gamma, beta = _gdn_parameters(layer)
            q_gamma, q_beta, acc_exponent = _quantise_weights(gamma, beta, 2 * in_exponent, 0, ACT_MAX**2)
            stages.append(
                {
                    "op": "igdn",
                    "gamma": q_gamma,
                    "beta": q_beta,
                    "gamma_exponent": acc_exponent - 2 * in_exponent,
                    "root_exponent": _fit_exponent(seen["root"] * HEADROOM, ACT_MAX),
                    "out_exponent": out_exponent,
                }
            )
        else:
            transposed = isinstance(layer, nn.ConvTranspose2d)
            weight, bias, acc_exponent = _quantise_weights(
                layer.weight, layer.bias, in_exponent, int(transposed)
            )
            stage = {
                "op": "deconv" if transposed else "conv",
                "weight": weight,
                "bias": bias,
                "acc_exponent": acc_exponent,
                "out_exponent": out_exponent,
                "stride": layer.stride,
                "padding": layer.padding,
                "leaky": leaky,
            }
            if transposed:
                stage["output_padding"] = layer.output_padding
            stages.append(stage)
        in_exponent = out_exponent
    return stages


def accumulator_bound(program: dict) -> float:
    """The largest worst-case |accumulator| of any stage of the program (must stay below 2**53)."""
    bounds = []
    for part in ("h_s", "g_s"):
        for stage in program.get(part, []):
            if stage["op"] == "igdn":
                weight, bias, in_max = stage["gamma"], stage["beta"], ACT_MAX**2
            else:
                weight, bias, in_max = stage["weight"], stage["bias"], ACT_MAX
                weight = weight.transpose(0, 1) if stage["op"] == "deconv" else weight
            per_channel = weight.double().abs().flatten(1).sum(1) * in_max + bias.double().abs()
            bounds.append(per_channel.max().item())
    return max(bounds)


def scale_thresholds(scale_table: Tensor, acc_exponent: Tensor) -> Tensor:
    """Per channel, the integer accumulators at or below which a scale falls under each table entry."""
    table = scale_table[:-1].double()[None, :]
    return torch.floor(table * _pow2(acc_exponent)[:, None]).to(torch.int64)


def scale_indexes(acc: Tensor, thresholds: Tensor) -> Tensor:
    """compressai's build_indexes on integer accumulators: per channel, how many thresholds lie below."""
    thresholds = thresholds.to(acc.device, torch.float64)  # ascending along each channel
    channels_first = acc.transpose(0, 1).reshape(acc.shape[1], -1)
    below = torch.searchsorted(thresholds.contiguous(), channels_first)  # how many thresholds are < acc
    indexes = below.to(torch.int32).reshape(acc.shape[1], acc.shape[0], *acc.shape[2:])
    return indexes.transpose(0, 1).contiguous()


def exponent_for(values: Iterable[Tensor]) -> int:
    """The activation exponent that fits the largest |value| (times the headroom) in 16 bits."""
    return _fit_exponent(max(v.abs().max().item() for v in values) * HEADROOM, ACT_MAX)


def quantised_gains(log_inverse_gain: Tensor) -> Tensor:
    """Per level and channel, the inverse gains as integers with GAIN_EXPONENT fractional bits."""
    return torch.round(torch.exp(log_inverse_gain.detach().double()) * 2.0**GAIN_EXPONENT).to(torch.int64)


def latent_to_synthesis_input(
    symbols: Tensor, means: Tensor, inverse_gain: Tensor, latent_exponent: int
) -> Tensor:
    """(symbols + means) x inverse gain as the synthesis' 16-bit input; means carry MEAN_EXPONENT bits."""
    y = torch.clamp(symbols.double(), -(2**24), 2**24) * 2.0**MEAN_EXPONENT + means
    scaled = y * _channel_shape(inverse_gain.to(y.device, torch.float64))
    return _saturate(scaled * 2.0 ** (latent_exponent - MEAN_EXPONENT - GAIN_EXPONENT))


def to_pixels(acc: Tensor, acc_exponent: Tensor) -> Tensor:
    """The synthesis' last accumulator as 8-bit pixels (value 1.0 is 255)."""
    values = acc * 255 * _channel_shape(_pow2(-acc_exponent.to(acc.device)))
    return torch.clamp(torch.round(values), 0, 255).to(torch.uint8)
