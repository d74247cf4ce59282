"""Where the codec catalog, the metric tools, the dataset manifests and lic's weights are, in the repository
or installed.

In the repository they are the top-level codecs/, metrics/ and datasets/ folders; a wheel carries the same
files as package data in bench/_data/ (pyproject.toml maps them). Imports only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PACKAGED = PACKAGE / "_data"  # present only in an installed wheel


def installed() -> bool:
    """True when running from an installed wheel rather than from the repository."""
    return PACKAGED.is_dir()


def _data(name: str) -> Path:
    return PACKAGED / name if installed() else PACKAGE.parent / name


def catalog_dir() -> Path:
    """The catalog's folder: $BENCH_CATALOG_DIR, else codecs/."""
    return Path(os.environ.get("BENCH_CATALOG_DIR") or _data("codecs"))


def metrics_dir(shipped: bool = False) -> Path:
    """The metric tools' folder: $BENCH_METRICS_DIR, else metrics/ (``shipped``: metrics/ always)."""
    return Path((None if shipped else os.environ.get("BENCH_METRICS_DIR")) or _data("metrics"))


def manifests_dir() -> Path:
    """The dataset manifests' folder: $BENCH_DATASETS_DIR, else datasets/."""
    return Path(os.environ.get("BENCH_DATASETS_DIR") or _data("datasets"))


def lic_weights_dir() -> Path:
    """lic's shipped weights and model card: codecs/lic/."""
    return _data("codecs") / "lic"
