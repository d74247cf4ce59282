"""Reading run directories (what commands call RUN) for the commands that read results.

A run directory's rows come from results.sqlite (opened read-only), else from results.csv (so that a
committed baseline can be text); run.json adds the configuration and provenance when present.
Several runs are read together as one table of curves, each codec labelled uniquely.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UserError
from bench.store import COLUMNS

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "image_sha256", "codec", "config_hash", "quality", "bpp", "error")


@dataclass
class Run:
    """One run directory: its rows (every task, failed ones included) and its run.json (or {})."""

    path: Path
    name: str
    rows: pd.DataFrame
    meta: dict[str, Any]
    source: str
    notes: list[str] = field(default_factory=list)

    def codec_config(self, codec: str) -> dict[str, Any]:
        """The run.json entry of a codec (name, versions, qualities, catalog entry), or {}."""
        for entry in self.meta.get("config", {}).get("codecs", []):
            if entry.get("name") == codec:
                return entry
        return {}


def _read_sqlite(path: Path) -> pd.DataFrame:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return pd.read_sql_query("SELECT * FROM results", connection)
    finally:
        connection.close()


def _read_rows(directory: Path, notes: list[str]) -> tuple[pd.DataFrame, str]:
    database, csv = directory / "results.sqlite", directory / "results.csv"
    if database.exists():
        try:
            return _read_sqlite(database), database.name
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            if not csv.exists():
                raise UserError(f"{database}: unreadable ({exc})") from None
            notes.append(f"{database} unreadable ({exc}); read {csv.name} instead")
    if csv.exists():
        try:
            return pd.read_csv(
                csv, keep_default_na=False, na_values=[""], float_precision="round_trip"
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
    for column, kind in COLUMNS.items():  # an all-NULL column reads as objects from SQLite
        if column in rows.columns and kind.split()[0] in ("REAL", "INTEGER"):
            rows[column] = pd.to_numeric(rows[column], errors="coerce")
            if kind.startswith("REAL"):
                rows[column] = rows[column].astype(float)
    rows["error"] = rows["error"].where(rows["error"].notna() & (rows["error"] != ""), None)
    meta: dict[str, Any] = {}
    run_json = directory / "run.json"
    if run_json.exists():
        try:
            meta = json.loads(run_json.read_text())
        except (OSError, ValueError) as exc:
            notes.append(f"{run_json} unreadable ({exc}): configuration unknown")
    else:
        notes.append(f"{directory}: no run.json: configuration and provenance unknown")
    name = directory.resolve().name
    return Run(directory, name, rows, meta, source, notes)


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
    """Every run's rows with ``run`` (display name) and ``label`` (unique codec label) columns.

    A label is the codec name when one run and one configuration hold it; otherwise
    ``codec@run`` (and ``codec@run:hash`` if one run holds two configurations of it).
    """
    frames = [run.rows.assign(run=run.name, run_index=i) for i, run in enumerate(runs)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not rows.empty:
        order = ["run_index", "codec", "config_hash", "quality", "image"]
        rows = rows.sort_values(order, kind="stable", ignore_index=True).drop(columns="run_index")
    if rows.empty:
        return rows.assign(label=pd.Series(dtype=str))
    configs = rows[["codec", "run", "config_hash"]].drop_duplicates()
    per_codec = configs.groupby("codec").size()
    per_run = configs.groupby(["codec", "run"]).size()
    labels = {}
    for codec, run, config in configs.itertuples(index=False):
        label = codec
        if per_codec[codec] > 1:
            label = f"{codec}@{run}"
            if per_run[(codec, run)] > 1:
                label = f"{label}:{config[:8]}"
        labels[(codec, run, config)] = label
    keys = zip(rows["codec"], rows["run"], rows["config_hash"], strict=True)
    return rows.assign(label=[labels[key] for key in keys])
