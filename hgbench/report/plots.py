"""Figures of a report. Each function takes stored rows (a DataFrame) and returns a Figure.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, not pyplot: no display, no
global figure registry to leak into, and nothing changes the backend of a user's session.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from hgbench.report.tables import (
    cell_outcomes,
    describe_configs,
    ordered_methods,
    pareto_front,
    step_quantiles,
    summarize_probe,
    summarize_run,
    with_labels,
)

Color = tuple[float, float, float]
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
FALLBACK_COLOR: Color = (0.5, 0.5, 0.5)


def method_colors(methods: list[str]) -> dict[str, Color]:
    """One colour per method, assigned in the given order from tab10 (tab20 beyond ten; cycling
    beyond twenty).

    These are seaborn's "tab10"/"tab20" palettes, read from matplotlib's colormaps they are
    defined by: importing seaborn (and with it scipy) would double the report's start-up time.
    """
    palette = mpl.colormaps["tab10" if len(methods) <= 10 else "tab20"].colors
    return {m: tuple(palette[i % len(palette)][:3]) for i, m in enumerate(methods)}


@dataclass(frozen=True)
class Style:
    """Colour per method, marker per config label: built once per report, shared by figures."""

    colors: dict[str, Color]
    markers: dict[str, str]  # config label -> marker (configs of a method differ by marker)
    methods: dict[str, str]  # config label -> method
    order: list[str]  # config labels in display order

    def color(self, label: str) -> Color:
        return self.colors.get(self.methods.get(label, label), FALLBACK_COLOR)

    def marker(self, label: str) -> str:
        return self.markers.get(label, "o")


def make_style(rows: pd.DataFrame, method_order: Sequence[str] | None = None) -> Style:
    configs = describe_configs(rows)
    methods = ordered_methods(configs["method"], method_order)
    rank = {m: i for i, m in enumerate(methods)}
    configs = configs.assign(mrank=[rank[m] for m in configs["method"]])
    configs = configs.sort_values(["mrank", "rank"], kind="stable")
    return Style(
        colors=method_colors(methods),
        markers={c.label: MARKERS[c.rank % len(MARKERS)] for c in configs.itertuples()},
        methods=dict(zip(configs["label"], configs["method"], strict=True)),
        order=list(dict.fromkeys(configs["label"])),
    )


def _prepare(rows: pd.DataFrame, style: Style | None) -> tuple[pd.DataFrame, Style]:
    if "label" not in rows.columns:
        rows = with_labels(rows)
    return rows, style if style is not None else make_style(rows)


LEGEND_ROOM = 2.2  # inches beside the axes for the legend, before `_legend` sizes it
LEGEND_WRAP = 48  # characters per legend line


def _figure(ncols: int) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(5.2 * ncols + LEGEND_ROOM, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _legend(fig: Figure, style: Style, labels: Sequence[str], extra: Sequence[Line2D] = ()) -> None:
    """A figure legend with uniform proxies, so highlighted points do not change legend marks."""
    handles = [
        Line2D(
            [],
            [],
            color=style.color(lab),
            marker=style.marker(lab),
            linestyle="-",
            label=textwrap.fill(lab, LEGEND_WRAP, subsequent_indent="  "),
        )
        for lab in labels
    ]
    handles += list(extra)
    if handles:
        # Make room for the legend beside the axes: long config labels would otherwise squeeze
        # the axes to nothing (constrained layout then gives up and the legend covers the plot).
        chars = max(len(line) for h in handles for line in str(h.get_label()).splitlines())
        lines = sum(len(str(h.get_label()).splitlines()) + 0.4 for h in handles)
        width, height = fig.get_size_inches()
        fig.set_size_inches(width - LEGEND_ROOM + 0.9 + 0.075 * chars, max(height, 0.18 * lines))
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)


def _no_data(ax: Axes, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="grey")


def _short(value: float, _pos: object = None) -> str:
    return f"{value:.3g}"


def _short_minor(value: float, _pos: object = None) -> str:
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return _short(value) if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""


def _log(ax: Axes, which: str) -> None:
    """Log scale with readable labels on narrow ranges, where matplotlib's defaults label dense
    minor ticks in overlapping mathtext (or show no label at all)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    getattr(ax, f"set_{which}scale")("log")
    lo, hi = getattr(ax, f"get_{which}lim")()
    if not lo > 0:
        return
    if hi / lo < 10:  # within a decade a log axis is nearly linear: a few plain ticks
        axis.set_major_locator(MaxNLocator(4))
        axis.set_minor_locator(NullLocator())
        axis.set_major_formatter(FuncFormatter(_short))
    elif hi / lo < 10**1.5:  # one or two decade ticks: also label 2x and 5x
        axis.set_major_formatter(FuncFormatter(_short))
        axis.set_minor_formatter(FuncFormatter(_short_minor))


def _maybe_log_x(ax: Axes, x: np.ndarray) -> None:
    # seconds often span decades across methods; a linear axis would crush the fast ones
    x = x[np.isfinite(x) & (x > 0)]
    if x.size >= 2 and x.max() / x.min() > 30:
        _log(ax, "x")


def _errs(s: pd.DataFrame, metric: str, sign: float = 1.0) -> np.ndarray:
    """Asymmetric (2, n) error bars for the 25–75% spread around the median (of sign*metric)."""
    med, q25, q75 = (sign * s[f"{metric}_{k}"].to_numpy(float) for k in ("med", "q25", "q75"))
    lo, hi = np.minimum(q25, q75), np.maximum(q25, q75)
    return np.nan_to_num(np.vstack([med - lo, hi - med]), nan=0.0)


# --- run mode ------------------------------------------------------------------------------------
RUN_PANELS = (("test_acc", "test accuracy", True), ("test_nll", "test NLL", False))


def pareto_figure(rows: pd.DataFrame, style: Style | None = None, title: str = "") -> Figure:
    """Final test metric vs final time per config (medians, 25–75% bars); front highlighted.

    `rows` are one task's run rows. Non-dominated configs (faster and better) get a larger
    marker with a black edge and are joined by a step line.
    """
    rows, style = _prepare(rows, style)
    summary = summarize_run(rows, style.order)
    fig, axes = _figure(len(RUN_PANELS))
    for ax, (metric, name, higher) in zip(axes, RUN_PANELS, strict=True):
        ax.set(xlabel="time (s, final, median over seeds)", ylabel=f"{name} (final)")
        s = summary
        if not s.empty:
            s = s[s[[f"{metric}_med", "time_s_med"]].notna().all(axis=1)].reset_index(drop=True)
        if s.empty:
            _no_data(ax)
            continue
        x, y = s["time_s_med"].to_numpy(float), s[f"{metric}_med"].to_numpy(float)
        front = pareto_front(list(zip(x, y, strict=True)), maximize=higher)
        xerr, yerr = _errs(s, "time_s"), _errs(s, metric)
        for i, label in enumerate(s["label"]):
            best = i in front
            ax.errorbar(
                x[i],
                y[i],
                xerr=xerr[:, i : i + 1],
                yerr=yerr[:, i : i + 1],
                marker=style.marker(label),
                color=style.color(label),
                linestyle="none",
                markersize=10 if best else 6,
                markeredgecolor="black" if best else None,
                markeredgewidth=1.5 if best else 0.5,
                elinewidth=1,
                capsize=2,
                zorder=3 if best else 2,
                label=label,
            )
        ax.plot(
            x[front],
            y[front],
            drawstyle="steps-post",
            color="black",
            linewidth=1,
            alpha=0.6,
            zorder=1,
            label="_front",
        )
        _maybe_log_x(ax, x)
        ax.grid(alpha=0.3)
    front_mark = Line2D(
        [],
        [],
        color="black",
        marker="o",
        markersize=9,
        markerfacecolor="white",
        markeredgewidth=1.5,
        alpha=0.8,
        label="Pareto front",
    )
    _legend(fig, style, list(summary["label"]) if not summary.empty else [], [front_mark])
    if title:
        fig.suptitle(title)
    return fig


def _cell_curves(
    rows: pd.DataFrame, metric: str, x: str = "time_s"
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per label, one (x, metric) series per cell that finished ok."""
    outcomes = cell_outcomes(rows)
    good = set(outcomes.loc[outcomes["status"] == "ok", "cell"])
    ok = rows[rows["cell"].isin(good) & (rows["status"] == "ok")]
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for (label, _), g in ok.groupby(["label", "cell"], sort=False):
        g = g.sort_values([x, "line"], kind="stable")
        curves.setdefault(label, []).append((g[x].to_numpy(float), g[metric].to_numpy(float)))
    return curves


def curves_figure(
    rows: pd.DataFrame,
    style: Style | None = None,
    title: str = "",
    panels: Sequence[tuple[str, str, bool]] = RUN_PANELS,
    x: str = "time_s",
    xlabel: str = "time (s)",
) -> Figure:
    """Metrics vs time (or epoch) per config: median over seeds (step-wise), 25–75% band."""
    rows, style = _prepare(rows, style)
    fig, axes = _figure(len(panels))
    shown: list[str] = []
    for ax, (metric, name, _) in zip(axes, panels, strict=True):
        ax.set(xlabel=xlabel, ylabel=name)
        curves = _cell_curves(rows, metric, x)
        labels = [lab for lab in style.order if lab in curves] + [
            lab for lab in curves if lab not in style.order
        ]
        for label in labels:
            grid, med, q25, q75 = step_quantiles(curves[label])
            if grid.size == 0:
                continue
            color = style.color(label)
            ax.plot(
                grid,
                med,
                drawstyle="steps-post",
                color=color,
                marker=style.marker(label),
                markevery=max(1, grid.size // 8),
                markersize=5,
                label=label,
            )
            ax.fill_between(grid, q25, q75, step="post", color=color, alpha=0.2, linewidth=0)
            shown.append(label)
        if not ax.has_data():
            _no_data(ax)
        ax.grid(alpha=0.3)
    _legend(fig, style, list(dict.fromkeys(shown)))
    if title:
        fig.suptitle(title)
    return fig


GENERALISATION_PANELS = (("val_loss", "validation loss", False), ("test_nll", "test NLL", False))


def generalisation_figure(
    rows: pd.DataFrame, style: Style | None = None, title: str = ""
) -> Figure:
    """Validation loss beside test NLL over epochs: a tuner that overfits the validation set
    drives the first down while the second stays or rises (Lorraine et al. 2020, §5)."""
    return curves_figure(rows, style, title, GENERALISATION_PANELS, x="epoch", xlabel="epoch")


# --- probe mode ----------------------------------------------------------------------------------
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
        xerr, yerr = _errs(g, "hg_time_s"), _errs(g, metric, sign)
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
    rows, style = _prepare(rows, style)
    s = _probe_summary(rows, style, "hg_rel_err")
    fig, (ax,) = _figure(1)
    ax.set(xlabel="time per hypergradient (s)", ylabel="relative error of hypergradient")
    if s.empty:
        _no_data(ax)
        return fig
    err = s["hg_rel_err_med"].to_numpy(float)
    positive = err[err > 0]
    floor = float(positive.min() / 10) if positive.size else 1e-16
    _tradeoff(ax, s, style, "hg_rel_err", floor=floor)
    extra = []
    if (err <= 0).any():
        ax.axhline(floor, color="grey", linestyle=":", linewidth=1)
        extra.append(Line2D([], [], color="grey", linestyle=":", label="zero error (drawn here)"))
    _log(ax, "x")
    _log(ax, "y")
    ax.grid(alpha=0.3, which="both")
    _legend(fig, style, list(s["label"]), extra)
    if title:
        fig.suptitle(title)
    return fig


def has_values(rows: pd.DataFrame) -> bool:
    ok = rows[rows["status"] == "ok"]
    return bool(ok["value"].notna().any() or ok["exact_value"].notna().any())


def probe_value_figure(rows: pd.DataFrame, style: Style | None = None, title: str = "") -> Figure:
    """-value (e.g. -log marglik / N) vs time per hypergradient, exact value as a line.

    The exact line is drawn at the median of -exact_value with its 25–75% band when the probed
    states differ in their exact value.
    """
    rows, style = _prepare(rows, style)
    s = _probe_summary(rows, style, "value")
    fig, (ax,) = _figure(1)
    ax.set(xlabel="time per hypergradient (s)", ylabel="-value (e.g. -log marglik / N)")
    ok = rows[rows["status"] == "ok"]
    exact = -ok["exact_value"].to_numpy(float)
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
        _log(ax, "x")
    elif not exact.size:
        _no_data(ax)
    ax.grid(alpha=0.3, which="both")
    _legend(fig, style, list(s["label"]) if not s.empty else [], extra)
    if title:
        fig.suptitle(title)
    return fig
