"""The unit of cost that travels across machines: one training step of the `fixed` method.

A cell's timed seconds divided by the seconds of one plain SGD step of the same task on the same
device (minibatch forward, backward, update: what `fixed` repeats) is its cost in training-step
equivalents (TSE). The step is timed (outside every method's clock) once per problem, and at the
start and the end of every cell: when those drift from the problem's figure, the machine's speed
changed under the cell (other processes, thermal limits) and its times are flagged as noisy.

On a GPU the step is the one `fixed` runs there: a replayed CUDA graph where the problem's capture
check kept one (hgbench.engine.graphcheck; rows say `cuda_graph: true`), else the eager step, and
the same for every method's cells of that problem, so TSE is one unit within a problem. On a CPU it
is always the eager step.
"""

from __future__ import annotations

import math
import statistics
import time
import weakref

import torch

from hgbench.contracts.hparams import HParams
from hgbench.contracts.task import Problem
from hgbench.engine.timing import synchronize
from hgbench.numerics.training import SGDTrainer

NOISE_THRESHOLD = 0.25  # a cell whose step time moved by more than this fraction is noisy


# On a GPU a small model's step (a few ms) is bound by kernel launches, whose jitter and the
# first problem's cold start (allocator, cuDNN autotuning) move a 10 ms block by 30-50%: measured
# on an H200, where 8 of 20 CIFAR cells were flagged noisy with nothing else running. Longer
# warm-up and blocks there cost ~0.3 s per cell and time what the cell's own steps see.
BLOCK_SECONDS = {"cpu": 0.01, "cuda": 0.05}
WARMUP_SECONDS = {"cpu": 0.0, "cuda": 0.2}


# one captured trainer per problem: a capture costs a few steps and a memory pool, and the step
# is timed three times a cell (a captured trainer goes on training: its step's time does not care)
_CAPTURED: weakref.WeakKeyDictionary[Problem, tuple[SGDTrainer, HParams]] = (
    weakref.WeakKeyDictionary()
)


def _trainer(problem: Problem) -> tuple[SGDTrainer, HParams]:
    """The step `fixed` runs on this problem: a CUDA graph where the capture gave eager numbers
    (Problem.cuda_graphs), else a fresh eager trainer as before."""
    if problem in _CAPTURED:
        return _CAPTURED[problem]
    trainer = SGDTrainer(problem, problem.init_params())
    hparams = problem.init_hparams()
    if trainer.capture(hparams):
        _CAPTURED[problem] = (trainer, hparams)
    return trainer, hparams


def step_time(problem: Problem, blocks: int = 3, block_seconds: float | None = None) -> float:
    """Median seconds per `fixed` training step over `blocks` blocks of consecutive steps (after
    a warm-up of at least two steps, on a GPU at least `WARMUP_SECONDS`), each block at least
    `block_seconds` long (default per device type, `BLOCK_SECONDS`).

    Blocks rather than single steps: on a shared machine a step of a millisecond fits in one
    scheduler slice and would time as if the machine were idle, while a method's run of many
    steps is preempted like any other work; blocks of ~10 ms are preempted alike.
    """
    kind = torch.device(problem.device).type
    if block_seconds is None:
        block_seconds = BLOCK_SECONDS.get(kind, BLOCK_SECONDS["cuda"])
    warmup = WARMUP_SECONDS.get(kind, WARMUP_SECONDS["cuda"])
    trainer, hparams = _trainer(problem)
    trainer.steps(hparams, 2)
    synchronize(problem.device)
    start = time.perf_counter()
    while time.perf_counter() - start < warmup:
        trainer.steps(hparams, 1)
        synchronize(problem.device)
    start = time.perf_counter()
    trainer.steps(hparams, 1)
    synchronize(problem.device)
    single = max(time.perf_counter() - start, 1e-7)
    per_block = max(1, min(1000, math.ceil(block_seconds / single)))
    times: list[float] = []
    for _ in range(blocks):
        synchronize(problem.device)
        start = time.perf_counter()
        done = 0
        while done < per_block:
            done += trainer.steps(hparams, per_block - done)
        synchronize(problem.device)
        times.append((time.perf_counter() - start) / done)
    return statistics.median(times)


def drift(reference: float, *measured: float) -> float:
    """The largest relative deviation of the measured step times from the reference one."""
    return max(abs(m / reference - 1.0) for m in measured)
