"""Per-config summaries of one task's rows, Pareto fronts, and quantiles of curves over seeds.

Run mode: each config's final values over seeds as IQM with a bootstrap 95% interval
(`<metric>_val`, `_low`, `_high`; see hgbench.report.stats). Probe mode: median [25%, 75%]
over every measurement (`<metric>_med`, `_q25`, `_q75`), since its rows are repeated
measurements at fixed states rather than independent runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hgbench.report.load import cell_outcomes, is_true, ok
from hgbench.report.stats import bootstrap_iqm

RUN_METRICS = ("test_nll", "test_acc", "tse", "time_s", "peak_mem_mb")
PROBE_METRICS = (
    "hg_time_s",
    "hg_tse",
    "hg_cos",
    "hg_rel_err",
    "peak_mem_mb",
    "value",
    "exact_value",
)


def spread(values: Iterable[float]) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile) of the finite values; NaNs when there are none."""
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return float(med), float(q25), float(q75)


def _ordered(labels: Iterable[str], order: Sequence[str] | None) -> list[str]:
    labels = list(dict.fromkeys(labels))
    if order is None:
        return labels
    return [lab for lab in order if lab in labels] + [lab for lab in labels if lab not in order]


def _counts(g: pd.DataFrame, good: pd.DataFrame) -> dict[str, Any]:
    return {
        "method": g["method"].iloc[0],
        "n": len(good),
        "n_seeds": good["seed"].nunique(),
        "n_cells": g["cell"].nunique(),
        "statuses": g["status"].fillna("?").value_counts().to_dict(),
        "noisy": int(g["noisy"].map(is_true).sum()),
    }


def summarize_run(rows: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per config (one task's run rows with `label`): IQM [95% CI] over seeds of final values.

    Only cells whose final row is `ok` contribute; `statuses` counts the outcomes of all cells
    and `noisy` the cells whose timing was flagged noisy.
    """
    outcomes = cell_outcomes(rows)
    if outcomes.empty:
        return pd.DataFrame()
    good_all = ok(outcomes)
    out = []
    for label in _ordered(outcomes["label"], order):
        g, good = outcomes[outcomes["label"] == label], good_all[good_all["label"] == label]
        rec: dict[str, Any] = {"label": label, **_counts(g, good)}
        for m in RUN_METRICS:
            est = bootstrap_iqm(good[m])
            rec[f"{m}_val"], rec[f"{m}_low"], rec[f"{m}_high"] = est.value, est.low, est.high
        out.append(rec)
    return pd.DataFrame(out)


def summarize_probe(rows: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per config (one task's probe rows with `label`): spread over every ok measurement row."""
    if rows.empty:
        return pd.DataFrame()
    outcomes, good_all = cell_outcomes(rows), ok(rows)
    out = []
    for label in _ordered(outcomes["label"], order):
        g, good = outcomes[outcomes["label"] == label], good_all[good_all["label"] == label]
        rec: dict[str, Any] = {"label": label, **_counts(g, good)}
        for m in PROBE_METRICS:
            rec[f"{m}_med"], rec[f"{m}_q25"], rec[f"{m}_q75"] = spread(good[m])
        out.append(rec)
    return pd.DataFrame(out)


def pareto_front(points: Sequence[tuple[float, float]], *, maximize: bool = True) -> list[int]:
    """Indices of the non-dominated points, by increasing x: lower x is better, and higher y
    (`maximize`) or lower y.

    A point is dominated when another is at least as good in both and strictly better in one, so
    exact duplicates of a front point are all on the front. Non-finite points are never on it.
    """
    pts = [(float(x), float(y) if maximize else -float(y)) for x, y in points]
    finite = [i for i, (x, y) in enumerate(pts) if math.isfinite(x) and math.isfinite(y)]
    front = [
        i
        for i in finite
        if not any(
            pts[j][0] <= pts[i][0] and pts[j][1] >= pts[i][1] and pts[j] != pts[i] for j in finite
        )
    ]
    return sorted(front, key=lambda i: (pts[i][0], -pts[i][1], i))


def step_quantiles(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], *, hold: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grid, median, q25, q75) over curves `(t, y)` held at their previous value on a common grid.

    The grid is the union of all times; a curve counts from its first time on, and up to its
    last time only (the band narrows to the seeds still running), or with `hold` to the end of
    the grid at its last value (anytime performance: a finished run keeps its result).
    """
    clean = []
    for t, y in curves:
        t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
        keep = np.isfinite(t) & np.isfinite(y)
        if keep.any():
            order = np.argsort(t[keep], kind="stable")
            clean.append((t[keep][order], y[keep][order]))
    if not clean:
        empty = np.empty(0)
        return empty, empty, empty, empty
    grid = np.unique(np.concatenate([t for t, _ in clean]))
    values = np.full((len(clean), grid.size), np.nan)
    for i, (t, y) in enumerate(clean):
        idx = np.searchsorted(t, grid, side="right") - 1  # last sample at or before each time
        inside = (idx >= 0) & (hold | (grid <= t[-1]))
        values[i, inside] = y[idx[inside]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q25, med, q75 = np.nanpercentile(values, [25, 50, 75], axis=0)
    return grid, med, q25, q75
