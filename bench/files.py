"""Files inside a folder bench writes (a run directory, a cache): opened without following a symbolic
link below that folder, written atomically, and every filesystem failure as one line.

The folder itself may be a link; no folder or file below it is followed (O_NOFOLLOW, one directory
descriptor per level). A write goes to a new temporary file in the same folder (O_EXCL | O_NOFOLLOW),
is synced, then renamed over its name: a crash or a full disk leaves the old bytes or the new ones.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path, PurePath

from bench.errors import UserError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
KEPT = "earlier results and files are kept as they were"


class FilesystemError(UserError):
    """A file or folder bench cannot create, read or write, or a link it does not follow."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


def inside(folder: Path, name: str) -> bool:
    """Whether the relative ``name`` (from a manifest, a run.json: data) names a path inside ``folder``,
    its links resolved: not absolute, no ``..`` climbing out."""
    return not Path(name).is_absolute() and (folder / name).resolve().is_relative_to(folder.resolve())


def linked(path: Path) -> FilesystemError:
    return FilesystemError(
        f"{path} is a symbolic link: bench does not follow links inside its folders; remove it", errno.ELOOP
    )


def failure(path: Path, exc: OSError, action: str = "write") -> FilesystemError:
    """One line for an OSError met on ``path`` while doing ``action``."""
    if exc.errno == errno.ELOOP:
        return linked(path)
    reason = exc.strerror or str(exc)
    if exc.errno in NO_SPACE:
        reason += f" ({KEPT})"
    return FilesystemError(f"{path}: cannot {action}: {reason}", exc.errno)


def make_folder(path: Path) -> None:
    """``mkdir -p path``, a failure as one line."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise failure(path, exc, "create the folder") from None


def refuse_links(folder: Path, names: Iterable[str] | None = None) -> None:
    """Refuse when one of ``names`` in ``folder`` (default: every entry) is a symbolic link."""
    try:
        found = [entry.name for entry in os.scandir(folder) if entry.is_symlink()] if names is None else []
    except FileNotFoundError:
        return
    except OSError as exc:
        raise failure(folder, exc, "read the folder") from None
    for name in names or ():
        if os.path.islink(folder / name):
            found.append(name)
    if found:
        raise linked(Path(folder) / min(found))


def _folder(root: Path, parts: Iterable[str], create: bool) -> int:
    """A descriptor of root/parts: root followed if a link, none of parts; created with ``create``."""
    where = Path(root)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise failure(where, exc, "open the folder") from None
    try:
        for part in parts:
            where = where / part
            if create:
                try:
                    os.mkdir(part, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except NotADirectoryError:
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise linked(where) from None
                raise
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        raise failure(where, exc, "create the folder" if create else "open the folder") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: Path, flags: int, action: str, folder: int | None = None) -> int:
    """A descriptor of ``path`` (of its name in ``folder``, a descriptor, when given), its last component
    not followed, refused unless a regular file."""
    try:
        fd = os.open(path.name if folder is not None else path,
                     flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=folder)  # fmt: skip
    except OSError as exc:
        raise failure(path, exc, action) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FilesystemError(f"{path}: not a regular file")
    return fd


def write(root: Path, relative: str | PurePath, data: bytes) -> None:
    """Replace root/relative with ``data`` atomically, creating its folders; nothing below root followed."""
    relative = PurePath(relative)
    path = Path(root) / relative
    folder = _folder(root, relative.parent.parts, create=True)
    temporary = ""
    try:
        if stat.S_ISLNK(_lstat(relative.name, folder)):
            raise linked(path)
        while not temporary:
            name = f".{relative.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                             dir_fd=folder)  # fmt: skip
            except FileExistsError:
                continue
            temporary = name
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, relative.name, src_dir_fd=folder, dst_dir_fd=folder)
        temporary = ""
        os.fsync(folder)
    except OSError as exc:
        raise failure(path, exc) from None
    finally:
        if temporary:
            os.unlink(temporary, dir_fd=folder)
        os.close(folder)


def _lstat(name: str, folder: int) -> int:
    """The mode of ``name`` in the folder ``folder`` (a descriptor), not followed; 0 when absent."""
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return 0


def read(root: Path, relative: str | PurePath, limit: int) -> bytes:
    """The bytes of root/relative, a regular file of at most ``limit`` bytes; nothing below root followed.
    A missing file raises FilesystemError with errno ENOENT."""
    relative = PurePath(relative)
    path = Path(root) / relative
    folder = _folder(root, relative.parent.parts, create=False)
    try:
        fd = open_regular(path, os.O_RDONLY, "read", folder)
    finally:
        os.close(folder)
    try:
        size = os.fstat(fd).st_size
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1) if size <= limit else b""
        if len(data) > limit or size > limit:
            raise FilesystemError(f"{path}: {max(size, len(data))} bytes, more than the {limit} expected")
        return data
    except OSError as exc:
        raise failure(path, exc, "read") from None
    finally:
        os.close(fd)
