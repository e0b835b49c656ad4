"""Figures of learned per-step schedules (learning rates, momenta) from stored run rows.

Methods that learn a schedule (`reversible_sgd`) put it in the `extra` of a cell's last run row:
`extra["lr_schedule"] = {parameter tensor: [T floats]}` (and `"momentum_schedule"`). The figure
has one panel per task and one colour per parameter tensor: the median over the cells' final
rows (seeds) as a thick line, each cell as a thin one. Like every figure here it takes stored
rows and returns a Figure; it never reruns anything.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hgbench.report.load import is_true
from hgbench.schema import Mode

SCHEDULES = {"lr_schedule": "learning rate α_t", "momentum_schedule": "momentum γ_t"}
LINESTYLES = ("-", "--", ":", "-.")


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


def schedule_figure(rows: pd.DataFrame, key: str = "lr_schedule", title: str = "") -> Figure:
    """Learned per-tensor schedules vs step, one panel per task (log scale for learning rates).

    `rows`: stored rows (any modes, tasks and methods; those without the schedule are ignored).
    Several configurations of a method on one task are told apart by line style.
    """
    if key not in SCHEDULES:
        raise ValueError(f"key must be one of {list(SCHEDULES)}, got {key!r}")
    sched = _schedule_rows(rows, key)
    tasks = list(dict.fromkeys(sched["task"])) or ["(none)"]
    fig = Figure(figsize=(5.2 * len(tasks) + 2.2, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    if sched.empty:
        axes[0].text(
            0.5, 0.5, "no learned schedules", transform=axes[0].transAxes, ha="center",
            va="center", color="grey",
        )  # fmt: skip
    labels = sched["label"] if "label" in sched.columns else sched["method"]
    styles = {lab: LINESTYLES[i % len(LINESTYLES)] for i, lab in enumerate(dict.fromkeys(labels))}
    palette = mpl.colormaps["tab10"].colors  # one colour per parameter tensor
    for ax, task in zip(axes, tasks, strict=True):
        here = sched[sched["task"] == task]
        here_labels = labels[sched["task"] == task]
        tensors = list(dict.fromkeys(t for extra in here["extra"] for t in extra[key]))
        for i, tensor in enumerate(tensors):
            color = palette[i % len(palette)]
            for label in dict.fromkeys(here_labels):
                curves = [
                    np.asarray(extra[key][tensor], dtype=float)
                    for extra, lab in zip(here["extra"], here_labels, strict=True)
                    if lab == label and tensor in extra[key]
                ]
                if not curves:
                    continue
                length = min(len(c) for c in curves)
                stacked = np.stack([c[:length] for c in curves])
                steps = np.arange(1, length + 1)
                for curve in stacked:
                    ax.plot(steps, curve, color=color, alpha=0.25, linewidth=0.8)
                name = tensor if len(styles) == 1 else f"{tensor}, {label}"
                ax.plot(
                    steps,
                    np.median(stacked, axis=0),
                    color=color,
                    linestyle=styles[label],
                    linewidth=2.0,
                    label=name,
                )
        if key == "lr_schedule" and tensors:
            ax.set_yscale("log")
        ax.set_title(task)
        ax.set_xlabel("step t")
        ax.set_ylabel(SCHEDULES[key])
        if tensors:
            ax.legend(fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    return fig
