"""One scaling cell, measured inside its own worker process (hgbench.engine.scaling.pool starts it).

The worker builds the problem, times the task's `fixed` training step (the TSE unit), optionally
times the units of the operation counts (hgbench.engine.scaling.counts), puts the method at a cost
state and measures its hypergradient (then, for the marginal-likelihood methods, their own
units at the cell's settings, hgbench.engine.scaling.marglik, outside the method's clock):

1. the first call (cold, in a process that has run no other hypergradient) is the memory
   region: its peak over the RSS just before it (hgbench.engine.memory);
2. if it took less than `single_call_s`, up to `repeats` more calls are timed and their median
   is the time per hypergradient; otherwise the first call's own time is (its one-off costs are
   negligible beside seconds of work, and a second call would double the cell's wall time).

The cost state is not a tight optimum: scaling measures cost, not fidelity, so no exact
reference is computed (rows say so in `reference`); the state is the task's initial hparams and
its initial params after `state_steps` SGD steps, or a method's own state where its hparams are
its own (the reversal methods' schedules, hypergradient descent's learning rate and momentum).

Every event goes to the parent over `conn` as a tuple, so that it can enforce the time limit of
each call from outside (a Python signal cannot interrupt one long kernel):
("phase", name), ("units", dict), ("call", i), ("called", i, seconds), then one of
("result", dict), ("skipped", reason) or ("error", text, out_of_memory).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import torch

from hgbench.contracts.method import METHODS, Method, ProbeState
from hgbench.contracts.task import Problem, Task
from hgbench.engine.calibration import drift, step_time
from hgbench.engine.guards import error_text
from hgbench.engine.memory import PeakRegion, is_out_of_memory, limit_address_space
from hgbench.engine.scaling.counts import measure_units
from hgbench.engine.scaling.marglik import MARGLIK_METHODS, measure_marglik_units
from hgbench.engine.timing import synchronize
from hgbench.numerics.training import SGDTrainer

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class CellJob:
    """What one worker measures (picklable: it crosses into the worker process)."""

    task: Task
    method: str
    method_params: dict[str, Any] = field(hash=False)
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    mem_limit_mb: float | None = None  # CPU: address-space headroom (None: unlimited)
    repeats: int = 3  # warm timed calls after the cold one, when it was quick
    single_call_s: float = 2.0  # a cold call at least this long is the timing on its own
    state_steps: int = 5
    units: bool = False  # also time the operation-count units (once per task variant)
    plugins: tuple[str, ...] = ()  # modules registering methods or tasks (HGBENCH_PLUGINS)


def cost_state(method: Method, problem: Problem, steps: int) -> ProbeState:
    """Where the hypergradient is taken: the method's own state where its hparams are its own,
    else the task's initial hparams and its init trained `steps` SGD steps."""
    own_hparams = getattr(method, "init_hparams", None)  # the reversal family's schedules
    if callable(own_hparams):
        return ProbeState(problem.init_params(), own_hparams(problem))
    own_state = getattr(method, "_state", None)  # hypergradient descent's lr and momentum
    if callable(own_state):
        return own_state(problem, None)
    return generic_state(problem, steps)


def generic_state(problem: Problem, steps: int) -> ProbeState:
    hparams = problem.init_hparams()
    trainer = SGDTrainer(problem, problem.init_params())
    if steps:
        trainer.steps(hparams, steps)
    params = {k: v.detach().clone() for k, v in trainer.params.items()}
    return ProbeState(params, hparams)


def sizes(problem: Problem) -> dict[str, Any]:
    return {"n_params": problem.n_params, "n_hparams": problem.space.numel}


def _timed(fn, device: torch.device) -> tuple[Any, float]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def measure(job: CellJob, send) -> None:
    """The cell's measurement; every event goes through `send` (see the module docstring)."""
    device, dtype = torch.device(job.device), DTYPES[job.dtype]
    send(("phase", "setup"))
    problem = job.task.build(job.seed, device, dtype)
    problem.warm_up()
    step_s = step_time(problem)
    info = sizes(problem)
    if job.units:
        send(("units", measure_units(problem, generic_state(problem, job.state_steps), step_s)))
    method = METHODS[job.method](**job.method_params)
    reason = method.skip_reason(problem)
    if reason is not None:
        send(("skipped", reason))
        return
    method.setup(problem)
    state = cost_state(method, problem, job.state_steps)
    method.prepare_probe(problem, state)

    def call():
        return method.hypergradient(problem, state)

    send(("call", 0))
    with PeakRegion(device) as region:
        est, cold = _timed(call, device)
    send(("called", 0, cold))
    warm: list[float] = []
    if cold < job.single_call_s:
        for i in range(1, job.repeats + 1):
            send(("call", i))
            _, seconds = _timed(call, device)
            send(("called", i, seconds))
            warm.append(seconds)
    method_units = covered = None
    if job.method in MARGLIK_METHODS:  # their units depend on the cell's settings: every cell
        send(("phase", "marginal-likelihood units"))
        measured = measure_marglik_units(
            job.method, method, problem, state, step_s, job.repeats, job.single_call_s
        )
        assert measured is not None
        method_units, covered = measured
    send(("phase", "calibration"))
    end_step_s = step_time(problem)
    memory = region.result
    assert memory is not None
    n_est = sum(v.numel() for v in est.hypergradient.values())
    finite = all(bool(torch.isfinite(v).all()) for v in est.hypergradient.values())
    hg_time = statistics.median(warm) if warm else cold
    send(
        (
            "result",
            {
                **info,
                "step_time_s": step_s,
                "calib_drift": drift(step_s, end_step_s),
                "hg_time_s": hg_time,
                "time_s": cold + sum(warm),
                "cold_s": cold,
                "warm_s": warm,
                "peak_mem_mb": memory.peak_mb,
                "mem_base_mb": memory.base_mb,
                "mem_method": memory.method,
                "n_hparams_estimated": n_est,
                "finite": finite,
                "value": est.value,
                "method_extra": est.extra,
                "method_units": method_units,
                "units_covered": covered,
            },
        )
    )


def child_main(job: CellJob, conn) -> None:
    """The worker process's entry point: limits, then `measure`, every failure a message."""
    try:
        torch.set_num_threads(job.threads)
        if job.device == "cpu" and job.mem_limit_mb is not None:
            limit_address_space(job.mem_limit_mb)
        from hgbench.engine.plugins import load_plugins

        load_plugins()
        for module in job.plugins:  # the fork server's environment may predate them
            import_module(module)
        measure(job, conn.send)
    except BaseException as exc:  # noqa: BLE001 - the parent gets every failure as a message
        try:
            conn.send(("error", error_text(exc), is_out_of_memory(exc)))
        except Exception:  # noqa: BLE001 - the pipe itself failed (out of memory): exit
            pass
    finally:
        conn.close()
