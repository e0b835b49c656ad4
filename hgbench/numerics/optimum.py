"""The state probe mode estimates hypergradients at: a tight minimiser of the training loss."""

from __future__ import annotations

import torch

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.task import Problem
from hgbench.numerics.functional import detach


def tight_optimum(problem: Problem, hparams: HParams, max_iter: int = 3000) -> Params:
    """Minimiser of the full-batch training loss: the task's closed form where it has one
    (`Task.optimum`), else L-BFGS from the seeded init to a gradient norm near rounding."""
    exact = problem.task.optimum(problem, hparams)
    if exact is not None:
        return exact
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
