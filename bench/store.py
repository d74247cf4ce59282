"""The results store: one SQLite row per task, one transaction per finished task."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import pandas as pd

# 2: load_s; 3: repeats; 4: enc_peak_rss_mb, dec_peak_rss_mb; 5: kmac_px_*, *_gpu_peak_mb
SCHEMA_VERSION = 5

# name -> SQLite type; order is the column order of results.csv (docs/results.md describes each).
COLUMNS: dict[str, str] = {
    "dataset": "TEXT",
    "image": "TEXT",
    "image_sha256": "TEXT NOT NULL",
    "codec": "TEXT NOT NULL",
    "config_hash": "TEXT NOT NULL",
    "quality": "REAL NOT NULL",
    "width": "INTEGER",
    "height": "INTEGER",
    "bytes": "INTEGER",
    "bpp": "REAL",
    "psnr_rgb": "REAL",
    "psnr_y": "REAL",
    "ms_ssim": "REAL",
    "ms_ssim_db": "REAL",
    "enc_s": "REAL",
    "dec_s": "REAL",
    "enc_mps": "REAL",
    "dec_mps": "REAL",
    "metric_s": "REAL",
    "load_s": "REAL",
    "enc_peak_rss_mb": "REAL",
    "dec_peak_rss_mb": "REAL",
    "enc_gpu_peak_mb": "REAL",
    "dec_gpu_peak_mb": "REAL",
    "kmac_px_enc": "REAL",
    "kmac_px_dec": "REAL",
    "repeats": "INTEGER",
    "threads": "INTEGER",
    "jobs": "INTEGER",
    "device": "TEXT",
    "note": "TEXT",
    "error": "TEXT",
}
KEY = ("image_sha256", "codec", "config_hash", "quality")
TaskKey = tuple[str, str, str, float]


def row_key(row: dict[str, Any]) -> TaskKey:
    """The task key of a row: (image_sha256, codec, config_hash, quality)."""
    return (row["image_sha256"], row["codec"], row["config_hash"], float(row["quality"]))


class Store:
    """A results.sqlite file. Rows are keyed by (image_sha256, codec, config_hash, quality)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS results ({columns}, PRIMARY KEY ({', '.join(KEY)}))")
        present = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        for name in COLUMNS.keys() - present:  # a store of an older schema gains the new columns, empty
            self._db.execute(
                f"ALTER TABLE results ADD COLUMN {name} {COLUMNS[name].replace(' NOT NULL', '')}"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done_keys(self) -> set[TaskKey]:
        cursor = self._db.execute(f"SELECT {', '.join(KEY)} FROM results")
        return {(sha, codec, config, float(quality)) for sha, codec, config, quality in cursor}

    def add(self, row: dict[str, Any]) -> None:
        """Store one finished task in its own transaction; a task already stored is kept as it was."""
        names = list(COLUMNS)
        placeholders = ", ".join("?" for _ in names)
        with self._db:  # BEGIN ... COMMIT, rolled back on error
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR IGNORE INTO results ({', '.join(names)}) VALUES ({placeholders})",
                [row.get(name) for name in names],
            )

    def update(self, key: TaskKey, values: dict[str, Any]) -> None:
        """Set some columns of one stored row, in its own transaction."""
        unknown = set(values) - set(COLUMNS) | set(values) & set(KEY)
        if unknown:
            raise ValueError(f"cannot update column(s) {', '.join(sorted(unknown))}")
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"UPDATE results SET {assignments} WHERE {' AND '.join(f'{k} = ?' for k in KEY)}",
                [*values.values(), *key],
            )

    def rows(self, keys: Iterable[TaskKey]) -> list[dict[str, Any]]:
        """The stored rows of these task keys (those present)."""
        found = []
        query = f"SELECT * FROM results WHERE {' AND '.join(f'{k} = ?' for k in KEY)}"
        self._db.row_factory = sqlite3.Row
        try:
            for key in keys:
                found.extend(dict(row) for row in self._db.execute(query, key))
        finally:
            self._db.row_factory = None
        return found

    def frame(self) -> pd.DataFrame:
        frame = pd.read_sql_query("SELECT * FROM results ORDER BY codec, quality, image", self._db)
        return frame[list(COLUMNS)]


def rows_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with the schema's columns in order."""
    return pd.DataFrame(list(rows), columns=list(COLUMNS))
