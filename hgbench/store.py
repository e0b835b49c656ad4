"""The result store: DIR/results.jsonl, one JSON object per line, appended as produced.

Rows are never rewritten. A cell's attempt ends with a row whose `final` is true; an attempt cut
short (Ctrl-C, kill) leaves rows without one, which readers ignore and a rerun repeats.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null (the status/error fields say what happened)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All parseable rows; a torn last line from an interrupted write is skipped."""
    rows = []
    if not path.exists():
        return rows
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class ResultStore:
    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / RESULTS_FILE

    def finished_cells(self) -> set[str]:
        return {r["cell"] for r in read_rows(self.path) if r.get("final") and "cell" in r}

    def append(self, row: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_clean(row), allow_nan=False, default=str)
        with self.path.open("a+b") as fh:
            # A process killed mid-write can leave a line without its newline: start a new one
            # so this row is not glued onto the torn one.
            fh.seek(0, 2)
            if fh.tell() > 0:
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line.encode() + b"\n")
            fh.flush()
