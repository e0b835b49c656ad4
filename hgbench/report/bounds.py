"""The marginal-likelihood estimators' Pareto figure (Immer et al. 2023, Fig. 1 style).

x: time per hyper-step (one value and hypergradient), y: −log marglik / N as each estimator reports
it, one point per (structure, block size M, output split); the exact full-GGN value as a line.
Points that are lower bounds on log q (in expectation, for single-output splits) are filled, plain
approximations (Kronecker factors) hollow, and the non-dominated lower bounds are joined: below and
left is better, and no bound can go below the exact line.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hgbench.report.configs import with_labels
from hgbench.report.load import ok as ok_rows
from hgbench.report.summary import pareto_front

STRUCTURES = ("full", "kernel", "blockdiag", "kron", "diag")
SPLIT_MARKERS = {"none": "o", "independent": "s", "single": "^", "single_iid": "v"}
BOUNDS = ("exact", "lower_bound", "lower_bound_in_expectation")
CAPTION = (
    "Each estimator's −log marglik / N against its time per hyper-step (one value and "
    "hypergradient); colour: structure, marker: output split, M: points per block (N: the full "
    "batch). Filled points are lower bounds on log q (single splits: in expectation), so they "
    "sit on or above the exact line; the grey line joins the non-dominated bounds."
)


def _points(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per estimator config: median time and −value, and what the config is."""
    if "label" not in rows.columns:
        rows = with_labels(rows)
    ok = ok_rows(rows)
    ok = ok[ok["value"].notna() & ok["hg_time_s"].notna()]
    # a boolean Series, not a list: an empty list would select zero columns instead of rows
    ok = ok[ok["method_params"].map(lambda p: "bound" in p).astype(bool)]
    out = []
    for label, g in ok.groupby("label", sort=False):
        params = g["method_params"].iloc[0]
        m = params.get("block_size")
        out.append(
            {
                "label": label,
                "time": float(g["hg_time_s"].median()),
                "neg_value": -float(g["value"].median()),
                "structure": str(params.get("structure", "?")),
                "split": str(params.get("split", "none")),
                "bound": str(params["bound"]),
                "text": ("N" if m is None else f"M={m}")
                + (" grouped" if params.get("partition") == "grouped" else ""),
            }
        )
    return pd.DataFrame(out)


def has_bounds(rows: pd.DataFrame) -> bool:
    return not _points(rows).empty


def bound_pareto_figure(rows: pd.DataFrame, title: str = "") -> Figure:
    points = _points(rows)
    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set(xlabel="time per hyper-step (s)", ylabel="−log marglik / N  (lower is better)")
    palette = mpl.colormaps["tab10"].colors
    colors = {s: palette[i] for i, s in enumerate(STRUCTURES)}
    exact = -ok_rows(rows)["exact_value"].to_numpy(float)
    exact = exact[np.isfinite(exact)]
    handles: list[Line2D] = []
    if exact.size:
        ax.axhline(float(np.median(exact)), color="black", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="black", linestyle="--", label="exact (full GGN)"))
    for p in points.itertuples():
        color = colors.get(p.structure, (0.5, 0.5, 0.5))
        bound = p.bound in BOUNDS
        ax.plot(
            p.time,
            p.neg_value,
            marker=SPLIT_MARKERS.get(p.split, "o"),
            markersize=8,
            linestyle="none",
            color=color,
            markerfacecolor=color if bound else "none",
            markeredgewidth=1.5,
        )
        ax.annotate(
            p.text,
            (p.time, p.neg_value),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize="x-small",
            color=color,
        )
    bounds = points[points["bound"].isin(BOUNDS)].reset_index(drop=True)
    if len(bounds):
        pts = list(zip(bounds["time"], bounds["neg_value"], strict=True))
        front = pareto_front(pts, maximize=False)
        xs, ys = bounds["time"].to_numpy()[front], bounds["neg_value"].to_numpy()[front]
        ax.step(xs, ys, where="post", color="grey", linewidth=1, alpha=0.8, zorder=0)
        handles.append(Line2D([], [], color="grey", label="front of the lower bounds"))
    if len(points) and points["time"].max() / max(points["time"].min(), 1e-12) > 30:
        ax.set_xscale("log")
    present = [s for s in STRUCTURES if s in set(points.get("structure", []))]
    handles += [
        Line2D([], [], color=colors[s], marker="o", linestyle="none", label=s) for s in present
    ]
    splits = [s for s in SPLIT_MARKERS if s in set(points.get("split", []))]
    handles += [
        Line2D(
            [],
            [],
            color="black",
            marker=SPLIT_MARKERS[s],
            linestyle="none",
            markerfacecolor="none",
            label=f"split: {s}",
        )
        for s in splits
    ]
    handles += [
        Line2D([], [], color="black", marker="o", linestyle="none", label="filled: lower bound"),
        Line2D(
            [],
            [],
            color="black",
            marker="o",
            linestyle="none",
            markerfacecolor="none",
            label="hollow: approximation",
        ),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
    ax.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    if points.empty:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="grey")
    return fig
