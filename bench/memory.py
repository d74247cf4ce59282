"""Peak resident memory (RSS) of an in-process codec call, in MB (1e6 bytes).

On Linux, writing "5" to /proc/self/clear_refs resets the process's peak RSS (VmHWM) to its current
RSS; VmHWM read after the call is the peak during it, the process's baseline (Python, libraries, the
image) included. A call that runs external tools (subprocess codecs) gets NaN: a child's ru_maxrss
also counts the parent's memory it was forked from, so it does not measure the tool.
Where clear_refs cannot be written (not Linux): NaN.

On a CUDA device, ``peak_gpu`` gives torch's max_memory_allocated during a call (the caching
allocator's tensors: what the codec's model and activations take, not the CUDA context).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.adapters import tool

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS; False where the kernel does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def status_mb(field: str) -> float:
    """A kB field of /proc/self/status (VmHWM, VmRSS) in MB, or NaN."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


def peak_rss(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()`` and this process's peak RSS in MB during it; NaN if unmeasurable or it ran a tool."""
    tools = tool.started
    reset = reset_peak()
    result = call()
    peak = status_mb("VmHWM") if reset else math.nan
    return result, peak if tool.started == tools else math.nan


def peak_gpu(call: Callable[[], Any], device: str) -> tuple[Any, float]:
    """``call()`` and torch's peak allocated GPU memory in MB during it; NaN when not on a CUDA device."""
    if not str(device).startswith("cuda"):
        return call(), math.nan
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = call()
    torch.cuda.synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) / 1e6
