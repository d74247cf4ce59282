"""Writing into a data directory: ``fetch`` (download, verify, extract safely) and ``import_dataset``;
``download``, one URL to one file (also used by bench.zoo_fetch).

Both build the dataset in a hidden staging folder inside the data directory and rename it into place
only once verified, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import posixpath
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from bench.datasets import Dataset, Manifest, manifest, manifest_dataset, require_valid
from bench.errors import UserError
from bench.images import IMAGE_SUFFIXES

# What reading a corrupt, encrypted or unsupported zip or tar raises.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, RuntimeError)


@contextlib.contextmanager
def _staging(m: Manifest, data_dir: Path) -> Iterator[Path]:
    """Yield an empty folder to fill with NAME's images; renamed to <data_dir>/NAME when the block succeeds."""
    target = data_dir / m.name
    if m.source.kind == "package":
        raise UserError(
            f"{m.name} is built in (files of the {m.source.package} package): nothing to fetch or import"
        )
    if target.exists():
        raise UserError(
            f"{target} already exists: check it with `bench datasets verify {m.name}`, "
            "or delete it to fetch or import again"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{m.name}.partial-", dir=data_dir))
    try:
        images = stage / m.name
        images.mkdir()
        yield images
        images.rename(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def fetch(name: str, data_dir: Path, progress: bool = False) -> Dataset:
    """Download dataset ``name`` into <data_dir>/NAME and verify it; on failure nothing is left behind."""
    m = manifest(name)
    with _staging(m, data_dir) as images:
        if m.source.kind == "files":
            for n in sorted(m.pixel_sha256):
                download(m.source.url + urllib.parse.quote(n), images / n, progress)
        else:
            archive = images.parent / "archive"
            digest = download(m.source.url, archive, progress)
            if m.source.sha256 and digest != m.source.sha256.lower():
                raise UserError(
                    f"{m.source.url}: archive sha256 is {digest}, the manifest pins {m.source.sha256}"
                )
            extract_images(archive, m.source.member, images, label=m.source.url)
            archive.unlink()
        require_valid(manifest_dataset(m, images), progress, where=f"the download from {m.source.url}")
    return manifest_dataset(m, data_dir / name)


def import_dataset(name: str, source: Path, data_dir: Path, progress: bool = False) -> Dataset:
    """Verify a local copy of dataset ``name`` in folder ``source`` and copy it into <data_dir>/NAME."""
    m = manifest(name)
    if not source.is_dir():
        raise UserError(f"{source} is not a folder")
    original = manifest_dataset(m, source)
    with _staging(m, data_dir) as images:
        require_valid(original, progress)
        for path in original.files:
            shutil.copyfile(path, images / path.name)
    return manifest_dataset(m, data_dir / name)


def download(url: str, dest: Path, progress: bool) -> str:
    """Download ``url`` to ``dest`` with a progress bar; return its SHA-256; raise UserError on failure."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "codec-bench"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, dest.open("wb") as out:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            name = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
            with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            received = out.tell()
    except urllib.error.HTTPError as e:
        raise UserError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise UserError(f"download of {url} failed: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise UserError(f"download of {url} failed: {type(e).__name__}: {e}") from None
    if total is not None and received != total:
        raise UserError(f"download of {url} is truncated: got {received} of {total} bytes")
    return digest.hexdigest()


@dataclass(frozen=True)
class _Entry:
    """One archive member, zip or tar alike."""

    name: str
    kind: str  # "file", "dir", "symlink", "hardlink" or "special" (device, fifo, ...)
    link: str  # link target
    open: Callable[[], IO[bytes]]


def _zip_entries(zf: zipfile.ZipFile) -> list[_Entry]:
    entries = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if info.is_dir() or stat.S_ISDIR(mode):
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind = "symlink"
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            kind = "special"
        else:
            kind = "file"
        link = zf.read(info).decode("utf-8", "replace") if kind == "symlink" else ""
        entries.append(_Entry(info.filename, kind, link, functools.partial(zf.open, info)))
    return entries


def _tar_kind(t: tarfile.TarInfo) -> str:
    if t.isdir():
        return "dir"
    if t.isreg():
        return "file"
    if t.issym():
        return "symlink"
    return "hardlink" if t.islnk() else "special"


def _tar_entries(tf: tarfile.TarFile) -> list[_Entry]:
    return [
        _Entry(t.name, _tar_kind(t), t.linkname, functools.partial(tf.extractfile, t))
        for t in tf.getmembers()
    ]


def _unsafe(entry: _Entry) -> str | None:
    """Why extracting ``entry`` could write outside the target, or None when it is safe."""
    name = entry.name.replace("\\", "/")
    if name.startswith("/") or PureWindowsPath(entry.name).drive:
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has '..' in its path"
    if entry.kind == "special":
        return "is a device or special file"
    if entry.kind in ("symlink", "hardlink"):
        target = entry.link.replace("\\", "/")
        base = posixpath.dirname(name) if entry.kind == "symlink" else ""  # hardlinks: from the archive root
        resolved = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") or PureWindowsPath(entry.link).drive or resolved.split("/")[0] == "..":
            return f"is a link to {entry.link!r}, outside the archive"
    return None


def extract_images(archive: Path, member: str, dest: Path, label: str = "") -> int:
    """Copy the images of the archive folder ``member`` (matched as a path suffix) into ``dest``, flat.

    Every entry of the archive is checked first: one with an absolute path, a '..', a link pointing
    outside or a device file makes the whole archive refused. Only regular files are written, by
    their base name, so nothing can land outside ``dest``. Returns the number of images.
    """
    label = label or str(archive)
    member = member.strip("/")
    try:
        with contextlib.ExitStack() as stack:
            if zipfile.is_zipfile(archive):
                entries = _zip_entries(stack.enter_context(zipfile.ZipFile(archive)))
            elif tarfile.is_tarfile(archive):
                entries = _tar_entries(stack.enter_context(tarfile.open(archive)))
            else:
                raise UserError(f"{label}: not a zip or tar archive")
            for entry in entries:
                why = _unsafe(entry)
                if why:
                    raise UserError(f"{label}: refusing an unsafe archive: member {entry.name!r} {why}")
            chosen = [e for e in entries if e.kind == "file" and _is_image_in(e.name, member)]
            folders = sorted({posixpath.dirname(posixpath.normpath(e.name)) for e in chosen})
            if len(folders) != 1:
                found = f"several: {', '.join(folders)}" if folders else "none"
                raise UserError(
                    f"{label}: expected one folder {member!r} of images in the archive, found {found}"
                )
            for entry in chosen:
                with entry.open() as src, (dest / posixpath.basename(entry.name)).open("xb") as out:
                    shutil.copyfileobj(src, out)
    except _ARCHIVE_ERRORS as e:
        raise UserError(f"{label}: cannot extract the archive ({type(e).__name__}: {e})") from None
    return len(chosen)


def _is_image_in(name: str, member: str) -> bool:
    """True for a visible image file directly inside a folder whose path ends with ``member``."""
    folder, base = posixpath.split(posixpath.normpath(name))
    in_member = folder == member or folder.endswith("/" + member)
    return in_member and not base.startswith(".") and PurePosixPath(base).suffix.lower() in IMAGE_SUFFIXES
