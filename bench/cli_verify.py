"""`bench verify`: does every bitstream decode to the same pixels under other numerics?"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from bench import files
from bench.errors import UserError
from bench.quoting import one_line, quoted

MAX_LISTED = 20


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _table(results: list[dict], variants: list[str]) -> list[str]:
    """One line per (codec, image): per variant, decodes that matched out of those tried, and how many
    differed within their decoder's promise or failed to decode."""
    cells: dict[tuple[str, str], dict[str, list[str]]] = {}
    for r in results:
        cells.setdefault((r["codec"], r["image"]), {}).setdefault(r["variant"], []).append(r["status"])
    rows = [["codec", "image", *variants]]
    for (codec, image), by_variant in cells.items():
        row = [quoted(codec), quoted(image)]  # names read from a manifest: data
        for variant in variants:
            statuses = by_variant.get(variant, [])
            cell = f"{statuses.count('match')}/{len(statuses)}"
            notes = [f"{statuses.count(s)} {s}" for s in ("differ", "error") if s in statuses]
            if notes:
                cell += f" ({', '.join(notes)})"
            row.append(cell)
        rows.append(row)
    return _aligned(rows)


def _difference_cell(cell: dict | None) -> str:
    """The worst difference of one codec under one variant: ``identical``, ``max N, P dB``, or ``-``
    where no decode could be compared; and how many differing decodes are of unknown size."""
    if cell is None or cell["compared"] == 0:
        text = "-"
    elif cell["max_diff"] == 0:
        text = "identical"
    else:
        text = f"max {cell['max_diff']}, {cell['psnr_db']:.2f} dB"
    return text + (f" ({cell['unknown']} of unknown size)" if cell and cell["unknown"] else "")


def _difference_table(results: list[dict], variants: list[str]) -> list[str]:
    """For each codec whose pixels differed anywhere: per variant, the largest pixel difference from the
    reference decode and the lowest PSNR over its bitstreams; nothing when every decode matched."""
    from bench.verify import worst_differences

    codecs = list(
        dict.fromkeys(r["codec"] for r in results if r.get("max_diff") or "difference_unknown" in r)
    )
    if not codecs:
        return []
    worst = worst_differences(results)
    rows = [["codec", *variants]]
    rows += [[quoted(c), *(_difference_cell(worst.get((c, v))) for v in variants)] for c in codecs]
    return ["largest pixel difference from the reference decode, lowest PSNR:", *_aligned(rows)]


@click.command("verify")
@click.option(
    "--codecs", metavar="LIST", help="Codecs to encode with, e.g. lic,jpeg (not with --bitstreams)."
)
@click.option("--dataset", default="sample", show_default=True, metavar="NAME|PATH", help="Images to encode.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where datasets live.")
@click.option("--images", type=int, metavar="N", help="Only the first N images.")
@click.option("--qualities", multiple=True, metavar="CODEC=Q1,Q2,...", help="Replace a codec's sweep.")
@click.option("--device", metavar="cpu|cuda|auto", help="Where learned codecs encode [each entry's, cpu].")
@click.option(
    "--write-bitstreams",
    type=click.Path(file_okay=False),
    help="Keep the bitstreams and their manifest in this folder (to check them on another machine).",
)
@click.option(
    "--no-reference-pixels",
    is_flag=True,
    help="Keep only the reference hashes, not a PNG of each reference decode: smaller, but differences "
    "are then of unknown size.",
)
@click.option(
    "--bitstreams",
    type=click.Path(file_okay=False, exists=True),
    help="Decode a folder written elsewhere by --write-bitstreams instead of encoding here.",
)
@click.option(
    "--variants", metavar="LIST", help="Only these decoding variants (names as listed in the output)."
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write every decode's result here."
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    metavar="N",
    help="Refuse an image, or a bitstream said to decode to one, of more than N pixels [100000000].",
)
def verify_command(
    codecs,
    dataset,
    data_dir,
    images,
    qualities,
    device,
    write_bitstreams,
    no_reference_pixels,
    bitstreams,
    variants,
    json_path,
    max_pixels,
) -> None:
    """Encode once, then decode every bitstream in fresh processes under other numerics.

    Variants: one thread, all cores, oneDNN off, AVX2 kernels only, and the GPU when torch sees one.
    Each decode is compared with the reference decode made right after encoding: its pixels (SHA-256)
    and, when they differ, the largest pixel difference and the PSNR between the two. A decoder that
    promises the same pixels everywhere (the default) must give them; one that promises only the same
    decoded symbols (lic:synthesis=float32) may differ: reported as differ, not a failure. Exit status
    1 when any decode mismatches or fails, 2 for unusable input.
    """
    from tqdm import tqdm

    from bench import verify
    from bench.cli_options import parse_qualities
    from bench.images import DEFAULT_MAX_PIXELS
    from bench.labels import Configuration, configuration_labels
    from bench.runner import RunRequest, resolve

    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    chosen = verify.default_variants()
    if variants:
        names = [v.strip() for v in variants.split(",") if v.strip()]
        unknown = sorted(set(names) - {v.name for v in chosen})
        if unknown:
            raise UserError(
                f"unknown variant(s) {', '.join(unknown)}; here: {', '.join(v.name for v in chosen)}"
            )
        chosen = [v for v in chosen if v.name in names]
    scratch = None
    if bitstreams:
        if codecs or write_bitstreams or qualities or images or no_reference_pixels:
            raise UserError(
                "--bitstreams decodes a finished folder: no --codecs, --qualities, --images, --write-bitstreams "
                "or --no-reference-pixels"
            )
        directory = Path(bitstreams)
        try:
            manifest = verify.read_manifest(directory)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    else:
        if not codecs:
            raise UserError("bench verify needs --codecs (or --bitstreams DIR)")
        request = RunRequest(
            codecs=codecs,
            dataset=dataset,
            data_dir=data_dir,
            images=images,
            qualities=parse_qualities(qualities),
            device=device,
            executor="inline",
            max_pixels=max_pixels,
        )
        plan = resolve(request)
        if len({c.config_hash for c in plan.codecs}) < len(plan.codecs):
            raise UserError("--codecs names the same codec configuration twice")
        names = configuration_labels(
            [Configuration(c.name, c.entry.options, "", c.config_hash) for c in plan.codecs]
        )
        if write_bitstreams:
            directory = Path(write_bitstreams)
        else:
            scratch = tempfile.TemporaryDirectory()
            directory = Path(scratch.name)
        total = sum(len(c.qualities) for c in plan.codecs) * len(plan.images)
        with tqdm(total=total, unit="bitstream", desc="encode", file=sys.stderr) as bar:
            manifest = verify.write_bitstreams(
                [(n, c.entry, c.qualities) for n, c in zip(names, plan.codecs, strict=True)],
                plan.images,
                directory,
                lambda: bar.update(),
                references=not no_reference_pixels,
            )
    click.echo(
        f"reference decodes: on {one_line(str(manifest['encoder']['cpu']))} (the encoding machine)", err=True
    )
    results = []
    for variant in chosen:
        click.echo(f"decoding: {variant.name} ({variant.description})", err=True)
        results.extend(verify.decode_variant(directory, variant, max_pixels))
    if scratch is not None:
        scratch.cleanup()
    shown = [v.name for v in chosen]
    for line in [*_table(results, shown), *_difference_table(results, shown)]:
        click.echo(line)
    bad = [r for r in results if r["status"] in verify.FAILURES]
    listed = bad + [r for r in results if r["status"] == "differ"]  # failures first
    for r in listed[:MAX_LISTED]:
        click.echo(
            f"{r['status']}: {quoted(r['codec'])} {quoted(r['image'])} q{r['quality']:g} ({r['variant']}): "
            f"{one_line(r['reason'])}"
        )
    if len(listed) > MAX_LISTED:
        click.echo(f"... and {len(listed) - MAX_LISTED} more (--json has them all)")
    totals = verify.summarise(results)
    differ = f"{totals['differ']} differ (as their decoder allows), " if totals["differ"] else ""
    click.echo(
        f"summary: {totals['images']} image(s) checked, {totals['bitstreams']} bitstreams, "
        f"{totals['decodes']} decodes: {totals['match']} match, {differ}"
        f"{totals['mismatch']} mismatch(es), {totals['error']} decode error(s)"
    )
    if json_path:  # psnr_db of identical pixels is Infinity, as Python's json writes inf
        files.write(Path(json_path).parent, Path(json_path).name, json.dumps(results, indent=1).encode())
    if bad:
        sys.exit(1)
