"""Datasets: manifests (datasets/*.toml), the data directory, opening, scanning and verifying.

A manifest dataset NAME lives in ``<data dir>/NAME/`` (its images, flat) and is checked against the
pixel hashes in ``datasets/NAME.toml``; any other folder of images is a dataset without a manifest.
Reading a dataset never writes; only ``fetch`` and ``import_dataset`` write into a data directory,
through a hidden staging folder renamed into place once verified. See docs/datasets.md.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import importlib.util
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from bench.errors import UserError
from bench.images import IMAGE_SUFFIXES, BadImage, load_image, pixel_sha256

SOURCE_KINDS = ("files", "archive", "package")
# What reading a corrupt, encrypted or unsupported zip or tar raises.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, RuntimeError)


@dataclass(frozen=True)
class Source:
    """Where a manifest's images come from (the ``[source]`` table)."""

    kind: str  # "files": url + each image's file name; "archive": one zip/tar; "package": installed files
    url: str = ""  # files: base URL ending in "/"; archive: the archive's URL
    sha256: str = ""  # archive: SHA-256 of the archive file ("" when not pinned)
    member: str = ""  # archive: folder inside the archive holding the images (matched by path suffix)
    package: str = ""  # package: importable top-level package ...
    folder: str = ""  # ... and the folder inside it holding the images


@dataclass(frozen=True)
class Manifest:
    name: str
    title: str
    homepage: str
    licence: str
    citation: str
    note: str
    count: int  # expected number of images
    hashes_pinned: bool  # False: verification checks count and readability only
    pixel_sha256: Mapping[str, str] = field(hash=False)  # file name -> pixel hash (bench.images)
    source: Source
    path: Path  # the TOML file


@dataclass(frozen=True)
class ImageInfo:
    name: str  # file name inside the dataset folder
    path: Path
    sha256: str  # pixel_sha256 of the decoded RGB
    height: int
    width: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class BadFile:
    path: Path
    reason: str  # without the path


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path
    files: tuple[Path, ...]  # sorted by name
    manifest: Manifest | None


def default_data_dir(explicit: str | Path | None = None) -> Path:
    """--data-dir, else $BENCH_DATA_DIR, else ($XDG_CACHE_HOME or ~/.cache)/codec-bench/datasets."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "codec-bench" / "datasets"


def manifests_dir() -> Path:
    """The repository's datasets/ folder, or $BENCH_DATASETS_DIR."""
    if os.environ.get("BENCH_DATASETS_DIR"):
        return Path(os.environ["BENCH_DATASETS_DIR"])
    import bench

    return Path(bench.__file__).resolve().parent.parent / "datasets"


def manifests() -> dict[str, Manifest]:
    """Every datasets/*.toml, by name."""
    return {m.name: m for m in map(load_manifest, sorted(manifests_dir().glob("*.toml")))}


def load_manifest(path: Path) -> Manifest:
    """Parse and check one manifest; raises UserError naming the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        source = Source(**data.pop("source"))
        hashes = dict(data.pop("pixel_sha256", {}))
        pinned = data.pop("hashes_pinned", bool(hashes))
        count = data.pop("count", len(hashes))
        texts = {k: data.pop(k, "") for k in ("name", "title", "homepage", "licence", "citation", "note")}
        if data:
            raise UserError(f"bad dataset manifest {path}: unknown keys {', '.join(sorted(data))}")
        m = Manifest(
            **texts,
            count=count,
            hashes_pinned=pinned,
            pixel_sha256=hashes,
            source=source,
            path=path,
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise UserError(f"bad dataset manifest {path}: {type(e).__name__}: {e}") from None
    problem = _manifest_problem(m)
    if problem:
        raise UserError(f"bad dataset manifest {path}: {problem}")
    return m


def _manifest_problem(m: Manifest) -> str | None:
    s = m.source
    if m.name != m.path.stem:
        return f"name {m.name!r} differs from the file name"
    if s.kind not in SOURCE_KINDS:
        return f"source kind {s.kind!r} is not one of {', '.join(SOURCE_KINDS)}"
    if m.hashes_pinned != bool(m.pixel_sha256):
        return "hashes_pinned must be true exactly when pixel_sha256 lists images"
    if m.hashes_pinned and m.count != len(m.pixel_sha256):
        return f"count {m.count} differs from the {len(m.pixel_sha256)} pinned hashes"
    if not isinstance(m.count, int) or m.count < 1:
        return "count must be a positive integer"
    if any(Path(n).name != n or n.startswith(".") for n in m.pixel_sha256):
        return "image names must be plain file names"
    if any(len(h) != 64 or set(h) - set("0123456789abcdef") for h in m.pixel_sha256.values()):
        return "pixel hashes must be 64 lowercase hex digits"
    if s.kind != "archive" and not m.hashes_pinned:
        return f"a {s.kind!r} source must list its images in pixel_sha256"
    if s.kind == "files" and not s.url.endswith("/"):
        return "a 'files' source needs url = the base URL, ending in '/'"
    if s.kind == "archive" and not (s.url and s.member):
        return "an 'archive' source needs url and member"
    if s.kind == "package" and not (s.package and s.folder):
        return "a 'package' source needs package and folder"
    return None


def manifest(name: str) -> Manifest:
    """The manifest called ``name``; raises UserError listing the known names."""
    known = manifests()
    if name not in known:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(known)}")
    return known[name]


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (not hidden), sorted by name."""
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def location(m: Manifest, data_dir: Path) -> Path:
    """Where the dataset's images are: <data dir>/NAME, or inside an installed package."""
    if m.source.kind != "package":
        return data_dir / m.name
    spec = importlib.util.find_spec(m.source.package)
    if spec is None or spec.origin is None:
        raise UserError(f"dataset {m.name} needs the Python package {m.source.package}: pip install it")
    return Path(spec.origin).parent / m.source.folder


def manifest_dataset(m: Manifest, root: Path) -> Dataset:
    """The dataset of manifest ``m`` whose images are in ``root`` (which must exist)."""
    if m.source.kind == "package":  # the package folder holds other files: take only the listed ones
        files = [root / n for n in sorted(m.pixel_sha256) if (root / n).is_file()]
    else:
        files = image_files(root)
    return Dataset(name=m.name, root=root, files=tuple(files), manifest=m)


def open_dataset(spec: str, data_dir: Path) -> Dataset:
    """``spec``: "sample", a manifest name (found in <data_dir>/NAME/) or a path to a folder of images."""
    known = manifests()
    if spec in known:
        m = known[spec]
        root = location(m, data_dir)
        if not root.is_dir():
            raise UserError(
                f"dataset {spec} is not in {data_dir}: get it with `bench datasets fetch {spec}` "
                f"or `bench datasets import {spec} DIR`"
            )
        dataset = manifest_dataset(m, root)
    else:
        root = Path(spec).expanduser()
        if not root.is_dir():
            raise UserError(f"{spec!r} is neither a known dataset ({', '.join(known)}) nor a folder")
        dataset = Dataset(name=root.resolve().name, root=root, files=tuple(image_files(root)), manifest=None)
    if not dataset.files:
        raise UserError(f"{root} holds no image files ({' '.join(sorted(IMAGE_SUFFIXES))})")
    return dataset


def scan(
    dataset: Dataset, limit: int | None = None, *, progress: bool = False
) -> tuple[list[ImageInfo], list[BadFile]]:
    """Load every file (the first ``limit`` when given) and check it against the manifest, if any."""
    from tqdm import tqdm

    files = dataset.files if limit is None else dataset.files[:limit]
    m = dataset.manifest
    expected = m.pixel_sha256 if m is not None and m.hashes_pinned else None
    infos: list[ImageInfo] = []
    bad: list[BadFile] = []
    for path in tqdm(files, desc=f"checking {dataset.name}", unit="image", disable=not progress, leave=False):
        try:
            image = load_image(path)
        except BadImage as e:
            bad.append(BadFile(path, e.reason))
            continue
        digest = pixel_sha256(image.rgb)
        if expected is not None and path.name not in expected:
            bad.append(BadFile(path, f"not an image of {dataset.name} (unexpected file name)"))
        elif expected is not None and expected[path.name] != digest:
            bad.append(
                BadFile(path, f"pixels differ from the {dataset.name} manifest (pixel sha256 {digest})")
            )
        else:
            h, w, _ = image.rgb.shape
            infos.append(ImageInfo(path.name, path, digest, h, w, image.notes))
    if m is not None and limit is None:
        if expected is not None:
            present = {p.name for p in files}
            bad += [BadFile(dataset.root / n, "missing") for n in sorted(expected) if n not in present]
        elif len(files) != m.count:
            bad.append(BadFile(dataset.root, f"expected {m.count} images, found {len(files)}"))
    return infos, bad


def require_valid(dataset: Dataset, progress: bool = False, where: str = "") -> list[ImageInfo]:
    """Scan ``dataset``; raise UserError naming the first problem when any file is bad."""
    infos, bad = scan(dataset, progress=progress)
    if bad:
        first = bad[0]
        what = first.reason if first.path == dataset.root else f"{first.path.name}: {first.reason}"
        raise UserError(f"{dataset.name}: {len(bad)} problem(s) in {where or dataset.root}; first: {what}")
    return infos


# Writing into a data directory: fetch and import. Both build the dataset in a hidden staging folder
# inside the data directory and rename it into place only once verified.


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
                _download(m.source.url + urllib.parse.quote(n), images / n, progress)
        else:
            archive = images.parent / "archive"
            digest = _download(m.source.url, archive, progress)
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


def _download(url: str, dest: Path, progress: bool) -> str:
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
