"""Probe mode's exact references: the state a hypergradient is estimated at, and the truth there.

Validation-objective methods are compared with the exact implicit hypergradient at a tight inner
optimum of the full-batch training loss: a task's closed form where it has one (ridge), else a
dense solve for small models and CG run to convergence for larger ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hgbench.functional import cosine_and_rel_err, detach, flatten
from hgbench.hparams import HParams, Params
from hgbench.implicit import implicit_hypergradient
from hgbench.linalg import cg, dense
from hgbench.method import Objective, ProbeState, Reference
from hgbench.task import Problem

DENSE_LIMIT = 3000  # parameters: a dense Hessian above this costs too much on a CPU


def tight_optimum(problem: Problem, hparams: HParams, max_iter: int = 3000) -> Params:
    """Minimiser of the full-batch training loss: L-BFGS from the seeded init, or the task's."""
    custom = getattr(problem.task, "optimum", None)
    if custom is not None:
        return custom(problem, hparams)
    params = problem.init_params(requires_grad=True)
    opt = torch.optim.LBFGS(
        list(params.values()),
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = problem.full_train_loss(params, hparams)
        loss.backward()
        return loss

    opt.step(closure)
    return detach(params)


def validation_reference(problem: Problem) -> Reference:
    hparams = problem.init_hparams()
    params = tight_optimum(problem, hparams)
    state = ProbeState(params, hparams)
    closed_form = getattr(problem.task, "exact_hypergradient", None)
    if closed_form is not None:
        return Reference("closed form at the exact optimum", state, closed_form(problem, hparams))
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


def probe_reference(problem: Problem, objective: Objective) -> Reference:
    if objective == Objective.VALIDATION:
        return validation_reference(problem)
    if objective == Objective.MARGLIK:
        from hgbench.laplace.marglik import marglik_reference  # the Laplace stack loads lazily

        return marglik_reference(problem)
    raise NotImplementedError(f"no exact reference for objective {objective.value!r} yet")


def compare(estimate: dict[str, Tensor], reference: dict[str, Tensor]) -> tuple[float, float]:
    missing = set(reference) - set(estimate)
    if missing:
        raise ValueError(f"estimate lacks hypergradients for {sorted(missing)}")
    return cosine_and_rel_err(flatten({k: estimate[k] for k in reference}), flatten(reference))
