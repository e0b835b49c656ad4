"""Run-mode figures. Each function takes stored rows (a DataFrame) and returns a Figure.

- `pareto_figure`: final test NLL and accuracy against cost (TSE, log axis), IQM with 95%
  intervals, the non-dominated configs joined; a config far worse than the rest is drawn at the
  axis edge with its value, so one weak baseline never sets the scale.
- `anytime_figure` / `generalisation_figure`: curves over seeds (median, 25–75% band) in small
  multiples, one row per method family, the baseline repeated in every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hgbench.contracts.method import Family
from hgbench.contracts.schema import Status
from hgbench.report.configs import FAMILY_ORDER
from hgbench.report.load import cell_outcomes, ok
from hgbench.report.style import (
    Style,
    errs,
    figure,
    handle,
    legend,
    log_axis,
    no_data,
    prepare,
)
from hgbench.report.summary import pareto_front, step_quantiles, summarize_run
from hgbench.report.tables import NOISY_MARK

OUTLIER_GAP = 2.0  # a worst point this many times the others' range away from them is clipped
IQM_KEYS = ("val", "low", "high")


# --- robust axis limits --------------------------------------------------------------------------
def worse_outliers(values: np.ndarray, worse_high: bool, protect: np.ndarray) -> np.ndarray:
    """Mask of points on the worse side that sit far from the rest (never the better side: the
    best points are what a reader looks for; never `protect`ed points; at most a third).

    The worst point is an outlier when its gap to the next is over `OUTLIER_GAP` times the
    range of the points left; repeated while that holds.
    """
    v = np.asarray(values, dtype=float)
    out = np.zeros(v.shape, dtype=bool)
    idx = np.flatnonzero(np.isfinite(v))
    idx = idx[np.argsort(-v[idx] if worse_high else v[idx], kind="stable")]
    for _ in range(len(idx) // 3):
        rest = idx[~out[idx]]
        worst, others = rest[0], rest[1:]
        if len(others) < 2 or protect[worst]:
            break
        span = max(float(np.ptp(v[others])), 1e-12 * max(1.0, abs(float(v[worst]))))
        if abs(v[worst] - v[others[0]]) <= OUTLIER_GAP * span:
            break
        out[worst] = True
    return out


def robust_limits(values: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> tuple[float, float]:
    """Limits around the (inlier) points and their intervals, an interval reaching at most one
    range of the points beyond them, plus a margin."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    vmin, vmax = float(v.min()), float(v.max())
    span = vmax - vmin or max(abs(vmax) * 0.05, 1e-6)
    lo = np.nanmin(np.append(lows[np.isfinite(lows)], vmin))
    hi = np.nanmax(np.append(highs[np.isfinite(highs)], vmax))
    lo, hi = max(lo, vmin - span), min(hi, vmax + span)
    if hi <= lo:  # one point and no interval: a window of one range around it
        lo, hi = vmin - span / 2, vmax + span / 2
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad


# --- Pareto ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    metric: str
    name: str
    higher_is_better: bool


PARETO_PANELS = (Panel("test_nll", "test NLL", False), Panel("test_acc", "test accuracy", True))


def cost_axis(rows: pd.DataFrame) -> tuple[str, str]:
    """(column, axis label) of the cost: training-step equivalents where rows carry them."""
    if rows["tse"].notna().any():
        return "tse", "cost (training-step equivalents)"
    return "time_s", "time (s)"


def _pareto_panel(ax: Axes, s: pd.DataFrame, style: Style, panel: Panel, xcol: str) -> None:
    """One panel: every config of `s` (rows with both values) as a point, or at the edge."""
    m = panel.metric
    x = s[f"{xcol}_val"].to_numpy(float)
    y = s[f"{m}_val"].to_numpy(float)
    baseline = np.array([style.family(lab) == Family.BASELINE for lab in s["label"]])
    out = worse_outliers(y, worse_high=not panel.higher_is_better, protect=baseline)
    lows, highs = s[f"{m}_low"].to_numpy(float), s[f"{m}_high"].to_numpy(float)
    lo, hi = robust_limits(y[~out], lows[~out], highs[~out])
    edge = lo if panel.higher_is_better else hi
    shown = np.where(out, edge, y)
    front = pareto_front(list(zip(x, shown, strict=True)), maximize=panel.higher_is_better)
    xerr, yerr = errs(s, xcol, keys=IQM_KEYS), errs(s, m, keys=IQM_KEYS)
    for i, label in enumerate(s["label"]):
        color, best = style.color(label), i in front
        if out[i]:  # at the edge, pointing off the axis, with its value
            ax.plot(
                x[i], edge, marker="v" if panel.higher_is_better else "^", color=color,
                markersize=10, linestyle="none", clip_on=False, zorder=4, label=label,
            )  # fmt: skip
            ax.annotate(
                f"{y[i]:.3g}", (x[i], edge), xytext=(7, 3 if panel.higher_is_better else -11),
                textcoords="offset points", fontsize="small", color=color,
            )  # fmt: skip
            continue
        ax.errorbar(
            x[i], y[i], xerr=xerr[:, i : i + 1], yerr=yerr[:, i : i + 1],
            marker=style.marker(label), color=color, linestyle="none",
            markersize=10 if best else 6, markeredgecolor="black" if best else None,
            markeredgewidth=1.5 if best else 0.5, elinewidth=1, capsize=2,
            zorder=3 if best else 2, label=label,
        )  # fmt: skip
        if s["noisy"].iloc[i]:
            ax.annotate(NOISY_MARK, (x[i], y[i]), xytext=(5, 3), textcoords="offset points")
    ax.plot(
        x[front], shown[front], drawstyle="steps-post", color="black", linewidth=1, alpha=0.6,
        zorder=1, label="_front",
    )  # fmt: skip
    for i in np.flatnonzero(baseline):
        ax.axhline(y[i], color=style.color(s["label"].iloc[i]), linestyle=":", linewidth=1)
    ax.set_ylim(lo, hi)
    if np.isfinite(x).any() and (x[np.isfinite(x)] > 0).all():
        ax.set_xlim(*_log_limits(x, xerr))
        log_axis(ax, "x")


def _log_limits(x: np.ndarray, xerr: np.ndarray) -> tuple[float, float]:
    lo = np.nanmin(np.where(x - xerr[0] > 0, x - xerr[0], x))
    hi = np.nanmax(x + xerr[1])
    return lo / 1.4, hi * 1.4


def pareto_figure(
    rows: pd.DataFrame,
    style: Style | None = None,
    title: str = "",
    summary: pd.DataFrame | None = None,
) -> Figure:
    """Final test NLL and accuracy vs cost per config: IQM over seeds with 95% intervals, the
    non-dominated configs (cheaper and better) larger with a black edge and joined; the
    baseline's value as a dotted line; `†` marks configs with cells timed while noisy.

    `rows` are one task's run rows; `summary` their `summarize_run` if already computed.
    """
    rows, style = prepare(rows, style)
    summary = summarize_run(rows, style.order) if summary is None else summary
    xcol, xlabel = cost_axis(rows)
    fig = figure(len(PARETO_PANELS))
    axes = fig.subplots(1, len(PARETO_PANELS), squeeze=False)[0]
    drawn: set[str] = set()
    for ax, panel in zip(axes, PARETO_PANELS, strict=True):
        ax.set(xlabel=f"{xlabel}, final", ylabel=f"{panel.name} (final)")
        s = summary
        if not s.empty:
            need = [f"{panel.metric}_val", f"{xcol}_val"]
            s = s[s[need].notna().all(axis=1)].reset_index(drop=True)
        if s.empty:
            no_data(ax)
            continue
        _pareto_panel(ax, s, style, panel, xcol)
        drawn.update(s["label"])
        ax.grid(alpha=0.3, which="both")
    front_mark = Line2D(
        [], [], color="black", marker="o", markersize=9, markerfacecolor="white",
        markeredgewidth=1.5, alpha=0.8, label="Pareto front",
    )  # fmt: skip
    extra = [front_mark]
    if not summary.empty and summary["noisy"].any():
        extra.append(Line2D([], [], linestyle="none", label=f"{NOISY_MARK} noisy timing"))
    legend(fig, style, [lab for lab in style.order if lab in drawn], extra)
    if title:
        fig.suptitle(title)
    return fig


# --- curves in small multiples -------------------------------------------------------------------
@dataclass(frozen=True)
class CurvePanel:
    metric: str
    x: str
    xlabel: str
    ylabel: str
    log_x: bool = True
    hold: bool = True  # a seed's curve holds its last value until the config's last seed ends


def cell_curves(
    rows: pd.DataFrame, metric: str, x: str = "time_s"
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per label, one (x, metric) series per cell that finished ok."""
    outcomes = cell_outcomes(rows)
    good = set(outcomes.loc[outcomes["status"] == Status.OK, "cell"])
    rows_ok = ok(rows[rows["cell"].isin(good)])
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for (label, _), g in rows_ok.groupby(["label", "cell"], sort=False):
        g = g.sort_values([x, "line"], kind="stable")
        curves.setdefault(label, []).append((g[x].to_numpy(float), g[metric].to_numpy(float)))
    return curves


def _draw_curve(
    ax: Axes, style: Style, label: str, curves: list, panel: CurvePanel, ref: bool
) -> list[float]:
    """Median (steps) and 25–75% band of one config's curves; returns the medians drawn."""
    if panel.log_x:  # the start (x = 0) has no place on a log axis
        curves = [(t[t > 0], y[t > 0]) for t, y in curves]
    grid, med, q25, q75 = step_quantiles(curves, hold=panel.hold)
    if grid.size == 0:
        return []
    color = style.color(label)
    ax.plot(
        grid, med, drawstyle="steps-post", color=color, marker=style.marker(label),
        markevery=max(1, grid.size // 6), markersize=4, linewidth=1.2 if ref else 1.6,
        linestyle="--" if ref else "-", label=label,
    )  # fmt: skip
    ax.fill_between(grid, q25, q75, step="post", color=color, alpha=0.12 if ref else 0.2, lw=0)
    return list(med[np.isfinite(med)])


PER_PANEL = 5  # configs per panel besides the baseline: a larger family takes several rows


def _facet_rows(labels: Sequence[str], style: Style) -> tuple[list[str], list[tuple[str, list]]]:
    """(baseline labels, [(row name, its labels)]): one figure row per family in FAMILY_ORDER,
    split into rows of `PER_PANEL` configs where a family has more."""
    base = [lab for lab in labels if style.family(lab) == Family.BASELINE]
    rows: list[tuple[str, list]] = []
    for family in FAMILY_ORDER:
        labs = [lab for lab in labels if style.family(lab) == family]
        if family == Family.BASELINE or not labs:
            continue
        parts = [labs[i : i + PER_PANEL] for i in range(0, len(labs), PER_PANEL)]
        for k, part in enumerate(parts):
            suffix = f" ({k + 1}/{len(parts)})" if len(parts) > 1 else ""
            rows.append((family.value + suffix, part))
    return base, rows or [(Family.BASELINE.value, base)]


def facet_curves(
    rows: pd.DataFrame,
    style: Style | None,
    panels: Sequence[CurvePanel],
    title: str = "",
    target: tuple[float, str] | None = None,
) -> Figure:
    """Median over seeds (steps) with a 25–75% band per config: one row of `panels` per method
    family (of at most `PER_PANEL` configs), the baseline (dashed) repeated in every row; y
    shared by every panel, x by every column. `target`: (value, legend text), a dotted line."""
    rows, style = prepare(rows, style)
    panels = [p for p in panels if rows[p.x].notna().any() and rows[p.metric].notna().any()]
    curves = {p: cell_curves(rows, p.metric, p.x) for p in panels}
    labels = [lab for lab in style.order if any(lab in c for c in curves.values())]
    base, families = _facet_rows(labels, style)
    fig = figure(max(1, len(panels)), len(families), height=3.0, width=4.8)
    axes = fig.subplots(
        len(families), max(1, len(panels)), squeeze=False, sharey=True, sharex="col"
    )
    values: list[float] = []
    for r, (name, labs) in enumerate(families):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            for label in dict.fromkeys([*base, *labs]):
                if label in curves[panel]:
                    ref = label in base and labs != base
                    values += _draw_curve(ax, style, label, curves[panel][label], panel, ref)
            if target is not None:
                ax.axhline(target[0], color="black", linestyle=":", linewidth=1)
            ax.grid(alpha=0.3, which="both")
            ax.set_xlabel(panel.xlabel if r == len(families) - 1 else "")
            if r == 0:
                ax.set_title(f"{panel.ylabel} vs {panel.xlabel.split(' (')[0]}", fontsize="medium")
            if c == 0:
                ax.set_ylabel(name, fontsize="large", fontweight="bold")
        dashed = labs != base  # the baseline is a dashed reference in other families' rows
        handles = [handle(style, lab, linestyle="--" if dashed else "-") for lab in base]
        handles += [handle(style, lab) for lab in labs if lab not in base]
        if target is not None:
            handles.append(Line2D([], [], color="black", linestyle=":", label=target[1]))
        axes[r][-1].legend(handles=handles, fontsize="x-small", loc="upper right", frameon=True)
    for c, panel in enumerate(panels):  # after drawing: the shared limits are final
        if panel.log_x and any(axes[r][c].has_data() for r in range(len(families))):
            log_axis(axes[-1][c], "x")
    if not panels or not values:
        no_data(axes[0][0])
    else:
        _curve_ylim(axes[0][0], np.asarray(values), target[0] if target else None)
    if title:
        fig.suptitle(title)
    return fig


def _curve_ylim(ax: Axes, values: np.ndarray, target: float | None) -> None:
    """Shared y limits: the lowest median to the 90th percentile of all medians (early, high
    losses of the first evaluations would otherwise flatten the end game); log when positive."""
    lo, hi = float(values.min()), float(np.percentile(values, 90))
    if target is not None:
        lo, hi = min(lo, target), max(hi, target)
    if lo > 0 and hi / lo > 3:
        ax.set_ylim(lo / 1.05, hi * 1.05)
        log_axis(ax, "y")
    else:
        pad = 0.05 * (hi - lo or abs(hi) or 1.0)
        ax.set_ylim(lo - pad, hi + pad)


def anytime_figure(
    rows: pd.DataFrame, style: Style | None = None, title: str = "", target: float | None = None
) -> Figure:
    """Test NLL against cost in training-step equivalents and against seconds (log x), one row
    per family; `target` (the baseline's final test NLL) as a dotted line."""
    panels = (
        CurvePanel("test_nll", "tse", "cost (training-step equivalents)", "test NLL"),
        CurvePanel("test_nll", "time_s", "time (s)", "test NLL"),
    )
    ref = (target, "target: baseline's final NLL") if target is not None else None
    return facet_curves(rows, style, panels, title, ref)


def generalisation_figure(
    rows: pd.DataFrame, style: Style | None = None, title: str = ""
) -> Figure:
    """Validation loss beside test NLL over epochs: a tuner that overfits the validation set
    drives the first down while the second stays or rises (Lorraine et al. 2020, §5)."""
    panels = (
        CurvePanel("val_loss", "epoch", "epoch", "validation loss", log_x=False, hold=False),
        CurvePanel("test_nll", "epoch", "epoch", "test NLL", log_x=False, hold=False),
    )
    return facet_curves(rows, style, panels, title)
