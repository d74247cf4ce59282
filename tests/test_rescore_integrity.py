"""Kept bitstreams carry their sha256 in the store (issue 15, item 3): `bench rescore` refuses a changed
one, and each row it cannot rescore (a changed bitstream, a lic bitstream failing its CRC, a moved
image) is a `not rescored:` line while the others are rescored."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from bench.cli import cli

CRC = "lic bitstream is truncated or corrupted (stream CRC mismatch)"
ROW = "SELECT * FROM results WHERE codec = ? AND image = ?"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def query(database: Path, sql: str, *parameters) -> list[tuple]:
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute(sql, parameters).fetchall()
        connection.commit()
        return rows
    finally:
        connection.close()


def bitstream(run: Path, codec: str, image: str) -> Path:
    """The kept bitstream of ``codec`` on ``image`` (one quality per codec in these runs)."""
    ((config_hash, sha, quality),) = query(
        run / "results.sqlite", "SELECT config_hash, image_sha256, quality FROM results WHERE codec = ? "
        "AND image = ?", codec, image,
    )  # fmt: skip
    return run / "bitstreams" / config_hash / f"{sha}-q{quality:g}.bin"


def flip(path: Path) -> bytes:
    """Flip one bit three quarters into ``path`` (in a jpeg's entropy-coded data); return the bytes before."""
    before = path.read_bytes()
    changed = bytearray(before)
    changed[len(changed) * 3 // 4] ^= 0x10
    path.write_bytes(bytes(changed))
    return before


def not_rescored(result) -> list[str]:
    return sorted(line for line in result.output.splitlines() if line.startswith("not rescored: "))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """Two photos and a run of jpeg (q 50) and lic (q 2) over them that kept its bitstreams."""
    base = tmp_path_factory.mktemp("made")
    photos = base / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()[:64, :96]).save(photos / "a.png")
    Image.fromarray(data.chelsea()[:64, :96]).save(photos / "b.png")
    result = invoke("run", "--codecs", "jpeg,lic", "--dataset", photos, "--qualities", "jpeg=50", "--qualities",
                    "lic=2", "--executor", "inline", "--keep-bitstreams", "--metrics", "psnr_rgb",
                    "--out", base / "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    return photos, base / "run"


@pytest.fixture()
def run(made, tmp_path) -> Path:
    """A copy of the made run whose run.json points at a copy of its photos."""
    photos, original = made
    shutil.copytree(photos, tmp_path / "photos")
    shutil.copytree(original, tmp_path / "run")
    document = json.loads((tmp_path / "run" / "run.json").read_text())
    document["config"]["dataset"]["root"] = str(tmp_path / "photos")
    (tmp_path / "run" / "run.json").write_text(json.dumps(document))
    return tmp_path / "run"


def test_each_kept_bitstreams_sha256_is_stored_with_its_row(run):
    rows = query(run / "results.sqlite", "SELECT codec, image, bitstream_sha256 FROM results")
    assert len(rows) == 4
    for codec, image, sha in rows:
        assert sha == hashlib.sha256(bitstream(run, codec, image).read_bytes()).hexdigest()


def test_a_changed_jpeg_bitstream_is_not_rescored_and_its_row_kept(run):
    path = bitstream(run, "jpeg", "a.png")
    before = flip(path)
    decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in (before, path.read_bytes())]
    assert not np.array_equal(*decoded)  # the flipped bit changes the pixels a rescore would measure
    stored = query(run / "results.sqlite", ROW, "jpeg", "a.png")
    result = invoke("rescore", run)
    assert result.exit_code == 1
    sha = hashlib.sha256(before).hexdigest()
    changed = f"the kept bitstream changed since it was kept (sha256 {sha[:16]}... expected)"
    assert not_rescored(result) == [f"not rescored: jpeg a.png q=50: {changed}"]
    assert f"rescored 3 row(s) of {run}; 1 not rescored" in result.output
    assert query(run / "results.sqlite", ROW, "jpeg", "a.png") == stored


def test_a_schema_6_store_rescores_by_length_a_lic_crc_failure_and_a_moved_image_are_lines(run):
    database = run / "results.sqlite"
    query(database, "ALTER TABLE results DROP COLUMN bitstream_sha256")  # as stored before schema 7
    measured = query(database, "SELECT psnr_rgb FROM results WHERE codec = 'jpeg' AND image = 'b.png'")
    query(database, "UPDATE results SET psnr_rgb = 0")
    flip(bitstream(run, "lic", "b.png"))
    photos = Path(json.loads((run / "run.json").read_text())["config"]["dataset"]["root"])
    (photos / "a.png").rename(photos.parent / "a-moved.png")
    result = invoke("rescore", run)
    assert result.exit_code == 1
    assert not_rescored(result) == [
        f"not rescored: jpeg a.png q=50: {photos / 'a.png'}: no such file",
        f"not rescored: lic a.png q=2: {photos / 'a.png'}: no such file",
        f"not rescored: lic b.png q=2: BitstreamError: {CRC}",
    ]
    assert f"rescored 1 row(s) of {run}; 3 not rescored" in result.output
    rows = query(database, "SELECT codec, image, psnr_rgb, bitstream_sha256 FROM results ORDER BY 1, 2")
    assert [row[:2] for row in rows if row[2] != 0] == [("jpeg", "b.png")]  # the one rescored
    assert (
        query(database, "SELECT psnr_rgb FROM results WHERE codec = 'jpeg' AND image = 'b.png'") == measured
    )
    assert all(row[3] is None for row in rows)  # the upgraded store's rows have no sha256 to check


def test_a_cached_bitstream_that_changed_is_not_taken(tmp_path, made):
    photos, _ = made
    cache = tmp_path / "cache"
    args = ["run", "--codecs", "jpeg", "--dataset", photos, "--qualities", "jpeg=30,60", "--executor", "inline",
            "--keep-bitstreams", "--metrics", "psnr_rgb", "--cache", cache]  # fmt: skip
    assert invoke(*args, "--out", tmp_path / "a").exit_code == 0
    kept = sorted((cache / "bitstreams").rglob("*.bin"))
    assert len(kept) == 4
    before = flip(kept[0])
    result = invoke(*args, "--out", tmp_path / "b")
    assert result.exit_code == 0 and "note: 3 task(s) taken from the cache" in result.output, result.output
    assert "1 task(s) run" in result.output
    copied = tmp_path / "b" / kept[0].relative_to(cache)
    assert copied.read_bytes() == before  # encoded again, not copied from the changed file
