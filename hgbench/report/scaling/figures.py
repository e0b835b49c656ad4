"""The scaling report's figures: log-log time and memory against each swept size, one row of
panels per method family, a cross for every size that ran out of time or memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hgbench.report.configs import method_family, ordered_methods
from hgbench.report.scaling.data import AXIS_X, COST_FAILURES, LINESTYLES, MEM_FLOOR_MB
from hgbench.report.style import MARKERS, figure, log_axis


def _series_styles(points: pd.DataFrame) -> dict[str, tuple[tuple[float, ...], str, str]]:
    """(colour, linestyle, marker) per series. A figure has one row of panels per family, so
    colours need only differ within a family: each method of a family gets its own colour of a
    qualitative palette (shades of one hue, as elsewhere in hgbench, blur with nine implicit
    methods in one panel), each series of a method its own linestyle, each series of a family
    its own marker. Call it with every axis's points, so that a series looks alike in every
    figure."""
    palette = [tuple(c) for c in colormaps["tab10"].colors]  # type: ignore[attr-defined]
    styles, used, in_family, colour = {}, {}, {}, {}
    for series in series_order(points):
        method = points.loc[points["series"] == series, "method"].iloc[0]
        family = method_family(method)
        if method not in colour:
            colour[method] = palette[sum(method_family(m) == family for m in colour) % 10]
        k = used.get(method, 0)
        j = in_family.get(family, 0)
        line, marker = LINESTYLES[k % len(LINESTYLES)], MARKERS[j % len(MARKERS)]
        styles[series] = (colour[method], line, marker)
        used[method], in_family[family] = k + 1, j + 1
    return styles


def series_order(points: pd.DataFrame) -> list[str]:
    methods = ordered_methods(points["method"].unique())
    rank = {m: i for i, m in enumerate(methods)}
    pairs = points[["series", "method"]].drop_duplicates()
    return [s for s, _ in sorted(pairs.itertuples(index=False), key=lambda p: (rank[p[1]], p[0]))]


def _panel(ax: Axes, points: pd.DataFrame, metric: str, styles, order) -> None:
    """One metric against size; failures on the top edge (axes coordinates), each series a
    little lower than the one before so that markers at one size do not hide each other."""
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction
    failing = 0
    for series in order:
        s = points[points["series"] == series]
        color, ls, marker = styles[series]
        good = s[s["outcome"] == "ok"]
        y = good[metric].to_numpy(float)
        if metric == "mem_mb":
            y = np.maximum(y, MEM_FLOOR_MB)
        ax.plot(good["size"], y, color=color, linestyle=ls, marker=marker, markersize=4, lw=1.2,
                label=series)  # fmt: skip
        cost = s[s["outcome"].isin(COST_FAILURES)]
        other = s[s["outcome"].isin(("error", "n/a"))]
        if cost.empty and other.empty:
            continue
        height = 0.97 - 0.035 * failing
        failing += 1
        ax.scatter(cost["size"], np.full(len(cost), height), transform=top, marker="x", s=36,
                   color=color, clip_on=False, zorder=3)  # fmt: skip
        ax.scatter(other["size"], np.full(len(other), height), transform=top, marker="o", s=22,
                   facecolors="none", edgecolors=[color], clip_on=False, zorder=3)  # fmt: skip


def scaling_figure(points: pd.DataFrame, axis: str) -> Figure:
    """Time (s) and memory (MB) per hypergradient against the axis's size, log-log: one row of
    panels per method family (small multiples: one family's shades stay apart), same x."""
    sub = points[points["axis"] == axis]
    families = list(dict.fromkeys(method_family(m) for m in ordered_methods(sub["method"])))
    fig = figure(2, nrows=max(len(families), 1), height=3.3, width=5.0)
    grid = fig.subplots(max(len(families), 1), 2, squeeze=False, sharex=True)
    if sub.empty:
        for ax in grid.flat:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="grey")
        return fig
    styles, order = _series_styles(points), series_order(sub)  # styles alike on every axis
    sizes = sub["size"].to_numpy(float)
    for (ax_t, ax_m), family in zip(grid, families, strict=True):
        rows = sub[[method_family(m) == family for m in sub["method"]]]
        mine = [s for s in order if s in set(rows["series"])]
        for ax, metric, label in (
            (ax_t, "hg_time_s", "seconds per hypergradient"),
            (ax_m, "mem_mb", "peak memory increase (MB)"),
        ):
            _panel(ax, rows, metric, styles, mine)
            ax.set_ylabel(label)
            ax.set_xlim(sizes.min() / 1.6, sizes.max() * 1.6)
            values = rows.loc[rows["outcome"] == "ok", metric].to_numpy(float)
            values = values[np.isfinite(values)]
            if metric == "mem_mb":
                values = np.maximum(values, MEM_FLOOR_MB)
            if values.size:  # headroom on top for the failure markers
                ax.set_ylim(values.min() / 1.5, values.max() * 6.0)
            log_axis(ax, "x")
            log_axis(ax, "y")
            ax.grid(True, which="both", alpha=0.25)
        ax_t.set_title(f"{family.value}: time", fontsize="medium", loc="left")
        ax_m.set_title(f"{family.value}: memory", fontsize="medium", loc="left")
        handles = [
            Line2D(
                [],
                [],
                color=styles[s][0],
                linestyle=styles[s][1],
                marker=styles[s][2],
                ms=4,
                lw=1.2,
                label=s,
            )  # fmt: skip
            for s in mine
        ]
        ax_m.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                    fontsize="small", frameon=False)  # fmt: skip
    for ax in grid[-1]:
        ax.set_xlabel(AXIS_X.get(axis, axis))
    marks = [
        Line2D([], [], color="grey", marker="x", ls="", label="out of time or memory (or past)"),
        Line2D([], [], color="grey", marker="o", ls="", mfc="none", label="n/a or error"),
    ]
    fig.legend(handles=marks, loc="outside lower center", ncols=2, fontsize="small",
               frameon=False)  # fmt: skip
    return fig
