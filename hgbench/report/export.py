"""`report DIR --export csv|parquet`: the stored rows as one tidy table for other tools.

One row per stored row that counts (each cell's latest completed attempt, as in the report),
the row's columns first (schema order), then `label` (the config's name in the report) and
`family` (its method family), then the nested fields flattened into columns
(`method_params.K`, `hparams.log_wd.weight`, `env.torch`, `extra.solver_residual`). Lists
(learned schedules) and dicts below the first level are JSON text; a flattened column whose
values mix types (a setting that is a number for one method and a string for another) is text,
so that every column has one type, as Parquet requires. Counts (`seed`, `step`, ...) are
nullable integers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import COLUMN_NAMES
from hgbench.engine.extras import require
from hgbench.report.configs import method_family, with_labels
from hgbench.report.load import load_rows

FORMATS = ("csv", "parquet")
NESTED = ("method_params", "hparams", "env", "extra")
COUNTS = ("seed", "step", "test_n", "probe_state")


def _scalar(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, list | dict | tuple) else value


def _one_type(column: pd.Series) -> pd.Series:
    """The column as is when its non-null values share a type (bool, number or str), else text."""
    kinds = {
        bool if isinstance(v, bool) else float if isinstance(v, int | float) else type(v)
        for v in column.dropna()
    }
    if len(kinds) <= 1:
        return column
    return column.map(lambda v: v if v is None or v != v else str(v))  # v != v: NaN


def _counts(table: pd.DataFrame) -> pd.DataFrame:
    for col in COUNTS:
        if col in table.columns:
            values = pd.to_numeric(table[col], errors="coerce")
            finite = values.dropna()
            if (finite == finite.round()).all():
                table[col] = values.astype("Int64")
    return table


def tidy(rows: pd.DataFrame) -> pd.DataFrame:
    """Flatten the dict-valued columns one level into `<column>.<key>` columns, add `label`
    and `family`; see the module docstring."""
    rows = rows if "label" in rows.columns else with_labels(rows)
    rows = rows.reset_index(drop=True)
    families = {m: method_family(m).value for m in rows["method"].dropna().unique()}
    rows = rows.assign(family=[families.get(m) for m in rows["method"]])
    first = [c for c in (*COLUMN_NAMES, "line", "label", "family") if c in rows.columns]
    rest = [c for c in rows.columns if c not in first]
    flat = rows[first + rest].drop(columns=[c for c in NESTED if c in rows.columns])
    parts = [flat]
    for col in NESTED:
        if col not in rows.columns:
            continue
        records = [v if isinstance(v, dict) else {} for v in rows[col]]
        wide = pd.DataFrame.from_records(records, index=range(len(records)))
        wide = wide.map(_scalar).apply(_one_type)
        parts.append(wide.add_prefix(f"{col}."))
    table = pd.concat(parts, axis=1)
    for col in ("error", "reference", "attempt", "cell", "suite", "device", "dtype"):
        if col in table.columns:
            table[col] = table[col].astype("string")
    for col in ("final", "noisy"):
        if col in table.columns:
            table[col] = table[col].map(lambda v: v if isinstance(v, bool) else None)
            table[col] = table[col].astype("boolean")
    return _counts(table)


def check_format(fmt: str) -> None:
    """UsageError unless `fmt` can be written here (call it before any work)."""
    if fmt not in FORMATS:
        raise UsageError(f"--export must be one of {list(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":  # pandas would name fastparquet too; we support pyarrow
        require("parquet", "--export parquet")


def export_rows(out_dir: Path, fmt: str) -> Path:
    """Write DIR/results.<fmt> (csv, or parquet with pyarrow installed); returns its path.

    A format that cannot be written is a UsageError before anything is read (`check_format`).
    """
    check_format(fmt)
    table = tidy(load_rows(out_dir))
    path = Path(out_dir) / f"results.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False, engine="pyarrow")
    return path
