"""Running one external tool: an argv list (never a shell), its own process group, a timeout.

The tool's stdout and stderr go to files in its working folder, so a chatty tool cannot fill a pipe
and a left-behind child holding them open cannot stall the caller. Every file the tool (or a child of
it) writes is capped at ``max_file_bytes`` (RLIMIT_FSIZE, set as it starts). On a timeout the tool is killed, and in any
case once it has ended, every process it started (found by bench.lifeline, a ``setsid`` child too) and
its process group; the tool itself dies with the thread that started it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import select
import shutil
import signal
import subprocess
from pathlib import Path

from bench import lifeline

TAIL_CHARS = 300
FILE_LIMIT_BYTES = 1 << 30  # the largest file a tool may write: its output, stdout and stderr alike
OUTPUT_LIMIT_BYTES = 1 << 20  # what tool_output (a version command) may print
CALL_ENV = "BENCH_TOOL_CALL"  # marks a tool call's processes, so what it leaves behind can be found
started = 0  # tools this process has started: bench.memory leaves a call that ran one unmeasured


class ToolError(RuntimeError):
    """A tool that failed: non-zero exit, killed by a signal, timed out, or wrote unusable output."""


def output_tail(folder: Path, chars: int = TAIL_CHARS) -> str:
    """The end of the tool's stderr (else its stdout) in ``folder``, whitespace collapsed, or ""."""
    for name in ("stderr.txt", "stdout.txt"):
        try:
            with open(folder / name, "rb") as file:
                file.seek(0, os.SEEK_END)
                file.seek(max(0, file.tell() - 4 * chars))
                text = " ".join(file.read().decode("utf-8", "replace").split())
        except OSError:
            continue
        if text:
            return text[-chars:]
    return ""


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(process: subprocess.Popen, timeout: float) -> int:
    """``process.wait(timeout)``, woken by the exit itself where Linux has pidfds (Popen.wait polls with
    sleeps of up to 50 ms, which a 40 ms tool would wait out)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return process.wait(timeout=timeout)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(process.args, timeout)
    finally:
        os.close(pidfd)
    return process.wait()


@functools.cache
def _prlimit() -> str | None:
    return shutil.which("prlimit")


def _capped(argv: list[str], limit: int) -> list[str]:
    """``argv`` started with RLIMIT_FSIZE at ``limit`` before it runs, through util-linux's ``prlimit``
    where it is installed (set after the start, a tool wrote 1.25 MiB under a 1 MiB limit in CI)."""
    prlimit = _prlimit()
    return [prlimit, f"--fsize={limit}:{limit}", "--", *argv] if prlimit else argv


def _size(count: int) -> str:
    return f"{count >> 30} GiB" if count >= 1 << 30 else f"{count >> 20} MiB"


def run_tool(
    argv: list[str],
    folder: Path,
    timeout: float,
    check: bool = True,
    max_file_bytes: int = FILE_LIMIT_BYTES,
    env: dict[str, str] | None = None,
) -> int:
    """Run ``argv`` in ``folder`` (with ``env``, else this process's environment) and return its exit status.

    Raises ToolError, with the tool's output tail, if it cannot start, times out, is killed by a signal
    or writes a file larger than ``max_file_bytes``, and (with ``check``) if it exits with a non-zero status.
    """
    global started
    name = os.path.basename(argv[0])
    started += 1
    call = f"{os.getpid()}-{started}"
    env = dict(os.environ if env is None else env) | {CALL_ENV: call}
    where = os.path.abspath(os.path.join(folder, argv[0])) if os.sep in argv[0] else argv[0]
    program = shutil.which(where, path=env.get("PATH"))  # setpriv would fail later, with its own words
    if program is None:
        raise ToolError(f"{name} could not be started: not found, or not an executable file")
    lifeline.adopt_orphans()
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    limit = max_file_bytes if hard == resource.RLIM_INFINITY else min(max_file_bytes, hard)  # not above ours
    with open(folder / "stdout.txt", "wb") as stdout, open(folder / "stderr.txt", "wb") as stderr:
        try:
            process = subprocess.Popen(
                _capped(lifeline.dying_with_parent([program, *argv[1:]]), limit),
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            raise ToolError(f"{name} could not be started: {exc}") from None
        if _prlimit() is None:  # set once it runs: it may have written past the limit by then
            with contextlib.suppress(ProcessLookupError, AttributeError):  # ended already; no prlimit
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, limit))
        try:
            status = _wait(process, timeout)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            process.kill()  # on a timeout or a KeyboardInterrupt; Popen itself reaps it
            process.wait()
            lifeline.kill_left_behind(CALL_ENV, call)  # whatever it started, in any session
            _kill_group(process.pid)  # any of its group that cleared its environment
    if status is None:
        tail = output_tail(folder)
        raise ToolError(
            f"{name} timed out after {timeout:g} s (it and the processes it started were killed)"
            + (f": {tail}" if tail else "")
        )
    if status == -signal.SIGXFSZ:
        raise ToolError(
            f"{name} was stopped: it wrote more than {_size(max_file_bytes)} to one file (the limit)"
        )
    if status < 0:
        try:
            signame = signal.Signals(-status).name
        except ValueError:
            signame = str(-status)
        raise ToolError(f"{name} was killed by signal {signame}: {output_tail(folder)}")
    if check and status != 0:
        raise ToolError(f"{name} exited with status {status}: {output_tail(folder)}")
    return status


def tool_output(argv: list[str], folder: Path, timeout: float) -> str:
    """Run ``argv`` in ``folder`` and return its stdout and stderr whatever its exit status; a tool that
    prints more than OUTPUT_LIMIT_BYTES to either raises ToolError."""
    run_tool(argv, folder, timeout, check=False, max_file_bytes=OUTPUT_LIMIT_BYTES)
    return b"\n".join((folder / name).read_bytes() for name in ("stdout.txt", "stderr.txt")).decode(
        "utf-8", "replace"
    )
