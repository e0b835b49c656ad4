"""The scaling sweep's rows as points (one per cell: axis, series, size, outcome, time, memory,
count) and the log-log slopes fitted to them; shared by the report's tables, figures
(hgbench/report/scaling/figures.py) and deviation notes (hgbench/report/scaling/deviations.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hgbench.contracts.schema import Status

REPORT_FILE = "report.md"
RUNS_FILE = "runs.json"  # written by hgbench.engine.scaling.cli: each sweep's wall time and load
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


def _size(n: float) -> str:
    return f"{n:,.0f}" if n < 1e5 else f"{n:.2e}"
