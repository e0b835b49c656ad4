"""The result store: DIR/results.jsonl, one JSON object per line, appended as produced.

Rows are never rewritten. A cell's attempt ends with a row whose `final` is true; an attempt cut
short (Ctrl-C, kill) leaves rows without one, which readers ignore and a rerun repeats. One process
writes a results directory at a time (`DirectoryLock`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Protocol

from hgbench.contracts.errors import UsageError
from hgbench.contracts.schema import RESULTS_FILE, ReadResult, Status, read_results

LOCK_FILE = ".hgbench.lock"


class Store(Protocol):
    """Where a runner puts rows: the results file, or a worker's list that travels back."""

    path: Path | str

    def append(self, row: dict[str, Any]) -> None: ...

    def finished_cells(self, retry_failed: bool = False, rerun_noisy: bool = False) -> set[str]: ...


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null (the status/error fields say what happened)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def finished_cells(
    read: ReadResult, retry_failed: bool = False, rerun_noisy: bool = False
) -> set[str]:
    """Cells with a completed attempt (a final row). Not those whose latest final row is
    unreadable (its outcome is unknown); with `retry_failed`, not those whose latest completed
    attempt failed or timed out, and with `rerun_noisy` not those whose latest was flagged
    noisy: they run again, and their old rows stop counting once the new attempt completes
    (readers use each cell's latest completed attempt)."""
    again = {Status.FAILED.value, Status.TIMEOUT.value} if retry_failed else set()
    return {
        cell
        for cell, row in read.latest_finals().items()
        if isinstance(row, dict)
        and row["status"] not in again
        and not (rerun_noisy and row.get("noisy") is True)
    }


class ResultStore:
    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / RESULTS_FILE

    def read(self) -> ReadResult:
        return read_results(self.path)

    def finished_cells(self, retry_failed: bool = False, rerun_noisy: bool = False) -> set[str]:
        return finished_cells(self.read(), retry_failed, rerun_noisy)

    def repair_tail(self) -> Path | None:
        """Move a torn last line (a write cut short by a kill) aside, so the file stays valid
        JSONL for strict readers once new rows follow; returns where it went, or None."""
        if not self.path.is_file():
            return None
        with self.path.open("rb") as fh:
            data = fh.read()
        if not data or data.endswith(b"\n"):
            return None
        cut = data.rfind(b"\n") + 1
        aside = self.dir / f"{RESULTS_FILE}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        aside.write_bytes(data[cut:])
        with self.path.open("r+b") as fh:
            fh.truncate(cut)
        return aside

    def append(self, row: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_clean(row), allow_nan=False, default=str)
        with self.path.open("a+b") as fh:
            # A process killed mid-write can leave a line without its newline (repair_tail moves
            # it aside at start-up); never glue this row onto one.
            fh.seek(0, 2)
            if fh.tell() > 0:
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line.encode() + b"\n")
            fh.flush()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class DirectoryLock:
    """One writer per results directory: DIR/.hgbench.lock holds the writer's pid and host.

    A second process exits with a UsageError naming the first; a lock whose process is gone
    (same host) is stale and taken over. Released on `release` (and by the context manager).
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> str | None:
        """Take the lock; returns a note when a stale lock was taken over."""
        note = None
        me = {"pid": os.getpid(), "host": platform.node(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and not self._stale(owner):
                    raise UsageError(
                        f"{self.path.parent} is being written by another hgbench process (pid "
                        f"{owner.get('pid')} on {owner.get('host')}, since "
                        f"{time.strftime('%H:%M:%S', time.localtime(owner.get('since', 0)))}); "
                        "wait for it, or use another --out"
                    ) from None
                note = f"took over a stale lock of pid {owner.get('pid') if owner else '?'}"
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return note
        raise UsageError(f"cannot take the lock {self.path}")

    def _owner(self) -> dict[str, Any] | None:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # unreadable: treat as stale
        return owner if isinstance(owner, dict) else None

    @staticmethod
    def _stale(owner: dict[str, Any]) -> bool:
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return True
        if owner.get("host") != platform.node():
            return False  # another machine's process: we cannot tell, so respect it
        return not _alive(pid)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_rows(path: Path | str) -> list[dict[str, Any]]:
    """The usable rows of a results file (`hgbench.contracts.schema.read_results`, the one
    reader)."""
    return read_results(path).rows
