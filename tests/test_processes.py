"""Processes end with what started them, grandchildren included, and tool output is capped (bench.lifeline,
bench.adapters.tool). A process belongs to a test when its environment carries the test's own mark, read
from /proc/PID/environ here, independently of bench.lifeline."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench.adapters.tool import ToolError, run_tool, tool_output

REPO = Path(__file__).resolve().parent.parent
MARK = "BENCH_TEST_PROCESS_MARK"
LINGER = """\
name = "linger"
adapter = "subprocess"
description = "test: copies the image, leaving a setsid child behind at each encode"
reference = "-"
quality_label = "none"
qualities = [10, 20, 30]
encode = ["sh", "-c", "setsid sleep 600 & sleep 0.5; cp \\"$0\\" \\"$1\\"", "{input}", "{output}"]
decode = ["sh", "-c", "cp \\"$0\\" \\"$1\\"", "{input}", "{output}"]
format = { image = "ppm", bitstream = "ppm" }
version = ["sh", "-c", "echo linger 1.0"]
timeout = 60
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def marked(token: str) -> list[str]:
    """The processes (other than this one) whose environment holds MARK=token: "PID command line"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if f"\0{MARK}={token}\0".encode() in b"\0" + (entry / "environ").read_bytes():
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{entry.name} {command}")
        except OSError:
            continue
    return found


def parent(pid: int) -> int | None:
    """The parent's pid of a process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def survivors(token: str, timeout: float = 15.0) -> list[str]:
    """The marked processes still alive once ``timeout`` has passed (none: returns as soon as they are gone)."""
    deadline = time.monotonic() + timeout
    while (found := marked(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def stored_keys(out: Path) -> list[tuple]:
    """The store's task keys, one per row (duplicates kept), or [] before the table exists."""
    path = out / "results.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT image_sha256, codec, config_hash, quality FROM results").fetchall()
        except sqlite3.OperationalError:  # the table is not made yet
            return []


def mark_processes(monkeypatch) -> str:
    """A new mark, in this process's environment so that every process started from here inherits it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARK, value)
    return value


@pytest.fixture
def token(monkeypatch) -> str:
    return mark_processes(monkeypatch)


@pytest.mark.parametrize(
    "script, timeout, outcome",
    [
        ("setsid sleep 600 & echo started; sleep 600", 1.0, r"timed out after 1 s \(it and the processes"),
        (
            "setsid sleep 600 & sleep 600",
            1.0,
            r"timed out after 1 s \(it and the processes it started were killed\)$",
        ),
        ("setsid sleep 600 & (setsid sh -c 'sleep 601 & sleep 602' &); exit 0", 30.0, None),
    ],
    ids=["hangs past its timeout", "hangs silently", "exits at once"],
)
def test_a_tools_setsid_children_end_with_the_call(script, timeout, outcome, token, tmp_path):
    """A setsid child leaves the tool's process group, which was all that was killed before."""
    if outcome:
        with pytest.raises(ToolError, match=outcome):
            run_tool(["sh", "-c", script], tmp_path, timeout)
    else:
        assert run_tool(["sh", "-c", script], tmp_path, timeout) == 0
    assert survivors(token, timeout=0) == []


PROBE = """
import sys
from bench.adapters.subprocess_codec import SubprocessCodec
codec = SubprocessCodec("loud", {}, {"encode": ["true"], "decode": ["true"], "format": {"image": "ppm"},
                                     "version": sys.argv[1:]})
print(codec.available() or codec.versions())
status = open("/proc/self/status").read()  # VmHWM: this process's own peak (ru_maxrss keeps the forking
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)  # parent's across exec: pytest's, here)
"""


@pytest.mark.parametrize(
    "command, answer",
    [
        (["head", "-c", "400000000", "/dev/zero"], ("the version command does not run: head was stopped: "
         "it wrote more than 1 MiB to one file (the limit)")),
        ([sys.executable, "-c", "import sys\nprint('loud 1.2.3')\nfor _ in range(400): print('x' * 2**20)"],
         "{'" + Path(sys.executable).name + "': '1.2.3'}"),
    ],
    ids=["killed at the cap", "ignores SIGXFSZ"],
)  # fmt: skip
def test_a_version_command_printing_400_mb_is_capped(command, answer, tmp_path):
    """Before, all 400 MB were written to a temporary file and read into memory (830 MB resident). Now
    1 MiB at most: a tool killed at the cap (SIGXFSZ) is one line; one that ignores it keeps its first MiB."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE, *command], capture_output=True, text=True, env=env,
                          timeout=120, check=True)  # fmt: skip
    said, peak_mb = done.stdout.splitlines()
    assert said == answer
    assert int(peak_mb) < 300  # the probe alone is about 100 MB
    with pytest.raises(ToolError, match="wrote more than 1 MiB"):
        tool_output(["head", "-c", "400000000", "/dev/zero"], tmp_path, 60)
    assert (tmp_path / "stdout.txt").stat().st_size == 1 << 20


def test_a_codec_tool_writes_at_most_a_gigabyte_per_file(tmp_path):
    with pytest.raises(
        ToolError, match=r"^dd was stopped: it wrote more than 1 GiB to one file \(the limit\)$"
    ):
        run_tool(["dd", "if=/dev/zero", "of=big", "bs=1M", "seek=1023", "count=2"], tmp_path, 60)
    assert (tmp_path / "big").stat().st_size == 1 << 30


def run_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "run", "--dataset", "sample", "--out", str(out), *extra]


@pytest.mark.slow
def test_kill_9_of_bench_run_leaves_no_process_of_the_run(token, tmp_path, monkeypatch):
    """Before, the workers (700 MB resident each) and multiprocessing's resource tracker lived on with
    parent 1, and so did a tool's setsid child; now all of them end within seconds."""
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "linger.toml").write_text(LINGER)
    (catalog / "jpeg.toml").write_bytes((REPO / "codecs" / "jpeg.toml").read_bytes())
    monkeypatch.setenv("BENCH_CATALOG_DIR", str(catalog))
    out = tmp_path / "run"
    command = run_command(out, "--codecs", "jpeg,linger", "--metrics", "psnr_rgb", "--jobs", "2")
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    deadline = time.monotonic() + 180
    while not (stored_keys(out) and any(" sleep 600" in p for p in marked(token))):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    alive = marked(token)
    # the pool's two workers are the run's children (a worker's tool, between fork and exec, shows the
    # worker's command line too, one level further down)
    workers = [p for p in alive if "spawn_main" in p and parent(int(p.split()[0])) == run.pid]
    assert any("resource_tracker" in p for p in alive) and len(workers) == 2, alive
    run.kill()
    run.wait(timeout=30)
    assert survivors(token) == []
