"""The results store: one SQLite row per task, one transaction per finished task. A file that is not
a store, a link, a full disk or any other SQLite failure is one line (bench.files.FilesystemError)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import pandas as pd

from bench.files import KEPT, FilesystemError, refuse_links
from bench.measures import NOTES_COLUMN, VERSIONS_COLUMN, measures

# 2: load_s; 3: repeats; 4: *_peak_rss_mb; 5: kmac_px_*, *_gpu_peak_mb; 6: metric_versions and
# metric_notes (one note per metric) replace note; 7: bitstream_sha256; columns come from the registry
# (bench.measures)
SCHEMA_VERSION = 7
LEGACY_METRICS = ("psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db")  # computed before schema 6, version 1


def columns() -> dict[str, str]:
    """Column name -> SQLite type, in results.csv order: every registered measure."""
    return {name: measure.sql for name, measure in measures().items()}


SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's own files next to the store
NOT_A_STORE = ("SQLITE_NOTADB", "SQLITE_CORRUPT")
KEY = ("image_sha256", "codec", "config_hash", "quality")
TaskKey = tuple[str, str, str, float]


def row_key(row: dict[str, Any]) -> TaskKey:
    """The task key of a row: (image_sha256, codec, config_hash, quality)."""
    return (row["image_sha256"], row["codec"], row["config_hash"], float(row["quality"]))


class Store:
    """A results.sqlite file. Rows are keyed by (image_sha256, codec, config_hash, quality)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        refuse_links(self.path.parent, [self.path.name] + [self.path.name + side for side in SIDE_FILES])
        self.columns = columns()
        with self._errors("open"):
            self._db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions below
            try:
                self._open()
            except BaseException:
                self._db.close()
                raise

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "results" not in tables:
            raise FilesystemError(f"{self.path}: not a codec-bench results database (no results table)")
        declared = ", ".join(f"{name} {kind}" for name, kind in self.columns.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS results ({declared}, PRIMARY KEY ({', '.join(KEY)}))")
        present = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for name in self.columns.keys() - present:  # an older store gains the new columns, empty
                kind = self.columns[name].replace(" NOT NULL", "")
                self._db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
            if VERSIONS_COLUMN not in present:
                self._upgrade_to_metric_versions("note" in present)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """SQLite's failures to ``action`` the store as one line: not a store, or why it cannot."""
        try:
            yield
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) else exc
            name = getattr(cause, "sqlite_errorname", "")
            if name in NOT_A_STORE:
                raise FilesystemError(f"{self.path}: not a codec-bench results database ({cause})") from None
            if not isinstance(cause, sqlite3.OperationalError):
                raise
            kept = f" ({KEPT})" if action == "write" else ""
            raise FilesystemError(f"{self.path}: cannot {action}: {cause}{kept}") from None

    def _upgrade_to_metric_versions(self, has_note: bool) -> None:
        """Rows of a store older than schema 6 get the versions of the metrics they hold (version 1:
        their definitions have not changed) and their shared note as each MS-SSIM metric's note."""
        for name in LEGACY_METRICS:
            self._db.execute(
                f"UPDATE results SET {VERSIONS_COLUMN} = json_set(coalesce({VERSIONS_COLUMN}, '{{}}'), "
                f"'$.{name}', '1') WHERE error IS NULL AND ({name} IS NOT NULL"
                + (" OR note IS NOT NULL)" if has_note else ")")
            )
        if has_note:
            self._db.execute(
                f"UPDATE results SET {NOTES_COLUMN} = json_object('ms_ssim', note, 'ms_ssim_db', note) "
                "WHERE note IS NOT NULL AND note != ''"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, row: dict[str, Any], replace: bool = False) -> None:
        """Store one finished task in its own transaction; a task already stored is kept as it was, or
        replaced with ``replace``."""
        names = list(self.columns)
        placeholders = ", ".join("?" for _ in names)
        with self._errors("write"), self._db:  # BEGIN ... COMMIT, rolled back on error
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO results ({', '.join(names)}) VALUES ({placeholders})",
                [row.get(name) for name in names],
            )

    def update(self, key: TaskKey, values: dict[str, Any]) -> None:
        """Set some columns of one stored row, in its own transaction."""
        unknown = set(values) - set(self.columns) | set(values) & set(KEY)
        if unknown:
            raise ValueError(f"cannot update column(s) {', '.join(sorted(unknown))}")
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._errors("write"), self._db:
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
            with self._errors("read"):
                for key in keys:
                    found.extend(dict(row) for row in self._db.execute(query, key))
        finally:
            self._db.row_factory = None
        return found

    def frame(self) -> pd.DataFrame:
        with self._errors("read"):
            frame = pd.read_sql_query("SELECT * FROM results ORDER BY codec, quality, image", self._db)
        return frame[list(self.columns)]
