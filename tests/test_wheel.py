"""Packaging: a wheel built from the repository carries the catalog, the manifests and lic's weights.

The slow tests build the wheel from a copy of the repository (building writes build/ and *.egg-info
beside the sources), install it with --no-deps into a fresh venv that sees this environment's packages
through a .pth file (never the repository), and run `bench` there from another folder.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from bench import resources
from bench.lic import weights

REPO = Path(__file__).resolve().parent.parent
SOURCES = (
    "pyproject.toml",
    "README.md",
    "bench",
    "codecs",
    "metrics",
    "datasets",
)  # what the wheel is built from


def test_repository_layout(monkeypatch):
    assert not resources.installed()
    assert resources.catalog_dir() == REPO / "codecs"
    assert resources.metrics_dir() == REPO / "metrics"
    assert resources.manifests_dir() == REPO / "datasets"
    assert (resources.lic_weights_dir() / "hyperprior.pt").is_file()
    monkeypatch.setenv("BENCH_CATALOG_DIR", "/elsewhere/codecs")
    monkeypatch.setenv("BENCH_METRICS_DIR", "/elsewhere/metrics")
    monkeypatch.setenv("BENCH_DATASETS_DIR", "/elsewhere/datasets")
    assert (resources.catalog_dir(), resources.metrics_dir(), resources.manifests_dir()) == (
        Path("/elsewhere/codecs"),
        Path("/elsewhere/metrics"),
        Path("/elsewhere/datasets"),
    )
    assert resources.metrics_dir(shipped=True) == REPO / "metrics"


def test_weights_destination_is_checked(tmp_path, monkeypatch):
    assert weights.writable(tmp_path / "new" / "lic", "prog", "") == tmp_path / "new" / "lic"
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match=r"^prog: cannot write weights in .*/file/lic \(.*/file is not a"):
        weights.writable(tmp_path / "file" / "lic", "prog", "")
    monkeypatch.setattr(resources, "PACKAGE", tmp_path / "bench")  # as if installed there
    monkeypatch.setattr(resources, "PACKAGED", tmp_path / "bench" / "_data")
    resources.PACKAGED.mkdir(parents=True)
    refused = r"^prog: .*/bench/_data/codecs/lic is inside the installed bench package: go$"
    with pytest.raises(SystemExit, match=refused):
        weights.writable(resources.lic_weights_dir(), "prog", "go")


def test_every_subpackage_is_packaged():
    """pyproject.toml lists the packages (it maps codecs/ and datasets/ too): a new subpackage goes there."""
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bench").rglob("__init__.py")}
    assert found <= set(listed)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The built wheel, and a fresh venv with it installed (--no-deps): its bin folder and site-packages."""
    root = tmp_path_factory.mktemp("wheel")
    (root / "src").mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, root / "src" / name)
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist", root / "src"]
    _run([sys.executable, "-m", "pip", "--quiet", *build])
    (wheel,) = (root / "dist").glob("*.whl")
    venv.create(root / "venv", symlinks=True)
    python = root / "venv" / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site / "test-env.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile", wheel])
    return {"wheel": wheel, "bin": root / "venv" / "bin", "site": site}


def _run(argv: list, cwd: Path | None = None, status: int = 0) -> subprocess.CompletedProcess | str:
    """A command run without PYTHONPATH or the catalog/manifest overrides: its stdout when it must succeed."""
    drop = ("PYTHONPATH", "BENCH_CATALOG_DIR", "BENCH_METRICS_DIR", "BENCH_DATASETS_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == status, result.stderr[-3000:]
    return result.stdout if status == 0 else result


@pytest.mark.slow
def test_wheel_holds_every_module_and_data_file(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "bench").rglob("*.py")}
    data = {
        "bench/_data/" + path.relative_to(REPO).as_posix()
        for pattern in (
            "codecs/*.toml",
            "codecs/lic/*.pt",
            "codecs/lic/MODEL_CARD.md",
            "metrics/*.toml",
            "datasets/*.toml",
        )
        for path in REPO.glob(pattern)
    }
    assert {
        "bench/_data/codecs/lic/hyperprior.pt",
        "bench/_data/metrics/ssimulacra1.toml",
        "bench/_data/datasets/sample.toml",
    } <= data
    assert modules - names == set()  # a new subpackage must be listed in pyproject.toml
    assert data - names == set()


@pytest.mark.slow
def test_installed_wheel_runs_from_anywhere(installed, tmp_path):
    bench = installed["bin"] / "bench"
    code = (
        "import bench, bench.resources as r; "
        "print(bench.__file__, r.catalog_dir(), r.metrics_dir(), r.manifests_dir())"
    )
    where = _run([installed["bin"] / "python", "-c", code], cwd=tmp_path).split()
    assert all(Path(p).is_relative_to(installed["site"] / "bench") for p in where), where

    codecs = _run([bench, "codecs"], cwd=tmp_path)
    assert re.search(r"^lic: available - ", codecs, re.MULTILINE), codecs
    metrics = _run([bench, "metrics", "--no-cost"], cwd=tmp_path)
    assert re.search(r"^ssimulacra1: (un)?available - SSIMULACRA 1$", metrics, re.MULTILINE), metrics
    listed = _run([bench, "datasets", "list"], cwd=tmp_path)
    assert re.search(r"^sample +built-in +5/5 ", listed, re.MULTILINE), listed

    out = tmp_path / "run"
    run = ["run", "--codecs", "jpeg,lic", "--images", "1", "--qualities", "lic=0", "--qualities", "jpeg=50"]
    _run([bench, *run, "--executor", "inline", "--out", out], cwd=tmp_path)  # inline: one torch import less
    with (out / "results.csv").open() as handle:
        rows = {row["codec"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"jpeg", "lic"}
    assert rows["lic"]["error"] == "" and float(rows["lic"]["bpp"]) > 0, rows["lic"]


@pytest.mark.slow
def test_installed_export_needs_a_folder_of_the_users(installed, tmp_path):
    """`bench train lic --export` refuses the installed package's weights folder, before training."""
    argv = [installed["bin"] / "bench", "train", "lic", "--export", "--data", tmp_path, "--out", tmp_path]
    result = _run(argv, cwd=tmp_path, status=1)
    folder = installed["site"].resolve() / "bench" / "_data" / "codecs" / "lic"
    assert result.stderr.splitlines() == [
        f"bench train lic: {folder} is inside the installed bench package: say where with --weights-dir DIR"
    ]
