"""report.html: one self-contained page from a report's Markdown and its figure specs.

The page is report.md rendered (hgbench.report.html_markdown), so its tables and sentences are
report.md's own; where report.md shows a figure that has a spec (hgbench.report.html_specs), the
page draws it interactively with plotly.js, inlined with the page's script and data, so the file
opens offline from any folder, without a server. Other figures are inlined as PNG data. With
JavaScript off the tables and text still read (and sort on click only with it on).
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from hgbench.report.html_markdown import render

HTML_FILE = "report.html"
PLOTLY_JS = "plotly-basic.min.js"  # plotly.js 4.1.2, basic bundle (scatter, bar), MIT licence
HELP = (
    "Interactive figures: hover a point for its config, settings and per-seed values; click a "
    "legend entry to hide it (double-click: show only it); the family boxes hide or show a "
    "whole method family; drag to zoom, double-click the plot to zoom out. Tables sort by a "
    "click on their header."
)
HELP_TABLES = "Tables sort by a click on their header."  # a page with no interactive figure
FOLD = "Source, cells, noisy cells, machine and environment"  # a run report's header


def static_text(name: str) -> str:
    return resources.files("hgbench.report").joinpath("static", name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: `</` (and `<!--`) cannot close or open anything."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


class _Figures:
    """The image hook of the Markdown renderer: a placeholder for a spec, else the PNG inline."""

    def __init__(self, out_dir: Path, specs: dict[str, dict[str, Any]]) -> None:
        self.out_dir, self.specs = out_dir, specs
        self.used: dict[str, dict[str, Any]] = {}

    def __call__(self, alt: str, src: str) -> str:
        alt_html = html.escape(alt)
        if src in self.specs:
            fid = f"fig{len(self.used)}"
            self.used[fid] = self.specs[src]
            fallback = (
                f'<noscript><p class="noscript">An interactive figure: it needs JavaScript. '
                f'The same figure as a picture: <a href="{html.escape(src)}">{html.escape(src)}'
                f"</a>.</p></noscript>"
            )
            return (
                f'<figure class="hg-fig" id="{fid}" data-kind="{self.specs[src]["kind"]}">'
                f'<div class="hg-controls"></div><div class="hg-plot"></div>{fallback}'
                f"<figcaption>{alt_html}</figcaption></figure>"
            )
        path = self.out_dir / src
        if path.suffix == ".png" and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return (
                f'<figure class="hg-png"><img alt="{alt_html}" src="data:image/png;base64,'
                f'{data}"><figcaption>{alt_html}</figcaption></figure>'
            )
        return f'<img alt="{alt_html}" src="{html.escape(src)}">'


def _split_header(markdown: str) -> tuple[str, str, str]:
    """(the `# ` title line, the header up to the first `## ` section, the rest): the page folds
    the header away, so that its first screen is the verdict, not the environment."""
    lines = markdown.splitlines()
    title = lines[0] if lines and lines[0].startswith("# ") else ""
    start = 1 if title else 0
    end = next((i for i, ln in enumerate(lines) if ln.startswith("## ")), len(lines))
    end = max(end, start)
    return title, "\n".join(lines[start:end]), "\n".join(lines[end:])


def _toc(headings: list[tuple[int, str, str]]) -> str:
    items = "".join(
        f'<li class="toc{level}"><a href="#{anchor}">{html.escape(text)}</a></li>'
        for level, anchor, text in headings
        if level in (2, 3)
    )
    return f'<nav class="toc"><strong>Contents</strong><ul>{items}</ul></nav>' if items else ""


def page_html(
    out_dir: Path,
    markdown: str,
    specs: dict[str, dict[str, Any]],
    title: str,
    fold: str | None = FOLD,
) -> str:
    """The whole page as text (`write_html` writes it). The header (what precedes the first
    `## ` section) folds away under the summary `fold`; with None it reads open, as report.md's
    does (a paper report's header says what the paper claims, not where it ran)."""
    figures = _Figures(out_dir, specs)
    title_line, header, rest = _split_header(markdown)
    top = render(title_line, figures)
    details = render(header, figures)
    body = render(rest, figures)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{static_text('report.css')}</style>",
        "</head><body>",
        f'<div class="layout">{_toc(body.headings)}<main>',
        top.body,
        (
            f'<details class="run-header"><summary>{html.escape(fold)}</summary>'
            f"{details.body}</details>"
            if header.strip() and fold is not None
            else details.body
        ),
        f'<p class="help">{html.escape(HELP if figures.used else HELP_TABLES)}</p>',
        body.body,
        "</main></div>",
        f'<script type="application/json" id="hg-data">{_script_json(figures.used)}</script>',
        # plotly.js is most of a page's weight: only a page with an interactive figure needs it
        f"<script>{static_text(PLOTLY_JS)}</script>" if figures.used else "",
        f"<script>{static_text('report.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(
    out_dir: Path,
    markdown: str,
    specs: dict[str, dict[str, Any]],
    title: str,
    fold: str | None = FOLD,
) -> Path:
    """Write `out_dir/report.html` from the report's Markdown and the specs of its figures
    (keyed by the image path report.md uses, e.g. `figures/run_digits_mlp_pareto.png`)."""
    path = Path(out_dir) / HTML_FILE
    path.write_text(page_html(Path(out_dir), markdown, specs, title, fold), encoding="utf-8")
    return path
