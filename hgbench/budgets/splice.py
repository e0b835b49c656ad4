"""Replace some methods' rows of a budget study by those of a rerun, keeping every other row.

    python -m hgbench.budgets.splice reports/budgets RERUN --methods laplace_full

RERUN holds the rows of `python -m hgbench budgets --methods laplace_full --out RERUN` (the same
tasks, seeds, budgets and sweep). Every row of the named methods in the study's results is
dropped; the rerun's rows of each cell stand where the old cell's first row stood (a cell is
matched by task, method, seed, budget and setting, not by its key: a method whose settings
gained a field has new keys), so the file keeps its order and every other line is kept byte for
byte. The rerun must cover every old cell of those methods, and only those methods: otherwise
nothing is written. The result is written gzipped in place of the study's rows
(`results.jsonl.gz`); redraw the report from it afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import ARCHIVED_RESULTS_FILE, RESULTS_FILE, results_path

Match = tuple[str, str, int, int, str]  # task, method, seed, budget_runs, setting


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return [line for line in data.split(b"\n") if line.strip()]


def _match(row: dict) -> Match:
    return (row["task"], row["method"], row["seed"], row["budget_runs"], row["setting"])


def splice(study: list[bytes], rerun: list[bytes], methods: set[str]) -> tuple[list[bytes], dict]:
    """The study's lines with `methods`' rows replaced by the rerun's, and what was replaced."""
    new: dict[Match, list[bytes]] = {}
    for line in rerun:
        row = json.loads(line)
        if row["method"] not in methods:
            raise UsageError(f"the rerun has rows of {row['method']}, not of {sorted(methods)}")
        new.setdefault(_match(row), []).append(line)
    out: list[bytes] = []
    placed: set[Match] = set()
    dropped, old_cells = 0, set()
    for line in study:
        row = json.loads(line)
        if row["method"] not in methods:
            out.append(line)
            continue
        dropped += 1
        key = _match(row)
        old_cells.add(row["cell"])
        if key not in new:
            raise UsageError(f"the rerun has no cell for {key}: its rows would be lost")
        if key not in placed:
            out += new[key]
            placed.add(key)
    extra = set(new) - placed
    if extra:
        raise UsageError(f"the rerun has cells the study lacks, e.g. {sorted(extra)[0]}")
    counts = {
        "dropped_rows": dropped,
        "dropped_cells": len(old_cells),
        "inserted_rows": sum(len(v) for v in new.values()),
        "inserted_cells": len(placed),
    }
    return out, counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hgbench.budgets.splice", description=__doc__)
    p.add_argument("study", type=Path, help="the study's folder (results.jsonl[.gz])")
    p.add_argument("rerun", type=Path, help="the rerun's folder")
    p.add_argument("--methods", required=True, help="comma-separated method names")
    args = p.parse_args(argv)
    methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    if (args.study / RESULTS_FILE).exists():  # it would shadow the archive written here
        print(f"error: {args.study / RESULTS_FILE} exists: gzip it first", file=sys.stderr)
        return 2
    try:
        lines, counts = splice(
            _lines(results_path(args.study)), _lines(results_path(args.rerun)), methods
        )
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = args.study / ARCHIVED_RESULTS_FILE
    # mtime 0: the same rows give the same bytes, so a redraw does not show a changed archive
    target.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=9, mtime=0))
    print(f"{target}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
