"""Probe-mode figures: hypergradient error and objective value against time per hypergradient.

Each function takes one task's stored probe rows (a DataFrame) and returns a Figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hgbench.report.load import ok
from hgbench.report.style import Style, errs, figure, legend, log_axis, no_data, prepare
from hgbench.report.summary import summarize_probe


def _tradeoff(
    ax: Axes,
    s: pd.DataFrame,
    style: Style,
    metric: str,
    sign: float = 1.0,
    floor: float | None = None,
) -> None:
    """One point per config at (median hg time, median metric); a method's configs are joined in
    order of cost, so each family's time/accuracy trade-off reads as a curve."""
    for method in dict.fromkeys(s["method"]):
        g = s[s["method"] == method].sort_values("hg_time_s_med", kind="stable")
        x = g["hg_time_s_med"].to_numpy(float)
        y = sign * g[f"{metric}_med"].to_numpy(float)
        if floor is not None:
            y = np.maximum(y, floor)
        color = style.color(g["label"].iloc[0])
        if len(g) > 1:
            ax.plot(x, y, color=color, linewidth=1, alpha=0.7, label="_join")
        xerr, yerr = errs(g, "hg_time_s"), errs(g, metric, sign)
        for i, label in enumerate(g["label"]):
            ax.errorbar(
                x[i],
                y[i],
                xerr=xerr[:, i : i + 1],
                yerr=None if floor is not None and y[i] <= floor else yerr[:, i : i + 1],
                marker=style.marker(label),
                color=color,
                linestyle="none",
                markersize=7,
                elinewidth=1,
                capsize=2,
                label=label,
            )


def _probe_summary(rows: pd.DataFrame, style: Style, metric: str) -> pd.DataFrame:
    s = summarize_probe(rows, style.order)
    if s.empty:
        return s
    keep = (s["hg_time_s_med"] > 0) & s[f"{metric}_med"].notna()
    return s[keep].reset_index(drop=True)


def probe_error_figure(rows: pd.DataFrame, style: Style | None = None, title: str = "") -> Figure:
    """Relative hypergradient error vs time per hypergradient (log-log), per config.

    An exact method has error 0, which a log axis cannot show: such points sit on a dotted
    'zero error' line a decade below the smallest nonzero error.
    """
    rows, style = prepare(rows, style)
    s = _probe_summary(rows, style, "hg_rel_err")
    fig = figure(1)
    ax = fig.subplots()
    ax.set(xlabel="time per hypergradient (s)", ylabel="relative error of hypergradient")
    if s.empty:
        no_data(ax)
        return fig
    err = s["hg_rel_err_med"].to_numpy(float)
    positive = err[err > 0]
    floor = float(positive.min() / 10) if positive.size else 1e-16
    _tradeoff(ax, s, style, "hg_rel_err", floor=floor)
    extra = []
    if (err <= 0).any():
        ax.axhline(floor, color="grey", linestyle=":", linewidth=1)
        extra.append(Line2D([], [], color="grey", linestyle=":", label="zero error (drawn here)"))
    log_axis(ax, "x")
    log_axis(ax, "y")
    ax.grid(alpha=0.3, which="both")
    legend(fig, style, list(s["label"]), extra)
    if title:
        fig.suptitle(title)
    return fig


def has_values(rows: pd.DataFrame) -> bool:
    good = ok(rows)
    return bool(good["value"].notna().any() or good["exact_value"].notna().any())


def probe_value_figure(rows: pd.DataFrame, style: Style | None = None, title: str = "") -> Figure:
    """-value (e.g. -log marglik / N) vs time per hypergradient, exact value as a line.

    The exact line is drawn at the median of -exact_value with its 25–75% band when the probed
    states differ in their exact value.
    """
    rows, style = prepare(rows, style)
    s = _probe_summary(rows, style, "value")
    fig = figure(1)
    ax = fig.subplots()
    ax.set(xlabel="time per hypergradient (s)", ylabel="-value (e.g. -log marglik / N)")
    exact = -ok(rows)["exact_value"].to_numpy(float)
    exact = exact[np.isfinite(exact)]
    extra = []
    if exact.size:
        q25, med, q75 = np.percentile(exact, [25, 50, 75])
        ax.axhline(med, color="black", linestyle="--", linewidth=1)
        if q75 > q25:
            ax.axhspan(q25, q75, color="black", alpha=0.08, linewidth=0)
        extra.append(Line2D([], [], color="black", linestyle="--", label="exact"))
    if not s.empty:
        _tradeoff(ax, s, style, "value", sign=-1.0)
        log_axis(ax, "x")
    elif not exact.size:
        no_data(ax)
    ax.grid(alpha=0.3, which="both")
    legend(fig, style, list(s["label"]) if not s.empty else [], extra)
    if title:
        fig.suptitle(title)
    return fig
