"""Executes a scaling sweep into a result store: one worker per cell, rows as they are produced.

Rows are probe rows (`mode` probe, `suite` scaling) with `hg_cos`, `hg_rel_err` and
`exact_value` null and `reference` saying that no exact reference was computed; what places a
row in the sweep is `extra.scaling` (one entry per axis, series and size the cell belongs to: a
cell shared by two axes, such as the 1000-wide MLP at one decay per tensor, runs once).

Once a series runs out of time or memory at a size, its larger sizes (on the same kind of model:
`Point.detail["model"]`) are not run: they are stored as `skipped` rows whose error names the
size that ran out, so the report draws them as failed points (a larger size would need at least
as much), never as gaps. Rerunning into the
same directory resumes: finished cells are kept.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, TextIO

import torch

from hgbench.contracts.schema import Mode, Status, is_final
from hgbench.contracts.task import Task
from hgbench.engine.calibration import NOISE_THRESHOLD
from hgbench.engine.envinfo import environment
from hgbench.engine.runner import Cell
from hgbench.engine.scaling.counts import operation_count
from hgbench.engine.scaling.pool import Outcome, run_cell
from hgbench.engine.scaling.sweep import Point
from hgbench.engine.scaling.worker import CellJob
from hgbench.engine.store import ResultStore

SUITE = "scaling"
REFERENCE = "none: the scaling sweep measures cost only (no exact reference computed)"
OUT_OF_BUDGET = ("oom", "timeout")


@dataclass(frozen=True)
class Options:
    """How every cell is measured; the ones that change a measurement enter its cell key."""

    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    seed: int = 0
    limit_s: float = 30.0  # one hypergradient longer than this: timeout
    setup_limit_s: float = 300.0
    mem_limit_mb: float | None = 4096.0  # CPU: headroom per worker (None: unlimited)
    repeats: int = 3
    single_call_s: float = 2.0
    state_steps: int = 5
    plugins: tuple[str, ...] = ()  # modules each worker imports (registering methods, tasks)

    def context(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "threads": self.threads,
            "limit_s": self.limit_s,
            "mem_limit_mb": self.mem_limit_mb,
            "scaling": 1,
        }


def cell_key(point: Point, options: Options) -> str:
    cell = Cell(
        Mode.PROBE, SUITE, point.task, point.method, point.method_params, options.seed,
        options.context(),
    )  # fmt: skip
    return cell.key


def cpu_model() -> str | None:
    """The CPU's model name (Linux), for the report's header."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _failure(row: dict[str, Any]) -> str | None:
    extra = row.get("extra")
    return extra.get("failure") if isinstance(extra, dict) else None


class Sweeper:
    """Runs points into `store` (see the module docstring); `log` gets one line per cell."""

    def __init__(self, store: ResultStore, options: Options, log: TextIO | None = None) -> None:
        self.store, self.options = store, options
        self.log = log if log is not None else sys.stderr
        self.units: dict[Task, dict[str, float]] = {}
        self.env = environment(torch.device(options.device))
        self.cpu = cpu_model() if options.device == "cpu" else None

    def run(self, points: list[Point]) -> dict[str, int]:
        keys = [cell_key(p, self.options) for p in points]
        members: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for key, point in zip(keys, points, strict=True):
            members[key].append(point.membership())
        done = {row["cell"]: row for row in self.store.read().rows if is_final(row)}
        todo = len({k for k in keys if k not in done})
        if len(set(keys)) > todo:
            print(
                f"resuming: {len(set(keys)) - todo} of {len(set(keys))} cells already finished "
                f"in {self.store.path}, keeping them",
                file=self.log,
            )
        blocked: dict[tuple[str, str, str | None], str] = {}  # (axis, series, model kind)
        counts: dict[str, int] = defaultdict(int)
        start, ran = time.perf_counter(), 0
        for key, point in zip(keys, points, strict=True):
            series = (point.axis.value, point.series, point.detail.get("model"))
            if key not in done:
                if series in blocked:
                    row = self._not_run(point, key, members[key], blocked[series])
                else:
                    row = self._measure(point, key, members[key])
                    ran += 1
                    elapsed = time.perf_counter() - start
                    shown = row["hg_time_s"] if row["status"] == Status.OK else row["error"]
                    print(
                        f"[cell {ran}/{todo}] {point.axis.value} {point.series} size "
                        f"{point.size}: {row['status']} ({shown}) | elapsed {elapsed:.0f}s, "
                        f"remaining ~{elapsed / ran * (todo - ran):.0f}s",
                        file=self.log,
                        flush=True,
                    )
                self.store.append(row)
                done[key] = row
                counts[row["status"]] += 1
            failure = _failure(done[key])
            if failure in OUT_OF_BUDGET and series not in blocked:
                blocked[series] = f"size {point.size} ran out of {_what(failure)}"
        return dict(counts)

    def _job(self, point: Point) -> CellJob:
        o = self.options
        return CellJob(
            point.task, point.method, point.method_params, o.seed, o.device, o.dtype, o.threads,
            o.mem_limit_mb if o.device == "cpu" else None, o.repeats, o.single_call_s,
            o.state_steps, units=point.task not in self.units, plugins=o.plugins,
        )  # fmt: skip

    def _base(self, point: Point, key: str, members: list[dict[str, Any]]) -> dict[str, Any]:
        o = self.options
        return {
            "mode": Mode.PROBE.value,
            "suite": SUITE,
            "task": point.task.name,
            "method": point.method,
            "method_params": point.method_params,
            "seed": o.seed,
            "cell": key,
            "attempt": uuid.uuid4().hex[:12],
            "device": o.device,
            "dtype": o.dtype,
            "env": self.env,
            "probe_state": 0,
            "hg_cos": None,
            "hg_rel_err": None,
            "reference": REFERENCE,
            "exact_value": None,
            "final": True,
            "extra": {
                "scaling": members,
                "n_params": point.detail.get("n_params"),
                "n_hparams": point.detail.get("n_hparams"),
                "limit_s": o.limit_s,
                "mem_limit_mb": o.mem_limit_mb,
                "threads": o.threads,
                "cpu_model": self.cpu,
            },
        }

    def _not_run(self, point: Point, key: str, members, why: str) -> dict[str, Any]:
        row = self._base(point, key, members)
        row.update(status=Status.SKIPPED.value, error=f"not run: {why} (a larger size would too)")
        row["extra"]["failure"] = "beyond"
        return row

    def _measure(self, point: Point, key: str, members) -> dict[str, Any]:
        row = self._base(point, key, members)
        row["extra"]["load_avg"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        outcome = run_cell(self._job(point), self.options.limit_s, self.options.setup_limit_s)
        if outcome.units:
            self.units[point.task] = outcome.units
        units = self.units.get(point.task)
        row["extra"]["units_tse"] = units
        row.update(status=outcome.status.value, error=outcome.error)
        if outcome.status != Status.OK:
            row["extra"]["failure"] = outcome.reason
            row["extra"]["calls_s"] = outcome.calls
            return row
        return _ok_row(row, point, outcome, units)


def _what(failure: str) -> str:
    return "memory" if failure == "oom" else "time"


def _ok_row(row, point: Point, outcome: Outcome, units) -> dict[str, Any]:
    r = outcome.result
    assert r is not None
    step = r["step_time_s"]
    mem = r["peak_mem_mb"]
    increase = mem - r["mem_base_mb"] if r["mem_method"] == "cuda-max-allocated" else mem
    row.update(
        time_s=r["time_s"],
        peak_mem_mb=mem,
        step_time_s=step,
        calib_drift=r["calib_drift"],
        noisy=bool(r["calib_drift"] > NOISE_THRESHOLD),
        hg_time_s=r["hg_time_s"],
        hg_tse=r["hg_time_s"] / step,
        value=r["value"],
    )
    extra = row["extra"]
    extra.update(
        n_params=r["n_params"],
        n_hparams=r["n_hparams"],
        n_hparams_estimated=r["n_hparams_estimated"],
        finite=r["finite"],
        cold_s=r["cold_s"],
        warm_s=r["warm_s"],
        timed_calls="warm median" if r["warm_s"] else "cold call",
        mem_increase_mb=increase,
        mem_base_mb=r["mem_base_mb"],
        mem_method=r["mem_method"],
        method=r["method_extra"],
    )
    if r.get("method_units"):  # the marginal-likelihood methods' own units, at this cell
        extra.update(method_units_tse=r["method_units"], units_covered=r["units_covered"])
        units = {**(units or {}), **r["method_units"]}
    context = {**r, **(r["method_extra"] or {}), **(r.get("units_covered") or {})}
    count = operation_count(point.method, point.method_params, units, context)
    if count is not None:
        extra.update(
            op_count_tse=count.tse,
            op_formula=count.formula,
            op_ratio=row["hg_tse"] / count.tse if count.tse > 0 else None,
        )
    return row
