"""The budget study's figures: test NLL against the runs each method really spent, in small
multiples (one row of panels per group of methods, one column per task), and the sensitivity
panel (each method's range over its settings)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from hgbench.budgets.kinds import Kind, kind_of
from hgbench.contracts.method import Family
from hgbench.report.budgets import OVER_TOLERANCE, best_hypergradient, setting_label
from hgbench.report.configs import method_family

MARKERS = ("o", "s", "^", "D", "v", "P", "X")
COLORS = mpl.colormaps["tab10"].colors
FIXED_COLOR = "0.25"


def group_of(method: str) -> str:
    """The panel row a method is drawn in: its kind, and for online methods its family (the
    implicit family split into the IFT solvers and the one-step / stochastic-bilevel loops, so
    no panel holds more than five lines)."""
    kind = kind_of(method)
    if kind == Kind.SEARCH:
        return "black-box search"
    if kind == Kind.META:
        return "meta-iteration"
    if kind == Kind.SINGLE:
        return "fixed"
    family = method_family(method)
    if family == Family.IMPLICIT:
        return "online: IFT solves" if method.startswith("ift_") else "online: one-step, bilevel"
    if family == Family.MARGLIK:
        return "online: marginal likelihood"
    if family == Family.UNROLLED:
        return "online: unrolled"
    return "online: other"


GROUP_ORDER = (
    "black-box search",
    "meta-iteration",
    "online: IFT solves",
    "online: one-step, bilevel",
    "online: unrolled",
    "online: marginal likelihood",
    "online: other",
)


def _runs_axis(ax: Axes, hi: float) -> None:
    ax.set_xscale("log")
    ax.set_xlim(0.8, hi)
    ticks = [t for t in (1, 3, 10, 30, 100, 300, 1000) if t <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))


def _ylim(c: pd.DataFrame) -> tuple[float, float]:
    """Per task: from the lowest interval end to a top that no diverged method sets (1.25 ×
    the larger of fixed's upper end and the 90% quantile of the IQMs)."""
    fx = c[c["method"] == "fixed"]
    ref = float(np.nanmax(fx["high"].fillna(fx["nll"]))) if not fx.empty else -math.inf
    top = 1.25 * max(ref, float(np.nanquantile(c["nll"], 0.9)))
    low = float(np.nanmin(c["low"].fillna(c["nll"])))
    return max(0.0, low - 0.05 * (top - low)), top


def plot_curves(c: pd.DataFrame, path: Path) -> None:
    tasks = sorted(c["task"].unique())
    groups = [g for g in GROUP_ORDER if any(group_of(m) == g for m in c["method"].unique())]
    width, height = 3.6 * len(tasks) + 2.6, 2.3 * len(groups) + 1.3
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    # fixed margins (inches): constrained layout gives up on the legends beside the last column
    fig.subplots_adjust(
        left=0.9 / width,
        right=1 - 2.0 / width,
        top=1 - 0.75 / height,
        bottom=0.95 / height,
        hspace=0.18,
        wspace=0.22,
    )
    axes = fig.subplots(len(groups), len(tasks), squeeze=False, sharex=True)
    x_hi = max(40.0, 1.3 * float(np.nanmax(c["runs_spent"])))
    best = best_hypergradient(c) if not c.empty else pd.DataFrame()
    for j, task in enumerate(tasks):
        ct = c[c["task"] == task]
        y_lo, y_hi = _ylim(ct)
        fx = ct[(ct["method"] == "fixed") & ~ct["carried"]]
        for i, group in enumerate(groups):
            ax = axes[i][j]
            if not fx.empty:  # the one fixed run: the floor every panel is read against
                f = fx.iloc[0]
                ax.axhline(f["nll"], color=FIXED_COLOR, ls="--", lw=1)
                if not math.isnan(f["low"]):
                    ax.axhspan(f["low"], f["high"], color=FIXED_COLOR, alpha=0.1, lw=0)
            if task in best.index:
                ax.axhline(best.loc[task, "nll"], color="tab:red", ls=":", lw=1)
            for b in sorted(ct["budget"].unique()):
                ax.axvline(b, color="0.85", lw=0.6, zorder=0)
            # one colour and marker per method in every column: members over all tasks
            members = sorted(m for m in c["method"].unique() if group_of(m) == group)
            for k, method in enumerate(members):
                g = ct[ct["method"] == method].sort_values("budget")
                color, marker = COLORS[k % len(COLORS)], MARKERS[k % len(MARKERS)]
                x, y = g["runs_spent"].to_numpy(float), g["nll"].to_numpy(float)
                err = np.vstack([y - g["low"].fillna(g["nll"]), g["high"].fillna(g["nll"]) - y])
                ax.errorbar(
                    x,
                    np.minimum(y, y_hi),
                    yerr=err,
                    color=color,
                    lw=1.2,
                    elinewidth=0.8,
                    alpha=0.9,
                    capsize=0,
                )
                over = g["over"].to_numpy(bool)
                for mask, face in ((~over, color), (over, "white")):
                    ax.plot(
                        x[mask],
                        np.minimum(y[mask], y_hi),
                        marker,
                        color=color,
                        mfc=face,
                        ms=5,
                        ls="none",
                        zorder=3,
                    )
                off = y > y_hi
                ax.plot(x[off], np.full(off.sum(), y_hi), "^", color=color, ms=7, clip_on=False)
                ax.plot([], [], marker=marker, color=color, label=method)
            ax.set_ylim(y_lo, y_hi)
            _runs_axis(ax, x_hi)
            if i == 0:
                ax.set_title(task)
            if j == 0:
                ax.set_ylabel(f"{group}\ntest NLL (IQM)", fontsize=8)
            if i == len(groups) - 1:
                ax.set_xlabel("runs spent (× one fixed run, log)")
            if j == len(tasks) - 1:
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    key = [
        Line2D([], [], color=FIXED_COLOR, ls="--", label="fixed, one run (band: 95% CI)"),
        Line2D([], [], color="tab:red", ls=":", label="best hypergradient method, any budget"),
        Line2D([], [], marker="o", color="0.3", ls="none", label="within budget"),
        Line2D(
            [],
            [],
            marker="o",
            color="0.3",
            mfc="white",
            ls="none",
            label=f"over budget (spent > {OVER_TOLERANCE:g} × B)",
        ),
        Line2D([], [], marker="^", color="0.3", ls="none", label="above the axis (diverged)"),
    ]
    fig.legend(handles=key, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle(
        "Test NLL against the runs really spent at B = 1, 3, 10, 30 (grey lines: the nominal "
        "budgets); bars: 95% bootstrap CI over seeds",
        fontsize=9,
        y=1 - 0.2 / height,
    )
    fig.savefig(path, dpi=110)


def plot_sensitivity(s: pd.DataFrame, path: Path) -> None:
    tasks = sorted(s["task"].unique())
    n = max((len(s[s["task"] == t]) for t in tasks), default=1)
    fig = Figure(figsize=(4.6 * len(tasks), 0.26 * n + 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        g = s[(s["task"] == task) & (s["settings"] > 1)].sort_values("default_nll")
        y = np.arange(len(g))
        ax.hlines(y, g["low"], g["high"], color="tab:blue", lw=3, alpha=0.7)
        ax.plot(g["default_nll"], y, "k|", ms=10, mew=2, label="default")
        ax.plot(g["chosen_nll"], y, "rx", ms=6, label="chosen on validation")
        moved = g["sure_move"] > 3
        ax.set_yticks(
            y,
            [f"{m}{' *' if mv else ''}" for m, mv in zip(g["method"], moved, strict=True)],
            fontsize=7,
        )
        for yy, (lo, lab) in enumerate(zip(g["low"], g["best_setting"], strict=True)):
            ax.annotate(
                setting_label(lab),
                (lo, yy),
                xytext=(-6, 0),  # clear of the cross and the default tick at the low end
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=5.5,
                color="tab:blue",
            )
        lo = float(np.nanmin(g["low"])) if len(g) else 0.0
        ax.set_xlim(left=lo - 0.35 * (float(np.nanmax(g["high"])) - lo) if len(g) else None)
        ax.set(title=task, xlabel="test NLL (IQM) over the settings, B = 1")
    axes[0][0].legend(fontsize=7, loc="lower right")
    # Only the cross is a choice (on validation loss); every position is a test NLL, and the
    # left label names the lowest in hindsight, which no protocol could have picked.
    fig.suptitle(
        "Each method's test NLL over its settings (÷3, ×3 one at a time), rows by test NLL at "
        "defaults; ×: the setting chosen on validation loss, at its test NLL\nleft label: the "
        "setting of lowest test NLL (hindsight, not a choice); *: rank moves by more than 3 "
        "places beyond the intervals",
        fontsize=8,
    )
    fig.savefig(path, dpi=110)
