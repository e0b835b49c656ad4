"""Sections only report.html has: the methods table (each method, its paper and the settings of
its configs here) and, where a budget study sits beside the report, its ranks per budget.

Both return Markdown (with one raw HTML line where a table needs markup a pipe table lacks) and
figure specs, which hgbench.report.html_page renders like the rest of the report.
"""

from __future__ import annotations

import html
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.colors import to_hex

from hgbench.contracts.method import METHODS
from hgbench.contracts.schema import results_path
from hgbench.engine.plugins import load_plugins
from hgbench.report.configs import describe_configs, method_family, ordered_methods
from hgbench.report.html_specs import config_base, nums, settings_text
from hgbench.report.load import load_rows
from hgbench.report.markdown import markdown_table
from hgbench.report.method_papers import METHOD_PAPERS
from hgbench.report.style import FALLBACK_COLOR, Style, method_colors

BUDGET_DIR = "budgets"  # the budget study's folder beside a report (reports/budgets)
BUDGET_FIGURE = "#budget-ranks"  # the spec key of the ranks-per-budget figure


def _summary_line(method: str) -> str:
    doc = (METHODS[method].__doc__ or "") if method in METHODS else ""
    first = doc.strip().split("\n\n")[0]
    return " ".join(first.split()) or "(not registered in this process)"


def methods_section(rows: pd.DataFrame, style: Style) -> str:
    """`## Methods`: one table row per method that ran, linking its paper, with its configs'
    settings (every field of `method_params`, as stored in the rows)."""
    configs = describe_configs(rows)
    if configs.empty:
        return ""
    body = []
    for method in ordered_methods(set(configs["method"])):
        mine = configs[configs["method"] == method]
        if mine.empty:
            continue
        papers = METHOD_PAPERS.get(method, ())
        links = ", ".join(
            f'<a href="{html.escape(p.url)}">{html.escape(p.cite)}</a>' for p in papers
        )
        settings = "".join(
            f'<div class="cfg"><span class="swatch" style="background:'
            f'{config_base(c.label, style)["color"]}"></span><b>{html.escape(c.label)}</b>: '
            f"<code>{html.escape(settings_text(c.params))}</code></div>"
            for c in mine.itertuples()
        )
        family = style.families.get(method)
        body.append(
            f"<tr><td><code>{html.escape(method)}</code></td>"
            f"<td>{html.escape(family.value if family else 'other')}</td>"
            f"<td>{html.escape(_summary_line(method))}</td><td>{links or '–'}</td>"
            f"<td>{settings}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("method", "family", "what it does", "paper", "configs")
    )
    table = (
        f'<div class="table-wrap"><table class="sortable methods"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    intro = (
        "Each method that ran here, the paper it follows, and the settings of each of its "
        "configs (the fields of its dataclass, as the result rows store them)."
    )
    return "\n".join(["## Methods", "", intro, "", table])


def _budget_rows(out_dir: Path, rows: pd.DataFrame) -> pd.DataFrame | None:
    """The budget study's rows: this report's own, or those of a `budgets/` folder beside it."""
    if "budget_runs" in rows.columns and rows["budget_runs"].notna().any():
        return rows
    sibling = out_dir.resolve().parent / BUDGET_DIR
    if sibling != out_dir.resolve() and results_path(sibling).exists():
        found = load_rows(sibling)
        if "budget_runs" in found.columns and found["budget_runs"].notna().any():
            return found
    return None


def budget_ranks(out_dir: Path, rows: pd.DataFrame) -> pd.DataFrame | None:
    """Average rank over tasks of each method at each budget (method × budget), computed by the
    budget study's report module; None where there is no budget study (or no such module)."""
    try:
        budgets = import_module("hgbench.report.budgets")
    except ImportError:  # a checkout without the budget study
        return None
    found = _budget_rows(out_dir, rows)
    if found is None:
        return None
    load_plugins()  # the study's kinds come from the registered methods' families
    try:
        ranks = budgets.ranks(budgets.curves(budgets.final_rows(found)))
    except (LookupError, ValueError) as exc:  # a study half run, or of unregistered methods
        print(f"report.html: ranks per budget left out: {exc}", file=sys.stderr)
        return None
    return ranks if not ranks.empty else None


def budget_spec(ranks: pd.DataFrame) -> dict[str, Any]:
    """Rank against budget per method; colours and families as in every hgbench figure (the
    study's methods, not this report's configs)."""
    budgets = [float(b) for b in ranks.columns]
    names = [str(m) for m in ranks.index]
    colors = method_colors(names)
    methods = [
        {
            "label": m,
            "method": m,
            "family": method_family(m).value,
            "color": to_hex(colors.get(m, FALLBACK_COLOR)),
            "symbol": "circle",
            "settings": "defaults",
            "budgets": budgets,
            "ranks": nums(r.to_numpy(float), 4),
        }
        for m, (_, r) in zip(names, ranks.iterrows(), strict=True)
    ]
    title = "Average rank over tasks at each budget"
    return {"kind": "budget_ranks", "title": title, "configs": methods}


def budget_section(ranks: pd.DataFrame | None) -> tuple[str, dict[str, Any]]:
    """`## Ranks per budget` (Markdown) and its figure spec; nothing without a budget study."""
    if ranks is None:
        return "", {}
    header = ["method", *(f"B = {b:g}" for b in ranks.columns)]
    body = [[str(m), *(f"{v:.1f}" if pd.notna(v) else "–" for v in r)] for m, r in ranks.iterrows()]
    text = "\n".join(
        [
            "## Ranks per budget",
            "",
            "From the budget study beside this report (`python -m hgbench budgets`): each "
            "method's average rank over tasks (1 best) by IQM final test NLL, at a total budget "
            "of B runs of `fixed`.",
            "",
            f"![ranks per budget]({BUDGET_FIGURE})",
            "",
            markdown_table(header, body, [False] + [True] * len(ranks.columns)),
        ]
    )
    return text, {BUDGET_FIGURE: budget_spec(ranks)}
