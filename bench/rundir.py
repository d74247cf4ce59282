"""A run directory: its layout, its lock and its run.json (a typed Manifest), read and written here only.

Layout: ``run.json`` (the configuration and provenance), ``results.sqlite`` (the store),
``results.csv`` (its export), ``bitstreams/<config hash>/<image sha256>-q<quality>.bin`` (with
--keep-bitstreams; the cache folder keeps them the same way) and ``.lock``. Within a run, codec
configurations are told apart by their config hash (``Manifest.codec``). Every file is read and
written through bench.files: no link inside the directory is followed, and writes are atomic.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import files
from bench.catalog import CatalogEntry
from bench.errors import UserError
from bench.store import SCHEMA_VERSION, TaskKey

RUN_JSON = "run.json"
DATABASE = "results.sqlite"
CSV = "results.csv"
BITSTREAMS = "bitstreams"
LOCK = ".lock"
RUN_JSON_LIMIT = 64 << 20  # bytes: a larger run.json is not read


def bitstream_path(folder: Path, key: TaskKey) -> Path:
    """Where a task's bytes are kept: <folder>/<config hash>/<image sha256>-q<quality>.bin (rows of two
    targets that land on the same quality share the file: the same encode)."""
    image_sha256, _, config_hash, quality = key[:4]
    return Path(folder) / config_hash / f"{image_sha256}-q{quality:g}.bin"


def keep_bitstream(folder: Path, key: TaskKey, data: bytes) -> str:
    """Write a task's bytes where bitstream_path says, atomically; return their sha256 (hex)."""
    path = bitstream_path(folder, key)
    files.write(folder.parent, path.relative_to(folder.parent), data)
    return hashlib.sha256(data).hexdigest()


def read_bitstream(folder: Path, key: TaskKey, size: int, sha256: str | None) -> bytes:
    """A kept bitstream, refused (LookupError) unless it has ``size`` bytes and, when the row recorded
    one (schema 7 on), this sha256. A missing one raises FilesystemError with errno ENOENT."""
    path = bitstream_path(folder, key)
    try:
        data = files.read(folder.parent, path.relative_to(folder.parent), size)
    except files.FilesystemError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise LookupError(str(exc)) from None
    if len(data) != size:
        raise LookupError(f"the kept bitstream has {len(data)} bytes, the row {size}")
    if isinstance(sha256, str) and hashlib.sha256(data).hexdigest() != sha256:
        raise LookupError(f"the kept bitstream changed since it was kept (sha256 {sha256[:16]}... expected)")
    return data


def write_csv(run_dir: Path, rows: pd.DataFrame) -> None:
    """Replace ``run_dir``/results.csv with ``rows``, atomically."""
    files.write(run_dir, CSV, rows.to_csv(index=False).encode())


@dataclass(frozen=True)
class CodecRecord:
    """One codec configuration of a run: its resolved catalog entry, threads, library versions, config
    hash and qualities, and what a Dask worker must offer to run it."""

    entry: CatalogEntry
    threads: int
    versions: dict[str, str]
    config_hash: str
    qualities: tuple[float, ...]
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entry.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.entry.name,
            "config_hash": self.config_hash,
            "threads": self.threads,
            "qualities": list(self.qualities),
            "versions": dict(self.versions),
            "resources": dict(self.resources),
            "entry": self.entry.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecRecord:
        return cls(
            CatalogEntry.from_dict(data["entry"], source="run.json"),
            int(data["threads"]),
            {str(k): str(v) for k, v in data.get("versions", {}).items()},
            str(data["config_hash"]),
            tuple(float(q) for q in data["qualities"]),
            {str(k): float(v) for k, v in data.get("resources", {}).items()},
        )


@dataclass(frozen=True)
class ImageRecord:
    name: str
    sha256: str
    width: int
    height: int
    notes: tuple[str, ...] = ()


@dataclass
class DatasetRecord:
    """The dataset of a run: its name, how it was asked for (spec, data dir, limit), where its images
    were (root), each image read and each file skipped."""

    name: str
    spec: str
    root: str
    data_dir: str | None
    limit: int | None
    images: list[ImageRecord]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "root": self.root,
            "data_dir": self.data_dir,
            "limit": self.limit,
            "images": [
                {
                    "name": i.name,
                    "sha256": i.sha256,
                    "width": i.width,
                    "height": i.height,
                    "notes": list(i.notes),
                }
                for i in self.images
            ],
            "skipped": list(self.skipped),
        }

    def image_path(self, name: str) -> Path:
        """Where the image ``name`` was: a path inside ``root``; LookupError for a name that is absolute
        or climbs out of it (run.json is data: it chooses no file elsewhere)."""
        root = Path(self.root)
        if not self.root or not files.inside(root, name):
            raise LookupError(f"run.json names the image {name!r} outside its dataset root {self.root!r}")
        return root / name

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetRecord:
        images = [
            ImageRecord(
                str(i["name"]), str(i["sha256"]), int(i["width"]), int(i["height"]), tuple(i.get("notes", ()))
            )
            for i in data["images"]
        ]
        return cls(
            str(data["name"]),
            str(data.get("spec", data["name"])),
            str(data["root"]),
            data.get("data_dir"),
            data.get("limit"),
            images,
            list(data.get("skipped", [])),
        )


@dataclass
class Manifest:
    """run.json: the schema version, the configuration id, the resolved configuration and provenance."""

    config_id: str
    dataset: DatasetRecord
    codecs: list[CodecRecord]
    threads: int | None
    jobs: int
    executor: str
    timing: dict[str, Any]
    metrics: list[str]
    provenance: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    search: dict[str, Any] = field(default_factory=dict)  # a search run's target labels and rate tolerance

    def codec(self, config_hash: str) -> CodecRecord | None:
        """The configuration with this config hash, or None."""
        return next((c for c in self.codecs if c.config_hash == config_hash), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "config_id": self.config_id,
            "config": {
                "dataset": self.dataset.to_dict(),
                "codecs": [codec.to_dict() for codec in self.codecs],
                "threads": self.threads,
                "jobs": self.jobs,
                "executor": self.executor,
                "timing": dict(self.timing),
                "metrics": list(self.metrics),
            }
            | ({"search": dict(self.search)} if self.search else {}),
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Manifest:
        """Raises KeyError, TypeError or ValueError for a document that is not a run.json."""
        config = document["config"]
        return cls(
            str(document["config_id"]),
            DatasetRecord.from_dict(config["dataset"]),
            [CodecRecord.from_dict(codec) for codec in config["codecs"]],
            config.get("threads"),
            int(config.get("jobs") or 1),
            str(config.get("executor", "local")),
            dict(config.get("timing", {})),
            [str(name) for name in config.get("metrics", [])],
            dict(document.get("provenance", {})),
            int(document.get("schema_version", 0)),
            dict(config.get("search", {})),
        )


def read_manifest(path: Path) -> Manifest:
    """The Manifest of a run.json file (or of a run directory's); a missing or malformed one is a
    UserError that says what is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_JSON
    try:
        return Manifest.from_dict(json.loads(files.read(path.parent, path.name, RUN_JSON_LIMIT)))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable run.json ({exc})") from None
    except KeyError as exc:
        raise UserError(f"{path}: not a run.json (no {exc} key)") from None
    except (TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a run.json ({type(exc).__name__}: {exc})") from None


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    """Replace ``run_dir``/run.json atomically."""
    files.write(run_dir, RUN_JSON, (json.dumps(manifest.to_dict(), indent=2) + "\n").encode())


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock (an flock on .lock) for one run; refuse if another run holds it,
    or if the directory or its bitstreams folder holds a symbolic link."""
    files.make_folder(run_dir)
    files.refuse_links(run_dir)
    if (run_dir / BITSTREAMS).is_dir():
        files.refuse_links(run_dir / BITSTREAMS)
    fd = files.open_regular(run_dir / LOCK, os.O_RDWR | os.O_CREAT, "write")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise UserError(
                f"another bench run (pid {holder}) is writing to {run_dir}: wait for it, or use another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:
            raise files.failure(run_dir / LOCK, exc) from None
        yield
    finally:
        os.close(fd)  # releases the flock
