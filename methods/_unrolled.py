"""Pieces shared by the methods that estimate the hypergradient of an unrolled objective.

Their objective in probe mode is the one `unroll` differentiates: the validation loss after K
full-batch steps of SGD with momentum from the probe state (zero velocity). The exact reference
for it is reverse-mode differentiation through those same K steps (`unrolled_hypergradient`,
which the tests compare with `higher`), at the probe state the harness uses for validation
methods (a tight optimum of the training loss at the state's hparams).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import Budget, Checkpoint, ProbeState, Reference
from hgbench.contracts.task import Problem
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.optimum import tight_optimum
from hgbench.numerics.training import BatchStream
from hgbench.numerics.unroll import Batch, l2_decay, unrolled_hypergradient

# the probe state of the last (problem, hparams) asked for: every method of a probe cell and
# its reference ask for the same one, and an L-BFGS optimum of a network costs seconds
_STATE_CACHE: dict[str, Any] = {}


def probe_state(problem: Problem, hparams: HParams | None = None) -> ProbeState:
    """The harness's probe state for `hparams` (None: the task's initial ones): a tight optimum
    of the full training loss (hgbench.numerics.optimum.tight_optimum)."""
    hparams = problem.init_hparams() if hparams is None else hparams
    # everything the state is a function of (not the Problem object, whose id may be reused)
    key = (
        problem.task,
        problem.seed,
        str(problem.dtype),
        str(problem.device),
        tuple((k, v.detach().cpu().numpy().tobytes()) for k, v in hparams.items()),
    )
    if _STATE_CACHE.get("key") != key:
        _STATE_CACHE.update(key=key, state=ProbeState(tight_optimum(problem, hparams), hparams))
    return _STATE_CACHE["state"]


def full_batches(problem: Problem, steps: int) -> list[Batch]:
    d = problem.data
    return [(d.x_train, d.y_train)] * steps


def zeros_like(tree: Params) -> Params:
    return {k: torch.zeros_like(v) for k, v in tree.items()}


def unrolled_exact(problem: Problem, state: ProbeState, steps: int) -> tuple[dict, float]:
    """d L_V(w_K) / d hparams through K full-batch steps from the state, by reverse mode."""
    hg, val_loss, _, _ = unrolled_hypergradient(
        problem.data_loss,  # the weight decay applied in the step: no penalty graph
        lambda w, h: problem.val_loss(w),
        state.params,
        zeros_like(state.params),
        state.hparams,
        full_batches(problem, steps),
        problem.lr,
        problem.task.momentum,
        decay=l2_decay,
    )
    return hg, float(val_loss)


def unrolled_reference(
    problem: Problem, hparams: HParams | None, steps: int, what: str = ""
) -> Reference:
    """The exact hypergradient of the K-step unrolled validation loss at the probe state."""
    state = probe_state(problem, hparams)
    hg, _ = unrolled_exact(problem, state, steps)
    return Reference(f"reverse-mode unroll of the same {steps} full-batch steps{what}", state, hg)


def rel_err(estimate: dict, reference: dict) -> float:
    """Relative L2 error of a hypergradient dict against another (on the reference's keys)."""
    keys = list(reference)
    return cosine_and_rel_err(
        flatten({k: estimate[k] for k in keys}), flatten({k: reference[k] for k in keys})
    )[1]


def steps_left(budget: Budget, stream: BatchStream) -> int | None:
    """Steps before an epoch budget ends (None: a budget in seconds), so that a window of many
    steps is cut at the budget instead of running epochs past it on tasks with few steps per
    epoch."""
    if budget.epochs is None:
        return None
    return max(1, math.ceil((budget.epochs - stream.epoch) * stream.steps_per_epoch - 1e-9))


def next_window(stream: BatchStream, budget: Budget, size: int) -> list[Batch]:
    """The next window of `size` training minibatches, cut where an epoch budget ends."""
    left = steps_left(budget, stream)
    return [stream.next() for _ in range(min(size, left or size))]


class OnlineHyperSteps:
    """The outer loop the online unrolled methods share (unroll, truncated_bptt, forward_mode,
    pes): Adam on the hparams from each window's hypergradient, and a checkpoint once per epoch,
    after the window that crosses its end, whose objective is the mean validation loss of the
    windows since the last checkpoint."""

    def __init__(self, hparams: HParams, lr: float) -> None:
        self.hparams = hparams
        self.opt = torch.optim.Adam(list(hparams.values()), lr=lr)
        self.val_losses: list[torch.Tensor] = []
        self.next_report = 1.0

    def step(self, hypergradient: Mapping[str, torch.Tensor], val_loss: torch.Tensor) -> None:
        for k, v in self.hparams.items():
            v.grad = hypergradient[k]
        self.opt.step()
        self.val_losses.append(val_loss)

    def checkpoint(
        self, params: Params, stream: BatchStream, budget: Budget, extra: dict | None = None
    ) -> Checkpoint | None:
        """The epoch's checkpoint once the stream has crossed an epoch's end (or the budget's),
        else None."""
        if stream.epoch < self.next_report and not budget.finished(stream.epoch):
            return None
        objective = float(torch.stack(self.val_losses).mean())
        point = Checkpoint(
            params, self.hparams, stream.steps, stream.epoch, objective, dict(extra or {})
        )
        self.val_losses, self.next_report = [], float(int(stream.epoch)) + 1.0
        return point
