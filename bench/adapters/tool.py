"""Running one external tool: an argv list (never a shell), its own process group, a timeout.

The tool's stdout and stderr go to files in its working folder, so a chatty tool cannot fill a pipe
and a left-behind child holding them open cannot stall the caller. On a timeout, and in any case once
the tool has exited, its whole process group is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

TAIL_CHARS = 300
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


def run_tool(argv: list[str], folder: Path, timeout: float, check: bool = True) -> int:
    """Run ``argv`` in ``folder`` and return its exit status.

    Raises ToolError, with the tool's output tail, if it cannot start, times out or is killed by a
    signal, and (with ``check``) if it exits with a non-zero status.
    """
    global started
    name = os.path.basename(argv[0])
    started += 1
    with open(folder / "stdout.txt", "wb") as stdout, open(folder / "stderr.txt", "wb") as stderr:
        try:
            process = subprocess.Popen(
                argv,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolError(f"{name} could not be started: {exc}") from None
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait()
            raise ToolError(
                f"{name} timed out after {timeout:g} s (its process group was killed): {output_tail(folder)}"
            ) from None
        finally:
            _kill_group(process.pid)  # children it left behind, or all of it on KeyboardInterrupt
            process.wait()
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
    """Run ``argv`` in ``folder`` and return its stdout and stderr whatever its exit status."""
    run_tool(argv, folder, timeout, check=False)
    return b"\n".join((folder / name).read_bytes() for name in ("stdout.txt", "stderr.txt")).decode(
        "utf-8", "replace"
    )
