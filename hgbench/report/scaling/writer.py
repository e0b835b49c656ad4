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
from pathlib import Path

import numpy as np
import pandas as pd

from hgbench.report.load import load_rows
from hgbench.report.markdown import markdown_table, one_line
from hgbench.report.scaling.data import (  # noqa: F401  (re-exported: the report's public names)
    AXES,
    AXIS_X,
    FIGURES_DIR,
    FLAG_RATIO,
    MEM_FIT_MB,
    REPORT_FILE,
    RUNS_FILE,
    Slope,
    _size,
    fit_slope,
    scaling_points,
)
from hgbench.report.scaling.deviations import deviation_reasons  # noqa: F401
from hgbench.report.scaling.figures import scaling_figure, series_order  # noqa: F401

UNITS_TEXT = (
    "Counts are in TSE, from units timed on the same model outside the method's clock: f a "
    "full-batch training gradient, g a validation gradient, b a full-batch gradient kept as a "
    "graph, h one product through it (a Hessian-vector or mixed product), j one "
    "forward-over-reverse HVP (torch.func), bm and hm b and h on one minibatch "
    "(hgbench/engine/scaling/counts.py); for the marginal-likelihood bounds, at each cell's own "
    "settings, lfit the curvature fit on the points the estimate covers (one block of M for "
    "laplace_ntk, all N for laplace_full: per-example Jacobian rows and what the structure sums of "
    "them), ldet its log-determinant with the prior (for the kernel a Cholesky of the M·C × M·C "
    "matrix) and lgrad the backward to the hparams (hgbench/engine/scaling/marglik.py): the "
    "method's own pieces timed apart, so their count checks that nothing else costs and shows "
    "which piece dominates, not an independent model of it."
)


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
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    _write_html(out, text, points)
    return path


def _write_html(out: Path, text: str, points: pd.DataFrame) -> Path:
    """report.html beside report.md: the same text, each axis's figure interactive."""
    from hgbench.report.html_page import write_html
    from hgbench.report.html_scaling import scaling_spec

    axes = [a for a in AXES if not points.empty and a in set(points["axis"])]
    specs = {
        f"{FIGURES_DIR}/scaling_{axis}.png": scaling_spec(points, axis, f"Cost against {axis}")
        for axis in axes
    }
    return write_html(out, text, specs, "hgbench scaling report")
