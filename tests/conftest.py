"""Shared fixtures: where the Kodak images are, and skips that become failures in CI."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_METRICS = "psnr_rgb,psnr_y,ms_ssim_db"  # what runs compute in tests that do not test metrics


@pytest.fixture(scope="session", autouse=True)
def cheap_default_metrics():
    """Runs compute the cheapest useful metrics unless a test asks for the full default set (session-wide,
    so that module-scoped runs set up before a test's own fixtures see it too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_DEFAULT_METRICS", TEST_METRICS)
        yield


@pytest.fixture()
def full_default_metrics(monkeypatch):
    """The real default set of metrics (undoing cheap_default_metrics)."""
    monkeypatch.delenv("BENCH_DEFAULT_METRICS")


def skip_or_fail(reason: str, installable: bool = True) -> None:
    """Skip, unless CI could have installed what is missing: then fail (the issue's CI rule)."""
    if IN_CI and installable:
        pytest.fail(f"{reason} (CI=true: the test command should have installed it)")
    pytest.skip(reason)


def plugin_package(folder: Path, module: str, source: str, group: str, entries: dict[str, str]) -> Path:
    """An installed-looking package in ``folder``: ``module``.py holding ``source``, and a dist-info that
    registers ``entries`` (entry-point name: object of the module) under the entry-point ``group``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {module}:{target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    return folder


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves its folder without logging each request."""

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(root: Path, handler: type[QuietHandler]) -> Iterator[http.server.ThreadingHTTPServer]:
    """A local HTTP server on loopback serving ``root`` with ``handler``, for the block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def interrupt_when(command: list[str], ready: Callable[[], bool], sig: int = signal.SIGKILL) -> None:
    """Start ``command`` in its own process group, and once ``ready()`` send ``sig`` to the whole group (as a
    terminal's Ctrl-C or a kill -9 of the job would); fails if it ends before it is ready."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be interrupted"
    os.killpg(process.pid, sig)
    process.wait(timeout=60)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not found on PATH")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("BENCH_DATA_DIR")
    if not value:
        skip_or_fail("BENCH_DATA_DIR is not set (.ci/run sets it)")
    return Path(value)


@pytest.fixture(scope="session")
def kodak_dir(data_dir: Path) -> Path:
    path = data_dir / "kodak"
    if len(list(path.glob("kodim*.png"))) != 24:
        skip_or_fail(f"the 24 Kodak images are not in {path}")
    return path


@pytest.fixture(scope="session")
def kodim01_q50(kodak_dir) -> tuple[np.ndarray, np.ndarray]:
    """The reference pair of the field's notes: kodim01 and Pillow's quality-50 JPEG of it, decoded."""
    original = np.asarray(Image.open(kodak_dir / "kodim01.png").convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(original).save(buffer, format="JPEG", quality=50)
    return original, np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
