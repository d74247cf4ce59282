"""One task in a worker process: encode (timed), decode (timed), metrics, one result row; or one probe of
a matched-rate search (an encode, and for an equal-quality search a decode and one metric).

Codecs and images are cached per process; each codec is warmed up once per process before its first
timed call. Any failure of the codec or the metrics becomes a row with ``error`` set.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import codec as hooks
from bench import measures, metric_device, metrics
from bench.catalog import CatalogEntry
from bench.codec import Codec, open_codec
from bench.images import load_image, pixel_sha256
from bench.memory import peak_gpu, peak_rss
from bench.timing import timed_median


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one (image, codec, quality) point."""

    dataset: str
    image: str
    path: str
    image_sha256: str
    height: int
    width: int
    entry: dict[str, Any]  # CatalogEntry.to_dict() with resolved options
    config_hash: str
    quality: float
    threads: int
    jobs: int
    repeat: int = 1  # timed encodes and decodes; the median is kept
    warmup: bool = False  # an untimed round trip of this very task first (the --timing preset)
    keep_bitstream: bool = False  # return the encoded bytes in the row's "bitstream" (--keep-bitstreams)
    versions: dict[str, str] = field(default_factory=dict)  # the codec's versions where the run was planned
    resources: dict[str, float] = field(default_factory=dict)  # what a cluster worker must offer (GPU)
    metrics: tuple[str, ...] = ()  # the metrics to compute (bench.measures names)
    target: str = ""  # the search target the row answers ("bpp=0.25"), empty at fixed qualities
    probe: bool = False  # a search's probe: encode only, plus decode and ``metrics`` when they are given
    search: dict[str, Any] = field(default_factory=dict)  # the row's target columns (target_met, ...)
    metrics_device: str = "cpu"  # the run's --device: where GPU-capable metrics compute (bench.metric_device)

    @property
    def key(self) -> tuple[str, str, str, float, str]:
        return (self.image_sha256, self.entry["name"], self.config_hash, self.quality, self.target)


_images: dict[str, np.ndarray] = {}
_warm: set[str] = set()
_complexities: dict[str, dict[str, float]] = {}
IMAGE_CACHE_SIZE = 4


def _codec(task: Task) -> Codec:
    """The task's codec (bench.codec.open_codec), refused where its versions differ from the run's."""
    return open_codec(CatalogEntry.from_dict(task.entry), task.versions or None)


def _image(task: Task, image_file: bytes | None) -> np.ndarray:
    """The task's pixels, from ``image_file`` (the file's bytes) or its path, checked against its pixel hash
    (a worker whose file at that path holds another image must not be scored against it)."""
    image = _images.get(task.path)
    if image is None:
        image = load_image(Path(task.path), image_file, max_pixels=task.height * task.width).rgb
        if pixel_sha256(image) != task.image_sha256:
            raise ValueError(f"{task.path}: not the image the run was planned with (its pixel hash differs)")
        if len(_images) >= IMAGE_CACHE_SIZE:
            _images.pop(next(iter(_images)))
        _images[task.path] = image
    return image


def _complexity(task: Task, codec: Codec) -> dict[str, float]:
    """The codec's complexity (kMAC per pixel, learned codecs), once per configuration and process."""
    if task.config_hash not in _complexities:
        _complexities[task.config_hash] = hooks.complexity(codec)
    return _complexities[task.config_hash]


def _warm_up(task: Task, codec: Codec, image: np.ndarray) -> None:
    """Warm the codec up (bench.codec.warm_up) once per configuration and process."""
    if task.config_hash not in _warm:
        hooks.warm_up(codec, image, task.quality)
        _warm.add(task.config_hash)


def _metrics(task: Task, image: np.ndarray, reconstruction: np.ndarray) -> dict[str, Any]:
    """The task's metrics of one pair (bench.measures.compute) on the device its run asked for."""
    with metric_device.computing_on(metric_device.resolve(task.metrics_device)):
        return measures.compute(task.metrics, image, reconstruction)


def base_row(task: Task) -> dict[str, Any]:
    """The row's identity and settings, before anything runs."""
    return {
        "dataset": task.dataset,
        "image": task.image,
        "image_sha256": task.image_sha256,
        "codec": task.entry["name"],
        "config_hash": task.config_hash,
        "quality": task.quality,
        "target": task.target,
        "width": task.width,
        "height": task.height,
        "threads": task.threads,
        "jobs": task.jobs,
        "device": "cpu",
        "repeats": task.repeat,
    } | task.search


def failed_row(task: Task, error: str) -> dict[str, Any]:
    """The row of a task that could not run to its end (its worker died, it timed out)."""
    return base_row(task) | {"error": error[:500]}


def run_probe(task: Task, image: np.ndarray) -> dict[str, Any]:
    """A search's probe: the encode's size, and the scores of ``task.metrics`` (decoded) when asked;
    ``probe_s``, its seconds (for the harness overhead: probes are not timed as tasks are)."""
    start = time.perf_counter()
    codec = _codec(task)
    data = codec.encode(image, task.quality)
    row = {"bytes": len(data)}
    if task.metrics:
        reconstruction = codec.decode(bytes(data), (task.height, task.width))
        row.update(measures.merged({}, _metrics(task, image, reconstruction)))
    return row | {"probe_s": time.perf_counter() - start}


def run_task(task: Task, image_file: bytes | None = None) -> dict[str, Any]:
    """Run one task and return its row; never raises for a codec or metric failure. ``image_file``:
    the image file's bytes, for workers that do not share the client's paths."""
    row = base_row(task) | ({"probe": True} if task.probe else {})
    if task.probe:
        try:
            return row | run_probe(task, _image(task, image_file))
        except Exception as exc:  # noqa: BLE001 - a failed probe ends its search with this error
            return row | {"error": _error(exc)}
    try:
        image = _image(task, image_file)
        codec = _codec(task)
        row["device"] = hooks.device(codec)
        _warm_up(task, codec, image)
        row["load_s"] = hooks.load_s(codec)
        row.update(_complexity(task, codec))
        if task.warmup:
            codec.decode(bytes(codec.encode(image, task.quality)), (task.height, task.width))
        sync = functools.partial(hooks.sync, codec)
        encode = functools.partial(codec.encode, image, task.quality)
        ((data, enc_s), row["enc_peak_rss_mb"]), row["enc_gpu_peak_mb"] = peak_gpu(
            functools.partial(peak_rss, functools.partial(timed_median, encode, task.repeat, sync, "encode")),
            row["device"],
        )
        if task.keep_bitstream:
            row["bitstream"] = bytes(data)  # the client keeps it: workers may not share its disk
        decode = functools.partial(codec.decode, bytes(data), (task.height, task.width))
        ((reconstruction, dec_s), row["dec_peak_rss_mb"]), row["dec_gpu_peak_mb"] = peak_gpu(
            functools.partial(peak_rss, functools.partial(timed_median, decode, task.repeat, sync, "decode")),
            row["device"],
        )
        expected = (task.height, task.width, 3)
        if reconstruction.shape != expected or reconstruction.dtype != np.uint8:
            raise ValueError(
                f"decoder returned {reconstruction.dtype} {reconstruction.shape}, expected uint8 {expected}"
            )
        start = time.perf_counter()
        row.update(measures.merged({}, _metrics(task, image, reconstruction)))
        row["metric_s"] = time.perf_counter() - start
        megapixels = task.width * task.height / 1e6
        row.update(
            bytes=len(data),
            bpp=metrics.bpp(len(data), task.height, task.width),
            enc_s=enc_s,
            dec_s=dec_s,
            enc_mps=megapixels / enc_s if enc_s > 0 else math.inf,
            dec_mps=megapixels / dec_s if dec_s > 0 else math.inf,
        )
    except Exception as exc:  # noqa: BLE001 - a failed task is a row with error set; the run goes on
        row["error"] = _error(exc)
    return row


def _error(exc: Exception) -> str:
    """An exception as the error column holds it: ``Type: message`` on one line, at most 500 characters."""
    message = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {message}"[:500]
