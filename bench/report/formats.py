"""Rendering a BD table, and the tables of search runs (bench.report.matched), as text, CSV, Markdown,
LaTeX or JSON (CSV: the BD table only)."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd

from bench.report.bdtable import LOW_OVERLAP, BDTable
from bench.report.matched import TargetTable
from bench.report.ranks import Ranking, differs

FORMATS = ("text", "csv", "markdown", "latex", "json")


def title(table: BDTable) -> str:
    """One line saying what the numbers are."""
    if table.delta == "rate":
        what = "BD-rate (%)"
        sign = "negative = fewer bits than the anchor at equal quality"
    else:
        what = "BD-quality (metric units, dB for PSNR and MS-SSIM dB)"
        sign = "positive = higher quality than the anchor at equal rate"
    how = (
        f"BD per image, mean over {table.anchor_images} images [bootstrap 95 % CI]"
        if table.mode == "image"
        else "BD of the dataset-mean curves"
    )
    return f"{what} vs {table.anchor}: {how}; {table.method}; {sign}"


def _number(value: float, table: BDTable) -> str:
    return f"{value:.2f}" if table.delta == "rate" else f"{value:.3f}"


def value_text(table: BDTable, codec: str, metric: str) -> str:
    """A cell of the main grid: the value, its CI in image mode, or n/a."""
    cell = table.cells[(codec, metric)]
    if math.isnan(cell.value):
        return "n/a"
    text = _number(cell.value, table)
    if table.mode == "image" and not math.isnan(cell.ci_low):
        text += f" [{_number(cell.ci_low, table)}, {_number(cell.ci_high, table)}]"
    return text


def counts_text(table: BDTable, codec: str, metric: str) -> str:
    """A cell of the counts grid: undefined images (image mode) / dropped points / overlap."""
    if codec == table.anchor:
        parts = ["-"] if table.mode == "image" else []
        return " / ".join(parts + [str(table.anchor_dropped[metric]), "-"])
    cell = table.cells[(codec, metric)]
    overlap = "-" if math.isnan(cell.overlap) else f"{cell.overlap:.0%}"
    parts = [str(cell.undefined)] if table.mode == "image" else []
    return " / ".join(parts + [str(cell.dropped), overlap])


def counts_title(table: BDTable) -> str:
    head = "images where BD is undefined / " if table.mode == "image" else ""
    tail = " (mean over images)" if table.mode == "image" else ""
    return f"{head}non-monotonic points dropped before BD / overlap of the curves{tail}"


def codec_name(table: BDTable, codec: str) -> str:
    return f"{codec} (imported)" if codec in table.imported else codec


def grids(table: BDTable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, counts) as string frames: a row per codec, the anchor first, a column per metric and
    composite score."""
    order = [table.anchor] + table.codecs
    values = {
        codec_name(table, codec): [
            "anchor" if codec == table.anchor else value_text(table, codec, m) for m in table.columns
        ]
        for codec in order
    }
    counts = {codec_name(table, c): [counts_text(table, c, m) for m in table.columns] for c in order}
    return _frame(values, table.columns), _frame(counts, table.columns)


def _frame(data: dict[str, list[str]], metrics: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(data, orient="index", columns=metrics)
    frame.index.name = "codec"
    return frame


def notes(table: BDTable) -> list[str]:
    """What the reader must know: what a composite score averages, undefined cells and why, low overlaps,
    skipped points."""
    lines = list(table.notes)
    what = "each metric's mean BD-rate over images" if table.mode == "image" else "the BD-rates"
    for score in table.overall:
        lines.append(f"{score.column}: {score.label}: the mean of {what} under {', '.join(score.metrics)}")
    measured = {key: cell for key, cell in table.cells.items() if key[1] in table.metrics}
    low = [c for c in measured.values() if c.overlap < LOW_OVERLAP]
    if low:
        lines.append(
            f"{len(low)} of {len(measured)} cells compare curves that overlap on under {LOW_OVERLAP:.0%} "
            "of their range: BD averages the shared range only"
        )
    composite: dict[tuple[str, str], list[str]] = {}  # (column, reason): its codecs, one line for all
    for (codec, metric), cell in table.cells.items():
        if math.isnan(cell.value) and metric not in table.metrics:
            composite.setdefault((metric, cell.reason), []).append(codec)
        elif math.isnan(cell.value):
            lines.append(f"{codec} {metric}: undefined: {cell.reason}")
        if cell.skipped and metric in table.metrics:
            lines.append(
                f"{codec} {metric}: {cell.skipped} saturated point(s) skipped (infinite, or at its ceiling)"
            )
    for metric, skipped in table.anchor_skipped.items():
        if skipped and metric in table.metrics:
            lines.append(
                f"{table.anchor} {metric}: {skipped} saturated point(s) skipped (infinite, or at its ceiling)"
            )
    lines += [
        f"{', '.join(codecs)} {column}: undefined: {why}" for (column, why), codecs in composite.items()
    ]
    return lines


def ranks_title(ranking: Ranking) -> str:
    """What the rank grid holds."""
    table = ranking.table
    basis = "mean BD per image" if table.mode == "image" else "BD of the dataset-mean curves"
    what = "BD-rate" if table.delta == "rate" else "BD-quality"
    return (
        f"Codecs ranked under each metric by {what} vs {table.anchor} ({basis}; the anchor at 0): "
        f"1 = best, - = BD undefined; * = not its rank under {ranking.reference}"
    )


TAU_TITLE = (
    "Kendall tau-b between the metrics' rankings (1: the same order, -1: the reverse; "
    "over the codecs ranked under both)"
)


def rank_grids(ranking: Ranking) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranks, correlations) as string frames: a row per codec (best under the reference metric first)
    and a column per metric and composite score; a row and a column per metric and composite score."""
    table = ranking.table
    ranks = {
        codec_name(table, codec): [
            "-" if math.isnan(rank) else f"{rank:.0f}" + ("*" if differs(ranking, codec, metric) else "")
            for metric, rank in row.items()
        ]
        for codec, row in ranking.ranks.iterrows()
    }
    tau = pd.DataFrame(
        [["-" if math.isnan(v) else f"{v:.2f}" for v in row] for row in ranking.tau.values],
        index=pd.Index(table.columns, name="metric"),
        columns=table.columns,
    )
    return _frame(ranks, table.columns), tau


def records(table: BDTable) -> list[dict[str, Any]]:
    """One flat record per codec and metric or composite score (the anchor's records hold its dropped
    points)."""
    base = {"anchor": table.anchor, "mode": table.mode, "method": table.method, "delta": table.delta}
    out = []
    for metric in table.columns:
        out.append(
            base
            | {"codec": table.anchor, "metric": metric, "role": "anchor", "images": table.anchor_images}
            | {"dropped": table.anchor_dropped[metric], "skipped": table.anchor_skipped[metric]}
        )
        for codec in table.codecs:
            out.append(base | {"role": "test"} | table.cells[(codec, metric)].to_dict())
    return out


def _text_grid(frame: pd.DataFrame) -> str:
    """Columns aligned: the codec (or metric) left, the values right."""
    lines = [[frame.index.name, *frame.columns]] + [
        [str(i), *row] for i, row in zip(frame.index, frame.values)
    ]
    widths = [max(len(line[j]) for line in lines) for j in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(line, widths)))
        for line in lines
    )


def _text(table: BDTable, ranking: Ranking | None, targets: list[TargetTable]) -> str:
    values, counts = grids(table)
    parts = [title(table), "", _text_grid(values), "", counts_title(table), "", _text_grid(counts)]
    if ranking is not None:
        ranks, tau = rank_grids(ranking)
        parts += ["", ranks_title(ranking), "", _text_grid(ranks), "", TAU_TITLE, "", _text_grid(tau)]
    lines = notes(table)
    if lines:
        parts += [""] + [f"note: {line}" for line in lines]
    for searched in targets:
        parts += ["", searched.title, "", _text_grid(searched.grid)]
        parts += [""] + [f"note: {line}" for line in searched.notes] if searched.notes else []
    return "\n".join(parts)


def _markdown_grid(frame: pd.DataFrame) -> str:
    header = f"| {frame.index.name} | " + " | ".join(frame.columns) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in frame.columns) + " |"
    body = ["| " + " | ".join([str(index), *row]) + " |" for index, row in zip(frame.index, frame.values)]
    return "\n".join([header, rule, *body])


def _markdown(table: BDTable, ranking: Ranking | None, targets: list[TargetTable]) -> str:
    values, counts = grids(table)
    parts = [f"**{title(table)}**", "", _markdown_grid(values), "", f"*{counts_title(table)}*", ""]
    parts.append(_markdown_grid(counts))
    if ranking is not None:
        ranks, tau = rank_grids(ranking)
        parts += ["", f"**{ranks_title(ranking)}**", "", _markdown_grid(ranks)]
        parts += ["", f"*{TAU_TITLE}*", "", _markdown_grid(tau)]
    parts += [""] + [f"- {line}" for line in notes(table)] if notes(table) else []
    for searched in targets:
        parts += ["", f"**{searched.title}**", "", _markdown_grid(searched.grid)]
        parts += [""] + [f"- {line}" for line in searched.notes] if searched.notes else []
    return "\n".join(parts)


def _latex_escape(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
    ):
        text = text.replace(char, escaped)
    return text


def _latex_table(frame: pd.DataFrame, caption: str) -> list[str]:
    lines = [
        r"\begin{table}",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{'l' + 'r' * len(frame.columns)}}}",
        r"\toprule",
        " & ".join([str(frame.index.name), *(_latex_escape(c) for c in frame.columns)]) + r" \\",
        r"\midrule",
    ]
    for index, row in zip(frame.index, frame.values):
        cells = [_latex_escape(str(index)), *(_latex_escape(v).replace("-", "$-$") for v in row)]
        lines.append(" & ".join(cells) + r" \\")
    return lines + [r"\bottomrule", r"\end{tabular}", r"\end{table}"]


def _latex(table: BDTable, ranking: Ranking | None, targets: list[TargetTable]) -> str:
    lines = _latex_table(grids(table)[0], title(table))
    if ranking is not None:
        ranks, tau = rank_grids(ranking)
        lines += _latex_table(ranks, ranks_title(ranking)) + _latex_table(tau, TAU_TITLE)
    lines += [f"% {line}" for line in notes(table)]
    for searched in targets:
        lines += _latex_table(searched.grid, searched.title) + [f"% {line}" for line in searched.notes]
    return "\n".join(lines)


def render(
    table: BDTable, fmt: str, ranking: Ranking | None = None, targets: list[TargetTable] | None = None
) -> str:
    """The table in one of FORMATS; with ``ranking``, the ranks and their correlations too (CSV: a rank
    column); then the tables of search runs, ``targets`` (not in CSV)."""
    targets = targets or []
    if fmt == "text":
        return _text(table, ranking, targets)
    if fmt == "markdown":
        return _markdown(table, ranking, targets)
    if fmt == "latex":
        return _latex(table, ranking, targets)
    rows = records(table)
    if ranking is not None:
        for row in rows:
            rank = ranking.ranks.loc[row["codec"], row["metric"]]
            row["rank"] = None if math.isnan(rank) else int(rank)
    if fmt == "csv":
        buffer = io.StringIO()
        pd.DataFrame(rows).to_csv(buffer, index=False)
        return buffer.getvalue().rstrip("\n")
    if fmt == "json":
        document = {
            "title": title(table),
            "anchor": table.anchor,
            "mode": table.mode,
            "method": table.method,
            "delta": table.delta,
            "metrics": table.metrics,
            "overall": {s.column: {"label": s.label, "metrics": s.metrics} for s in table.overall},
            "rows": rows,
            "per_image": {
                f"{codec}/{metric}": {k: (v if math.isfinite(v) else None) for k, v in cell.per_image.items()}
                for (codec, metric), cell in table.cells.items()
                if cell.per_image
            },
            "notes": notes(table),
        }
        if targets:
            document["targets"] = [
                {"id": t.ident, "title": t.title, "records": t.records, "notes": t.notes} for t in targets
            ]
        if ranking is not None:
            document["rank_reference"] = ranking.reference
            document["rank_correlation"] = {
                a: {b: (None if math.isnan(v) else v) for b, v in row.items()}
                for a, row in ranking.tau.iterrows()
            }
        return json.dumps(document, indent=2)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
