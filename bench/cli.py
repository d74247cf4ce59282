"""The `bench` command."""

from __future__ import annotations

import logging
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import click

from bench.cli_codecs import codecs
from bench.cli_datasets import datasets
from bench.cli_options import parse_qualities
from bench.cli_report import bd_command, compare_command, export_command, report_command
from bench.cli_verify import verify_command
from bench.errors import UserError, UserErrorGroup
from bench.quoting import one_line


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.version_option(package_name="codec-bench")
def cli(verbose: bool) -> None:
    """Benchmark learned and traditional image codecs under one protocol."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@cli.command("run")
@click.option(
    "--codecs",
    metavar="LIST",
    help="Codecs with option overrides, e.g. jpeg,jxl:effort=9 "
    "[default: every available in-process codec of the catalog].",
)
@click.option(
    "--dataset",
    default=None,
    metavar="NAME|PATH",
    help="A dataset name (sample, kodak, ...) or a folder of images [default: sample].",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where datasets live [default: $BENCH_DATA_DIR, else a per-user cache directory].",
)
@click.option("--images", type=int, metavar="N", help="Only the first N images of the dataset.")
@click.option(
    "--qualities",
    multiple=True,
    metavar="CODEC=Q1,Q2,...",
    help="Replace a codec's default sweep (repeatable).",
)
@click.option("--jobs", type=int, metavar="N", help="Worker processes [default: the number of cores].")
@click.option(
    "--threads", type=int, metavar="N", help="Threads per codec call [default: each catalog entry's, 1]."
)
@click.option(
    "--device",
    metavar="cpu|cuda|auto",
    help="Where learned codecs run (codecs with a device option) [default: each catalog entry's, cpu]; "
    "with cuda or auto, the learned perceptual metrics (lpips_alex, lpips_vgg, dists) run on the GPU "
    "too, where torch sees one.",
)
@click.option(
    "--executor",
    type=click.Choice(["inline", "local", "dask"]),
    default=None,
    help="local: a pool of worker processes [default]; dask: a Dask cluster (--scheduler, else a "
    "LocalCluster of --jobs workers); inline: in this process, for debugging.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="With --executor dask: a running Dask scheduler, e.g. tcp://10.0.0.5:8786; its workers say which "
    "codecs they run (lic:device=cuda needs workers started with --resources GPU=1).",
)
@click.option(
    "--ship-images",
    is_flag=True,
    default=None,
    help="With --executor dask: send the image files from this machine to the workers [default: only "
    "when a worker does not see them at their paths here].",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False),
    help="A folder of finished tasks shared by runs: a task found there (same image pixels, codec, "
    "config hash, quality) is taken, not run; new results are added.",
)
@click.option(
    "--keep-bitstreams",
    is_flag=True,
    default=None,
    help="Keep every encoded bitstream in RUN/bitstreams, so `bench rescore RUN` can recompute metrics.",
)
@click.option(
    "--metrics",
    metavar="LIST",
    help="Metrics to compute: names, groups (default, ...), +NAME or +GROUP to add to the default, or "
    "all [default: $BENCH_DEFAULT_METRICS if set, else the default group]; `bench metrics` lists them. "
    "A default metric that cannot run here is left out with a note; a named one is refused unless "
    "--skip-unavailable. Re-running a run with more metrics computes only what its rows lack.",
)
@click.option(
    "--task-timeout",
    type=float,
    metavar="SECONDS",
    help="With --executor dask: a task running longer ends its worker; after 3 tries it is an error row.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Run directory [default: reports/runs/<dataset>-<config id>].",
)
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Repeat the run described by a run.json."
)
@click.option(
    "--skip-unavailable",
    is_flag=True,
    help="Leave out requested codecs and metrics that are unavailable (with a note) instead of refusing.",
)
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or unsupported images instead of refusing.")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    metavar="N",
    help="Refuse an image of more than N pixels, from its header, before decoding it [100000000].",
)
@click.option("--repeat", type=int, metavar="K", help="Timed encodes and decodes per task, median kept [1].")
@click.option(
    "--timing",
    is_flag=True,
    default=None,
    help="Timing-grade run: a warm-up round trip per task, --repeat at least 3, one job.",
)
@click.option(
    "--target-bpp",
    metavar="LIST",
    help="Compare at matched rates: for every image and codec, search the quality until the rate is "
    "within --rate-tolerance of each of these bpp (a cap: else the closest point under it), e.g. "
    "0.12,0.25,0.5,0.75,1.0. Instead of --qualities.",
)
@click.option(
    "--target",
    metavar="METRIC=LIST",
    help="Compare at equal quality: for every image and codec, the fewest bytes at which METRIC reaches "
    "each value, e.g. psnr_y=35,40 or ssimulacra2=70 (lower-is-better metrics too). Instead of --qualities.",
)
@click.option(
    "--budget-bpp",
    metavar="LIST",
    help="CLIC's rule: one quality per codec for every image, the highest whose total bytes fit this "
    "budget in bpp over the whole dataset, e.g. 0.15. Instead of --qualities.",
)
@click.option(
    "--rate-tolerance",
    type=float,
    metavar="FRACTION",
    help="A --target-bpp target is met within this relative distance [0.01].",
)
@click.option(
    "--time-reference",
    metavar="CODEC",
    help="Report times relative to this codec of the run [default: jp2 when in the run].",
)
def run_command(
    codecs,
    dataset,
    data_dir,
    images,
    qualities,
    jobs,
    threads,
    device,
    executor,
    scheduler,
    ship_images,
    task_timeout,
    cache,
    keep_bitstreams,
    metrics,
    out,
    config_path,
    skip_unavailable,
    skip_bad,
    max_pixels,
    repeat,
    timing,
    target_bpp,
    target,
    budget_bpp,
    rate_tolerance,
    time_reference,
) -> None:
    """Encode and decode every image at every quality (or at the quality a search finds for each
    target: --target-bpp, --target, --budget-bpp), measure, and store one row per task.

    Re-running the same command resumes: tasks already in the run directory's store are skipped.
    Exit status 1 when every task failed (a failed task is a row with its error; some such rows are
    results and exit 0), 2 for unusable input.
    """
    from tqdm import tqdm

    from bench.measures import summary_metrics
    from bench.runner import RunRequest, execute_plan, request_from_run_json, resolve
    from bench.summary import by_configuration, format_summary, summary
    from bench.timing import relative_table

    if config_path:
        if codecs or dataset or qualities:
            raise UserError(
                "--config repeats a run as it was: do not combine it with --codecs, --dataset or --qualities"
            )
        request = request_from_run_json(Path(config_path))
    else:
        request = RunRequest(codecs=codecs, dataset=dataset or "sample", qualities=parse_qualities(qualities))
    changes = {
        "data_dir": data_dir,
        "images": images,
        "jobs": jobs,
        "threads": threads,
        "device": device,
        "executor": executor,
        "scheduler": scheduler,
        "ship_images": ship_images,
        "task_timeout": task_timeout,
        "cache": cache,
        "keep_bitstreams": keep_bitstreams,
        "metrics": metrics,
        "out": out,
        "skip_unavailable": skip_unavailable or None,
        "skip_bad": skip_bad or None,
        "max_pixels": max_pixels,
        "repeat": repeat,
        "timing": timing,
        "time_reference": time_reference,
        "target_bpp": target_bpp,
        "target": target,
        "budget_bpp": budget_bpp,
        "rate_tolerance": rate_tolerance,
    }
    for key, value in changes.items():
        if value is not None:
            setattr(request, key, value)
    plan = resolve(request)
    for note in plan.notes:
        click.echo(f"note: {one_line(note)}", err=True)
    click.echo(f"run directory: {plan.run_dir}", err=True)

    def progress(total: int, desc: str = "bench run"):
        unit = "row" if desc == "rescore" else "task"
        return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)

    try:
        outcome = execute_plan(plan, progress)
    except KeyboardInterrupt:
        click.echo(
            f"bench: interrupted; finished tasks are stored in {plan.run_dir}: "
            "run the same command again to resume",
            err=True,
        )
        sys.exit(130)
    except BrokenProcessPool:
        click.echo(
            f"bench: error: a worker process died (a codec crash?); finished tasks are stored in "
            f"{plan.run_dir}; rerun to resume, or use --executor inline to find the task",
            err=True,
        )
        sys.exit(1)
    for note in outcome.notes[len(plan.notes) :]:
        click.echo(f"note: {one_line(note)}", err=True)
    reference = plan.timing.reference
    shown = [name for name in summary_metrics(request.metrics) if name in plan.metrics]
    rows = by_configuration(outcome.rows, {codec.config_hash: codec.entry.options for codec in plan.codecs})
    click.echo(format_summary(summary(rows, reference, shown)))
    if reference:
        click.echo(f"\nmedian times per codec; rel = time / {reference}'s time on the same image:")
        click.echo(format_summary(relative_table(rows, reference)))
    click.echo(
        f"\n{outcome.executed} task(s) run, {outcome.resumed} already stored; wall {outcome.wall_s:.1f} s with "
        f"{plan.jobs} job(s), {plan.timing.repeat} timed call(s) per task; harness overhead {outcome.overhead * 100:.1f} %; results: {outcome.run_dir / 'results.csv'}"
    )
    failed = outcome.rows["error"].notna()
    if len(failed) and failed.all():
        click.echo(
            f"bench: error: every task of the run failed ({len(failed)}): see the error column of "
            f"{outcome.run_dir / 'results.csv'}",
            err=True,
        )
        sys.exit(1)


@cli.command("rescore")
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--metrics",
    metavar="LIST",
    help="Metrics to compute (as `bench run --metrics`) [default: the run's own]; new ones are added to the run.",
)
def rescore_command(run_dir: str, metrics: str | None) -> None:
    """Recompute the metrics of RUN from its kept bitstreams (a run made with --keep-bitstreams).

    Rates and times stay as measured. A row that cannot be rescored (its kept bitstream changed or
    missing, its image moved, a decoder error) is a `not rescored: CONFIG IMAGE q=Q: REASON` line, kept
    as it was, and the others go on. Exit status 0 when every row was rescored, 1 when any was not
    (the others are stored rescored), 2 for unusable input.
    """
    from tqdm import tqdm

    from bench.rescore import rescore

    def progress(total: int):
        return tqdm(total=total, unit="row", desc="bench rescore", file=sys.stderr, dynamic_ncols=True)

    done = rescore(Path(run_dir), metrics, progress)
    for problem in done.problems:
        click.echo(f"not rescored: {one_line(problem)}", err=True)
    click.echo(f"rescored {done.rows} row(s) of {run_dir}; {len(done.problems)} not rescored")
    if done.problems:
        sys.exit(1)


@cli.command("metrics")
@click.option("--no-cost", is_flag=True, help="Do not time each metric on a 768x512 pair.")
@click.option("--docs-table", is_flag=True, help="Print the column table of docs/results.md instead.")
def metrics_command(no_cost: bool, docs_table: bool) -> None:
    """List every metric: available or why not, version, direction, what it reads, groups and the
    seconds it takes on one 768x512 image here, on one thread as in a run's workers (its cost class in
    brackets)."""
    from bench import measures

    if docs_table:
        click.echo(measures.docs_table(), nl=False)
        return
    import torch

    torch.set_num_threads(1)
    for name, metric in measures.all_metrics().items():
        reason = metric.unavailable()
        cost = "" if no_cost or reason else f"{measures.cost_seconds(metric):.3f} s "
        click.echo(f"{name}: {'available' if reason is None else 'unavailable'} - {metric.label}")
        if reason:
            click.echo(f"    why: {reason}")
        better = f"{metric.direction} is better" if metric.direction else "no direction"
        source = f" (from {metric.source})" if metric.source else ""
        click.echo(f"    version {metric.current_version()}; {better}; reads {metric.reads}{source}")
        groups = ", ".join(metric.groups) or "-"
        click.echo(f"    groups: {groups}; cost per 768x512 image: {cost}[{metric.cost}]")


@cli.group("train")
def train_group() -> None:
    """Train learned codecs."""


@train_group.command(
    "lic", context_settings={"ignore_unknown_options": True, "help_option_names": []}, add_help_option=False
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_lic_command(args: tuple[str, ...]) -> None:
    """Train lic (options: bench train lic --help)."""
    from bench.lic.train import main as train_main

    train_main(list(args))


cli.add_command(codecs)
cli.add_command(datasets)
cli.add_command(bd_command)
cli.add_command(report_command)
cli.add_command(export_command)
cli.add_command(compare_command)
cli.add_command(verify_command)


def main() -> None:
    cli(prog_name="bench")


if __name__ == "__main__":
    main()
