"""The names report.md gives its figures, in one place for the two writers that use them:
report.md's (hgbench.report.writer) and report.html's (hgbench.report.html_report), whose
interactive figures take the place of report.md's images of the same name."""

from __future__ import annotations

import re

from hgbench.contracts.schema import Mode

FIGURES_DIR = "figures"
GAINS_TITLE = "Final test NLL against the baseline"
RANKS_TITLE = "Ranks by final test NLL across tasks"


def safe_name(name: str) -> str:
    """A task or config name as a file-name part: anything but letters, digits, `_`, `-` as `_`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(name))


def figure_name(mode: Mode, task: str, key: str) -> str:
    """A task's figure, relative to the report: `figures/run_digits_mlp_pareto.png`."""
    return f"{FIGURES_DIR}/{mode.value}_{safe_name(task)}_{key}.png"
