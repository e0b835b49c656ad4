"""The verdict's figure: each config's gain over the baseline, per task, with its certainty.

One panel per task, one row per config (aligned across panels): the mean paired difference of
final test NLL to the baseline over shared seeds, with its 95% t-interval (left of 0: better
than the baseline). Filled markers are separated from the baseline (the interval excludes 0),
hollow ones are not; a config far worse than the rest sits at the right edge with its value.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hgbench.report.plots import robust_limits, worse_outliers
from hgbench.report.style import Style
from hgbench.report.verdict import TaskAnalysis

WRAP = 36  # characters per line of a config label


def _rows(analyses: Sequence[TaskAnalysis], style: Style) -> list[str]:
    seen = {lab for a in analyses if a.baseline for lab in a.values.columns if lab != a.baseline}
    return [lab for lab in style.order if lab in seen] + sorted(seen - set(style.order))


def has_gains(analyses: Sequence[TaskAnalysis], style: Style) -> bool:
    return bool(_rows(analyses, style))


def gain_figure(analyses: Sequence[TaskAnalysis], style: Style, title: str = "") -> Figure:
    """The figure for the tasks with a baseline (see the module docstring)."""
    tasks = [a for a in analyses if a.baseline and a.values.shape[1] > 1]
    labels = _rows(tasks, style)
    ticks = [textwrap.fill(lab, WRAP, subsequent_indent="  ") for lab in labels]
    heights = [max(1.0, 0.55 * len(t.splitlines())) for t in ticks]  # wrapped labels need room
    centres = np.cumsum(heights) - np.asarray(heights) / 2
    y_of = dict(zip(labels, centres, strict=True))
    chars = max((len(line) for t in ticks for line in t.splitlines()), default=10)
    lines = sum(heights)
    fig = Figure(
        figsize=(0.6 + 0.075 * chars + 3.6 * max(1, len(tasks)), 1.3 + 0.3 * max(1, lines)),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(tasks)), squeeze=False, sharey=True)[0]
    for ax, a in zip(axes, tasks, strict=False):
        comps = [(lab, a.comparison(lab, a.baseline)) for lab in labels if lab in a.values]
        comps = [(lab, c) for lab, c in comps if c is not None and math.isfinite(c.diff)]
        d = np.array([c.diff for _, c in comps])
        lows, highs = np.array([c.low for _, c in comps]), np.array([c.high for _, c in comps])
        out = worse_outliers(d, worse_high=True, protect=np.zeros(d.shape, dtype=bool))
        lo, hi = robust_limits(np.append(d[~out], 0.0), lows[~out], highs[~out])
        for (lab, c), far in zip(comps, out, strict=True):
            color, y = style.color(lab), y_of[lab]
            face = color if c.separated else "white"
            if far:
                ax.plot(hi, y, marker=">", color=color, markersize=9, clip_on=False, label=lab)
                ax.annotate(
                    f"+{c.diff:.3g}", (hi, y), xytext=(-6, 5), textcoords="offset points",
                    ha="right", fontsize="x-small", color=color,
                )  # fmt: skip
                continue
            err = None
            if math.isfinite(c.low):
                err = [[c.diff - c.low], [c.high - c.diff]]
            ax.errorbar(
                c.diff, y, xerr=err, marker=style.marker(lab), color=color, markerfacecolor=face,
                markersize=7, elinewidth=1.2, capsize=2, linestyle="none", label=lab,
            )  # fmt: skip
        ax.axvline(0.0, color=style.color(a.baseline), linestyle=":", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_title(a.task, fontsize="medium")
        ax.set_xlabel(f"Δ test NLL vs {a.baseline}")
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(centres, ticks, fontsize="small")
    axes[0].set_ylim(float(sum(heights)), 0.0)
    if title:
        fig.suptitle(title)
    return fig
