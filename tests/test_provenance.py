"""run.json provenance: machine, GPUs (or why none), packages."""

from __future__ import annotations

import os
import platform

from bench.provenance import gpus, parse_driver_version, provenance


def test_provenance_records_machine_gpu_and_packages():
    document = provenance()
    machine = document["machine"]
    assert machine["cpu"] and machine["cores"] == os.cpu_count() and machine["os"] == platform.platform()
    assert document["python"] == platform.python_version()
    assert document["packages"]["numpy"] != "not installed" and "compressai" in document["packages"]
    gpu = document["gpu"]
    if gpu["devices"]:  # a machine where torch sees CUDA
        assert gpu["driver"] and gpu["cuda"] and all(device["name"] for device in gpu["devices"])
    else:  # here: no NVIDIA driver, no nvidia-smi; said, not crashed
        assert gpu["why_none"]
    assert gpus() == gpu


def test_driver_version_read_from_the_kernel_modules_banner():
    closed = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023"
    open_module = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build"
    assert parse_driver_version(closed) == "535.129.03"
    assert parse_driver_version(open_module) == "550.54.14"
    assert parse_driver_version("no driver here") is None
