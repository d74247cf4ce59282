"""Datasets: manifests (datasets/*.toml), the data directory, opening, scanning and verifying.

A manifest dataset NAME lives in ``<data dir>/NAME/`` (its images, flat) and is checked against the
pixel hashes in ``datasets/NAME.toml``; any other folder of images is a dataset without a manifest.
Reading a dataset never writes; only bench.fetch writes into a data directory. See docs/datasets.md.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.errors import UserError
from bench.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, BadImage, load_image, pixel_sha256
from bench.quoting import quoted
from bench.resources import manifests_dir

SOURCE_KINDS = ("files", "archive", "package")


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

    def __str__(self) -> str:
        return f"{quoted(self.path)}: {self.reason}"


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
    dataset: Dataset,
    limit: int | None = None,
    *,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[ImageInfo], list[BadFile]]:
    """Load every file (the first ``limit`` when given; none over ``max_pixels``) and check it against the
    manifest, if any."""
    from tqdm import tqdm

    files = dataset.files if limit is None else dataset.files[:limit]
    m = dataset.manifest
    expected = m.pixel_sha256 if m is not None and m.hashes_pinned else None
    infos: list[ImageInfo] = []
    bad: list[BadFile] = []
    for path in tqdm(files, desc=f"checking {dataset.name}", unit="image", disable=not progress, leave=False):
        try:
            image = load_image(path, max_pixels=max_pixels)
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
    infos = _merge_duplicates(infos)
    if m is not None and limit is None:
        if expected is not None:
            present = {p.name for p in files}
            bad += [BadFile(dataset.root / n, "missing") for n in sorted(expected) if n not in present]
        elif len(files) != m.count:
            bad.append(BadFile(dataset.root, f"expected {m.count} images, found {len(files)}"))
    return infos, bad


def _merge_duplicates(infos: list[ImageInfo]) -> list[ImageInfo]:
    """One image per distinct pixels (the store is keyed by them): the first file, with a note naming
    every file that holds those pixels."""
    files: dict[str, list[ImageInfo]] = {}
    for info in infos:
        files.setdefault(info.sha256, []).append(info)
    merged = []
    for same in files.values():
        first = same[0]
        if len(same) > 1:
            names = ", ".join(quoted(info.name) for info in same)
            note = f"same pixels in {names} (measured once, as the first)"
            first = replace(first, notes=(*first.notes, note))
        merged.append(first)
    return merged


def require_valid(dataset: Dataset, progress: bool = False, where: str = "") -> list[ImageInfo]:
    """Scan ``dataset``; raise UserError naming the first problem when any file is bad."""
    infos, bad = scan(dataset, progress=progress)
    if bad:
        first = bad[0]
        what = first.reason if first.path == dataset.root else f"{quoted(first.path.name)}: {first.reason}"
        raise UserError(f"{dataset.name}: {len(bad)} problem(s) in {where or dataset.root}; first: {what}")
    return infos
