"""The result row: its statuses and modes, its columns, the results file, and its one reader.

Every row hgbench stores is one JSON object on one line of `DIR/results.jsonl` (`RESULTS_FILE`).
The runner writes them (hgbench.engine.store); the store's resume logic, `hgbench check` and the
report all read them through `read_results`, which skips and counts what it cannot use instead of
failing, so every reader agrees on which rows exist.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"
# A finished run may ship its rows gzipped (the committed reference reports do: JSON lines
# compress about 10×). Readers take it where the plain file is absent; writers never append to it.
ARCHIVED_RESULTS_FILE = RESULTS_FILE + ".gz"


def results_path(out_dir: Path | str) -> Path:
    """The results file a reader of `out_dir` uses: the plain file, else its gzipped archive."""
    plain = Path(out_dir) / RESULTS_FILE
    archived = Path(out_dir) / ARCHIVED_RESULTS_FILE
    if not plain.exists() and not plain.is_symlink() and archived.is_file():
        return archived
    return plain


class StrEnum(str, Enum):
    """A str Enum that prints as its value (the same in f-strings, JSON and tables)."""

    def __str__(self) -> str:
        return str(self.value)


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


class Timing(StrEnum):
    ISOLATED = "isolated"  # the cell had its device to itself
    PACKED = "packed"  # it shared the device with other cells (`--pack`): its seconds are no cost


class CheckpointKind(StrEnum):
    """Which state a run row evaluates."""

    CURRENT = "current"  # the method's state at this step
    # the state of the best marginal likelihood seen so far (training data only: no test or
    # validation split chooses it), reported as a marglik method's result (laplace-torch's
    # `marglik_training` keeps and returns it)
    BEST_MARGLIK = "best_marglik"


class Mode(StrEnum):
    RUN = "run"  # joint training and tuning within a budget
    PROBE = "probe"  # one hypergradient estimate at a fixed state


@dataclass(frozen=True)
class Column:
    name: str
    modes: tuple[Mode, ...]
    doc: str


_BOTH = (Mode.RUN, Mode.PROBE)
_RUN = (Mode.RUN,)
_PROBE = (Mode.PROBE,)

# The columns of a row (docs/schema.md renders this table; tests/test_schema.py checks the page's
# notes against it). A row has every column of its mode; values it has none for are null.
COLUMNS: tuple[Column, ...] = (
    Column("mode", _BOTH, "`run` or `probe`"),
    Column("suite", _BOTH, "registry name of the suite"),
    Column("task", _BOTH, "registry name of the task"),
    Column("method", _BOTH, "registry name of the method"),
    Column("method_params", _BOTH, "the method's settings (`dataclasses.asdict`)"),
    Column("seed", _BOTH, "the seed"),
    Column("status", _BOTH, "`ok`, `failed`, `timeout` or `skipped`"),
    Column("error", _BOTH, "the error or skip reason"),
    Column("time_s", _BOTH, "timed seconds spent by the method so far in this cell"),
    Column("peak_mem_mb", _BOTH, "peak memory of the cell (CPU: RSS added over its start)"),
    Column("device", _BOTH, "the device"),
    Column("dtype", _BOTH, "the floating-point type"),
    Column("env", _BOTH, "versions, git sha, host, threads, device name, which GPU"),
    Column("cell", _BOTH, "the cell's key"),
    Column("attempt", _BOTH, "this execution's id"),
    Column("final", _BOTH, "whether this is the attempt's last row"),
    Column("step_time_s", _BOTH, "seconds of one `fixed` training step of the task here"),
    Column("calib_drift", _BOTH, "relative change of that step's time over the cell"),
    Column("noisy", _BOTH, "whether the drift exceeds the noise threshold"),
    Column("timing", _BOTH, "`isolated` or `packed` (shared the device with other cells)"),
    Column("pack", _BOTH, "how many cells shared the device (1: isolated)"),
    Column("wall_s", _BOTH, "(final rows) wall-clock seconds of the attempt, all included"),
    Column("cuda_graph", _BOTH, "whether `fixed` and the calibration step replayed a CUDA graph"),
    Column("step", _RUN, "optimiser steps done at this evaluation"),
    Column("epoch", _RUN, "epochs done at this evaluation"),
    Column("tse", _RUN, "time_s in training-step equivalents"),
    Column("test_acc", _RUN, "test accuracy"),
    Column("test_nll", _RUN, "test mean negative log-likelihood"),
    Column("test_n", _RUN, "test points evaluated"),
    Column("val_loss", _RUN, "validation mean NLL"),
    Column("objective", _RUN, "the method's own objective"),
    Column("hparams", _RUN, "hyperparameter summary"),
    Column("stretch", _RUN, "(cost pass) the burn-in, period and stop epochs it measured"),
    Column("checkpoint", _RUN, "which state: `current` or `best_marglik`"),
    Column("probe_state", _PROBE, "which probe state (0: the initial hparams)"),
    Column("hg_time_s", _PROBE, "median seconds per hypergradient"),
    Column("hg_tse", _PROBE, "hg_time_s in training-step equivalents"),
    Column("hg_cos", _PROBE, "cosine similarity with the exact hypergradient"),
    Column("hg_rel_err", _PROBE, "relative L2 error against the exact hypergradient"),
    Column("reference", _PROBE, "what the exact reference was"),
    Column("value", _PROBE, "the estimator's objective value"),
    Column("exact_value", _PROBE, "the exact objective value"),
    Column("extra", _BOTH, "method-specific diagnostics"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
NUMERIC_COLUMNS: tuple[str, ...] = (
    "seed",
    "time_s",
    "peak_mem_mb",
    "step_time_s",
    "calib_drift",
    "pack",
    "wall_s",
    "step",
    "epoch",
    "tse",
    "test_acc",
    "test_nll",
    "test_n",
    "val_loss",
    "objective",
    "probe_state",
    "hg_time_s",
    "hg_tse",
    "hg_cos",
    "hg_rel_err",
    "value",
    "exact_value",
)


def columns_for(mode: Mode) -> tuple[str, ...]:
    return tuple(c.name for c in COLUMNS if mode in c.modes)


# What a row needs to be used at all: a reader skips (and counts) a row without these.
_REQUIRED: dict[str, tuple[type, ...]] = {
    "mode": (str,),
    "task": (str,),
    "method": (str,),
    "status": (str,),
    "cell": (str,),
    "attempt": (str,),
    "final": (bool,),
}
# Optional fields that must have these types where present (None always allowed).
_TYPED: dict[str, tuple[type, ...]] = {
    "suite": (str,),
    "method_params": (dict,),
    "env": (dict,),
    "extra": (dict,),
    "hparams": (dict,),
    "stretch": (dict,),
    "error": (str,),
    "noisy": (bool,),
    "cuda_graph": (bool,),
    "timing": (str,),
    "checkpoint": (str,),
    **{name: (int, float) for name in NUMERIC_COLUMNS},
}
_ENUMS: dict[str, type[StrEnum]] = {"mode": Mode, "status": Status}


def row_problem(row: object) -> str | None:
    """Why a parsed JSON value is not a usable row, or None if it is one."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for name, types in _REQUIRED.items():
        value = row.get(name)
        if value is None:
            return f"missing {name}"
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return f"{name} is not {types[0].__name__}"
    for name, enum in _ENUMS.items():
        if row[name] not in {e.value for e in enum}:
            return f"unknown {name} {row[name]!r}"
    for name, types in _TYPED.items():
        value = row.get(name)
        if value is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return f"{name} is not {types[0].__name__}"
    return None


def is_final(row: dict[str, Any]) -> bool:
    """Whether a row ends its attempt (only `true` counts: the one reading every reader uses)."""
    return row.get("final") is True


@dataclass(frozen=True)
class UnreadableFinal:
    """A skipped line that still names its cell and says `final: true` (e.g. its `status` was
    lost): the attempt completed, but its outcome is unknown, so the cell counts as unfinished."""

    cell: str
    attempt: str
    reason: str
    after: int  # how many usable rows precede it in the file


@dataclass
class ReadResult:
    """The usable rows of a results file, in file order, and what was skipped and why."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> lines
    torn_tail: bool = False  # the last line has no newline (a write cut short)
    unreadable_finals: list[UnreadableFinal] = field(default_factory=list)  # among the skipped

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """'' when nothing was skipped, else e.g. '3 damaged lines skipped (2 not JSON, ...)'."""
        if not self.n_skipped:
            return ""
        why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        s = "s" if self.n_skipped > 1 else ""
        finals = len(self.unreadable_finals)
        of_cells = (
            f"; {finals} of them a cell's final row (that attempt does not count; a resumed run "
            "runs the cell again unless a later attempt replaced it)"
            if finals
            else ""
        )
        return f"{self.n_skipped} damaged line{s} skipped ({why}){of_cells}"

    def latest_finals(self) -> dict[str, dict[str, Any] | UnreadableFinal]:
        """Per cell, the final row of its latest completed attempt in file order, or the
        `UnreadableFinal` where that row was damaged (every reader's notion of a cell's outcome:
        resume, `check` and the report)."""
        latest: dict[str, dict[str, Any] | UnreadableFinal] = {}
        damaged = iter(self.unreadable_finals)
        nxt = next(damaged, None)
        for i, row in enumerate(self.rows):
            while nxt is not None and nxt.after <= i:
                latest[nxt.cell] = nxt
                nxt = next(damaged, None)
            if is_final(row):
                latest[row["cell"]] = row
        while nxt is not None:
            latest[nxt.cell] = nxt
            nxt = next(damaged, None)
        return latest


class ResultsFileError(Exception):
    """The results path exists but cannot be read as a file."""


def read_results(path: Path | str) -> ReadResult:
    """Every usable row of a results file (see `row_problem`); a missing file has none.

    Tolerant by design: a line that is not UTF-8, not JSON, not an object, or lacks a required
    field is skipped and counted under its reason; a skipped row that still names its cell and
    is final is also listed in `unreadable_finals`. A path that exists but is not a readable
    file raises ResultsFileError.
    """
    path = Path(path)
    result = ReadResult()
    if not path.exists():
        return result
    if not path.is_file():
        raise ResultsFileError(f"{path} is not a file")
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except OSError as exc:  # gzip.BadGzipFile is an OSError
        raise ResultsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except EOFError:
        raise ResultsFileError(f"cannot read {path}: the gzip stream is truncated") from None
    result.torn_tail = bool(data) and not data.endswith(b"\n")
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            result.skipped["not UTF-8"] += 1
            continue
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            result.skipped["not JSON"] += 1
            continue
        problem = row_problem(obj)
        if problem is not None:
            result.skipped[problem] += 1
            if isinstance(obj, dict) and is_final(obj) and isinstance(obj.get("cell"), str):
                attempt = str(obj.get("attempt"))
                result.unreadable_finals.append(
                    UnreadableFinal(obj["cell"], attempt, problem, len(result.rows))
                )
            continue
        result.rows.append(obj)
    return result
