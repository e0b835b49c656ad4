"""Keep a CUDA graph only where it gives the eager numbers: the check behind `Problem.cuda_graphs`.

For a problem on a GPU, two `fixed` trainers start from the same params, batches and augmentation
draws: one eager, one with its full-batch step captured (hgbench.numerics.graphs). After the same
steps (past an epoch's end where an epoch is short, so the eager tail batch and the switch back
to the graph are covered) their params must be equal, bit for bit; only then do the `fixed` method
and the calibration step of that problem replay the graph. Any error while capturing (an op that
cannot be captured, a generator this PyTorch cannot register) also keeps the eager step. The
runner checks each problem once, untimed, unless `--no-cuda-graphs`; `timed=True` (the GPU session's
report, benchmarks/gpu_session.sh) also times both steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from hgbench.contracts.task import Problem
from hgbench.engine.timing import synchronize
from hgbench.numerics.training import SGDTrainer

MAX_CHECK_STEPS = 40


@dataclass(frozen=True)
class GraphCheck:
    kept: bool  # the captured step gave the eager params exactly
    steps: int
    max_abs_diff: float | None  # between the two trainers' params (None: no capture)
    reason: str  # why not kept ("" where kept)
    eager_step_s: float | None = None  # timed=True: seconds per step, each way
    graph_step_s: float | None = None


def _run(trainer: SGDTrainer, hparams, steps: int) -> None:
    done = 0
    while done < steps:
        done += trainer.steps(hparams, steps - done)


def _per_step(trainer: SGDTrainer, hparams, steps: int) -> float:
    synchronize(trainer.problem.device)
    start = time.perf_counter()
    _run(trainer, hparams, steps)
    synchronize(trainer.problem.device)
    return (time.perf_counter() - start) / steps


def check_capture(problem: Problem, timed: bool = False, timed_steps: int = 50) -> GraphCheck:
    spe = problem.steps_per_epoch
    steps = spe + 2 if spe + 2 <= MAX_CHECK_STEPS else MAX_CHECK_STEPS
    if problem.device.type != "cuda":
        return GraphCheck(False, 0, None, "not a CUDA device")
    if problem.compile:
        return GraphCheck(False, 0, None, "--compile: torch.compile has its own graphs")
    eager, graphed = (SGDTrainer(problem, problem.init_params()) for _ in range(2))
    hparams = problem.init_hparams()
    try:
        graphed.capture(hparams, force=True)
        _run(graphed, hparams, steps)
    except Exception as exc:  # noqa: BLE001 - any capture failure keeps the eager step
        return GraphCheck(False, steps, None, f"capture failed: {type(exc).__name__}: {exc}"[:300])
    _run(eager, hparams, steps)
    pairs = list(zip(eager.params.values(), graphed.params.values(), strict=True))
    diff = max(float((a.detach() - b.detach()).abs().max()) for a, b in pairs)
    same = all(torch.equal(a, b) for a, b in pairs)
    reason = "" if same else f"params differ after {steps} steps (max |diff| {diff:.3g})"
    if not timed:
        return GraphCheck(same, steps, diff, reason)
    return GraphCheck(
        same, steps, diff, reason,
        eager_step_s=_per_step(eager, hparams, timed_steps),
        graph_step_s=_per_step(graphed, hparams, timed_steps),
    )  # fmt: skip
