"""Headless Chromium for the report tests, driven over the DevTools protocol (websocket-client)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail


class Chromium:
    """Headless Chromium driven over the DevTools protocol (websocket-client)."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-port=0",
        "--window-size=1280,900",
    )

    def __init__(self, binary: str, profile: str):
        self.process = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderers and crash handler share one group, killed in close()
        )
        self.next_id = 0
        self.events: list[dict] = []
        try:
            self.socket = self._connect(Path(profile) / "DevToolsActivePort")
        except BaseException:
            self._stop()
            raise

    def _connect(self, port_file: Path):
        """A websocket to the first page, once Chromium has written its DevTools port."""
        import websocket

        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(t for t in targets if t["type"] == "page")
        return websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.socket.recv()))

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

    def close(self) -> None:
        self.socket.close()
        self._stop()

    def _stop(self) -> None:
        """Ends the browser and every process it started, which may still be writing to its profile."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        finally:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the group is gone once no member is left to signal
                try:
                    os.killpg(self.process.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


@pytest.fixture(name="chromium")
def chromium_browser():
    """A fresh headless Chromium with its own profile, closed after the test."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        skip_or_fail("chromium is not installed (Debian package chromium)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        skip_or_fail("websocket-client is not installed (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory() as profile:
        browser = Chromium(binary, profile)
        try:
            yield browser
        finally:
            browser.close()
