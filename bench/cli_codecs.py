"""`bench codecs`: list the catalog's codecs; `bench codecs fetch`: download CompressAI's checkpoints."""

from __future__ import annotations

import click

from bench.errors import UserError, UserErrorGroup


@click.group("codecs", cls=UserErrorGroup, invoke_without_command=True)
@click.pass_context
def codecs(ctx: click.Context) -> None:
    """List every codec of the catalog: available or why not, versions, quality parameter, default sweep."""
    if ctx.invoked_subcommand is None:
        _list_codecs()


def _list_codecs() -> None:
    from bench.catalog import load_catalog
    from bench.codec import check_codec

    for entry in load_catalog().values():
        reason, versions = check_codec(entry)
        sweep = ",".join(f"{q:g}" for q in entry.qualities)
        click.echo(f"{entry.name}: {'available' if reason is None else 'unavailable'} - {entry.description}")
        if reason is not None:
            click.echo(f"    why: {reason}")
        else:
            click.echo(f"    versions: {', '.join(f'{k} {v}' for k, v in versions.items())}")
        direction = "raises" if entry.rate_rises_with_quality else "lowers"
        click.echo(f"    quality: {entry.quality_label} (a higher value {direction} the rate); sweep {sweep}")
        options = ", ".join(f"{k}={v}" for k, v in entry.options.items())
        click.echo(f"    options: {options or '-'}; adapter {entry.adapter}")


@codecs.command("fetch")
@click.argument("name")
@click.option("--qualities", metavar="Q1,Q2,...", help="Only these qualities [default: the entry's sweep].")
def fetch_command(name: str, qualities: str | None) -> None:
    """Download the checkpoints of NAME, a CompressAI zoo entry, from CompressAI's published URLs into
    the torch hub cache (torch.hub.get_dir()/checkpoints), or into the folder its option weights names.

    A checkpoint already there and verified is kept. Each file is verified as torch.hub does: its
    SHA-256 must begin with the hex digits in its name. That is an integrity check (a truncated or
    corrupted download), not proof of who published it; checkpoints are loaded with weights_only=True.
    $BENCH_COMPRESSAI_URL replaces the scheme and host of the URLs (https://compressai.s3.amazonaws.com),
    e.g. for a mirror. `bench run` never downloads.
    """
    from bench.catalog import load_catalog
    from bench.zoo_fetch import fetch_checkpoints, fetchable

    catalog = load_catalog()
    choices = fetchable(catalog)
    if name not in choices:
        what = "not a CompressAI zoo entry" if name in catalog else "not in the catalog"
        raise UserError(f"{name} is {what}: bench codecs fetch downloads {', '.join(choices) or 'none'}")
    for checkpoint in fetch_checkpoints(catalog[name], _parse_qualities(qualities), progress=True):
        done = "downloaded and verified" if checkpoint.downloaded else "already there, verified"
        click.echo(f"{name} quality {checkpoint.quality}: {done}: {checkpoint.path}")


def _parse_qualities(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        qualities = [int(q) for q in text.split(",") if q.strip()]
    except ValueError:
        qualities = []
    if not qualities:
        raise UserError(f"--qualities {text!r}: expected whole numbers Q1,Q2,...")
    return qualities
