"""One worker process per scaling cell, with a time limit per hypergradient enforced from outside.

Workers are forked from a fork server that has imported hgbench and nothing more
(hgbench.engine.scaling.preload; "spawn" where there is no fork server), so every cell starts from
the same clean process and its memory figure is its own. The parent follows the worker's messages
(hgbench.engine.scaling.worker) and kills it when setup overruns `setup_limit_s` or one
hypergradient overruns `limit_s`: a long kernel cannot be interrupted from inside, a process can be
killed.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any

from hgbench.contracts.schema import Status
from hgbench.engine.scaling.worker import CellJob, child_main

PRELOAD = ["hgbench.engine.scaling.preload"]


@dataclass
class Outcome:
    """How a cell ended: `status`, the worker's `result` (ok) or `error`, and what kind of
    failure it was (`reason`: oom, timeout, error, died; None when ok or skipped)."""

    status: Status
    result: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None
    units: dict[str, float] | None = None
    calls: list[float] = field(default_factory=list)  # seconds of each call that finished

    @property
    def out_of_budget(self) -> bool:
        """Ran out of time or memory: a larger size would too."""
        return self.reason in ("oom", "timeout")


def _context() -> mp.context.BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def run_cell(job: CellJob, limit_s: float, setup_limit_s: float = 300.0) -> Outcome:
    """Measure `job` in a fresh worker; a hypergradient call longer than `limit_s`, or set-up
    (problem, calibration, units, cost state) longer than `setup_limit_s`, is a timeout."""
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_main, args=(job, sender), daemon=True)
    proc.start()
    sender.close()
    outcome = Outcome(Status.FAILED)
    phase, deadline = "set-up", time.monotonic() + setup_limit_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                limit = limit_s if phase.startswith("hypergradient") else setup_limit_s
                outcome.status, outcome.reason = Status.TIMEOUT, "timeout"
                outcome.error = f"{phase} took longer than {limit:g} s (worker killed)"
                return outcome
            if not receiver.poll(min(left, 0.5)):
                if not proc.is_alive() and not receiver.poll(0):
                    return _died(outcome, proc, phase)
                continue
            try:
                message = receiver.recv()
            except EOFError:
                return _died(outcome, proc, phase)
            kind = message[0]
            if kind == "phase":
                phase, deadline = message[1], time.monotonic() + setup_limit_s
            elif kind == "units":
                outcome.units = message[1]
            elif kind == "call":
                phase = f"hypergradient call {message[1] + 1}"
                deadline = time.monotonic() + limit_s
            elif kind == "called":
                outcome.calls.append(message[2])
                phase, deadline = "after the calls", time.monotonic() + setup_limit_s
            elif kind == "result":
                outcome.status, outcome.result = Status.OK, message[1]
                return outcome
            elif kind == "skipped":
                outcome.status, outcome.error = Status.SKIPPED, message[1]
                return outcome
            elif kind == "error":
                outcome.error = message[1]
                outcome.reason = "oom" if message[2] else "error"
                return outcome
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()
        receiver.close()


def _died(outcome: Outcome, proc: Any, phase: str) -> Outcome:
    proc.join(timeout=30)
    code = proc.exitcode
    outcome.reason = "died"
    outcome.error = f"the worker died during {phase} (exit code {code}"
    if code is not None and code < 0:
        outcome.error += f", signal {-code}: killed, e.g. by the kernel's out-of-memory killer"
        outcome.reason = "oom" if -code == 9 else "died"
    outcome.error += ")"
    return outcome
