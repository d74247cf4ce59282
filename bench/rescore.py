"""Metrics recomputed from kept bitstreams, without re-encoding: `bench rescore RUN`, and the rows a
resumed or cached run lacks metrics for (bench.runner).

A row is rescored from its kept bitstream (whose length and sha256 must still be the row's), decoded
with the run's own catalog entry, against the original image (whose pixel hash must still match);
rates and times stay as measured. Each row that cannot be rescored (a changed or missing bitstream, a
moved image, a decoder error) is a problem line, ``<config> <image> q=<quality>: <reason>``; the
others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from errno import ENOENT
from pathlib import Path
from typing import Any

import numpy as np

from bench import measures
from bench.codec import Codec, CodecUnavailable, open_codec, trusted_entry
from bench.errors import UserError
from bench.files import FilesystemError
from bench.images import BadImage, load_image, pixel_sha256
from bench.labels import Configuration, configuration_labels
from bench.quoting import quoted
from bench.rundir import (
    BITSTREAMS,
    DATABASE,
    CodecRecord,
    Manifest,
    read_bitstream,
    read_manifest,
    run_dir_lock,
    write_csv,
    write_manifest,
)
from bench.store import Store, row_key


@dataclass
class Rescorer:
    """Rescores rows: the images by pixel hash (file paths), the codecs by config hash (opened with
    bench.codec.open_codec, held to the run's library versions)."""

    images: dict[str, Path]
    codecs: dict[str, CodecRecord]
    refused: dict[str, str] = field(default_factory=dict)  # config hash or image sha256 -> why not used
    problems: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(init=False)  # config hash -> label
    _image: tuple[str, np.ndarray | None] = ("", None)

    def __post_init__(self) -> None:
        records = list(self.codecs.values())
        configurations = [Configuration(c.name, dict(c.entry.options), "", c.config_hash) for c in records]
        self.labels = dict(zip(self.codecs, configuration_labels(configurations), strict=True))

    def where(self, row: dict[str, Any]) -> str:
        """``<config> <image> q=<quality>``: the row's configuration labelled as in the run's tables."""
        label = self.labels.get(row["config_hash"], row["codec"])
        return f"{quoted(label)} {quoted(row['image'])} q={float(row['quality']):g}"

    def _pixels(self, sha: str) -> np.ndarray:
        if sha in self.refused:
            raise LookupError(self.refused[sha])
        if self._image[0] != sha:
            try:
                self._image = (sha, self._load(sha))
            except (LookupError, BadImage) as exc:
                self.refused[sha] = str(exc)
                raise
        return self._image[1]

    def _load(self, sha: str) -> np.ndarray:
        path = self.images.get(sha)
        if path is None:
            raise LookupError("its image is not in run.json")
        image = load_image(path).rgb
        if pixel_sha256(image) != sha:
            raise LookupError(f"{path}: the image's pixels changed since the run")
        return image

    def _codec(self, config_hash: str) -> Codec:
        if config_hash in self.refused:
            raise LookupError(self.refused[config_hash])
        record = self.codecs.get(config_hash)
        if record is None:
            raise LookupError("its codec configuration is not in run.json")
        return open_codec(record.entry, record.versions)

    def columns(self, row: dict[str, Any], folder: Path, names: Iterable[str]) -> dict[str, Any] | None:
        """The metric columns of ``row`` recomputed from its bitstream kept in ``folder``, or None (a
        problem)."""
        try:
            data = read_bitstream(folder, row_key(row), int(row["bytes"]), row.get("bitstream_sha256"))
            image = self._pixels(row["image_sha256"])
            decoded = self._codec(row["config_hash"]).decode(data, image.shape[:2])
            if decoded.shape != image.shape or decoded.dtype != np.uint8:
                raise ValueError(
                    f"decoder returned {decoded.dtype} {decoded.shape}, expected uint8 {image.shape}"
                )
            return measures.merged(row, measures.compute(names, image, decoded))
        except FilesystemError as exc:
            self.problems.append(f"{self.where(row)}: {'no kept bitstream' if exc.errno == ENOENT else exc}")
        except (OSError, LookupError, BadImage, CodecUnavailable) as exc:
            self.problems.append(f"{self.where(row)}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a codec or metric failure is a problem line; the rest go on
            self.problems.append(f"{self.where(row)}: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return None


@dataclass
class Rescored:
    rows: int = 0
    problems: list[str] = field(default_factory=list)


def rescorer_for(manifest: Manifest) -> Rescorer:
    """A Rescorer of the run described by ``manifest``: its images where run.json says, its codecs'
    catalog entries, each refused once here unless bench.codec.trusted_entry lets it run."""
    images, refused = {}, {}
    for image in manifest.dataset.images:
        try:
            images[image.sha256] = manifest.dataset.image_path(image.name)
        except LookupError as exc:
            refused[image.sha256] = str(exc)
    for codec in manifest.codecs:
        try:
            trusted_entry(codec.entry, "run.json")
        except CodecUnavailable as exc:
            refused[codec.config_hash] = str(exc)
    return Rescorer(images, {codec.config_hash: codec for codec in manifest.codecs}, refused)


def rescore(run_dir: Path, spec: str | None = None, progress: Callable[[int], Any] | None = None) -> Rescored:
    """Recompute the metrics ``spec`` (bench.measures grammar; default: the run's own) of every
    successful row of ``run_dir`` from its kept bitstream; run.json then lists them among its metrics.
    ``progress(total)`` makes a bar (``update``, ``close``) that counts the rows."""
    folder = run_dir / BITSTREAMS
    if not folder.is_dir():
        raise UserError(f"{run_dir} has no kept bitstreams: run it with --keep-bitstreams to rescore it")
    manifest = read_manifest(run_dir)
    recorded = [
        name for name in manifest.metrics if name in measures.all_metrics()
    ] or measures.default_metrics()
    names = measures.with_sources(measures.resolve_metrics(spec, recorded) if spec else recorded)
    measures.check_available(names)
    rescorer = rescorer_for(manifest)
    done = Rescored(problems=rescorer.problems)
    with run_dir_lock(run_dir), Store(run_dir / DATABASE) as store:
        frame = store.frame()
        rows = frame[frame["error"].isna()].to_dict("records")
        bar = progress(len(rows)) if progress else None
        try:
            for row in rows:
                columns = rescorer.columns(row, folder, names)
                if columns is not None:
                    store.update(row_key(row), columns)
                    done.rows += 1
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        write_csv(run_dir, store.frame())
        manifest.metrics = measures.with_sources([*manifest.metrics, *names])
        write_manifest(run_dir, manifest)
    return done
