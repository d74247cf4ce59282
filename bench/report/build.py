"""`bench report`: one self-contained index.html plus the figures as PNG, SVG and PDF.

Sections: what was run, RD curves (a tab per metric), BD tables (per image with CI, and of the mean
curves), for runs made in a search mode their targets (matched rates, bytes at equal quality with a bar
chart, budgets: bench.report.matched), the codecs' ranks under each metric and their rank correlations,
speed, complexity (kMAC/px, MP/s on CPU and GPU, rate savings), per-image results, a visual comparison at a
few target rates, notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench import __version__, files
from bench.labels import file_stem
from bench.measures import all_metrics, held, measure_label
from bench.report import html
from bench.report.compressai import ImportedCurve, imported_mean_curve
from bench.report.curves import carries_targets, mean_curves, ok_rows, point_key
from bench.runs import Run


@dataclass
class ReportRequest:
    anchor: str | None
    metrics: list[str]
    method: str = "pchip"
    targets: list[float] = field(default_factory=lambda: [0.25, 0.5])
    visual: bool = True
    crop: int = 128
    overall: list[str] = field(default_factory=list)  # groups whose composite score the BD tables show


def speed_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per codec: tasks, median encode/decode MP/s, mean encode/decode ms, threads, device."""
    rows = ok_rows(rows)
    grouped = rows.groupby("label", sort=False)
    return pd.DataFrame(
        {
            "tasks": grouped.size(),
            "encode MP/s (median)": grouped["enc_mps"].median(),
            "decode MP/s (median)": grouped["dec_mps"].median(),
            "encode ms (mean)": grouped["enc_s"].mean() * 1e3,
            "decode ms (mean)": grouped["dec_s"].mean() * 1e3,
            "threads": grouped["threads"].agg(lambda t: ",".join(str(v) for v in sorted(set(t)))),
            "device": grouped["device"].agg(lambda d: ",".join(sorted(set(map(str, d))))),
        }
    )


def complexity_table(rows: pd.DataFrame, bd, metric: str | None) -> pd.DataFrame:
    """Per codec: kMAC/px of encoder and decoder (learned codecs), median MP/s on CPU and on GPU, and the
    BD-rate on ``metric`` from the BD table ``bd`` (the rate saving bought by that complexity)."""
    rows = ok_rows(rows)
    columns = {}
    for label, group in rows.groupby("label", sort=False):
        gpu = group["device"].astype(str).str.startswith("cuda")
        record = {}
        for column, name in (("kmac_px_enc", "encoder kMAC/px"), ("kmac_px_dec", "decoder kMAC/px")):
            record[name] = group[column].median() if column in group else math.nan
        for where, part in (("CPU", group[~gpu]), ("GPU", group[gpu])):
            record[f"encode MP/s {where}"] = part["enc_mps"].median() if len(part) else math.nan
            record[f"decode MP/s {where}"] = part["dec_mps"].median() if len(part) else math.nan
        cell = bd.cells.get((label, metric)) if bd is not None and metric else None
        record[f"BD-rate {metric} (%)" if metric else "BD-rate (%)"] = cell.value if cell else math.nan
        columns[label] = record
    return pd.DataFrame.from_dict(columns, orient="index")


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _run_facts(run: Run) -> list[tuple[str, str]]:
    manifest = run.manifest
    facts = [("run directory", str(run.path)), ("rows read from", run.source)]
    if manifest is None:
        return [*facts, ("configuration", "unknown: no readable run.json")]
    dataset, provenance = manifest.dataset, manifest.provenance
    machine = provenance.get("machine", {})
    return facts + [
        ("dataset", f"{dataset.name}: {len(dataset.images)} images in {dataset.root}"),
        ("config id", manifest.config_id),
        ("executor", f"{manifest.executor}, {manifest.jobs} job(s)"),
        ("metrics", ", ".join(manifest.metrics) or "?"),
        ("started", provenance.get("time_utc", "?")),
        (
            "machine",
            f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {machine.get('os', '?')}",
        ),
        ("python", provenance.get("python", "?")),
        ("packages", ", ".join(f"{k} {v}" for k, v in provenance.get("packages", {}).items()) or "?"),
    ]


def _points(entry, record, targets: list[str]) -> str:
    """The qualities a configuration ran at, or the targets it was searched for."""
    if targets:
        return f"targets ({entry.quality_label} searched): " + ", ".join(targets)
    return f"{entry.quality_label}: " + ", ".join(f"{q:g}" for q in record.qualities)


def run_section(runs: list[Run], rows: pd.DataFrame) -> str:
    """What was run: per run, the dataset, machine, software and each codec configuration."""
    parts = []
    for run in runs:
        labels = rows.loc[rows["run"] == run.name, ["label", "config_hash"]].drop_duplicates().values
        codec_rows = []
        for label, config_hash in labels:
            record = run.codec(config_hash)
            if record is None:
                codec_rows.append([label, "?", "?", "?", "?", config_hash])
                continue
            entry = record.entry
            targets = [t for t in dict.fromkeys(rows.loc[rows["label"] == label, "target"]) if t]
            codec_rows.append(
                [
                    label,
                    entry.description,
                    _points(entry, record, targets),
                    ", ".join(f"{k}={v}" for k, v in entry.options.items()),
                    ", ".join(f"{k} {v}" for k, v in record.versions.items()),
                    config_hash,
                ]
            )
        parts.append(f"<h3>{html.esc(run.name)}</h3>")
        parts.append(html.facts(_run_facts(run)))
        parts.append(
            html.table(
                ["codec", "what", "qualities or targets" if carries_targets(rows) else "qualities"]
                + ["options", "versions", "config hash"],
                codec_rows,
                css="left",
            )
        )
    return "".join(parts)


def figures_section(
    rows: pd.DataFrame, imported: list[ImportedCurve], request: ReportRequest, out: Path, title: str, style
):
    """RD figures of the mean curves, written to out/figures and inlined as SVG; ``style``: each label's
    (bench.report.plots.styles)."""
    from bench.report.plots import axis_label, rd_figure, save_figure

    panels = []
    for metric in request.metrics:
        curves = pd.concat(
            [mean_curves(rows, metric)]
            + [imported_mean_curve(c, metric) for c in imported if metric in c.points],
            ignore_index=True,
        )
        if curves.empty:
            continue
        figure = rd_figure(curves, metric, style, f"{title}: {measure_label(metric)}")
        paths = save_figure(figure, out, f"figures/rd_{metric}")
        uri = html.data_uri(paths["svg"].read_bytes(), "image/svg+xml")
        links = {fmt: str(path.relative_to(out)) for fmt, path in paths.items()}
        points = " or ".join(sorted({point_key(group) for _, group in rows.groupby("label")}))
        caption = f"bpp vs {axis_label(metric)}: mean over images at each {points}"
        panels.append(
            (metric, measure_label(metric), html.figure(uri, f"RD curve, {metric}", caption, links))
        )
    return html.tabs("rd", panels, "all metrics")


def bd_html(table) -> str:
    """A BD table's value and count grids as HTML, with better-than-anchor cells marked (a lower BD-rate,
    composite scores included; a BD-quality in the metric's own direction)."""
    from bench.report.formats import counts_title, grids, notes, title

    values, counts = grids(table)
    classes = []
    for codec in [table.anchor] + table.codecs:
        row = ["text"]
        for metric in table.columns:
            cell = table.cells.get((codec, metric))
            higher = metric not in table.metrics or all_metrics()[metric].higher_is_better
            better = (
                None
                if cell is None or math.isnan(cell.value)
                else cell.value < 0
                if table.delta == "rate"
                else (cell.value > 0) == higher
            )
            row.append("" if better is None else "good" if better else "bad")
        classes.append(row)
    header = ["codec", *table.columns]
    body = [[index, *row] for index, row in zip(values.index, values.values)]
    count_rows = [[index, *row] for index, row in zip(counts.index, counts.values)]
    ident = f"bd-{table.mode}"
    lower = [m for m in table.metrics if not all_metrics()[m].higher_is_better]
    direction = (
        f". {', '.join(lower)}: lower is better; BD negates {'its' if len(lower) == 1 else 'their'} curves, "
        "so a better codec has a negative BD-rate there too."
        if lower and table.delta == "rate"
        else ""
    )
    return (
        f"<p>{html.esc(title(table) + direction)}</p>"
        + html.table(header, body, table_id=ident, classes=classes)
        + f'<p class="sub">{html.esc(counts_title(table))}</p>'
        + html.table(header, count_rows)
        + html.bullet_list(notes(table))
    )


def targets_section(tables, style: dict, out: Path) -> str:
    """The tables of search runs (bench.report.matched), each with its notes; the bytes at equal quality
    also as a bar chart, written to out/figures and inlined as SVG."""
    from bench.report.plots import ratio_figure, save_figure

    parts = []
    for table in tables:
        body = [[codec, *row] for codec, row in zip(table.grid.index, table.grid.values)]
        parts.append(
            f"<h3>{html.esc(table.heading)}</h3><p>{html.esc(table.title)}</p>"
            + html.table(["codec", *table.grid.columns], body, table_id=table.ident)
            + html.bullet_list(table.notes)
        )
        if table.ident == "equal-quality" and table.records:
            figure = ratio_figure(table.records, list(table.grid.columns), style, table.heading)
            paths = save_figure(figure, out, "figures/bytes_at_equal_quality")
            uri = html.data_uri(paths["svg"].read_bytes(), "image/svg+xml")
            links = {fmt: str(path.relative_to(out)) for fmt, path in paths.items()}
            caption = "mean bytes over the anchor's at each quality target, with the bootstrap 95 % CI"
            parts.append(html.figure(uri, "bytes at equal quality", caption, links))
    return "".join(parts)


def ranks_section(table) -> str:
    """The codecs ranked under each metric by the BD table's values, ranks that differ from the reference
    metric's marked, and the Kendall tau-b of every two metrics' rankings (below 1 marked, 0 or less
    strongly)."""
    from bench.report.formats import TAU_TITLE, rank_grids, ranks_title
    from bench.report.ranks import differs, rank_codecs

    if table is None:
        return "<p>No ranking (see the notes).</p>"
    ranking = rank_codecs(table)
    ranks, tau = rank_grids(ranking)
    rank_classes = [
        ["text"] + ["differs" if differs(ranking, codec, m) else "" for m in table.columns]
        for codec in ranking.ranks.index
    ]
    tau_classes = [
        ["text"] + ["" if not v < 1 else "differs" if v > 0 else "opposed" for v in row]
        for row in ranking.tau.values
    ]
    return (
        f"<p>{html.esc(ranks_title(ranking))}</p>"
        + html.table(
            ["codec", *table.columns],
            [[i, *row] for i, row in zip(ranks.index, ranks.values)],
            table_id="codec-ranks",
            classes=rank_classes,
        )
        + f"<p>{html.esc(TAU_TITLE)}</p>"
        + html.table(
            ["metric", *table.columns],
            [[i, *row] for i, row in zip(tau.index, tau.values)],
            table_id="rank-correlation",
            classes=tau_classes,
        )
    )


def per_image_section(table, rows: pd.DataFrame) -> str:
    """Per-image BD of every codec (first metric open, other metrics and composite scores folded) and every
    stored row."""
    parts = []
    if table is not None:
        for i, metric in enumerate(table.columns):
            per_image = {codec: table.cells[(codec, metric)].per_image for codec in table.codecs}
            images = sorted({name for values in per_image.values() for name in values})
            body = [
                [name, *(_fmt(per_image[c].get(name, math.nan)) for c in table.codecs)] for name in images
            ]
            grid = html.table(["image", *table.codecs], body)
            heading = f"BD-{'rate (%)' if table.delta == 'rate' else 'quality'} on {metric} vs {table.anchor}, per image"
            parts.append(
                f"<h3>{html.esc(heading)}</h3>{grid}"
                if i == 0
                else f"<details><summary>{html.esc(heading)}</summary>{grid}</details>"
            )
    searched = ["target", "target_met", "target_note"] if carries_targets(rows) else []
    columns = ["image", "label", "quality", *searched, "bpp", *held(rows), "enc_s", "dec_s", "error"]
    shown = rows.sort_values(["image", "label", "bpp"])[[c for c in columns if c in rows.columns]]
    body = [
        [_fmt(v, 4) if isinstance(v, float) else ("" if v is None else v) for v in row]
        for row in shown.values
    ]
    parts.append(
        f"<details><summary>every stored row ({len(body)})</summary>{html.table(list(shown.columns), body)}</details>"
    )
    return "".join(parts)


def legend(comparison) -> str:
    """What the heat maps under the crops show, when there are some."""
    if not any(crop.heatmap for crop in comparison.crops):
        return ""
    return (
        "<p>Under each codec's crop: Butteraugli's heat map of it (libjxl's butteraugli_main on the whole "
        "image, then cropped): black where it matches the original, then blue, cyan, green (libjxl's "
        '"good"), yellow and red ("bad") as the perceived difference grows.</p>'
    )


def visual_section(comparisons, out: Path) -> str:
    """Crops written to out/crops and inlined as PNG, with bpp and PSNR under each, and each codec's
    Butteraugli heat map of its crop beneath it where there is one."""
    parts = []
    for comparison in comparisons:
        top, left, side = comparison.box
        parts.append(
            f"<h3>near {comparison.target:g} bpp: {html.esc(comparison.image)}, "
            f'{side}x{side} px at ({left}, {top}), shown at 2x</h3>{legend(comparison)}<div class="crops">'
        )
        for crop in comparison.crops:
            path = out / "crops" / f"{comparison.target:g}bpp_{file_stem(crop.label)}.png"
            files.write(out, path.relative_to(out), crop.png)
            if crop.quality is None:
                caption = "original"
            else:
                caption = (
                    f"{crop.label} at q={crop.quality:g}: {crop.bpp:.3f} bpp, {crop.psnr:.2f} dB; "
                    f"crop {crop.crop_psnr:.2f} dB"
                )
            heatmap = ""
            if crop.heatmap:
                files.write(out, f"crops/{path.stem}_butteraugli.png", crop.heatmap)
                heatmap = (
                    f'<img class="heatmap" src="{html.data_uri(crop.heatmap, "image/png")}" '
                    f'alt="Butteraugli heat map of {html.esc(crop.label)}">'
                )
            parts.append(
                f'<figure><img class="crop" src="{html.data_uri(crop.png, "image/png")}" '
                f'alt="{html.esc(caption)}">{heatmap}<figcaption>{html.esc(caption)}</figcaption></figure>'
            )
        parts.append("</div>")
    return "".join(parts) or "<p>No visual comparison (see the notes).</p>"


def default_anchor(labels: list[str]) -> str | None:
    """jpeg when the runs have it, else the first codec; None with fewer than two curves."""
    if len(labels) < 2:
        return None
    return "jpeg" if "jpeg" in labels else labels[0]


def _bd_tables(rows, imported, request: ReportRequest, anchor: str | None, notes: list[str]):
    """(image-mode table or None, curve-mode table or None)."""
    from bench.report.bdtable import bd_table

    labels = list(dict.fromkeys(rows["label"]))
    if anchor is None or len(labels) + len(imported) < 2:
        notes.append("one codec only: no BD table (BD needs an anchor and another codec)")
        return None, None
    image = None
    if anchor in labels and len(labels) > 1:
        image = bd_table(rows, anchor, request.metrics, "image", request.method, overall=request.overall)
    curve = bd_table(
        rows, anchor, request.metrics, "curve", request.method, imported=imported, overall=request.overall
    )
    return image, curve


def build_report(
    runs: list[Run], rows: pd.DataFrame, imported: list[ImportedCurve], request: ReportRequest, out: Path
) -> tuple[Path, list[str]]:
    """Write out/index.html, out/figures/* and out/crops/*; returns the index path and the notes."""
    from bench.report.matched import target_tables
    from bench.report.plots import styles
    from bench.report.visual import visual_comparisons

    files.make_folder(out)
    labels = list(dict.fromkeys(rows["label"]))
    notes: list[str] = [note for run in runs for note in run.notes]
    anchor = request.anchor or default_anchor(labels + [c.label for c in imported])
    if request.anchor is None and anchor is not None:
        notes.append(f"anchor: {anchor} (the default; choose another with --anchor)")
    datasets = sorted({run.manifest.dataset.name if run.manifest else run.name for run in runs})
    images = rows["image_sha256"].nunique()
    title = f"{', '.join(datasets)} ({images} images)"
    image_table, curve_table = _bd_tables(rows, imported, request, anchor, notes)
    bd_parts = []
    if image_table is not None:
        bd_parts.append("<h3>Per image, then the mean (AWCY, JPEG AI)</h3>" + bd_html(image_table))
    if curve_table is not None:
        bd_parts.append("<h3>Of the dataset-mean curves (most papers)</h3>" + bd_html(curve_table))
    comparisons = []
    if request.visual:
        comparisons, visual_notes = visual_comparisons(runs, rows, request.targets, request.crop)
        notes += visual_notes
    speed = speed_table(rows)
    speed_rows = [[label, *(_fmt(v) for v in values)] for label, values in zip(speed.index, speed.values)]
    bd = curve_table if curve_table is not None else image_table
    complexity = complexity_table(rows, bd, request.metrics[0] if request.metrics else None)
    complexity_rows = [
        [label, *(_fmt(v) for v in values)] for label, values in zip(complexity.index, complexity.values)
    ]
    style = styles(labels + [curve.label for curve in imported])
    searched = target_tables(rows, anchor, request.metrics)
    sections = [
        ("run", "What was run", run_section(runs, rows)),
        ("rd", "RD curves", figures_section(rows, imported, request, out, title, style)),
        ("bd", "BD-rate", "".join(bd_parts) or "<p>No BD table (see the notes).</p>"),
        *([("targets", "Targets", targets_section(searched, style, out))] if searched else []),
        ("ranks", "Ranks", ranks_section(image_table if image_table is not None else curve_table)),
        ("speed", "Speed", html.table(["codec", *speed.columns], speed_rows, table_id="speed-table")),
        (
            "complexity",
            "Complexity",
            html.table(["codec", *complexity.columns], complexity_rows, table_id="complexity-table")
            + f"<p>BD-rate against {html.esc(str(anchor))}; kMAC/px counted on a 768 x 512 input (bench/complexity.py).</p>",
        ),
        ("images", "Per-image results", per_image_section(image_table, rows)),
        ("visual", "Visual comparison", visual_section(comparisons, out)),
        ("notes", "Notes", html.bullet_list(notes) or "<p>None.</p>"),
    ]
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    subtitle = f"{', '.join(labels)}; runs: {', '.join(r.name for r in runs)}; codec-bench {__version__}, {generated}"
    path = out / "index.html"
    files.write(out, "index.html", html.page(f"codec-bench report: {title}", subtitle, sections).encode())
    return path, notes
