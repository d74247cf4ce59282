"""`bench datasets`: list, fetch, import and verify the image datasets."""

from __future__ import annotations

from pathlib import Path

import click

from bench import datasets as ds
from bench import fetch
from bench.errors import UserError, UserErrorGroup

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where datasets live [default: $BENCH_DATA_DIR, else ~/.cache/codec-bench/datasets].",
)


@click.group("datasets", cls=UserErrorGroup)
def datasets() -> None:
    """List, fetch, import and verify image datasets (manifests in datasets/*.toml)."""


@datasets.command("list")
@data_dir_option
@click.option("--verify", is_flag=True, help="Also check every image's pixels (slower).")
def list_command(data_dir: Path | None, verify: bool) -> None:
    """Show each dataset: built-in, missing, present or verified, with its image count."""
    data_dir = ds.default_data_dir(data_dir)
    click.echo(f"data dir: {data_dir}")
    found_manifests = ds.manifests()
    width = max(map(len, found_manifests), default=0)
    for name, m in found_manifests.items():
        root = ds.location(m, data_dir)
        found = len(ds.manifest_dataset(m, root).files) if root.is_dir() else 0
        status = "built-in" if m.source.kind == "package" else "present" if found else "missing"
        if verify and found:
            _, bad = ds.scan(ds.manifest_dataset(m, root))
            status = f"FAILED ({len(bad)} problems)" if bad else "verified"
        click.echo(f"{name:<{width}}  {status:<20} {found:>4}/{m.count:<4} {m.title}")


@datasets.command("fetch")
@click.argument("name")
@data_dir_option
def fetch_command(name: str, data_dir: Path | None) -> None:
    """Download dataset NAME into the data directory and verify it."""
    dataset = fetch.fetch(name, ds.default_data_dir(data_dir), progress=True)
    click.echo(f"{name}: {len(dataset.files)} images verified in {dataset.root}")


@datasets.command("import")
@click.argument("name")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@data_dir_option
def import_command(name: str, folder: Path, data_dir: Path | None) -> None:
    """Verify a local copy of dataset NAME in FOLDER and copy it into the data directory."""
    dataset = fetch.import_dataset(name, folder, ds.default_data_dir(data_dir), progress=True)
    click.echo(f"{name}: {len(dataset.files)} images verified and copied to {dataset.root}")


@datasets.command("verify")
@click.argument("spec", metavar="NAME|FOLDER")
@data_dir_option
def verify_command(spec: str, data_dir: Path | None) -> None:
    """Check every image of a dataset against its manifest (a plain folder: readability only)."""
    dataset = ds.open_dataset(spec, ds.default_data_dir(data_dir))
    infos, bad = ds.scan(dataset, progress=True)
    for problem in bad:
        click.echo(str(problem))
    if bad:
        raise UserError(f"{dataset.name}: {len(bad)} problem(s) in {dataset.root}")
    what = "verified against its manifest" if dataset.manifest else "readable (no manifest)"
    if dataset.manifest and not dataset.manifest.hashes_pinned:
        what = "readable, count checked (the manifest pins no pixel hashes)"
    click.echo(f"{dataset.name}: {len(infos)} images {what} in {dataset.root}")
