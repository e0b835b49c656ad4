"""Stored rows that count: reading results.jsonl, choosing attempts, one outcome per cell.

Everything here is pure data handling on `results.jsonl` rows (no plotting, no reruns), so the
numbers in report.md, the figures and the exported table come from the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hgbench.contracts.schema import (
    COLUMNS,
    NUMERIC_COLUMNS,
    Mode,
    Status,
    UnreadableFinal,
    is_final,
    read_results,
    results_path,
)

BASE_COLUMNS = tuple(c.name for c in COLUMNS if c.modes == (Mode.RUN, Mode.PROBE))
RUN_COLUMNS = tuple(c.name for c in COLUMNS if c.modes == (Mode.RUN,))
PROBE_COLUMNS = tuple(c.name for c in COLUMNS if c.modes == (Mode.PROBE,))
UNFINISHED = (Status.FAILED, Status.TIMEOUT)  # cells that ran but did not finish ok


def _cell_key(row: dict[str, Any]) -> str:
    """The row's `cell`; rows written without one fall back to the fields it is a key of."""
    if row.get("cell") is not None:
        return str(row["cell"])
    fields = [row.get(k) for k in ("mode", "task", "method", "method_params", "seed")]
    return json.dumps(fields, sort_keys=True, default=str)


def select_attempts(
    rows: Sequence[dict[str, Any]], unreadable: Sequence[UnreadableFinal] = ()
) -> tuple[list[int], dict[str, int]]:
    """Indices of the rows that count: per cell, the last attempt (in file order) that completed.

    An attempt is completed when one of its rows has `final == true`; an attempt without one was
    interrupted and is ignored, and an earlier completed attempt of a rerun cell is superseded.
    An attempt whose final row was unreadable (`unreadable`, from `read_results`) completed too:
    it supersedes earlier ones, and its cell has no row that counts until a later attempt does.
    """
    attempts: dict[tuple[str, str], list[int]] = {}
    winner: dict[str, tuple[str, str]] = {}  # cell -> (cell, attempt) completed last
    damaged = sorted(unreadable, key=lambda u: u.after)
    d = 0
    for i, row in enumerate(rows):
        while d < len(damaged) and damaged[d].after <= i:
            winner[damaged[d].cell] = (damaged[d].cell, damaged[d].attempt)
            d += 1
        key = (_cell_key(row), str(row.get("attempt", "")))
        attempts.setdefault(key, []).append(i)
        if is_final(row):
            winner[key[0]] = key
    for u in damaged[d:]:
        winner[u.cell] = (u.cell, u.attempt)
    lost = {(u.cell, u.attempt) for u in damaged}
    kept = sorted(i for key in winner.values() if key not in lost for i in attempts.get(key, []))
    completed = {key for key, idx in attempts.items() if any(is_final(rows[i]) for i in idx)}
    completed |= lost
    stats = {
        "attempts": len(attempts.keys() | lost),
        "interrupted_attempts": len(attempts.keys() | lost) - len(completed),
        "superseded_attempts": len(completed) - len(winner),
        "unreadable_cells": sum(1 for key in winner.values() if key in lost),
    }
    return kept, stats


def load_rows(out_dir: Path | str, *, completed_only: bool = True) -> pd.DataFrame:
    """The rows of `out_dir/results.jsonl` (or of its gzipped archive, see `results_path`) that
    count (see `select_attempts`), in file order.

    Every schema column is present (missing values as None/NaN, metrics as float); `line` is the
    row's position among the parsed rows. `attrs` records what was read and what was dropped:
    `parsed_rows`, `bad_lines` and `skipped` (why damaged lines were skipped, '' if none), and
    the attempt counts of `select_attempts`. `completed_only=False` returns every parsed row.
    """
    path = Path(out_dir)
    if path.is_dir() or path.suffix not in (".jsonl", ".gz"):
        path = results_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}")
    read = read_results(path)
    records = read.rows
    if completed_only:
        kept, stats = select_attempts(records, read.unreadable_finals)
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
        source=str(path),
        parsed_rows=len(records),
        bad_lines=read.n_skipped,
        skipped=read.summary(),
        **stats,
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


def of_mode(rows: pd.DataFrame, mode: Mode) -> pd.DataFrame:
    return rows[rows["mode"] == mode]


def ok(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"] == Status.OK]


def noisy_cells(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The cells (one outcome row each) whose timing was flagged noisy (`noisy == true`)."""
    return outcomes[outcomes["noisy"].map(is_true).astype(bool)] if len(outcomes) else outcomes
