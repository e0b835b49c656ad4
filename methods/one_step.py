"""One-step hypergradient approximations, as Betty offers them: DARTS first- and second-order
(Liu, Simonyan & Yang, ICLR 2019) and SAMA (Choe et al., NeurIPS 2023).

Both replace the inverse Hessian of the implicit hypergradient by a single step: DARTS looks one
SGD step ahead, w' = w − ξ∇_w L_T(w, λ), and differentiates L_V(w') through it,

    dL_V/dλ ≈ ∂_λ L_V(w') − ξ ∂²L_T(w, λ)/∂λ∂w · ∇_w L_V(w'),

while SAMA (as Betty reinterprets DARTS from the implicit-differentiation side) stays at w and
replaces H⁻¹ by the inner optimiser's update Jacobian ∂u/∂g, which for hgbench's SGD-with-
momentum inner loop is lr·I: dL_V/dλ ≈ ∂_λ L_V(w) − lr ∂²L_T/∂λ∂w · ∇_w L_V(w). The mixed
product is a central finite difference of two first-order gradients (no second-order autodiff:
the point of both papers), ε = r / ‖v‖, or exact by one mixed VJP (`finite_difference=False`).

Family: implicit. At the inner optimum the lookahead step vanishes (∇_w L_T = 0 ⇒ w' = w), so
both estimate the implicit (IFT) validation hypergradient with H⁻¹ ≈ ξI, the Neumann series'
zeroth term; probe mode compares them with the harness's exact IFT reference. Betty files DARTS
among its implicit-differentiation methods for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import (
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    Periodic,
    ProbeState,
    register_method,
)
from hgbench.contracts.task import Problem
from hgbench.methods._hyperstep import HyperStepLosses, Loss
from hgbench.numerics.functional import detach, flatten, mixed_vjp
from hgbench.numerics.training import SGDTrainer


def fd_mixed(train_loss: Loss, params: Params, hparams: HParams, v: Params, r: float) -> HParams:
    """≈ ∂²L_T/∂λ∂w · v by a central difference of ∇_λ L_T at w ± εv, ε = r / ‖v‖ (DARTS)."""
    eps = r / float(flatten(v).norm().clamp_min(torch.finfo(flatten(v).dtype).tiny))
    grad_h = grad(train_loss, argnums=1)
    plus = grad_h({k: params[k] + eps * v[k] for k in params}, hparams)
    minus = grad_h({k: params[k] - eps * v[k] for k in params}, hparams)
    return {k: (plus[k] - minus[k]) / (2 * eps) for k in hparams}


def _mixed(train_loss, params, hparams, v, finite_difference: bool, r: float) -> HParams:
    if finite_difference:
        return fd_mixed(train_loss, params, hparams, v, r)
    return mixed_vjp(train_loss, params, hparams, v)


def darts_hypergradient(
    train_loss: Loss,
    val_loss: Loss,
    params: Params,
    hparams: HParams,
    xi: float,
    order: int = 2,
    finite_difference: bool = True,
    r: float = 0.01,
) -> dict[str, Tensor]:
    """DARTS: order 1 keeps ∂_λ L_V(w) only; order 2 differentiates through one step of size ξ."""
    if order == 1:
        return grad(val_loss, argnums=1)(params, hparams)
    g = grad(train_loss)(params, hparams)
    ahead = {k: params[k] - xi * g[k] for k in params}
    g_w, g_h = grad(val_loss, argnums=(0, 1))(ahead, hparams)
    mixed = _mixed(train_loss, params, hparams, g_w, finite_difference, r)
    return {k: g_h[k] - xi * mixed[k] for k in hparams}


def sama_hypergradient(
    train_loss: Loss,
    val_loss: Loss,
    params: Params,
    hparams: HParams,
    lr: float,
    finite_difference: bool = True,
    r: float = 0.01,
) -> dict[str, Tensor]:
    """SAMA with the SGD adaptation ∂u/∂g = lr·I, at the current weights."""
    g_w, g_h = grad(val_loss, argnums=(0, 1))(params, hparams)
    u = {k: lr * v for k, v in g_w.items()}
    mixed = _mixed(train_loss, params, hparams, u, finite_difference, r)
    return {k: g_h[k] - mixed[k] for k in hparams}


@dataclass
class _OneStep(Method):
    """Joint loop: inner SGD (the shared trainer); every `period` steps one hyper-step from one
    training and one validation minibatch, applied by Adam. Probe mode: full batches."""

    period: int = 10
    hyper_lr: float = 0.03
    val_batch_size: int = 200
    finite_difference: bool = True
    fd_r: float = 0.01  # ε = fd_r / ‖v‖, DARTS's and Betty's default

    family = Family.IMPLICIT
    objective = Objective.VALIDATION
    biased = True  # one inner step: the implicit term of a converged solve is never reached

    def __post_init__(self) -> None:
        if self.period < 1 or self.val_batch_size < 1:
            raise ValueError("period and val_batch_size must be >= 1")
        if self.hyper_lr <= 0 or self.fd_r <= 0:
            raise ValueError("hyper_lr and fd_r must be positive")

    def estimate(
        self, train_loss: Loss, val_loss: Loss, params: Params, hparams: HParams, lr: float
    ) -> dict[str, Tensor]:
        raise NotImplementedError

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, self.period)

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        hparams = {k: v.requires_grad_(True) for k, v in problem.init_hparams().items()}
        hyper_opt = torch.optim.Adam(list(hparams.values()), lr=self.hyper_lr)
        trainer = SGDTrainer(problem, problem.init_params())
        stream = trainer.stream
        hyper_losses = HyperStepLosses(
            problem, self.val_batch_size, "one-step-train-batches", "one-step"
        )
        yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)
        val_losses = []
        while not budget.finished(stream.epoch):
            trainer.steps(hparams, self.period - stream.steps % self.period, budget)
            if stream.steps % self.period == 0:
                train_loss, val_loss = hyper_losses.next()
                params = detach(trainer.params)
                hg = self.estimate(
                    train_loss, val_loss, params, detach(hparams), trainer.lr_at(stream.steps)
                )
                for k, v in hparams.items():
                    v.grad = hg[k]
                hyper_opt.step()
                with torch.no_grad():
                    val_losses.append(val_loss(params, None))
            if stream.at_epoch_end or budget.finished(stream.epoch):
                objective = float(torch.stack(val_losses).mean()) if val_losses else None
                yield Checkpoint(trainer.params, hparams, stream.steps, stream.epoch, objective)
                val_losses = []

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        hg = self.estimate(
            problem.full_train_loss,
            lambda w, h: problem.val_loss(w),
            state.params,
            state.hparams,
            problem.lr,
        )
        return Estimate(hg)


@register_method("darts")
@dataclass
class DARTS(_OneStep):
    """DARTS one-step lookahead hypergradients, first or second order (Liu et al. 2019).

    `order` 2: differentiate L_V through one SGD step of size ξ (`xi`; None: the inner learning
    rate), the mixed product by DARTS's finite difference (or exact, `finite_difference=False`);
    `order` 1: ∂_λ L_V only, which is zero for hparams that enter only the training loss (every
    weight decay): the first-order variant cannot tune them, and its probe row shows it.
    """

    order: int = 2
    xi: float | None = None

    probe_grid = ({"order": 1}, {"order": 2}, {"order": 2, "finite_difference": False})
    probe_quick = ({"order": 2},)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.order not in (1, 2):
            raise ValueError("order must be 1 or 2")
        if self.xi is not None and self.xi <= 0:
            raise ValueError("xi must be positive")

    def estimate(self, train_loss, val_loss, params, hparams, lr):
        return darts_hypergradient(
            train_loss,
            val_loss,
            params,
            hparams,
            self.xi or lr,
            self.order,
            self.finite_difference,
            self.fd_r,
        )


@register_method("sama")
@dataclass
class SAMA(_OneStep):
    """SAMA (Choe et al. 2023): identity-Hessian implicit differentiation with algorithmic
    adaptation (lr·I for SGD) and a finite-difference mixed product: first-order gradients only."""

    probe_grid = ({}, {"finite_difference": False})
    probe_quick = ({},)

    def estimate(self, train_loss, val_loss, params, hparams, lr):
        return sama_hypergradient(
            train_loss, val_loss, params, hparams, lr, self.finite_difference, self.fd_r
        )
