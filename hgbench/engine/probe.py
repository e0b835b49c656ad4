"""Probe mode's exact references: the state a hypergradient is estimated at, and the truth there.

Validation-objective methods are compared with the exact implicit hypergradient at a tight inner
optimum of the full-batch training loss: a task's closed form where it has one (ridge), else a
dense solve for small models and CG run to convergence for larger ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hgbench.contracts.hparams import HParams
from hgbench.contracts.method import Objective, ProbeState, Reference
from hgbench.contracts.task import Problem
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.implicit import implicit_hypergradient
from hgbench.numerics.linalg import DENSE_LIMIT, cg, dense
from hgbench.numerics.optimum import tight_optimum


def validation_reference(problem: Problem, hparams: HParams | None = None) -> Reference:
    """The exact validation hypergradient at a tight optimum of the training loss at `hparams`
    (None: the task's initial hparams)."""
    hparams = problem.init_hparams() if hparams is None else hparams
    params = tight_optimum(problem, hparams)
    state = ProbeState(params, hparams)
    closed_form = problem.task.exact_hypergradient(problem, hparams)
    if closed_form is not None:
        return Reference("closed form at the exact optimum", state, closed_form)
    grad_norm = float(flatten(torch.func.grad(problem.full_train_loss)(params, hparams)).norm())
    solver = dense() if problem.n_params <= DENSE_LIMIT else cg(iterations=5000, tol=1e-10)
    result = implicit_hypergradient(
        problem.full_train_loss, lambda w, h: problem.val_loss(w), params, hparams, solver
    )
    kind = "dense" if problem.n_params <= DENSE_LIMIT else "CG"
    name = (
        f"{kind} IFT solve (residual {result.residual:.1e}) at an L-BFGS optimum "
        f"(‖∇L_T‖ = {grad_norm:.1e})"
    )
    return Reference(name, state, result.hypergradient)


def probe_reference(
    problem: Problem, objective: Objective, hparams: HParams | None = None
) -> Reference:
    """The exact reference for `objective` at the probe state of `hparams` (None: initial)."""
    if objective == Objective.VALIDATION:
        return validation_reference(problem, hparams)
    if objective == Objective.MARGLIK:
        from hgbench.numerics.laplace.marglik import (
            marglik_reference,  # the Laplace stack loads lazily
        )

        return marglik_reference(problem, hparams)
    raise NotImplementedError(f"no exact reference for objective {objective.value!r} yet")


def compare(estimate: dict[str, Tensor], reference: dict[str, Tensor]) -> tuple[float, float]:
    missing = set(reference) - set(estimate)
    if missing:
        raise ValueError(f"estimate lacks hypergradients for {sorted(missing)}")
    return cosine_and_rel_err(flatten({k: estimate[k] for k in reference}), flatten(reference))
