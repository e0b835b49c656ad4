"""`report DIR --export csv|parquet`: the stored rows as one tidy table for other tools.

One row per stored row that counts (each cell's latest completed attempt, as in the report),
with nested fields flattened into columns (`method_params.K`, `hparams.log_wd.weight`,
`env.torch`, `extra.solver_residual`); lists (learned schedules) stay as JSON text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hgbench.errors import UsageError
from hgbench.report.tables import load_rows

FORMATS = ("csv", "parquet")
NESTED = ("method_params", "hparams", "env", "extra")


def tidy(rows: pd.DataFrame) -> pd.DataFrame:
    """Flatten the dict-valued columns one level into `<column>.<key>` columns."""
    flat = rows.drop(columns=[c for c in NESTED if c in rows.columns])
    parts = [flat.reset_index(drop=True)]
    for col in NESTED:
        if col not in rows.columns:
            continue
        records = [v if isinstance(v, dict) else {} for v in rows[col]]
        wide = pd.DataFrame.from_records(records, index=range(len(records)))
        wide = wide.map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)
        parts.append(wide.add_prefix(f"{col}."))
    return pd.concat(parts, axis=1)


def export_rows(out_dir: Path, fmt: str) -> Path:
    """Write DIR/results.<fmt> (csv, or parquet with pyarrow installed); returns its path."""
    if fmt not in FORMATS:
        raise UsageError(f"--export must be one of {list(FORMATS)}, got {fmt!r}")
    table = tidy(load_rows(out_dir))
    path = Path(out_dir) / f"results.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        try:
            table.to_parquet(path, index=False)
        except ImportError as exc:
            raise UsageError(
                f'--export parquet needs pyarrow: pip install -e ".[parquet]" ({exc})'
            ) from None
    return path
