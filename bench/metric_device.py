"""Where the learned perceptual metrics (bench.perceptual) compute: the CPU, or a GPU when the run asks
for one (`bench run --device cuda|auto`) and torch sees one where the task runs; everything else stays on
the CPU. A value computed on a GPU says so in its metric note (the same definition, float rounding apart)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_DEVICE: ContextVar[str] = ContextVar("metric_device", default="cpu")


def resolve(asked: str | None) -> str:
    """The device for the metrics of a run that asked for ``asked`` (its --device): a CUDA device when it
    asked for one (or auto) and torch sees one here, else cpu."""
    if not asked or asked == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return "cuda" if asked == "auto" else asked


@contextmanager
def computing_on(device: str) -> Iterator[None]:
    """Metrics computed inside run on ``device``."""
    token = _DEVICE.set(device)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def current() -> str:
    return _DEVICE.get()


def name(device: str) -> str:
    """``cuda (NVIDIA H200)``: the device and, for a GPU, its model."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})"
