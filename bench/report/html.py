"""HTML building blocks for the report: one self-contained page (styles inline, images as data URIs,
no scripts, no network resources; tabs are radio buttons and CSS)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
  color: #1d2330; background: #fff; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.6rem; margin: 0.2rem 0 0.3rem; }
h2 { font-size: 1.25rem; margin-top: 2.4rem; border-bottom: 2px solid #e3e7ee; padding-bottom: 0.25rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
nav a { margin-right: 1rem; color: #2456a6; text-decoration: none; }
.sub { color: #5b6577; font-size: 0.92rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.86rem; }
th, td { padding: 0.28rem 0.6rem; border-bottom: 1px solid #e6e9ef; text-align: right; vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
td.text, th.text { text-align: left; }
table.left th, table.left td { text-align: left; }
table.facts th { background: none; text-align: left; color: #5b6577; font-weight: 500; }
table.facts td { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfd; }
td.good { color: #126b2f; } td.bad { color: #a42020; }
td.differs { background: #fff1c2; font-weight: 600; } td.opposed { background: #f8d4d4; font-weight: 600; }
.tabs { display: flex; flex-wrap: wrap; column-gap: 0.3rem; align-items: flex-start; }
.tabs > input { position: absolute; opacity: 0; pointer-events: none; }
.tabs > label { order: 1; padding: 0.25rem 0.7rem; border: 1px solid #cfd5df; border-radius: 4px 4px 0 0;
  background: #f3f5f9; color: #2456a6; cursor: pointer; font-size: 0.88rem; margin-top: 0.3rem; }
.tabs > input:checked + label { background: #fff; color: #1d2330; font-weight: 600; }
.tabs > input:focus-visible + label { outline: 2px solid #2456a6; }
.tabs > .panel { order: 2; display: none; width: 100%; max-width: 860px; border-top: 1px solid #cfd5df;
  padding-top: 0.6rem; }
.tabs > input:checked + label + .panel { display: block; }
.tabs > input.all:checked ~ .panel { display: block; width: calc(50% - 0.3rem); max-width: none; }
.panel figure { margin: 0; }
.panel img { width: 100%; height: auto; border: 1px solid #e6e9ef; }
figcaption { font-size: 0.82rem; color: #5b6577; }
.crops { display: flex; flex-wrap: wrap; gap: 0.8rem; }
.crops figure { margin: 0; width: 258px; }
.crops img { width: 256px; height: 256px; image-rendering: pixelated; border: 1px solid #cfd5df; }
.crops img.heatmap { display: block; margin-top: 0.3rem; }
.notes li { color: #6a4b00; font-size: 0.88rem; }
details summary { cursor: pointer; color: #2456a6; margin: 0.5rem 0; }
code { background: #f3f5f9; padding: 0 0.25rem; border-radius: 3px; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    table_id: str | None = None,
    classes: Sequence[Sequence[str]] | None = None,
    css: str | None = None,
) -> str:
    """An escaped HTML table; ``classes`` gives an optional class per cell, ``css`` the table's class."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            cell_class = classes[i][j] if classes else ""
            cells.append(
                f'<td class="{cell_class}">{esc(value)}</td>' if cell_class else f"<td>{esc(value)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    ident += f' class="{esc(css)}"' if css else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def facts(pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column table of labelled facts."""
    rows = "".join(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>" for key, value in pairs)
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def figure(uri: str, alt: str, caption: str, links: dict[str, str]) -> str:
    """A figure with its image inline and links to its files."""
    files = " · ".join(f'<a href="{esc(path)}">{esc(fmt)}</a>' for fmt, path in links.items())
    return (
        f'<figure><img class="figure" src="{uri}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)} ({files})</figcaption></figure>"
    )


def tabs(name: str, panels: list[tuple[str, str, str]], all_label: str) -> str:
    """Tabs without scripts: one radio button per panel, (tab text, tab tooltip, panel HTML), the first
    shown; with several panels, a first tab ``all_label`` shows them all side by side."""
    parts = []
    if len(panels) > 1:
        parts.append(
            f'<input type="radio" class="all" name="{esc(name)}" id="{esc(name)}-all">'
            f'<label for="{esc(name)}-all">{esc(all_label)}</label>'
        )
    for i, (text, tooltip, inner) in enumerate(panels):
        ident = f"{name}-{i}"
        checked = " checked" if i == 0 else ""
        parts.append(
            f'<input type="radio" name="{esc(name)}" id="{esc(ident)}"{checked}>'
            f'<label for="{esc(ident)}" title="{esc(tooltip)}">{esc(text)}</label>'
            f'<div class="panel">{inner}</div>'
        )
    return f'<div class="tabs" id="{esc(name)}-tabs">{"".join(parts)}</div>'


def bullet_list(lines: Iterable[str], css: str = "notes") -> str:
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<ul class="{css}">{items}</ul>' if items else ""


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are (anchor id, heading, inner HTML)."""
    nav = "".join(f'<a href="#{esc(ident)}">{esc(heading)}</a>' for ident, heading, _ in sections)
    body = "".join(f'<section id="{esc(i)}"><h2>{esc(h)}</h2>{inner}</section>' for i, h, inner in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f'<body><main><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p><nav>{nav}</nav>{body}'
        "</main></body></html>\n"
    )
