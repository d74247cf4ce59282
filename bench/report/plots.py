"""RD figures: dataset-mean curves (bpp vs a metric), one line and marker style per codec; better is up in
every figure (the axis of a lower-is-better metric is inverted, and its label says so). For runs at equal
quality, a bar chart of each codec's bytes over the anchor's at each quality target.

Figures are built with matplotlib's object API (no pyplot state) and written as PNG, SVG and PDF.
SVG text is drawn as paths, so the figures need no fonts.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from bench import files
from bench.measures import all_metrics, measure_label

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
FORMATS = ("png", "svg", "pdf")
STYLE = {"svg.fonttype": "path", "svg.hashsalt": "codec-bench", "font.size": 10}


def axis_label(metric: str) -> str:
    """The metric's label from the registry; for a lower-is-better metric, that it is and that its axis is
    inverted."""
    label = measure_label(metric)
    return label if all_metrics()[metric].higher_is_better else f"{label}, lower is better (axis inverted)"


def styles(labels: list[str]) -> dict[str, dict[str, object]]:
    """A fixed colour and marker per label, the same in every figure of a report."""
    from matplotlib import colormaps

    colours = colormaps["tab10"].colors + colormaps["Dark2"].colors
    return {
        label: {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)]}
        for i, label in enumerate(labels)
    }


def rd_figure(curves: pd.DataFrame, metric: str, style: dict[str, dict[str, object]], title: str):
    """bpp vs ``metric``: each label's mean curve with its points marked; imported curves dashed."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(STYLE):
        figure = Figure(figsize=(7.0, 4.8), layout="constrained")
        axes = figure.add_subplot()
        _draw(axes, curves, metric, style, title)
    return figure


def _draw(axes, curves: pd.DataFrame, metric: str, style: dict[str, dict[str, object]], title: str) -> None:
    for label, curve in curves.groupby("label", sort=False):
        curve = curve[np.isfinite(curve["value"].astype(float))].sort_values("bpp")
        imported = bool(curve["imported"].any())
        axes.plot(
            curve["bpp"],
            curve["value"],
            linestyle="--" if imported else "-",
            markersize=5,
            linewidth=1.5,
            label=_literal(f"{label} (imported)" if imported else label),
            **style[label],
        )
    axes.set_xlabel("bits per pixel")
    axes.set_ylabel(axis_label(metric))
    if not all_metrics()[metric].higher_is_better:
        axes.invert_yaxis()
    axes.set_title(_literal(title))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)


def _literal(text: str) -> str:
    """``text`` drawn as written: a ``$`` from a codec, dataset or run name starts no mathtext."""
    return text.replace("$", r"\$")


def save_figure(figure, out: Path, base: str) -> dict[str, Path]:
    """Write out/``base``.png/.svg/.pdf (bench.files: no link below ``out`` followed, atomic); returns the
    path of each format."""
    from matplotlib import rc_context

    paths = {}
    with rc_context(STYLE):
        for fmt in FORMATS:
            buffer = io.BytesIO()
            metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else {}
            figure.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
            files.write(out, f"{base}.{fmt}", buffer.getvalue())
            paths[fmt] = out / f"{base}.{fmt}"
    return paths


def ratio_figure(records: list[dict], targets: list[str], style: dict[str, dict[str, object]], title: str):
    """Bytes at equal quality: per quality target, a bar per codec (its mean bytes over the anchor's) with
    its bootstrap 95 % CI; the anchor is the line at 1."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    codecs = list(dict.fromkeys(record["codec"] for record in records))
    width = 0.8 / max(len(codecs), 1)
    with rc_context(STYLE):
        figure = Figure(figsize=(7.0, 4.2), layout="constrained")
        axes = figure.add_subplot()
        for i, codec in enumerate(codecs):
            mine = {r["target"]: r for r in records if r["codec"] == codec and r["ratio"] is not None}
            shown = [j for j, target in enumerate(targets) if target in mine]
            ratios = np.array([mine[targets[j]]["ratio"] for j in shown], dtype=float)
            low = np.array([_or(mine[targets[j]]["ci_low"], ratios[k]) for k, j in enumerate(shown)])
            high = np.array([_or(mine[targets[j]]["ci_high"], ratios[k]) for k, j in enumerate(shown)])
            axes.bar(
                np.array(shown) + (i - (len(codecs) - 1) / 2) * width,
                ratios,
                width,
                yerr=[ratios - low, high - ratios],
                capsize=3,
                color=style[codec]["color"],
                label=_literal(codec),
            )
        anchor = records[0]["anchor"] if records else "anchor"
        axes.axhline(1.0, color="black", linewidth=1, label=_literal(f"{anchor} (anchor)"))
        axes.set_xticks(range(len(targets)), [_literal(target) for target in targets])
        axes.set_ylabel(_literal(f"bytes / {anchor}'s bytes (mean over images)"))
        axes.set_title(_literal(title))
        axes.grid(True, axis="y", alpha=0.3)
        axes.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
