"""The processes a run starts end with it, grandchildren included (Linux; elsewhere ``limits`` says what not).

- While an executor runs (``lifeline``), the environment holds RUN_ENV=<token>, so its workers, their
  tools and whatever those start carry the token. A watcher process in its own session waits on a pipe
  only the run's process holds: when the run ends, however it ends (``kill -9`` included), the watcher
  kills every process that carries the token. multiprocessing's resource tracker is started before the
  token is set: it ends by itself once the last worker holding its pipe is gone, and cleans up after them.
- A process that runs tools is a child subreaper (``adopt_orphans``): what a tool leaves behind (a
  ``setsid`` child included) stays its descendant, and ``kill_left_behind`` kills each descendant that
  carries the tool call's mark. The kernel kills a tool (``dying_with_parent``) and a local worker
  (``die_with_parent``) when the thread that started it ends (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

RUN_ENV = "BENCH_RUN_LIFELINE"  # the run's token, in the environment of every process it starts
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3  # asked only to learn whether prctl works
PR_SET_CHILD_SUBREAPER = 36
SWEEP_ROUNDS = 50  # kill rounds: a process may start another while its marked relatives are killed
# A call that left processes behind is swept again until this many sweeps, SETTLE_S apart, find none:
# a child forked while a sweep reads /proc may be missing from it (proc(5): the children file).
SETTLE_SWEEPS, SETTLE_S = 3, 0.01
REAP_S = 2.0  # how long a killed descendant may take to become this process's zombie
PROC = Path("/proc")

_libc = None
_subreaper: bool | None = None


def _prctl(option: int, value: int) -> bool:
    """prctl(2); False where it does not exist or is refused."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl(option, value, 0, 0, 0) != -1
    except (OSError, AttributeError):
        return False


def limits() -> str | None:
    """What cannot be guaranteed on this system (a note for the run), or None."""
    if not (_prctl(PR_GET_DUMPABLE, 0) and (PROC / "self" / "task").is_dir()):
        return (
            "worker processes and codec tools cannot be tied to the run here (that needs Linux's prctl and "
            "/proc): if bench is killed, a worker or a tool's background process may live on"
        )
    if _setpriv() is None:
        return (
            "no setpriv (util-linux) here: a codec tool whose worker process dies lives on until the run ends "
            "(or until it ends itself, outside a run)"
        )
    return None


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv") if sys.platform.startswith("linux") else None


def dying_with_parent(argv: list[str]) -> list[str]:
    """``argv`` started so that the kernel kills it (SIGKILL) when the thread that started it ends:
    through util-linux's ``setpriv --pdeathsig`` where it is installed (a preexec_fn would turn each
    start into a full fork of a large process: 30 ms instead of 1 ms, measured), else as it is."""
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def die_with_parent(parent: int) -> None:
    """Be killed (SIGKILL) when the thread that started this process ends; end now if ``parent`` already
    has (a process's own counterpart of ``dying_with_parent``)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def adopt_orphans() -> bool:
    """Make this process a child subreaper (once): an orphaned descendant stays its descendant."""
    global _subreaper
    if _subreaper is None:
        _subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
    return _subreaper


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            children += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return children


def descendants() -> list[int]:
    """This process's descendants, parents before their children."""
    found, index = _children(os.getpid()), 0
    while index < len(found):
        found += _children(found[index])
        index += 1
    return found


def _all_pids() -> list[int]:
    try:
        return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def carrying(name: str, value: str, pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` whose environment holds ``name=value`` (other users' processes are unreadable)."""
    mark = f"\0{name}={value}\0".encode()
    found = []
    for pid in pids:
        try:
            environ = (PROC / str(pid) / "environ").read_bytes()
        except OSError:
            continue
        if mark in b"\0" + environ + b"\0" and pid != os.getpid():
            found.append(pid)
    return found


def _kill(pids: Iterable[int]) -> list[int]:
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def _reap(pids: list[int]) -> None:
    """Wait for killed descendants: this subreaper inherits each one whose parent was killed too."""
    deadline = time.monotonic() + REAP_S
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    pids.remove(pid)
            except ChildProcessError:  # not (yet) this process's child: gone, or still its parent's
                if not (PROC / str(pid)).exists():
                    pids.remove(pid)
        if pids:
            time.sleep(0.001)


def kill_left_behind(name: str, value: str) -> None:
    """Kill every process left behind that carries ``name=value``: this subreaper's descendants, else
    (no subreaper here) every process of this machine that can be read."""
    killed: list[int] = []
    quiet = 0
    for _ in range(SWEEP_ROUNDS):
        found = _kill(carrying(name, value, descendants() if adopt_orphans() else _all_pids()))
        killed += found
        quiet = 0 if found else quiet + 1
        if quiet > (SETTLE_SWEEPS if killed else 0):
            break
        if not found:
            time.sleep(SETTLE_S)
    if adopt_orphans():
        _reap(killed)


@contextlib.contextmanager
def lifeline(notes: list[str]) -> Iterator[None]:
    """Every process started inside the block carries a token, and all of them are killed when the block
    ends or this process dies; where that cannot hold, a note in ``notes`` says so."""
    note = limits()
    if note is not None:
        notes.append(note)
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    token = uuid.uuid4().hex
    read, write = os.pipe()
    root = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.insert(0, {root!r}); from bench.lifeline import watch; watch({read}, {token!r})"
    env = {key: value for key, value in os.environ.items() if key != RUN_ENV}
    try:
        watcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", code],
            pass_fds=(read,),
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a kill of the run's process group leaves it to clean up
        )
    finally:
        os.close(read)
    previous = os.environ.get(RUN_ENV)
    os.environ[RUN_ENV] = token
    try:
        yield
    finally:
        if previous is None:
            del os.environ[RUN_ENV]
        else:
            os.environ[RUN_ENV] = previous
        os.close(write)
        watcher.wait()


def watch(fd: int, token: str) -> None:
    """The watcher process: once the pipe ``fd`` closes, kill every process that carries ``token``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.read(fd, 1):
        pass
    for _ in range(SWEEP_ROUNDS):
        if not _kill(carrying(RUN_ENV, token, _all_pids())):
            return
        time.sleep(0.01)
