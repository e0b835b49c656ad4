"""The critical-difference diagram of average ranks across tasks (Demšar 2006).

Drawn by scikit-posthocs from the Nemenyi p-values of hgbench.report.stats.rank_configs: configs
on the axis by average rank (lower is better), joined by a bar where Nemenyi's test cannot tell
them apart at α = 0.05 (scikit-posthocs' default, the report's ALPHA).
"""

from __future__ import annotations

import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from hgbench.report.stats import Ranking
from hgbench.report.style import Style


def rank_figure(ranking: Ranking, style: Style, title: str = "") -> Figure:
    """The diagram for a usable `ranking` (at least three configs and two blocks)."""
    import scikit_posthocs as sp  # only here: it imports statsmodels (about a second)

    k = len(ranking.ranks)
    longest = max(len(str(lab)) for lab in ranking.ranks.index)
    fig = Figure(figsize=(max(8.0, 5.0 + 0.16 * longest), 1.6 + 0.28 * math.ceil(k / 2)))
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    sp.critical_difference_diagram(
        ranking.ranks,
        ranking.nemenyi,
        ax=ax,
        color_palette={lab: to_hex(style.color(lab)) for lab in ranking.ranks.index},
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
        label_props={"fontsize": "small"},
    )
    detail = (
        f"average rank over {ranking.blocks} (task, seed) blocks of {ranking.tasks} task"
        f"{'s' if ranking.tasks != 1 else ''}; Friedman p = {ranking.friedman_p:.2g}; "
        f"Nemenyi critical difference {ranking.critical_difference:.2f}"
    )
    fig.suptitle(f"{title}\n{detail}" if title else detail, fontsize="medium")
    return fig
