"""`bench codecs fetch`: CompressAI's published checkpoints downloaded to where the adapter reads them.

Each file is checked as torch.hub checks it: the hex digits after the last ``-`` of its name (before
the first ``.`` that follows) must begin its SHA-256. That is an integrity check, not authenticity;
the adapter loads checkpoints with ``weights_only=True``. A download goes to a temporary file in the
target folder, renamed only once verified, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.adapters.compressai_zoo import CompressAIZooCodec
from bench.catalog import CatalogEntry
from bench.errors import UserError
from bench.fetch import download

BASE_URL_VARIABLE = "BENCH_COMPRESSAI_URL"  # replaces the scheme and host of compressai's model_urls


@dataclass(frozen=True)
class Checkpoint:
    quality: int
    path: Path
    downloaded: bool


def fetchable(catalog: dict[str, CatalogEntry]) -> list[str]:
    """The catalog entries whose checkpoints `bench codecs fetch` can download."""
    return [name for name, entry in catalog.items() if entry.adapter == "compressai"]


def fetch_checkpoints(
    entry: CatalogEntry, qualities: list[int] | None = None, progress: bool = False
) -> list[Checkpoint]:
    """Download the entry's checkpoints for ``qualities`` [default: its sweep], skipping verified ones."""
    codec = CompressAIZooCodec(entry.name, entry.options)
    chosen = qualities or [int(q) for q in entry.qualities]
    wrong = [q for q in chosen if q not in codec.qualities]
    if wrong:
        raise UserError(
            f"{entry.name}: no quality {', '.join(map(str, wrong))}; {codec.architecture} has "
            f"{codec.qualities[0]}-{codec.qualities[-1]}"
        )
    return [_fetch_one(codec, quality, progress) for quality in chosen]


def _checkpoint_url(codec: CompressAIZooCodec, quality: int) -> str:
    """compressai's URL of the checkpoint, on the host named by $BENCH_COMPRESSAI_URL when set."""
    from compressai.zoo.image import model_urls

    url = model_urls[codec.architecture][codec.metric][quality]
    base = os.environ.get(BASE_URL_VARIABLE)
    return base.rstrip("/") + urllib.parse.urlsplit(url).path if base else url


def _hash_prefix(file_name: str) -> str:
    """The SHA-256 prefix a checkpoint's name carries, by torch.hub's rule; refused when there is none."""
    from torch.hub import HASH_REGEX

    match = HASH_REGEX.search(file_name)
    if not match or not match.group(1):
        raise UserError(f"{file_name} names no SHA-256 prefix: it cannot be verified")
    return match.group(1)


def _fetch_one(codec: CompressAIZooCodec, quality: int, progress: bool) -> Checkpoint:
    name, path = codec.file_name(quality), codec.checkpoint(quality)
    if path.name != name:
        raise UserError(
            f"{codec.name}: option weights={codec.options['weights']!r} is not a folder: fetch writes "
            f'{name} into the torch hub cache (weights = "") or into the folder option weights names'
        )
    prefix = _hash_prefix(name)
    if path.is_file():
        if _sha256(path).startswith(prefix):
            return Checkpoint(quality, path, downloaded=False)
        raise UserError(
            f"{path} exists but its SHA-256 does not begin with {prefix}: delete it to fetch again"
        )
    url = _checkpoint_url(codec, quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{name}.{uuid.uuid4().hex}.partial"
    try:
        try:
            digest = download(url, temporary, progress)
            if not digest.startswith(prefix):
                raise UserError(
                    f"download of {url} is corrupted: its SHA-256 {digest} does not begin with {prefix}"
                )
        except UserError as exc:
            raise UserError(f"{exc} (bench run never downloads; copy {name} to {path} instead)") from None
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return Checkpoint(quality, path, downloaded=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
