"""Packed rows' cost axes from the isolated cost pass (hgbench.engine.costpass), said in the header.

A packed row's seconds are not its cost. Where `DIR/cost/` holds the cost pass of the row's
configuration on the row's device kind, the row's `time_s` and `tse` become that curve's value at
the row's epoch; otherwise they become NaN (no cost), so that no packed seconds reach a cost axis.
Quality columns (test NLL, accuracy, hparams, objective) stay every seed's own. Isolated rows keep
their own timings: they were measured alone already.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hgbench.contracts.schema import Mode, Timing
from hgbench.engine.costpass import COST_DIR, CostCurve, cost_curves, read_cost_rows
from hgbench.engine.plan import config_key, device_kind

COST_SOURCE = "cost_source"  # a report-only column: "own", "cost pass" or "none"


def _kind(env: object, device: object) -> str:
    return device_kind({"env": env if isinstance(env, dict) else {}, "device": device})


def apply_cost_pass(rows: pd.DataFrame, out_dir: Path) -> tuple[pd.DataFrame, str | None]:
    """`rows` with packed run rows' cost axes from the cost pass, and the header line saying so
    (None where no row is packed and no cost pass was run)."""
    curves = cost_curves(read_cost_rows(out_dir))
    if rows.empty or "timing" not in rows.columns:
        return rows, None
    packed = (rows["timing"] == Timing.PACKED) & (rows["mode"] == Mode.RUN)
    if not packed.any():
        if not curves:
            return rows, None
        return rows, (
            f"- Cost pass: `{COST_DIR}/` holds {len(curves)} configurations measured alone; "
            "every row here ran isolated and keeps its own cost axes"
        )
    rows = rows.copy()
    rows[COST_SOURCE] = "own"
    found = 0
    for i in rows.index[packed]:
        row = rows.loc[i]
        key = config_key(row["task"], row["method"], row["method_params"])
        curve: CostCurve | None = curves.get((_kind(row["env"], row["device"]), key))
        epoch = row["epoch"]
        hit = curve is not None and isinstance(epoch, int | float) and math.isfinite(epoch)
        rows.loc[i, "time_s"] = curve.time_at(epoch) if hit else math.nan
        rows.loc[i, "tse"] = curve.tse_at(epoch) if hit else math.nan
        rows.loc[i, COST_SOURCE] = "cost pass" if hit else "none"
        found += hit
    missing = int(packed.sum()) - found
    gap = f"; {missing} rows have no cost-pass figure and no cost" if missing else ""
    return rows, (
        f"- Cost: {int(packed.sum())} run rows ran packed (several cells at once on the device), "
        f"so their cost axes (time_s, tse) come from the isolated cost pass in `{COST_DIR}/` "
        f"({len(curves)} configurations, each timed alone over a stretch covering its periodic "
        f"work or one whole seed){gap}"
        "; their quality (test NLL, accuracy, hparams) comes from every seed's own rows; "
        "isolated rows keep their own timings"
    )
