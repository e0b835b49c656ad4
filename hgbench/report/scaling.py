"""The scaling report: log-log figures of time and memory per hypergradient against each swept
size (one line per series), fitted slopes, how far each series got, and measured cost beside its
operation count. From stored rows only (`python -m hgbench scaling --report-only` redraws it).

A point that did not finish ok is drawn, never left out: a size that ran out of time or memory
(or was not run because a smaller one already had) is a cross on the top edge of both panels of
its series, one that does not apply (the method skips it, or failed with an error) a hollow
circle there; the tables give the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hgbench.report.configs import method_family, ordered_methods
from hgbench.report.load import load_rows
from hgbench.report.markdown import markdown_table, one_line
from hgbench.report.style import MARKERS, figure, log_axis
from hgbench.schema import Status

REPORT_FILE = "report.md"
RUNS_FILE = "runs.json"  # written by hgbench.scaling.cli: each sweep's wall time and load
FIGURES_DIR = "figures"
COST_FAILURES = ("oom", "timeout", "beyond")  # out of time or memory, or beyond such a size
MEM_FLOOR_MB = 0.1  # increases below this are drawn at it (log axis); slopes fit >= MEM_FIT_MB
MEM_FIT_MB = 1.0
FLAG_RATIO = 2.0  # measured/count beyond 2× either way is marked
AXES = ("hparams", "width", "horizon", "block")
AXIS_X = {
    "hparams": "number of hyperparameters (64-1000-1000-10 MLP, 1.08 M weights)",
    "width": "number of weights (64-w-w-10 MLP, w swept; 6 hparams)",
    "horizon": "horizon K or T (inner steps; 64-100-100-10 MLP)",
    "block": "block size M (points per bound; 64-100-100-10 MLP)",
}
LINESTYLES = ("-", "--", ":", "-.")
UNITS_TEXT = (
    "Counts are in TSE, from units timed on the same model outside the method's clock: f a "
    "full-batch training gradient, g a validation gradient, b a full-batch gradient kept as a "
    "graph, h one product through it (a Hessian-vector or mixed product), j one forward-over-"
    "reverse HVP (torch.func), bm and hm b and h on one minibatch (hgbench/scaling/counts.py); "
    "for the marginal-likelihood bounds, at each cell's own settings, lfit the curvature fit on "
    "the points the estimate covers (one block of M for laplace_ntk, all N for laplace_full: "
    "per-example Jacobian rows and what the structure sums of them), ldet its log-determinant "
    "with the prior (for the kernel a Cholesky of the M·C × M·C matrix) and lgrad the backward to "
    "the hparams (hgbench/scaling/marglik.py): the method's own pieces timed apart, so their "
    "count checks that nothing else costs and shows which piece dominates, not an independent "
    "model of it."
)


def scaling_points(rows: pd.DataFrame) -> pd.DataFrame:
    """One record per (row, axis membership): axis, size, series, method, outcome, time, TSE,
    memory increase, operation count. `outcome` is ok, oom, timeout, beyond (not run past a
    size that ran out), error or n/a (the method skips this size)."""
    records = []
    for row in rows.itertuples(index=False):
        extra = row.extra if isinstance(row.extra, dict) else {}
        for member in extra.get("scaling") or []:
            failure = extra.get("failure")
            if row.status == Status.OK:
                outcome = "ok"
            elif failure in COST_FAILURES:
                outcome = failure
            elif row.status == Status.SKIPPED:
                outcome = "n/a"
            else:
                outcome = "error"
            records.append(
                {
                    "axis": member["axis"],
                    "size": int(member["size"]),
                    "series": member["series"],
                    "method": row.method,
                    "outcome": outcome,
                    "error": row.error,
                    "hg_time_s": row.hg_time_s,
                    "hg_tse": row.hg_tse,
                    "mem_mb": extra.get("mem_increase_mb"),
                    "count_tse": extra.get("op_count_tse"),
                    "formula": extra.get("op_formula"),
                    "noisy": row.noisy,
                    "load": (extra.get("load_avg") or [math.nan])[0],
                    "step_s": getattr(row, "step_time_s", None),
                    "n_hparams": extra.get("n_hparams"),
                    "n_params": extra.get("n_params"),
                }
            )
    columns = ["axis", "size", "series", "method", "outcome", "hg_time_s", "mem_mb", "count_tse"]
    out = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=columns)
    for col in ("hg_time_s", "hg_tse", "mem_mb", "count_tse", "load", "step_s"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out.sort_values(["axis", "series", "size"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Slope:
    slope: float
    stderr: float  # NaN with two points
    n: int


def fit_slope(x: Sequence[float], y: Sequence[float]) -> Slope | None:
    """Least-squares slope of log10 y on log10 x over the finite positive pairs; None with
    fewer than two distinct sizes."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    lx, ly = np.log10(xs[keep]), np.log10(ys[keep])
    if np.unique(lx).size < 2:
        return None
    a = np.vstack([lx, np.ones_like(lx)]).T
    coef, *_ = np.linalg.lstsq(a, ly, rcond=None)
    n = lx.size
    if n > 2:
        resid = ly - a @ coef
        stderr = math.sqrt(resid @ resid / (n - 2) / ((lx - lx.mean()) ** 2).sum())
    else:
        stderr = math.nan
    return Slope(float(coef[0]), stderr, n)


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


# --- tables ----------------------------------------------------------------------------------
_REASONS = {
    "oom": "out of memory",
    "timeout": "out of time",
    "beyond": "not run",
    "error": "error",
    "n/a": "n/a",
}


def _fmt_slope(s: Slope | None) -> str:
    if s is None:
        return "—"
    spread = "" if math.isnan(s.stderr) else f" ± {s.stderr:.2f}"
    return f"{s.slope:.2f}{spread} ({s.n})"


def _size(n: float) -> str:
    return f"{n:,.0f}" if n < 1e5 else f"{n:.2e}"


def _not_ok_text(bad: pd.DataFrame) -> str:
    """The sizes that did not finish ok and why; consecutive sizes not run are one entry."""
    parts: list[str] = []
    for r in bad.itertuples(index=False):
        if r.outcome == "beyond" and parts and parts[-1].endswith("not run"):
            continue
        text = f"{_size(r.size)}: {_REASONS[r.outcome]}"
        if r.outcome in ("error", "n/a"):
            text += f" ({one_line(r.error, 90)})"
        elif r.outcome == "beyond":
            text = f"≥ {_size(r.size)}: not run"
        parts.append(text)
    return "; ".join(parts)


def slope_rows(points: pd.DataFrame, axis: str) -> list[dict[str, object]]:
    """Per series of an axis: time and memory slopes, the largest size reached, where it stopped."""
    sub = points[points["axis"] == axis]
    out = []
    for series in series_order(sub):
        s = sub[sub["series"] == series].sort_values("size")
        good = s[s["outcome"] == "ok"]
        mem = good[good["mem_mb"] >= MEM_FIT_MB]
        bad = s[s["outcome"] != "ok"]
        past = bad[bad["size"] > good["size"].max()] if len(good) else bad
        out.append(
            {
                "series": series,
                "time": fit_slope(good["size"], good["hg_time_s"]),
                "memory": fit_slope(mem["size"], mem["mem_mb"]),
                "reached": good["size"].max() if len(good) else math.nan,
                "stopped": _not_ok_text(bad),
                "first_bad": (int(past["size"].iloc[0]), past["outcome"].iloc[0])
                if len(past)
                else None,
            }
        )
    return out


def slope_table(points: pd.DataFrame, axis: str) -> str:
    rows = [
        [
            r["series"],
            _fmt_slope(r["time"]),
            _fmt_slope(r["memory"]),
            "—" if not np.isfinite(r["reached"]) else _size(r["reached"]),
            r["stopped"] or "",
        ]
        for r in slope_rows(points, axis)
    ]
    header = [
        "series",
        "time slope (points)",
        "memory slope (points)",
        "largest size ok",
        "first size not ok",
    ]
    return markdown_table(header, rows, [False, True, True, True, False])


def count_table(points: pd.DataFrame, axis: str) -> tuple[str, int]:
    """Measured TSE beside the operation count at every ok size; (table, how many flagged)."""
    sub = points[(points["axis"] == axis) & (points["outcome"] == "ok")]
    rows, flagged = [], 0
    for series in series_order(sub):
        for r in sub[sub["series"] == series].sort_values("size").itertuples(index=False):
            if not (isinstance(r.count_tse, float) and np.isfinite(r.count_tse)):
                continue
            ratio = r.hg_tse / r.count_tse if r.count_tse > 0 else math.nan
            off = not (1 / FLAG_RATIO <= ratio <= FLAG_RATIO)
            flagged += off
            mark = " ⚠ >2×" if off else ""
            rows.append([series, _size(r.size), f"{r.hg_tse:.3g}", f"{r.count_tse:.3g}",
                         f"{ratio:.2f}{mark}", r.formula or ""])  # fmt: skip
    header = ["series", "size", "measured TSE", "count TSE", "measured / count", "count"]
    return markdown_table(header, rows, [False, True, True, True, True, False]), flagged


# --- why a measured cost is off its count --------------------------------------------------
SMALL_STEP_S = 2e-3  # a training step this short: fixed per-call costs dominate
# Known reasons, by series label (then method), for a measured TSE above (`above`) or below
# (`below`) its count by more than FLAG_RATIO.
ABOVE = "above"
BELOW = "below"
_FUNC = (
    "each step takes its minibatch gradient by torch.func.grad and the reverse pass its "
    "product by torch.func.vjp of that gradient, which cost about 1.3× and 1.5× the units they "
    "are counted as (plain autograd's gradient; bm + hm) on the 100-wide MLP, about 1.1× on the "
    "1000-wide one (benchmarks/scaling_transforms.py): part of the gap on small models"
)
DEVIATION_NOTES: dict[str, dict[str, str]] = {
    "reversible_sgd": {
        ABOVE: "every step, both ways, also runs the fixed-point arithmetic of the exact "
        "reversal (weights and velocity as int64, the rational momentum, the rANS information "
        "buffer's push and pop: weight-sized int64 kernels; hgbench/reversible.py), which no "
        "unit counts: the same loop from a stored float trajectory "
        "(reversible_sgd(exact=False)) takes about half the time on the 1000-wide MLP; and "
        + _FUNC,
    },
    "reversible_sgd(exact=False)": {
        ABOVE: "the exact reversal's loop from a stored float trajectory (no int64 "
        "arithmetic): " + _FUNC,
    },
    "drmad": {ABOVE: _FUNC},
    "ift_exact": {
        ABOVE: "it builds the dense P × P Hessian and solves it (O(P³) flops and P² memory): "
        "the count's P products leave the assembly and the dense solve out",
    },
    "ift_nystrom": {
        ABOVE: "its `rank` Hessian columns (20 here) are one vmapped batch of products (all at "
        "once, not the count's separate h) followed by a QR of the P × rank column block and "
        "triangular solves (hgbench.linalg.nystrom), which the count leaves out",
    },
    "forward_mode": {
        BELOW: "the n_h tangent columns go through one batched JVP per step (vmap), cheaper "
        "than the count's n_h separate products j",
    },
    "hypergradient_descent": {
        ABOVE: "its K full-batch gradients go through torch.func.grad, about 1.3× plain "
        "autograd's (the unit f) on the 100-wide MLP, 1.1× on the 1000-wide one "
        "(benchmarks/scaling_transforms.py): part of the gap on small models",
    },
}


# Generic reasons, by letter: a cell gets every one that applies.
GENERIC_NOTES = {
    "S": "small model: one training step takes under {ms:g} ms, so fixed per-call costs that "
    "the units (each timed alone, warm) leave out (Python dispatch of every tensor op, the "
    "method's dicts of tensors, allocation) are a large share",
    "P": "shared pieces: the count charges each piece on its own (each unit with its own "
    "forward pass and graph); a method that shares a forward pass or a graph between pieces "
    "comes in below it",
    "B": "busy machine: the cell's calibration step drifted by more than 25% between its start "
    "and end",
    "?": "no known reason (timing noise on a shared machine?)",
}


def _side(ratio: float) -> str:
    return ABOVE if ratio > 1 else BELOW


def deviation_reasons(points: pd.DataFrame, axis: str) -> list[str]:
    """The marked deviations of an axis explained: one bullet per series, each marked size with
    its ratio and the letters of the generic reasons that apply (`GENERIC_NOTES`: a small
    model's fixed costs, pieces the count charges twice, a busy machine, or none known), then
    the method's own known reason for that side (`DEVIATION_NOTES`); a key to the letters
    first. Empty when nothing is marked."""
    sub = points[(points["axis"] == axis) & (points["outcome"] == "ok")]
    bullets, used = [], set()
    for series in series_order(sub):
        s = sub[sub["series"] == series].sort_values("size")
        ratio = s["hg_tse"] / s["count_tse"]
        off = s[(ratio > FLAG_RATIO) | (ratio < 1 / FLAG_RATIO)]
        if off.empty:
            continue
        method = off["method"].iloc[0]
        notes = DEVIATION_NOTES.get(series) or DEVIATION_NOTES.get(method, {})
        sizes, known = [], []
        for r in off.itertuples(index=False):
            side = _side(r.hg_tse / r.count_tse)
            letters = []
            if np.isfinite(r.step_s) and r.step_s < SMALL_STEP_S:
                letters.append("S")
            if side == BELOW and side not in notes:
                letters.append("P")
            if isinstance(r.noisy, bool | np.bool_) and r.noisy:
                letters.append("B")
            if side in notes:
                known.append(notes[side])
            elif not letters:
                letters.append("?")
            used.update(letters)
            tag = f", {' '.join(letters)}" if letters else ""
            sizes.append(f"{_size(r.size)} ({r.hg_tse / r.count_tse:.2f}×{tag})")
        text = f"- **{series}** at {', '.join(sizes)}"
        known = list(dict.fromkeys(known))
        bullets.append(text + (f": {'; '.join(known)}." if known else "."))
    if not bullets:
        return []
    ms = SMALL_STEP_S * 1e3
    key = [f"{k}: {text.format(ms=ms)}." for k, text in GENERIC_NOTES.items() if k in used]
    return ["Why the marked cells are off their count (letters, then each method's own reason):",
            "", *(f"- {k}" for k in key), "", *bullets]  # fmt: skip


# --- report.md -------------------------------------------------------------------------------
def _loads(values: object) -> str:
    if not isinstance(values, list):
        return "?"
    return "/".join(f"{v:.2f}" for v in values)


def _header(rows: pd.DataFrame, points: pd.DataFrame, sweeps: list[dict]) -> list[str]:
    env = next((e for e in rows["env"] if isinstance(e, dict)), {})
    extra = next((e for e in rows["extra"] if isinstance(e, dict) and "limit_s" in e), {})
    cpu = next(
        (e.get("cpu_model") for e in rows["extra"] if isinstance(e, dict) and e.get("cpu_model")),
        env.get("device_name"),
    )
    outcomes = rows["status"].value_counts().to_dict()
    loads = points["load"].dropna() if "load" in points else pd.Series(dtype=float)
    load = (
        f"{loads.min():.1f}–{loads.max():.1f} (median {loads.median():.1f})" if len(loads) else "?"
    )
    threads = env.get("cpu_threads")
    per_cell = extra.get("threads", 1)
    noisy = int(rows["noisy"].map(lambda v: v is True).sum())
    timed = pd.to_numeric(rows["time_s"], errors="coerce").sum()
    mem_limit = extra.get("mem_limit_mb")
    runs = [
        f"started {r.get('started')}, {r.get('wall_s', math.nan):.0f} s wall, load average "
        f"(1, 5, 15 min) {_loads(r.get('load_before'))} before and "
        f"{_loads(r.get('load_after'))} after, on {r.get('cpus', '?')} CPUs"
        for r in sweeps
    ]
    return [
        "# How each method's cost grows",
        "",
        f"{len(rows)} cells on {rows['device'].iloc[0]} ({cpu}, {threads} threads on the machine, "
        f"{per_cell} per cell), {rows['dtype'].iloc[0]}, torch {env.get('torch')}, "
        f"git {env.get('git_sha')}. Outcomes: "
        + ", ".join(f"{v} {k}" for k, v in outcomes.items())
        + f". Limits: {extra.get('limit_s', '?')} s per hypergradient, "
        + (f"{mem_limit:g} MB of memory per cell" if mem_limit else "no memory limit")
        + f". Load average (1 min) at the cells' starts: {load}; {noisy} cells flagged noisy "
        f"(their calibration step drifted > 25%). Timed seconds in all: {timed:.0f}."
        + (f" Sweeps into this directory: {'; '.join(runs)}." if runs else ""),
        "",
        "Each cell runs in a fresh worker process. **Time** is seconds per hypergradient: the "
        "median of up to 3 warm calls, or the first (cold) call alone where it took 2 s or more; "
        "TSE divides it by one `fixed` training step of the same model (batch 100). **Memory** is "
        "the peak resident set size of the worker during its first call minus its RSS just "
        "before it (free heap returned to the kernel and the kernel's high-water mark reset "
        "first): what the hypergradient itself touched, data and weights excluded; on a GPU, "
        "`max_memory_allocated` over that call minus what was allocated before it. No exact "
        "reference is computed (`hg_cos` is null): this sweep measures cost, not fidelity. "
        "The state is the task's initial hparams after 5 SGD steps (the reversal methods: their "
        "own initial schedules at the initial weights).",
        "",
        "Slopes are least-squares fits of log time (or log memory) on log size over the sizes "
        f"that finished ok (memory: those of at least {MEM_FIT_MB:g} MB; below, the page-granular "
        "RSS increase is noise), ± their standard error, (number of points). A cross on the top "
        "edge of a panel is a size that ran out of time or memory (or was not run because a "
        "smaller size of the series already had); a hollow circle, one the method does not "
        "apply to or failed on with an error.",
        "",
    ]


def summary_table(points: pd.DataFrame) -> str:
    """Every series × axis: time and memory slopes side by side (the closing note's table)."""
    axes = [a for a in AXES if a in set(points["axis"])]
    cells: dict[str, dict[str, str]] = {}
    for axis in axes:
        for r in slope_rows(points, axis):
            t, m = r["time"], r["memory"]
            text = f"{t.slope:.2f}" if t else "—"
            text += f" / {m.slope:.2f}" if m else " / —"
            cells.setdefault(r["series"], {})[axis] = text
    reach = {r["series"]: r for r in slope_rows(points, "hparams")} if "hparams" in axes else {}
    order = series_order(points)
    rows = [
        [s]
        + [cells.get(s, {}).get(a, "") for a in axes]
        + ([_reach_text(reach[s]) if s in reach else "— (not on this axis)"] if reach else [])
        for s in order
        if s in cells
    ]
    header = ["series"] + [f"{a}: time / memory" for a in axes]
    header += ["largest hparam count ok"] if reach else []
    return markdown_table(header, rows)


def _reach_text(r: dict[str, object]) -> str:
    """The largest hparam count a series finished, and the first size past it that did not."""
    reached = float(r["reached"])  # type: ignore[arg-type]
    text = "none" if not np.isfinite(reached) else _size(reached)
    first = r["first_bad"]
    if first is None:
        return text
    size, outcome = first  # type: ignore[misc]
    return f"{text} ({_size(size)}: {_REASONS[outcome]})"


def write_scaling_report(out_dir: Path | str) -> Path:
    """report.md and figures/scaling_<axis>.png from `out_dir/results.jsonl`."""
    out = Path(out_dir)
    rows = load_rows(out)
    rows = rows[rows["suite"] == "scaling"].reset_index(drop=True)
    points = scaling_points(rows)
    runs_path = out / RUNS_FILE
    sweeps = json.loads(runs_path.read_text()) if runs_path.exists() else []
    lines = _header(rows, points, sweeps) if len(rows) else ["# How each method's cost grows", ""]
    if points.empty:
        lines.append("No scaling rows yet.")
    else:
        lines += ["## Slopes (time / memory against each swept size, log-log)", ""]
        lines += [summary_table(points), ""]
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    for axis in AXES:
        if points.empty or axis not in set(points["axis"]):
            continue
        fig = scaling_figure(points, axis)
        name = f"{FIGURES_DIR}/scaling_{axis}.png"
        fig.savefig(out / name, dpi=110)
        fig.clear()
        table, flagged = count_table(points, axis)
        lines += [
            f"## {AXIS_X[axis][0].upper()}{AXIS_X[axis][1:]}",
            "",
            f"![time and memory against {axis}]({name})",
            "",
            slope_table(points, axis),
            "",
            f"Measured cost beside the operation count ({flagged} off by more than "
            f"{FLAG_RATIO:g}× either way, marked ⚠). {UNITS_TEXT}",
            "",
            "<details><summary>measured TSE vs operation count</summary>",
            "",
            table,
            "",
            "</details>",
            "",
        ]
        reasons = deviation_reasons(points, axis)
        if reasons:
            lines += [*reasons, ""]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines) + "\n")
    return path
