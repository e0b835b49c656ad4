"""The committed per-device estimates (`plan_estimates.json`), made from stored rows.

A plan (engine/plan.py) estimates a cell from the store it runs into, else from a cost pass, else
from this table: the median wall seconds per epoch of each (task, method, settings), per device
kind, over isolated final rows. It is what a fresh checkout plans with before anything ran on
its device. Merge a run's rows into it (kinds already in the table keep their other entries):

    python -m hgbench.engine.plan_table DIR [DIR ...] [--about "what the rows are"]

`_about` in the file says, per kind, where its figures came from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hgbench.contracts.schema import results_path
from hgbench.engine.plan import TABLE, device_kind, measured_walls
from hgbench.engine.store import read_rows

PATH = Path(__file__).with_name(TABLE)


def table_from_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Device kind -> configuration -> median wall seconds per epoch (isolated final rows)."""
    kinds = sorted({device_kind(r) for r in rows if r.get("final")})
    found = {kind: measured_walls(rows, kind) for kind in kinds}
    return {k: {c: round(s, 4) for c, s in sorted(v.items())} for k, v in found.items() if v}


def merge(table: dict[str, Any], new: dict[str, dict[str, float]], about: str) -> dict[str, Any]:
    out = {k: dict(v) for k, v in table.items()}
    for kind, entries in new.items():
        out.setdefault(kind, {}).update(entries)
        if about:
            out.setdefault("_about", {})[kind] = about
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--about", default="", help="where the rows come from (kept per kind)")
    parser.add_argument("--table", type=Path, default=PATH)
    args = parser.parse_args(argv)
    rows = [r for d in args.dirs for r in read_rows(results_path(d))]
    new = table_from_rows(rows)
    if not new:
        raise SystemExit(
            "no isolated final rows with wall seconds in " + ", ".join(map(str, args.dirs))
        )
    table = merge(json.loads(args.table.read_text()), new, args.about)
    args.table.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    for kind, entries in new.items():
        print(f"{kind}: {len(entries)} configurations")


if __name__ == "__main__":
    main()
