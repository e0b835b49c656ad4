"""Figures of learned per-step schedules (learning rates, momenta) from stored run rows.

Methods that learn a schedule (`reversible_sgd`, `drmad`) put it in the `extra` of a cell's last
run row: `extra["lr_schedule"] = {parameter tensor: [T floats]}` (and `"momentum_schedule"`).
The figure has one panel per (task, method config): a heatmap of the median over the cells'
final rows (seeds), one row per parameter tensor, one column per step, with one colour scale
(log for learning rates) shared by all panels. A heatmap, not lines: learned schedules can move
every step and there may be a dozen tensors, where lines overlap into a solid block. Like every
figure here it takes stored rows and returns a Figure; it never reruns anything.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hgbench.contracts.schema import Mode
from hgbench.report.load import is_true

SCHEDULES = {"lr_schedule": "learning rate α_t", "momentum_schedule": "momentum γ_t"}


def _schedule_rows(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """Final run rows whose `extra` carries the schedule `key`."""
    if rows.empty or "extra" not in rows.columns:
        return rows.iloc[:0]
    mask = [
        mode == Mode.RUN and is_true(final) and isinstance(extra, dict) and bool(extra.get(key))
        for mode, final, extra in zip(rows["mode"], rows["final"], rows["extra"], strict=True)
    ]
    return rows[mask]


def has_schedules(rows: pd.DataFrame, key: str = "lr_schedule") -> bool:
    return not _schedule_rows(rows, key).empty


def _median_schedules(here: pd.DataFrame, key: str) -> tuple[list[str], np.ndarray]:
    """Tensors, and their (tensors, T) median over the rows' schedules (cut to the shortest)."""
    tensors = list(dict.fromkeys(t for extra in here["extra"] for t in extra[key]))
    medians = []
    for tensor in tensors:
        rows_with = [e[key][tensor] for e in here["extra"] if tensor in e[key]]
        curves = [np.asarray(c, dtype=float) for c in rows_with]
        length = min(len(c) for c in curves)
        medians.append(np.median(np.stack([c[:length] for c in curves]), axis=0))
    length = min(len(m) for m in medians)
    return tensors, np.stack([m[:length] for m in medians])


def schedule_figure(rows: pd.DataFrame, key: str = "lr_schedule", title: str = "") -> Figure:
    """Learned per-tensor schedules vs step: one heatmap panel per (task, method config).

    `rows`: stored rows (any modes, tasks and methods; those without the schedule are ignored).
    Configurations are told apart by their `label` column where there is one.
    """
    if key not in SCHEDULES:
        raise ValueError(f"key must be one of {list(SCHEDULES)}, got {key!r}")
    sched = _schedule_rows(rows, key)
    labels = sched["label"] if "label" in sched.columns else sched["method"]
    panels = list(dict.fromkeys(zip(sched["task"], labels, strict=True)))
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig = Figure(figsize=(4.6 * ncols + 1.2, 0.6 + 2.9 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    if not panels:
        axes[0].text(
            0.5, 0.5, "no learned schedules", transform=axes[0].transAxes, ha="center",
            va="center", color="grey",
        )  # fmt: skip
    grids = []
    for task, label in panels:
        here = sched[(sched["task"] == task) & (labels == label)]
        grids.append((task, label, len(here), *_median_schedules(here, key)))
    values = np.concatenate([g[-1].ravel() for g in grids]) if grids else np.ones(1)
    values = values[np.isfinite(values)]
    if key == "lr_schedule" and values.size and values.min() > 0:
        norm = mpl.colors.LogNorm(values.min(), values.max())
    else:
        norm = mpl.colors.Normalize(values.min(), values.max())
    image = None
    for ax, (task, label, n, tensors, grid) in zip(axes, grids, strict=False):
        image = ax.imshow(
            grid,
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            norm=norm,
            extent=(0.5, grid.shape[1] + 0.5, len(tensors) - 0.5, -0.5),
        )
        ax.set_yticks(range(len(tensors)), tensors, fontsize="small")
        ax.set_title(f"{task}: {label} (median of {n})", fontsize="medium")
        ax.set_xlabel("step t")
    for ax in axes[max(1, len(grids)) :]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes[: len(grids)].tolist(), label=SCHEDULES[key], shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig
