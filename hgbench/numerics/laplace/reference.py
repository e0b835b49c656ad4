"""Probe mode's exact reference for marginal-likelihood methods: the exact full-GGN Laplace log
marglik / N and its hypergradient at an L-BFGS MAP."""

from __future__ import annotations

import torch

from hgbench.contracts.hparams import HParams
from hgbench.contracts.method import ProbeState, Reference
from hgbench.contracts.task import Problem
from hgbench.numerics.functional import flatten
from hgbench.numerics.laplace.fitting import augmented_inputs, laplace_params
from hgbench.numerics.laplace.ggn import Structure
from hgbench.numerics.laplace.values import exact_structure, hypergradient, log_marglik
from hgbench.numerics.optimum import tight_optimum

EXACT_LIMIT = 20_000  # min(P, N·C) above this: no exact reference on a CPU


def marglik_reference(problem: Problem, hparams: HParams | None = None) -> Reference:
    """The exact full-GGN Laplace log marglik / N and its hypergradient at an L-BFGS MAP.

    State: the minimiser of the full-batch training loss at the initial hparams (the MAP of the
    joint with δ = N exp(log_wd), N = n_train); value: log q / N (higher is better);
    hypergradient: d(−log q / N)/d hparams at fixed θ, for log_wd.* and aug.* alike.
    """
    hparams = problem.init_hparams() if hparams is None else hparams
    params = tight_optimum(problem, hparams)
    d = problem.data
    n = d.y_train.shape[0]
    wrt = laplace_params(params, hparams)
    p = sum(params[k].numel() for k in wrt)
    rows = n * problem.task.n_classes
    if min(p, rows) > EXACT_LIMIT:
        raise NotImplementedError(
            f"exact Laplace marglik needs a {min(p, rows)}² matrix: too large"
        )
    grad_norm = float(flatten(torch.func.grad(problem.full_train_loss)(params, hparams)).norm())
    live = {k: v.clone().requires_grad_(True) for k, v in hparams.items()}
    inputs = augmented_inputs(problem, live, d.x_train)
    structure = exact_structure(p, rows)
    value = log_marglik(problem, params, live, inputs, d.y_train, structure) / n
    hg = {k: g.detach() for k, g in hypergradient(value, live).items()}
    form = "kernel (NC × NC)" if structure == Structure.KERNEL else "parametric (P × P)"
    name = (
        f"exact full-GGN Laplace, {form} form, N={n}, P={p}, at an L-BFGS MAP "
        f"(‖∇L_T‖ = {grad_norm:.1e})"
    )
    return Reference(name, ProbeState(params, hparams), hg, value=float(value.detach()))
