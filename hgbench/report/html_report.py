"""report.html beside report.md: `write_report` hands over what it computed (the text, the
task analyses, the ranking, the style), and this builds the figure specs and the page.

Interactive here: each task's Pareto front and anytime curves, the gains over the baseline, the
critical-difference diagram, each probe task's error against time per hypergradient, and the
ranks per budget where a budget study exists. Validation-against-test curves, learned schedules
and the marginal-likelihood bound figures stay the PNGs report.md shows, inlined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hgbench.contracts.schema import Mode
from hgbench.report.figure_names import FIGURES_DIR, GAINS_TITLE, RANKS_TITLE, figure_name
from hgbench.report.html_page import write_html
from hgbench.report.html_sections import budget_ranks, budget_section, methods_section
from hgbench.report.html_specs import anytime_spec, gains_spec, pareto_spec, probe_spec, ranks_spec
from hgbench.report.stats import Ranking
from hgbench.report.style import Style
from hgbench.report.verdict import TaskAnalysis


def report_specs(
    style: Style,
    runs: list[tuple[TaskAnalysis, pd.DataFrame]],
    probes: list[tuple[str, pd.DataFrame]],
    ranking: Ranking,
) -> dict[str, dict[str, Any]]:
    """Figure specs keyed by the image path report.md shows in their place (a path report.md
    does not show is never drawn: the page follows report.md)."""
    analyses = [a for a, _ in runs]
    specs: dict[str, dict[str, Any]] = {
        f"{FIGURES_DIR}/gains.png": gains_spec(analyses, style, GAINS_TITLE),
    }
    if ranking.usable:
        specs[f"{FIGURES_DIR}/ranks.png"] = ranks_spec(ranking, style, RANKS_TITLE)
    for a, rows in runs:
        title = f"{a.task}: final test metrics vs cost"
        specs[figure_name(Mode.RUN, a.task, "pareto")] = pareto_spec(a, rows, style, title)
        title = f"{a.task}: test NLL vs cost"
        specs[figure_name(Mode.RUN, a.task, "anytime")] = anytime_spec(a, rows, style, title)
    for task, rows in probes:
        title = f"{task}: hypergradient error vs time"
        specs[figure_name(Mode.PROBE, task, "error")] = probe_spec(rows, style, title)
    return specs


COMPARE = "#compare-"  # spec keys of the side-by-side Pareto figures


def compare_section(specs: dict[str, dict[str, Any]], runs: list) -> tuple[str, dict]:
    """`## Tasks side by side`: every task's Pareto figure again, two to a row and without
    legends (hover names the config), so that tasks compare at a glance; only with two tasks."""
    if len(runs) < 2:
        return "", {}
    figures, more = [], {}
    for a, _ in runs:
        spec = specs[figure_name(Mode.RUN, a.task, "pareto")]
        more[COMPARE + a.task] = {**spec, "compact": True, "title": a.task}
        figures.append(f"![{a.task}: final test metrics vs cost]({COMPARE}{a.task})")
    text = "\n".join(
        [
            "## Tasks side by side",
            "",
            "Each task's Pareto figure (its section below has the legend): final metric against "
            "cost, IQM with 95% intervals and every seed, the non-dominated configs joined.",
            "",
            '<div class="side-by-side">',
            "",
            *[f"{f}\n" for f in figures],
            "</div>",
        ]
    )
    return text, more


def _insert_before(text: str, heading: str, section: str) -> str:
    """`section` before the first `heading` line of `text` (at the end without one)."""
    if not section:
        return text
    at = text.find(f"\n{heading}\n")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + section + "\n"
    return text[: at + 1] + section + "\n\n" + text[at + 1 :]


def write_html_report(
    out_dir: Path,
    text: str,
    rows: pd.DataFrame,
    style: Style,
    runs: list[tuple[TaskAnalysis, pd.DataFrame]],
    probes: list[tuple[str, pd.DataFrame]],
    ranking: Ranking,
) -> Path:
    """`out_dir/report.html`: report.md's `text` with interactive figures, then the methods
    table (where a budget study exists) the ranks per budget, and the tasks' Pareto figures side by
    side after the verdict."""
    specs = report_specs(style, runs, probes, ranking)
    budget_text, budget_specs = budget_section(budget_ranks(Path(out_dir), rows))
    compare_text, compare_specs = compare_section(specs, runs)
    specs.update(budget_specs)
    specs.update(compare_specs)
    extra = [s for s in (budget_text, methods_section(rows, style)) if s]
    page = "\n\n".join([text.rstrip("\n"), *extra]) + "\n"
    page = _insert_before(page, "## Status", compare_text)
    title = text.split("\n", 1)[0].lstrip("# ").strip()
    return write_html(out_dir, page, specs, f"{title} ({Path(out_dir).name})")
