"""JPEG AI's seven metrics (bench/jpegai_metrics.py) against independent truth: values of the field's
reference pair (kodim01 vs Pillow's quality-50 JPEG of it) from JPEG AI's own code and the packages it runs,
the padding of small images, identical images, sizes without a value."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from bench import jpegai_metrics, measures, tool_metrics
from tests.conftest import skip_or_fail

JPEGAI = ["ms_ssim_y10", "vifp", "fsim", "nlpd", "iw_ssim", "vmaf_yuv10", "psnr_hvs_y10"]


@pytest.fixture(scope="module")
def libvmaf() -> None:
    reason = tool_metrics.vmaf_unavailable()
    if reason:
        skip_or_fail(reason)


@pytest.fixture(scope="module")
def crop(kodim01_q50) -> tuple[np.ndarray, np.ndarray]:
    """A 70 x 50 crop of the reference pair (rows 200-249, columns 300-369): under every padded size."""
    return tuple(image[200:250, 300:370] for image in kodim01_q50)


def jpegai_data(image: np.ndarray):
    """JPEG AI's DataClass.load_image at 10 bits, written anew in torch float32 as JPEG AI computes it:
    RGB and Y, U, V in [0, 1], each 1 x 1 x H x W."""
    import torch

    rgb = torch.tensor(image.astype(np.int32), dtype=torch.float).permute(2, 0, 1)[None] / 255
    rgb = (rgb * 1023).round() / 1023
    red, green, blue = rgb[:, :1], rgb[:, 1:2], rgb[:, 2:]
    y = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    yuv = torch.cat([y, (blue - y) / 1.8556 + 0.5, (red - y) / 1.5748 + 0.5], dim=1).clamp(0, 1)
    return rgb, ((yuv * 1023).round() / 1023).split(1, dim=1)


def zero_padded(tensor, side: int):
    import torch.nn.functional as F

    height, width = tensor.shape[-2:]
    return F.pad(tensor, (0, max(side - width, 0), 0, max(side - height, 0)))


def ms_ssim_as_jpegai(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """pytorch-msssim called as JPEG AI's MSSSIMTorch calls it."""
    from pytorch_msssim import ms_ssim

    y = [zero_padded(jpegai_data(image)[1][0] * 1023, 164) for image in (reference, reconstruction)]
    return float(ms_ssim(*y, data_range=1023))


def psnr_hvs_as_jpegai(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """psnr_hvsm's NumPy backend on the Y planes in [0, 1], padded to a multiple of 8 by replication."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import psnr_hvsm
    planes = []
    for image in (reference, reconstruction):
        y = jpegai_data(image)[1][0][0, 0].numpy().astype(np.float64)
        planes.append(np.pad(y, ((0, -y.shape[0] % 8), (0, -y.shape[1] % 8)), mode="edge"))
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(psnr_hvsm.BACKENDS["numpy"]["psnr_hvs_hvsm"](*planes)[0])


def vmaf_as_jpegai(reference: np.ndarray, reconstruction: np.ndarray, folder) -> float:
    """libvmaf (VMAF v0.6.1) run here on 10-bit little-endian 4:4:4 files written here, as JPEG AI runs
    the vmaf tool on the files of its DataClass.write_yuv."""
    import imageio_ffmpeg

    height, width = reference.shape[:2]
    for name, image in (("ref.yuv", reference), ("dist.yuv", reconstruction)):
        planes = jpegai_data(image)[1]
        samples = np.concatenate([(plane * 1023).round().numpy().astype("<u2").ravel() for plane in planes])
        (folder / name).write_bytes(samples.tobytes())
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv444p10le", "-s", f"{width}x{height}", "-i"]
    vmaf = f"libvmaf=model='version=vmaf_v0.6.1':log_fmt=json:log_path={folder / 'log.json'}"
    argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error"]
    argv += [*raw, str(folder / "dist.yuv"), *raw, str(folder / "ref.yuv"), "-lavfi", f"[0:v][1:v]{vmaf}"]
    subprocess.run([*argv, "-f", "null", "-"], check=True, capture_output=True, timeout=120)
    return json.loads((folder / "log.json").read_text())["frames"][0]["metrics"]["vmaf"]


def test_the_jpegai_group_is_jpeg_ais_seven_metrics_none_by_default():
    assert measures.groups()["jpegai"] == JPEGAI
    assert not set(JPEGAI) & set(measures.groups()["default"])
    assert "psnr_hvs_y10" in measures.groups()["hvs"]
    labels = {name: measures.all_metrics()[name].label for name in JPEGAI}
    assert [name for name, label in labels.items() if "approximate" in label] == ["nlpd"]


def test_fsim_vifp_and_nlpd_of_kodim01_against_pillow_q50_jpeg(kodim01_q50):
    """What JPEG AI's own calls give on its 10-bit planes (metrics.py classes FSIM_IQA, VIF_IQA, NLPD_IQA):
    FSIM 0.9904489 (its IQA_pytorch FSIM copy; piq gives 0.9904486), VIF 0.5005552 (IQA_pytorch 0.1's VIFs;
    piq's vif_p 0.5005553), NLPD 0.1457742 (IQA_pytorch 0.1's NLPD; the published 0.1456 to 1e-3). piq on the
    8-bit RGB gives FSIM 0.99046, on the unrounded luma VIFp 0.500833: not what JPEG AI computes."""
    row = measures.compute(["fsim", "vifp", "nlpd"], *kodim01_q50)
    assert row["fsim"] == pytest.approx(0.9904488921, abs=1e-5)
    assert row["vifp"] == pytest.approx(0.5005552173, abs=1e-5)
    assert row["nlpd"] == pytest.approx(0.1457741857, abs=1e-6)


def test_iw_ssim_of_kodim01_against_pillow_q50_jpeg(kodim01_q50):
    """0.9900298984187154: JPEG AI's own IW-SSIM, src/codec/metrics/IW_SSIM_PyTorch.py called as class IWSSIM
    of src/codec/metrics/metrics.py calls it, of akarabutov/jpeg-ai-reference-software (a copy of the JPEG
    AI reference software) at commit faded723ca95e3b73576dfa5ced3c56c0aefb27f, on the CPU (torch 2.14.1,
    pyrtools 1.1.1), on planes converted as its DataClass.load_image converts them; a fresh instance's first
    call gives 0.9900298984021767 (it rounds that call's pyramid to float32)."""
    assert jpegai_metrics.iw_ssim(*kodim01_q50) == pytest.approx(0.9900298984187154, abs=1e-12)


def test_ms_ssim_and_psnr_hvs_of_10_bit_y_are_what_jpeg_ai_computes(kodim01_q50):
    """pytorch-msssim and psnr_hvsm called as JPEG AI calls them, on planes converted here in float32 as
    JPEG AI converts them; PSNR-HVS 33.8283 (PSNR-HVS-M would be 43.7865; of the unrounded luma,
    psnr_hvs gives 33.8412)."""
    row = measures.compute(["ms_ssim_y10", "psnr_hvs_y10"], *kodim01_q50)
    assert row["ms_ssim_y10"] == pytest.approx(ms_ssim_as_jpegai(*kodim01_q50), abs=1e-6)
    assert row["psnr_hvs_y10"] == pytest.approx(psnr_hvs_as_jpegai(*kodim01_q50), abs=1e-6)
    assert round(row["psnr_hvs_y10"], 4) == 33.8283


def test_vmaf_yuv10_is_libvmaf_on_jpeg_ais_10_bit_files(libvmaf, kodim01_q50, tmp_path):
    row = measures.compute(["vmaf_yuv10"], *kodim01_q50)
    assert row["vmaf_yuv10"] == pytest.approx(vmaf_as_jpegai(*kodim01_q50, tmp_path), abs=1e-6)
    assert row["metric_versions"]["vmaf_yuv10"] == f"1+{tool_metrics.libvmaf_version()}"


def test_a_small_image_is_padded_as_jpeg_ai_pads_it(libvmaf, crop, tmp_path):
    """70 x 50 px: zero-padded to 164 (MS-SSIM), 64 (VIF: its height only), 128 (NLPD), 256 (IW-SSIM);
    replicated to 72 x 56 (PSNR-HVS); FSIM and VMAF unpadded. JPEG AI's own calls, as in the tests above,
    give VIF 0.4974199 (piq: 0.4974242), FSIM 0.9661509 (piq: 0.9661520), NLPD 0.0770761, IW-SSIM
    0.993021691175297 (a fresh instance's first call: 0.9930216911617912)."""
    row = measures.compute(JPEGAI, *crop)
    assert row["ms_ssim_y10"] == pytest.approx(ms_ssim_as_jpegai(*crop), abs=1e-6)
    assert row["vifp"] == pytest.approx(0.4974199235, abs=1e-5)
    assert row["fsim"] == pytest.approx(0.9661509395, abs=1e-5)
    assert row["nlpd"] == pytest.approx(0.0770760775, abs=1e-6)
    assert row["iw_ssim"] == pytest.approx(0.993021691175297, abs=1e-12)
    assert row["vmaf_yuv10"] == pytest.approx(vmaf_as_jpegai(*crop, tmp_path), abs=1e-6)
    assert row["psnr_hvs_y10"] == pytest.approx(psnr_hvs_as_jpegai(*crop), abs=1e-6)
    assert row["metric_notes"] == {}


def test_identical_images_give_each_metric_its_perfect_value(libvmaf, kodim01_q50):
    original = kodim01_q50[0]
    row = measures.compute(JPEGAI, original, original.copy())
    metrics = measures.all_metrics()
    for name in JPEGAI:
        assert row[name] == pytest.approx(metrics[name].ceiling, abs=1e-9 if name != "vmaf_yuv10" else 2e-3)


def test_pairs_without_a_value_are_undefined_with_the_reason(libvmaf, kodim01_q50):
    """libvmaf crashes under 17 px; FSIM is NaN on a 1-px side (piq and JPEG AI's copy); IW-SSIM inverts the
    covariance of the original's neighbourhoods, singular for a ramp (JPEG AI's code stops there)."""
    original, jpeg = kodim01_q50
    row = measures.compute(["vmaf_yuv10", "fsim"], original[:16, :300], jpeg[:16, :300])
    assert row["metric_notes"]["vmaf_yuv10"] == (
        "vmaf_yuv10 undefined: 300x16 has a side under 17 px, too small for libvmaf"
    )
    assert "fsim" not in row["metric_notes"] and 0 < row["fsim"] <= 1
    row = measures.compute(["fsim"], original[:1, :300], jpeg[:1, :300])
    assert (
        row["metric_notes"]["fsim"]
        == "fsim undefined: 300x1 has a side of 1 px, too small for FSIM's filters"
    )
    ramp = np.repeat(np.linspace(0, 255, 300).astype(np.uint8)[None, :, None], 300, axis=0).repeat(3, axis=2)
    row = measures.compute(["iw_ssim"], ramp, ramp // 2)
    assert math.isnan(row["iw_ssim"]) and row["metric_notes"]["iw_ssim"].startswith(
        "iw_ssim undefined: the original's 3 x 3 neighbourhoods are linearly dependent"
    )
