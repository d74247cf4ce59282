"""The results store: one SQLite row per task, one transaction per finished task. A file that is not
a store, a link, a full disk or any other SQLite failure is one line (bench.files.FilesystemError)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import pandas as pd

from bench.files import KEPT, FilesystemError, refuse_links
from bench.measures import NOTES_COLUMN, VERSIONS_COLUMN, measures

# 2: load_s; 3: repeats; 4: *_peak_rss_mb; 5: kmac_px_*, *_gpu_peak_mb; 6: metric_versions and
# metric_notes (one note per metric) replace note; 7: bitstream_sha256; 8: target (in the key),
# target_met, probes, target_note and the probes table; columns come from the registry (bench.measures)
SCHEMA_VERSION = 8
LEGACY_METRICS = ("psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db")  # computed before schema 6, version 1


def columns() -> dict[str, str]:
    """Column name -> SQLite type, in results.csv order: every registered measure."""
    return {name: measure.sql for name, measure in measures().items()}


SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's own files next to the store
NOT_A_STORE = ("SQLITE_NOTADB", "SQLITE_CORRUPT")
KEY = ("image_sha256", "codec", "config_hash", "quality", "target")
TaskKey = tuple[str, str, str, float, str]
PROBE_KEY = ("image_sha256", "codec", "config_hash", "quality")
ProbeKey = tuple[str, str, str, float]


def row_key(row: dict[str, Any]) -> TaskKey:
    """The task key of a row: (image_sha256, codec, config_hash, quality, target)."""
    target = row.get("target")
    return (
        row["image_sha256"],
        row["codec"],
        row["config_hash"],
        float(row["quality"]),
        target if isinstance(target, str) else "",
    )


def fixed_key(key: TaskKey) -> TaskKey:
    """The key the same encode has in a run at fixed qualities (the cache keeps rows under it)."""
    return (*key[:4], "")


SEARCH_COLUMNS = ("target", "target_met", "probes", "target_note")


def as_fixed(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a run at fixed qualities holds it (no target columns): how the cache keeps every row,
    so that a search's row serves a later run at that quality and the other way round."""
    return row | {name: None for name in SEARCH_COLUMNS} | {"target": ""}


class Store:
    """A results.sqlite file. Rows are keyed by (image_sha256, codec, config_hash, quality, target); the
    probes table holds what the searches measured per knob value (``add_probe``, ``probes``)."""

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
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS probes (image_sha256 TEXT NOT NULL, codec TEXT NOT NULL, "
            "config_hash TEXT NOT NULL, quality REAL NOT NULL, bytes INTEGER, scores TEXT, error TEXT, "
            f"PRIMARY KEY ({', '.join(PROBE_KEY)}))"
        )
        present = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if "target" not in present:
                self._add_target_to_key(present)
                present.add("target")
            for name in self.columns.keys() - present:  # an older store gains the new columns, empty
                kind = self.columns[name].replace(" NOT NULL", "")
                self._db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
            if VERSIONS_COLUMN not in present:
                self._upgrade_to_metric_versions("note" in present)

    def _add_target_to_key(self, present: set[str]) -> None:
        """A store older than schema 8: its rows move to a table keyed by target too (theirs empty)."""
        declared = ", ".join(f"{name} {self.columns[name]}" for name in KEY)
        copied = ", ".join(name for name in KEY[:-1])
        self._db.execute(f"CREATE TABLE results_8 ({declared}, PRIMARY KEY ({', '.join(KEY)}))")
        self._db.execute(f"INSERT INTO results_8 ({copied}, target) SELECT {copied}, '' FROM results")
        for name in present - set(KEY):
            self._db.execute(f"ALTER TABLE results_8 ADD COLUMN {name}")
            self._db.execute(
                f"UPDATE results_8 SET {name} = (SELECT {name} FROM results AS old WHERE "
                + " AND ".join(f"old.{k} = results_8.{k}" for k in KEY[:-1])
                + ")"
            )
        self._db.execute("DROP TABLE results")
        self._db.execute("ALTER TABLE results_8 RENAME TO results")

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
        values = {name: row.get(name) for name in names} | {"target": row_key(row)[-1]}
        with self._errors("write"), self._db:  # BEGIN ... COMMIT, rolled back on error
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO results ({', '.join(names)}) VALUES ({placeholders})",
                list(values.values()),
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

    def add_probe(self, key: ProbeKey, size: int | None, scores: dict[str, Any], error: str | None) -> None:
        """Record one probe (its bytes, the scores it was given: metric -> [value, version], or why it
        failed) in its own transaction; a second probe of the same knob value adds its scores."""
        with self._errors("write"), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            found = self._db.execute(
                f"SELECT scores FROM probes WHERE {' AND '.join(f'{k} = ?' for k in PROBE_KEY)}", key
            ).fetchone()
            merged = (json.loads(found[0]) if found and found[0] else {}) | scores
            self._db.execute(
                "INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?, ?, ?, ?)",
                [*key, size, json.dumps(merged, sort_keys=True), error],
            )

    def probes(self) -> dict[ProbeKey, tuple[int | None, dict[str, Any], str | None]]:
        """Every recorded probe: key -> (bytes, scores, error)."""
        with self._errors("read"):
            found = self._db.execute("SELECT * FROM probes").fetchall()
        return {
            (image, codec, config, float(quality)): (size, json.loads(scores) if scores else {}, error)
            for image, codec, config, quality, size, scores, error in found
        }

    def frame(self) -> pd.DataFrame:
        with self._errors("read"):
            frame = pd.read_sql_query("SELECT * FROM results ORDER BY codec, quality, image", self._db)
        return frame[list(self.columns)]
