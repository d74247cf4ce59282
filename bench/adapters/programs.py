"""Programs named by a placeholder in place of an argv's program: ``{ffmpeg}`` is the static ffmpeg of
the imageio-ffmpeg wheel (a dependency), which is not on PATH. Codec and metric entries both use them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from bench.adapters.tool import ToolError


def ffmpeg() -> str:
    """imageio-ffmpeg's ffmpeg (or the one IMAGEIO_FFMPEG_EXE names); ToolError when there is none."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ToolError("imageio-ffmpeg is not installed: pip install imageio-ffmpeg") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise ToolError(f"imageio-ffmpeg finds no ffmpeg: {exc}") from None


# The placeholder, how to find the program, the Python module it needs.
PROGRAMS: dict[str, tuple[Callable[[], str], str]] = {"{ffmpeg}": (ffmpeg, "imageio_ffmpeg")}


def executable(program: str) -> str | None:
    """The file a program name runs: a path (with a separator) if it is an executable file, else the
    PATH entry; None when there is none."""
    if os.sep in program:
        path = os.path.abspath(os.path.expanduser(program))
        return path if os.access(path, os.X_OK) and os.path.isfile(path) else None
    return shutil.which(program)


def resolved(program: str) -> str:
    """The path a named program (``{ffmpeg}``) stands for, else ``program``'s executable, else ``program``
    itself (starting it then fails in the tool's words); ToolError when a named program is missing."""
    return PROGRAMS[program][0]() if program in PROGRAMS else executable(program) or program


def shown(program: str) -> str:
    """A program's name as versions and messages show it: ``ffmpeg`` for ``{ffmpeg}``, else its file name."""
    return program.strip("{}") if program in PROGRAMS else os.path.basename(program)


def missing(program: str, install: str) -> str | None:
    """Why ``program`` cannot run here, in one line ending with ``install``, or None."""
    try:
        path = resolved(program)
    except ToolError as exc:  # imageio-ffmpeg missing, or it finds no ffmpeg
        return f"it needs {program}, which is not found: {exc}"
    if executable(path) is None:
        named = program if path == program else f"{program} ({path})"
        where = "not an executable file" if os.sep in path else "not found on PATH"
        return f"it needs {named}, which is {where}: {install}"
    return None


def check_program(key: str, program: str) -> None:
    """ValueError when ``program``, the program of argv template ``key``, holds a placeholder other than a
    named program."""
    if program not in PROGRAMS and ("{" in program or "}" in program):
        known = ", ".join(PROGRAMS)
        raise ValueError(f"the program of {key} ({program!r}) cannot hold a placeholder other than {known}")
