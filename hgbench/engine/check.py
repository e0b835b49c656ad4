"""`python -m hgbench check DIR`: what is wrong with a results directory, one line per finding.

Exit status 0 when nothing is, 1 when something is (like a linter), 2 when DIR holds no results.
It reads the store as every other reader does (`hgbench.contracts.schema.read_results`) and changes
nothing.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import (
    RESULTS_FILE,
    ResultsFileError,
    Status,
    UnreadableFinal,
    is_final,
    read_results,
    results_path,
)
from hgbench.engine.store import LOCK_FILE, DirectoryLock


def findings(out_dir: Path) -> list[str]:
    """Everything worth knowing that is wrong with `out_dir`'s results."""
    path = results_path(out_dir)
    try:
        read = read_results(path)
    except ResultsFileError as exc:
        return [str(exc)]
    found: list[str] = []
    if read.n_skipped:
        found.append(f"{path}: {read.summary()}")
    if read.torn_tail:
        found.append(
            f"{path}: the last line is torn (a write was cut short); a resumed run moves it aside"
        )
    attempts: dict[tuple[str, str], bool] = {}
    completed: Counter[str] = Counter()
    for row in read.rows:
        key = (row["cell"], row["attempt"])
        attempts[key] = attempts.get(key, False) or is_final(row)
        completed[row["cell"]] += is_final(row)
    for bad in read.unreadable_finals:  # completed, though its outcome is unreadable
        attempts[(bad.cell, bad.attempt)] = True
        completed[bad.cell] += 1
    latest = read.latest_finals()
    interrupted = sum(1 for done in attempts.values() if not done)
    if interrupted:
        found.append(
            f"{interrupted} interrupted attempt(s) without a final row (ignored by "
            "readers; a rerun repeats those cells)"
        )
    unreadable = [c for c, r in latest.items() if isinstance(r, UnreadableFinal)]
    if unreadable:
        bad = latest[unreadable[0]]
        assert isinstance(bad, UnreadableFinal)
        found.append(
            f"{len(unreadable)} cell(s) whose latest final row is unreadable ({bad.reason}): "
            f"not counted, and a resumed run runs them again, e.g. {unreadable[0]}"
        )
    replaced = len(read.unreadable_finals) - len(unreadable)
    if replaced:
        found.append(f"{replaced} unreadable final row(s) replaced by a later attempt")
    repeated = sum(1 for n in completed.values() if n > 1)
    if repeated:
        found.append(f"{repeated} cell(s) completed more than once (the latest attempt counts)")
    rows = {c: r for c, r in latest.items() if isinstance(r, dict)}
    for status in (Status.FAILED, Status.TIMEOUT):
        cells = [c for c, r in rows.items() if r["status"] == status.value]
        if cells:
            found.append(
                f"{len(cells)} cell(s) {status.value} (rerun them with "
                f"--retry-failed), e.g. {cells[0]}"
            )
    noisy = [c for c, r in rows.items() if r.get("noisy") is True]
    if noisy:
        found.append(
            f"{len(noisy)} cell(s) timed while the machine's speed changed (noisy; "
            f"rerun them with --rerun-noisy), e.g. {noisy[0]}"
        )
    lock = out_dir / LOCK_FILE
    if lock.exists():
        try:
            owner = json.loads(lock.read_text())
        except (OSError, ValueError):
            owner = None
        stale = not isinstance(owner, dict) or DirectoryLock._stale(owner)
        who = f"pid {owner.get('pid')} on {owner.get('host')}" if isinstance(owner, dict) else "?"
        found.append(f"{lock}: {'a stale' if stale else 'a live'} writer lock ({who})")
    for torn in sorted(out_dir.glob(f"{RESULTS_FILE}.torn-*")):
        found.append(f"{torn}: a torn line moved aside by an earlier resume")
    return found


def check_directory(out_dir: Path) -> int:
    out_dir = Path(out_dir)
    path = results_path(out_dir)
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"no {RESULTS_FILE} in {out_dir}")
    found = findings(out_dir)
    for line in found:
        print(line)
    if not found:
        n = len(read_results(path).rows)
        print(f"{path}: {n} rows, nothing wrong")
    print(f"{len(found)} finding(s)", file=sys.stderr)
    return 1 if found else 0
