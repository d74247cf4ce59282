"""Reading run directories (what commands call RUN) for the commands that read results.

A run directory's rows come from results.sqlite (opened read-only), else from results.csv (so that a
committed baseline can be text), neither read through a symbolic link; run.json (bench.rundir.Manifest)
adds the configuration and provenance when present. Several runs are read together as one table of curves, each codec
configuration labelled uniquely (bench.labels).
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import files
from bench.errors import UserError
from bench.labels import Configuration, configuration_labels
from bench.measures import measures
from bench.rundir import CSV, DATABASE, RUN_JSON, CodecRecord, Manifest, read_manifest

log = logging.getLogger(__name__)

CSV_LIMIT = 4 << 30  # bytes: a larger results.csv is not read
REQUIRED_COLUMNS = ("image", "image_sha256", "codec", "config_hash", "quality", "bpp", "error")


@dataclass
class Run:
    """One run directory: its rows (every task, failed ones included) and its run.json (or None)."""

    path: Path
    name: str
    rows: pd.DataFrame
    manifest: Manifest | None
    source: str
    notes: list[str] = field(default_factory=list)

    def codec(self, config_hash: str) -> CodecRecord | None:
        """The configuration of the rows with this config hash, as run.json records it (or None)."""
        return self.manifest.codec(config_hash) if self.manifest else None

    def configuration(self, codec: str, config_hash: str) -> Configuration:
        """The rows' configuration for labelling: name, options (from run.json), run, config hash."""
        record = self.codec(config_hash)
        return Configuration(codec, dict(record.entry.options) if record else {}, self.name, config_hash)


def _read_sqlite(path: Path) -> pd.DataFrame:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return pd.read_sql_query("SELECT * FROM results", connection)
    finally:
        connection.close()


def _read_rows(directory: Path, notes: list[str]) -> tuple[pd.DataFrame, str]:
    database, csv = directory / DATABASE, directory / CSV
    files.refuse_links(directory, [DATABASE, CSV])  # a link (to a FIFO, /dev/zero...) is not read
    if database.is_file():
        try:
            return _read_sqlite(database), database.name
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            if not csv.exists():
                raise UserError(f"{database}: unreadable ({exc})") from None
            notes.append(f"{database} unreadable ({exc}); read {csv.name} instead")
    if csv.exists():
        try:
            text = io.BytesIO(files.read(directory, CSV, CSV_LIMIT))
            return pd.read_csv(
                text, keep_default_na=False, na_values=[""], float_precision="round_trip"
            ), csv.name
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise UserError(f"{csv}: unreadable ({exc})") from None
    raise UserError(f"{directory}: not a run directory (no results.sqlite or results.csv)")


def load_run(directory: str | Path) -> Run:
    """Read one run directory; a missing or unreadable one is a UserError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such run directory")
    notes: list[str] = []
    rows, source = _read_rows(directory, notes)
    missing = [column for column in REQUIRED_COLUMNS if column not in rows.columns]
    if missing:
        raise UserError(f"{directory / source}: missing column(s) {', '.join(missing)}")
    for column, measure in measures().items():  # an all-NULL column reads as objects from SQLite
        if column in rows.columns and measure.python_type in (float, int):
            rows[column] = pd.to_numeric(rows[column], errors="coerce")
            if measure.python_type is float:
                rows[column] = rows[column].astype(float)
    rows["error"] = rows["error"].where(rows["error"].notna() & (rows["error"] != ""), None)
    # a row of a fixed-quality run has no target: "" in the store, an empty cell (NaN) or no column in CSV
    rows["target"] = rows["target"].fillna("").astype(str) if "target" in rows else ""
    manifest = None
    if (directory / RUN_JSON).exists():
        try:
            manifest = read_manifest(directory)
        except UserError as exc:
            notes.append(f"{exc}: configuration unknown")
    else:
        notes.append(f"{directory}: no run.json: configuration and provenance unknown")
    name = directory.resolve().name
    return Run(directory, name, rows, manifest, source, notes)


def load_runs(directories: list[str | Path]) -> list[Run]:
    """Read several run directories; each gets a unique display name."""
    if not directories:
        raise UserError("name at least one RUN directory")
    runs = [load_run(directory) for directory in directories]
    seen: Counter[str] = Counter()
    for run in runs:
        seen[run.name] += 1
        if seen[run.name] > 1:
            run.name = f"{run.name}#{seen[run.name]}"
    return runs


def combined_rows(runs: list[Run]) -> pd.DataFrame:
    """Every run's rows with ``run`` (display name) and ``label`` (unique per codec configuration, as
    bench.labels gives it: ``lic:exact=false``, ``jpeg@run``) columns."""
    frames = [run.rows.assign(run=run.name, run_index=i) for i, run in enumerate(runs)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not rows.empty:
        order = ["run_index", "codec", "config_hash", "quality", "image"]
        rows = rows.sort_values(order, kind="stable", ignore_index=True).drop(columns="run_index")
    if rows.empty:
        return rows.assign(label=pd.Series(dtype=str))
    by_name = {run.name: run for run in runs}
    seen = rows[["codec", "run", "config_hash"]].drop_duplicates()
    configurations = [
        by_name[run].configuration(codec, config) for codec, run, config in seen.itertuples(index=False)
    ]
    labels = dict(zip(map(tuple, seen.values), configuration_labels(configurations), strict=True))
    keys = zip(rows["codec"], rows["run"], rows["config_hash"], strict=True)
    return rows.assign(label=[labels[key] for key in keys])
