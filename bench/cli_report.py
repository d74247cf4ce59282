"""The commands that read run directories: `bench bd`, `bench report`, `bench export`, `bench compare`."""

from __future__ import annotations

from pathlib import Path

import click

from bench.errors import UserError
from bench.quoting import one_line

METHODS = ("pchip", "cubic", "akima")

runs_argument = click.argument(
    "runs", nargs=-1, required=True, metavar="RUN...", type=click.Path(file_okay=False)
)
import_option = click.option(
    "--import",
    "imports",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A CompressAI-style result JSON to add as an imported curve (curve-mode BD only; repeatable).",
)
metrics_option = click.option(
    "--metrics",
    metavar="LIST",
    help="Metrics to compare: names, groups, +NAME or +GROUP to add to the default, or all "
    "[default: every metric the runs computed that is meant for comparison (not ms_ssim, whose dB form "
    "ms_ssim_db is)]; `bench metrics` lists them. Naming the group jpegai adds JPEG AI's overall score "
    "(jpegai_overall: the mean of the seven BD-rates).",
)
method_option = click.option(
    "--method",
    type=click.Choice(METHODS),
    default="pchip",
    show_default=True,
    help="pchip (JVET CTC), cubic (VCEG-M33 polynomial) or akima.",
)


def load_inputs(runs: tuple[str, ...], imports: tuple[str, ...]):
    """(Run list, combined rows with labels, imported curves); empty runs are refused."""
    from bench.report.compressai import imported_curves
    from bench.report.curves import ok_rows
    from bench.runs import combined_rows, load_runs

    loaded = load_runs(list(runs))
    for run in loaded:
        for note in run.notes:
            click.echo(f"note: {one_line(note)}", err=True)
        if ok_rows(run.rows).empty:
            failed = f" ({len(run.rows)} failed task(s))" if len(run.rows) else ""
            raise UserError(f"{run.path}: no finished task to report{failed}")
    rows = combined_rows(loaded)
    imported = imported_curves(list(imports), set(rows["label"]))
    return loaded, rows, imported


def parse_metrics(text: str | None, rows, default: list[str] | None = None) -> list[str]:
    """The metrics a --metrics value asks to compare (bench.measures grammar; default: every metric the
    rows hold that has a better direction and is meant for comparison), each a quality metric the rows
    hold values of; those a group brings that the rows lack are left out."""
    from bench.measures import all_metrics, held, named, resolve_metrics

    computed = held(rows)
    if default is None:
        default = [m for m in computed if all_metrics()[m].compared and all_metrics()[m].direction]
    chosen = resolve_metrics(text, default)
    directionless = [m for m in chosen if all_metrics()[m].direction is None]
    if directionless:
        raise UserError(
            f"--metrics: {', '.join(directionless)} has no better direction: not a quality metric"
        )
    chosen_held = [m for m in chosen if m in computed]
    lacking = [m for m in named(text) if m not in computed]
    if lacking:
        raise UserError(
            f"--metrics: {', '.join(lacking)} not computed in these runs (`bench rescore RUN --metrics "
            f"{','.join(lacking)}` adds them to a run made with --keep-bitstreams)"
        )
    if not chosen_held:
        raise UserError(f"--metrics: none of {', '.join(chosen)} is computed in these runs")
    return chosen_held


def check_anchor(anchor: str, labels: list[str], imported: list, mode: str, need_two: bool = True) -> None:
    """A clear message for a missing anchor, an imported anchor in image mode, or nothing to compare."""
    names = labels + [curve.label for curve in imported]
    if anchor not in names:
        hint = ""
        if any(label.startswith((f"{anchor}@", f"{anchor}:")) for label in labels):
            hint = " (it is in several runs or configurations: name one as listed)"
        raise UserError(f"anchor {anchor!r} is not in these runs{hint}; codecs: {', '.join(names)}")
    if mode == "image" and anchor not in labels:
        raise UserError(f"anchor {anchor!r} is an imported curve: use --mode curve")
    if need_two and len(names) < 2:
        raise UserError(f"only one codec ({anchor}): BD needs an anchor and at least one other codec")


@click.command("bd")
@runs_argument
@click.option("--anchor", required=True, metavar="CODEC", help="The codec the others are compared with.")
@click.option(
    "--mode",
    type=click.Choice(["image", "curve"]),
    default="image",
    show_default=True,
    help="image: BD per image, then the mean with a bootstrap 95 % CI (AWCY, JPEG AI); "
    "curve: BD of the dataset-mean curves (most papers).",
)
@metrics_option
@method_option
@click.option(
    "--delta",
    type=click.Choice(["rate", "quality"]),
    default="rate",
    show_default=True,
    help="rate: BD-rate in percent; quality: BD-quality (BD-PSNR) at equal rate.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "csv", "markdown", "latex", "json"]),
    default="text",
    show_default=True,
)
@import_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option(
    "--ranks",
    is_flag=True,
    help="Also rank the codecs under each metric by their BD value (1 = best) and give the Kendall tau-b "
    "between every two metrics' rankings (CSV: a rank column only).",
)
def bd_command(runs, anchor, mode, metrics, method, delta, fmt, imports, seed, ranks) -> None:
    """BD-rate of every codec of RUN... against --anchor, per metric.

    RUN is a run directory (results.sqlite, else results.csv, with run.json). For a run made in a search
    mode, BD runs across its targets, and tables follow: the metrics at matched rates, the bytes at equal
    quality against --anchor, or each codec at its budget (not in CSV).
    """
    from bench.measures import overall_groups
    from bench.report.bdtable import bd_table
    from bench.report.formats import render
    from bench.report.matched import target_tables
    from bench.report.ranks import rank_codecs

    _, rows, imported = load_inputs(runs, imports)
    metric_list = parse_metrics(metrics, rows)
    check_anchor(anchor, list(dict.fromkeys(rows["label"])), imported, mode)
    table = bd_table(
        rows, anchor, metric_list, mode, method, delta, imported, seed=seed, overall=overall_groups(metrics)
    )
    searched = target_tables(rows, anchor, metric_list, seed)
    click.echo(render(table, fmt, rank_codecs(table) if ranks else None, searched))


@click.command("export")
@runs_argument
@click.option("--format", "fmt", type=click.Choice(["compressai"]), default="compressai", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output folder [default: RUN/compressai for one run; required for several].",
)
def export_command(runs, fmt, out) -> None:
    """Write each codec configuration's dataset-mean curve as CompressAI-style result JSON, one file per
    configuration, named after its label."""
    from bench.report.compressai import export_compressai

    loaded, rows, _ = load_inputs(runs, ())
    if out is None and len(loaded) > 1:
        raise UserError("--out is required with several runs")
    target = Path(out) if out else loaded[0].path / "compressai"
    configs = {}
    for run in loaded:
        dataset = run.manifest.dataset.name if run.manifest else None
        for label, config_hash in (
            rows.loc[rows["run"] == run.name, ["label", "config_hash"]].drop_duplicates().values
        ):
            record = run.codec(config_hash)
            configs[label] = (record.to_dict() if record else {}) | {"dataset": dataset, "run": str(run.path)}
    for path in export_compressai(rows, configs, target):
        click.echo(path)


def _parse_rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        rates = []
    if not rates or any(not r > 0 for r in rates):
        raise UserError(f"--rates {text!r}: expected positive bpp values, e.g. 0.25,0.5")
    return rates


@click.command("report")
@runs_argument
@click.option(
    "--anchor", metavar="CODEC", help="The BD anchor [default: jpeg if present, else the first codec]."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output folder [default: RUN/report for one run; required for several].",
)
@import_option
@metrics_option
@method_option
@click.option(
    "--rates",
    default="0.25,0.5",
    show_default=True,
    metavar="BPP,...",
    help="Target rates of the visual comparison.",
)
@click.option(
    "--no-visual", is_flag=True, help="Leave out the visual comparison (it re-encodes a few images)."
)
def report_command(runs, anchor, out, imports, metrics, method, rates, no_visual) -> None:
    """Write an HTML report of RUN...: configuration, RD plots, BD tables, speed, per-image results and
    a visual comparison; index.html is self-contained, the figures are also written as PNG, SVG, PDF."""
    from bench.measures import overall_groups
    from bench.report.build import ReportRequest, build_report

    targets = _parse_rates(rates)
    loaded, rows, imported = load_inputs(runs, imports)
    if out is None and len(loaded) > 1:
        raise UserError("--out is required with several runs")
    metric_list = parse_metrics(metrics, rows)
    labels = list(dict.fromkeys(rows["label"]))
    if anchor is not None:
        check_anchor(anchor, labels, imported, "curve", need_two=False)
    request = ReportRequest(
        anchor, metric_list, method, targets, not no_visual, overall=overall_groups(metrics)
    )
    path, notes = build_report(
        loaded, rows, imported, request, Path(out) if out else loaded[0].path / "report"
    )
    for note in notes[sum(len(run.notes) for run in loaded) :]:  # the runs' own notes are printed already
        click.echo(f"note: {one_line(note)}", err=True)
    click.echo(path)


@click.command("compare")
@click.argument("base", type=click.Path(file_okay=False))
@click.argument("new", type=click.Path(file_okay=False))
@click.option(
    "--metrics",
    metavar="LIST",
    help="Metrics for BD-rate (as `bench bd --metrics`; a bare +NAME adds to psnr_rgb) [default: psnr_rgb].",
)
@click.option(
    "--max-bd-loss", type=float, metavar="PCT", help="Fail when a codec's BD-rate rises above PCT %."
)
@click.option(
    "--max-time-ratio",
    type=float,
    metavar="R",
    help="Fail when a codec's relative encode or decode time grows over R x (only between runs measured on the same CPU model; otherwise a note says time was not gated).",
)
@click.option(
    "--max-kmac-ratio",
    type=float,
    metavar="R",
    help="Fail when a learned codec's kMAC per pixel (encoder or decoder) grows over R x.",
)
def compare_command(base, new, metrics, max_bd_loss, max_time_ratio, max_kmac_ratio) -> None:
    """Compare run NEW with run BASE per codec configuration (paired by name and options): BD-rate, time
    and kMAC/px ratios, errors; exit 1 when a threshold fails, 2 for unusable input.

    Times are normalised by each run's reference codec (--time-reference of `bench run`, default jp2).
    """
    import sys

    from bench.compare import compare, format_comparison
    from bench.runs import load_run

    runs = [load_run(base), load_run(new)]
    for run in runs:
        for note in run.notes:
            click.echo(f"note: {one_line(note)}", err=True)
    if not set(runs[0].rows["codec"]) & set(runs[1].rows["codec"]):
        raise UserError(f"{base} and {new} share no codec")
    chosen = parse_metrics(metrics, runs[1].rows, default=["psnr_rgb"])
    result = compare(*runs, chosen, max_bd_loss, max_time_ratio, max_kmac_ratio)
    for note in result.notes:
        click.echo(f"note: {one_line(note)}", err=True)
    click.echo(format_comparison(result.table))
    if result.failed:
        click.echo("bench compare: FAIL (see the fails column)", err=True)
        sys.exit(1)
