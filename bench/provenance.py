"""Where and with what a run ran: machine, Python and library versions."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGES = ("codec-bench", "numpy", "pillow", "imagecodecs", "pillow-heif", "torch", "pytorch-msssim")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance() -> dict[str, Any]:
    """Machine, OS, Python and package versions (codec library versions live with each codec)."""
    return {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "os": platform.platform(),
            "hostname": platform.node(),
        },
        "python": platform.python_version(),
        "packages": package_versions(),
    }
