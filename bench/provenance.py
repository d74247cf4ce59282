"""Where and with what a run ran: machine, GPUs, Python and library versions."""

from __future__ import annotations

import os
import platform
import re
import shutil
import tempfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.adapters.tool import OUTPUT_LIMIT_BYTES, ToolError, run_tool, tool_output

NVIDIA_PROC = Path("/proc/driver/nvidia/version")
PACKAGES = (
    "codec-bench",
    "numpy",
    "pillow",
    "imagecodecs",
    "pillow-heif",
    "torch",
    "compressai",
    "pytorch-msssim",
    "piq",
    "pyrtools",
)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_id() -> str | None:
    """Vendor, family, model and stepping (a virtual machine's model name may hide them), or None."""
    info = _cpuinfo()
    keys = ("vendor_id", "cpu family", "model", "stepping")
    if not all(key in info for key in keys):
        return None
    return "{} family {} model {} stepping {}".format(*(info[key] for key in keys))


def code_version() -> dict[str, Any]:
    """The git commit of the code that ran, and whether its tracked code (the package, the catalog, the
    dataset manifests) differed from it; a commit of None where the code is not a git checkout (an
    installed wheel: its version is in ``packages``)."""
    source = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            with tempfile.TemporaryDirectory() as folder:  # its output capped, as any tool's
                run_tool(
                    ["git", "-C", str(source), *args], Path(folder), 20, max_file_bytes=OUTPUT_LIMIT_BYTES
                )
                return (Path(folder) / "stdout.txt").read_text().strip()
        except (ToolError, OSError):  # no git, or no room for its output: the commit is unknown
            return None

    commit = git("rev-parse", "HEAD") if (source / ".git").exists() else None
    if commit is None:
        return {"commit": None, "dirty": None}
    changes = git("status", "--porcelain", "--untracked-files=no", "--", "bench", "codecs", "datasets")
    return {"commit": commit, "dirty": None if changes is None else bool(changes)}


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def parse_driver_version(text: str) -> str | None:
    """The version in /proc/driver/nvidia/version's text ("... Kernel Module  535.129.03  ..."), or None."""
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def _nvidia_driver() -> str | None:
    """The NVIDIA kernel driver version from /proc/driver/nvidia/version, else nvidia-smi, else None."""
    try:
        found = parse_driver_version(NVIDIA_PROC.read_text())
    except OSError:
        found = None
    if found is None and shutil.which("nvidia-smi"):
        with tempfile.TemporaryDirectory() as folder:  # its output capped, as any tool's
            try:
                out = tool_output(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], Path(folder), 20
                ).split()
            except ToolError:
                return None
        found = out[0] if out else None
    return found


def gpus() -> dict[str, Any]:
    """GPUs torch sees through CUDA, with the driver and CUDA versions; why none otherwise.

    torch is imported only where an NVIDIA driver is present, so CPU machines pay nothing.
    """
    driver = _nvidia_driver()
    if driver is None:
        return {
            "devices": [],
            "why_none": "no NVIDIA driver (no /proc/driver/nvidia/version, no nvidia-smi)",
        }
    try:
        import torch
    except ImportError:
        return {"devices": [], "driver": driver, "why_none": "torch is not installed"}
    if not torch.cuda.is_available():
        return {
            "devices": [],
            "driver": driver,
            "why_none": "torch.cuda.is_available() is False",
        }
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "name": properties.name,
                "memory_gb": round(properties.total_memory / 1e9, 1),
                "capability": f"{properties.major}.{properties.minor}",
            }
        )
    return {
        "devices": devices,
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def provenance() -> dict[str, Any]:
    """Machine, OS, Python and package versions (codec library versions live with each codec)."""
    return {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_model(),
            "cpu_id": cpu_id(),
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "os": platform.platform(),
            "hostname": platform.node(),
        },
        "gpu": gpus(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "code": code_version(),
    }
