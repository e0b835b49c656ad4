"""Stored rows -> report tables: loading, attempt selection, config labels, per-config summaries.

Everything here is pure data handling on `results.jsonl` rows (no plotting, no reruns), so the
numbers in report.md and in the figures come from the same functions.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hgbench.schema import (
    COLUMNS,
    NUMERIC_COLUMNS,
    RESULTS_FILE,
    Mode,
    Status,
    is_final,
    read_results,
)

STATUSES = tuple(s.value for s in Status)
BASE_COLUMNS = tuple(c.name for c in COLUMNS if c.modes == (Mode.RUN, Mode.PROBE))
RUN_COLUMNS = tuple(c.name for c in COLUMNS if c.modes == (Mode.RUN,))
PROBE_COLUMNS = tuple(c.name for c in COLUMNS if c.modes == (Mode.PROBE,))
RUN_METRICS = ("test_acc", "test_nll", "time_s", "peak_mem_mb")
PROBE_METRICS = ("hg_time_s", "hg_cos", "hg_rel_err", "peak_mem_mb", "value", "exact_value")

Formatter = Callable[[float], str]
MISSING = "–"


# --- loading -------------------------------------------------------------------------------------
def _cell_key(row: dict[str, Any]) -> str:
    """The row's `cell`; rows written without one fall back to the fields it is a key of."""
    if row.get("cell") is not None:
        return str(row["cell"])
    fields = [row.get(k) for k in ("mode", "task", "method", "method_params", "seed")]
    return json.dumps(fields, sort_keys=True, default=str)


def select_attempts(rows: Sequence[dict[str, Any]]) -> tuple[list[int], dict[str, int]]:
    """Indices of the rows that count: per cell, the last attempt (in file order) that completed.

    An attempt is completed when one of its rows has `final == true`; an attempt without one was
    interrupted and is ignored, and an earlier completed attempt of a rerun cell is superseded.
    """
    attempts: dict[tuple[str, str], list[int]] = {}
    winner: dict[str, tuple[str, str]] = {}  # cell -> (cell, attempt) completed last
    for i, row in enumerate(rows):
        key = (_cell_key(row), str(row.get("attempt", "")))
        attempts.setdefault(key, []).append(i)
        if is_final(row):
            winner[key[0]] = key
    kept = sorted(i for key in winner.values() for i in attempts[key])
    completed = {key for key, idx in attempts.items() if any(is_final(rows[i]) for i in idx)}
    stats = {
        "attempts": len(attempts),
        "interrupted_attempts": len(attempts) - len(completed),
        "superseded_attempts": len(completed) - len(winner),
    }
    return kept, stats


def load_rows(out_dir: Path | str, *, completed_only: bool = True) -> pd.DataFrame:
    """The rows of `out_dir/results.jsonl` that count (see `select_attempts`), in file order.

    Every schema column is present (missing values as None/NaN, metrics as float); `line` is the
    row's position among the parsed rows. `attrs` records what was read and what was dropped.
    `completed_only=False` returns every parsed row instead.
    """
    path = Path(out_dir)
    if path.is_dir() or path.suffix != ".jsonl":
        path = path / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}")
    read = read_results(path)
    records, bad = read.rows, read.n_skipped
    if completed_only:
        kept, stats = select_attempts(records)
    else:
        kept, stats = list(range(len(records))), {}
    selected = [{**records[i], "line": i, "cell": _cell_key(records[i])} for i in kept]
    columns = [*BASE_COLUMNS, *RUN_COLUMNS, *PROBE_COLUMNS, "line"]
    df = pd.DataFrame.from_records(selected) if selected else pd.DataFrame(columns=columns)
    for col in columns:
        if col not in df.columns:
            df[col] = None
    for col in NUMERIC_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    # dict-valued settings may be missing on odd rows; {} keeps downstream code branch-free
    df["method_params"] = [p if isinstance(p, dict) else {} for p in df["method_params"]]
    df.attrs.update(
        source=str(path), parsed_rows=len(records), bad_lines=bad, skipped=read.summary(), **stats
    )
    return df


def is_true(value: Any) -> bool:
    return isinstance(value, bool | np.bool_) and bool(value)


def cell_outcomes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: its final row (or its last row if it has none), in file order."""
    if rows.empty:
        return rows.copy()
    marked = rows.assign(_final=rows["final"].map(is_true))
    marked = marked.sort_values(["_final", "line"], kind="stable")
    return marked.groupby("cell", sort=False).tail(1).sort_values("line").drop(columns="_final")


# --- method configs ------------------------------------------------------------------------------
def _norm(value: Any) -> Any:
    # 5 and 5.0 are the same setting; without this they would become two configs with one label
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (1, str(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, _show(value))


def describe_configs(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (method, distinct method_params): columns method, key, params, label, rank.

    The label is the method name, plus the settings that differ between that method's configs
    (`unroll (K=5)`); rank orders a method's configs by those settings (numbers numerically).
    """
    out = []
    for method in sorted(set(rows["method"].dropna())):
        configs: dict[str, dict[str, Any]] = {}
        for params in rows.loc[rows["method"] == method, "method_params"]:
            norm = {k: _norm(v) for k, v in (params or {}).items()}
            configs.setdefault(json.dumps(norm, sort_keys=True, default=str), norm)
        names = list(dict.fromkeys(k for p in configs.values() for k in p))
        varying = [
            k
            for k in names
            if len({json.dumps(p.get(k, "\0missing"), default=str) for p in configs.values()}) > 1
        ]
        ranked = sorted(
            configs.items(), key=lambda kv: [_sort_key(kv[1].get(k, "\uffff")) for k in varying]
        )
        for rank, (key, params) in enumerate(ranked):
            label = method
            if len(configs) > 1:
                shown = ", ".join(f"{k}={_show(params[k])}" for k in varying if k in params)
                label = f"{method} ({shown or 'defaults'})"
            out.append(
                {"method": method, "key": key, "params": params, "label": label, "rank": rank}
            )
    return pd.DataFrame(out, columns=["method", "key", "params", "label", "rank"])


def with_labels(rows: pd.DataFrame, configs: pd.DataFrame | None = None) -> pd.DataFrame:
    """`rows` with a `label` column naming each row's method config (see `describe_configs`)."""
    configs = describe_configs(rows) if configs is None else configs
    lookup = {(c.method, c.key): c.label for c in configs.itertuples()}
    keys = [
        (m, json.dumps({k: _norm(v) for k, v in (p or {}).items()}, sort_keys=True, default=str))
        for m, p in zip(rows["method"], rows["method_params"], strict=True)
    ]
    return rows.assign(label=[lookup.get(k, str(k[0])) for k in keys])


def ordered_methods(present: Iterable[str], method_order: Sequence[str] | None = None) -> list[str]:
    """`method_order` first (even methods absent here, so colours stay stable), then the rest."""
    present = sorted(set(present))
    order = list(dict.fromkeys(method_order or []))
    return order + [m for m in present if m not in order]


# --- statistics ----------------------------------------------------------------------------------
def spread(values: Iterable[float]) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile) of the finite values; NaNs when there are none."""
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return float(med), float(q25), float(q75)


def _summary(
    groups: pd.DataFrame, ok: pd.DataFrame, metrics: Sequence[str], order: Sequence[str] | None
) -> pd.DataFrame:
    out = []
    labels = list(dict.fromkeys(groups["label"]))
    if order is not None:
        labels = [lab for lab in order if lab in labels] + [
            lab for lab in labels if lab not in order
        ]
    for label in labels:
        g, good = groups[groups["label"] == label], ok[ok["label"] == label]
        rec: dict[str, Any] = {
            "label": label,
            "method": g["method"].iloc[0],
            "n": len(good),
            "n_seeds": good["seed"].nunique(),
            "n_cells": g["cell"].nunique(),
            "statuses": g["status"].fillna("?").value_counts().to_dict(),
        }
        for m in metrics:
            rec[f"{m}_med"], rec[f"{m}_q25"], rec[f"{m}_q75"] = spread(good[m])
        out.append(rec)
    return pd.DataFrame(out)


def summarize_run(rows: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per config (one task's run rows with `label`): spread over seeds of the final-row metrics.

    Only cells whose final row is `ok` contribute; `statuses` counts the outcomes of all cells.
    """
    outcomes = cell_outcomes(rows)
    if outcomes.empty:
        return pd.DataFrame()
    return _summary(outcomes, outcomes[outcomes["status"] == "ok"], RUN_METRICS, order)


def summarize_probe(rows: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per config (one task's probe rows with `label`): spread over every ok measurement row."""
    if rows.empty:
        return pd.DataFrame()
    return _summary(cell_outcomes(rows), rows[rows["status"] == "ok"], PROBE_METRICS, order)


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
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grid, median, q25, q75) over curves `(t, y)` held at their previous value on a common grid.

    The grid is the union of all times; a curve counts only within [its first, its last] time, so
    nothing is extrapolated and the band narrows to the seeds still running.
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
        inside = (idx >= 0) & (grid <= t[-1])
        values[i, inside] = y[idx[inside]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q25, med, q75 = np.nanpercentile(values, [25, 50, 75], axis=0)
    return grid, med, q25, q75


# --- markdown ------------------------------------------------------------------------------------
def fixed(digits: int) -> Formatter:
    return lambda x: f"{x:.{digits}f}"


def significant(x: float) -> str:
    """Three significant digits without exponents in the usual range of seconds and megabytes."""
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.2e}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:#.3g}".rstrip(".")  # '#' keeps trailing zeros: 8.90, not 8.9


def scientific(x: float) -> str:
    return f"{x:.2e}"


def fmt(x: float, formatter: Formatter) -> str:
    return formatter(x) if x is not None and math.isfinite(x) else MISSING


def fmt_spread(rec: pd.Series | dict[str, Any], metric: str, formatter: Formatter) -> str:
    """`median [q25, q75]`, e.g. `0.912 [0.905, 0.918]`."""
    med = rec[f"{metric}_med"]
    if not math.isfinite(med):
        return MISSING
    return (
        f"{fmt(med, formatter)} [{fmt(rec[f'{metric}_q25'], formatter)}, "
        f"{fmt(rec[f'{metric}_q75'], formatter)}]"
    )


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    right = right or [False] * len(header)
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "|" + "|".join("---:" if r else "---" for r in right) + "|",
    ]
    lines += ["| " + " | ".join(_escape(str(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _count_cell(rec: pd.Series, count: str) -> str:
    """`3`, or `2/3 (1 failed)` when some cells of the config did not finish ok."""
    n, total = int(rec[count]), int(rec["n_cells"])
    others = {s: c for s, c in rec["statuses"].items() if s != "ok"}
    if not others:
        return str(n)
    shown = ", ".join(f"{c} {s}" for s, c in sorted(others.items()))
    return f"{n}/{total} ({shown})" if count == "n_seeds" else f"{n} ({shown})"


RUN_TABLE = (
    ("test acc", "test_acc", fixed(3)),
    ("test NLL", "test_nll", fixed(3)),
    ("time (s)", "time_s", significant),
    ("peak mem (MB)", "peak_mem_mb", fixed(0)),
)
PROBE_TABLE = (
    ("hg time (s)", "hg_time_s", significant),
    ("cos", "hg_cos", fixed(4)),
    ("rel. err", "hg_rel_err", scientific),
    ("peak mem (MB)", "peak_mem_mb", fixed(0)),
    ("value", "value", fixed(4)),
    ("exact value", "exact_value", fixed(4)),
)


def run_table(summary: pd.DataFrame) -> str:
    header = ["method", *(h for h, _, _ in RUN_TABLE), "seeds"]
    body = [
        [
            rec["label"],
            *(fmt_spread(rec, m, f) for _, m, f in RUN_TABLE),
            _count_cell(rec, "n_seeds"),
        ]
        for _, rec in summary.iterrows()
    ]
    return markdown_table(header, body, [False] + [True] * (len(header) - 1))


def probe_table(summary: pd.DataFrame) -> str:
    # value columns only where some method estimates an objective value
    cols = [
        c
        for c in PROBE_TABLE
        if c[1] not in ("value", "exact_value") or summary[f"{c[1]}_med"].notna().any()
    ]
    header = ["method", *(h for h, _, _ in cols), "n"]
    body = [
        [rec["label"], *(fmt_spread(rec, m, f) for _, m, f in cols), _count_cell(rec, "n")]
        for _, rec in summary.iterrows()
    ]
    return markdown_table(header, body, [False] + [True] * (len(header) - 1))


def status_table(outcomes: pd.DataFrame, methods: Sequence[str]) -> str:
    """Cells per (method, mode) by outcome status."""
    statuses = list(STATUSES) + sorted(set(outcomes["status"].dropna()) - set(STATUSES))
    body = []
    for method in methods:
        for mode in ("run", "probe"):
            g = outcomes[(outcomes["method"] == method) & (outcomes["mode"] == mode)]
            if not g.empty:
                counts = g["status"].value_counts()
                body.append([method, mode, *(str(int(counts.get(s, 0))) for s in statuses)])
    return markdown_table(
        ["method", "mode", *statuses], body, [False, False] + [True] * len(statuses)
    )


def one_line(text: Any, limit: int = 200) -> str:
    """The informative line of an error: a traceback's last line, else the first line."""
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    if not lines:
        return "(no error text)"
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"
