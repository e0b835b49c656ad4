"""Implicit differentiation (Lorraine, Vicol & Duvenaud, AISTATS 2020), joint with training.

At an approximate inner optimum w of the training loss L_T,

    dL_V/dλ = ∂L_V/∂λ − (∂L_V/∂w) H⁻¹ ∂²L_T/∂w∂λᵀ

with the inverse-Hessian-vector product from a linear solver: a Neumann series (i terms, step α),
conjugate gradient, the identity (i = 0), or a dense exact solve. The four methods differ only in
the solver; the joint loop and the probe path are shared (hgbench.numerics.implicit does the
algebra).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch

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
from hgbench.contracts.schema import StrEnum
from hgbench.contracts.task import Problem
from hgbench.methods._hyperstep import HyperStepLosses
from hgbench.numerics.functional import detach
from hgbench.numerics.implicit import implicit_hypergradient
from hgbench.numerics.linalg import DENSE_LIMIT, Solver, cg, dense, neumann
from hgbench.numerics.training import SGDTrainer


class HyperOptimizer(StrEnum):
    """The optimiser of the hparams in the joint loop (the paper uses Adam or RMSprop)."""

    ADAM = "adam"
    RMSPROP = "rmsprop"


HYPER_OPTIMIZERS = {
    HyperOptimizer.ADAM: torch.optim.Adam,
    HyperOptimizer.RMSPROP: torch.optim.RMSprop,
}


@dataclass
class _Implicit(Method):
    """Joint loop of Lorraine et al.: inner SGD on L_T; after `warmup_steps`, every `period` inner
    steps one hyper-step from ONE training and ONE validation minibatch, applied by a
    hyper-optimiser (Adam or RMSprop) on the hparams. Probe mode solves with full batches.

    Run mode matches Algorithm 1 written in plain autograd (tests/test_reference_loops.py). On
    purpose it differs from the paper in: inner SGD with the task's momentum (paper: plain SGD);
    Adam/RMSprop on the hparams (paper: SGD); x′ from a training stream of its own; hyper-steps
    every k-th step counted over the whole run. See docs/reference-loops.md.
    """

    period: int = 10
    warmup_steps: int = 0
    hyper_lr: float = 0.03
    hyper_optimizer: HyperOptimizer = HyperOptimizer.ADAM
    val_batch_size: int = 200

    family = Family.IMPLICIT
    objective = Objective.VALIDATION
    report_residual: ClassVar[bool] = False  # in the joint loop: one extra matvec per estimate

    def __post_init__(self) -> None:
        if self.period < 1 or self.warmup_steps < 0 or self.val_batch_size < 1:
            raise ValueError("period and val_batch_size must be >= 1, warmup_steps >= 0")
        if self.hyper_lr <= 0:
            raise ValueError("hyper_lr must be positive")
        self.hyper_optimizer = HyperOptimizer(self.hyper_optimizer)

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        """The linear solver for one hyper-step; `lr` is the current inner learning rate."""
        raise NotImplementedError

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, self.period, self.warmup_steps)

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        hparams = {k: v.requires_grad_(True) for k, v in problem.init_hparams().items()}
        hyper_opt = HYPER_OPTIMIZERS[self.hyper_optimizer](list(hparams.values()), lr=self.hyper_lr)
        trainer = SGDTrainer(problem, problem.init_params())
        hyper_losses = HyperStepLosses(
            problem, self.val_batch_size, "ift-train-batches", "ift-noise"
        )
        stream = trainer.stream
        yield Checkpoint(trainer.params, hparams, step=0, epoch=0.0)
        residuals, val_losses = [], []
        while not budget.finished(stream.epoch):
            target = self.warmup_steps if stream.steps < self.warmup_steps else self.period
            trainer.steps(hparams, target - (stream.steps % target if target else 0), budget)
            at_end = stream.at_epoch_end or budget.finished(stream.epoch)
            if (
                stream.steps >= self.warmup_steps
                and (stream.steps - self.warmup_steps) % self.period == 0
            ):
                train_loss, val_loss = hyper_losses.next()
                result = implicit_hypergradient(
                    train_loss,
                    val_loss,
                    detach(trainer.params),
                    {k: v.detach() for k, v in hparams.items()},
                    self.solver(problem, report_residual=at_end, lr=trainer.lr_at(stream.steps)),
                )
                for k, v in hparams.items():
                    v.grad = result.hypergradient[k]
                hyper_opt.step()
                if at_end:
                    residuals.append(result.residual)
                with torch.no_grad():
                    val_losses.append(val_loss(trainer.params, None))
            if at_end or budget.finished(stream.epoch):  # time may run out in the hyper-step
                extra = {"solver_residual": residuals[-1]} if residuals else {}
                objective = float(torch.stack(val_losses).mean()) if val_losses else None
                yield Checkpoint(
                    trainer.params, hparams, stream.steps, stream.epoch, objective, extra
                )
                residuals, val_losses = [], []

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        result = implicit_hypergradient(
            problem.full_train_loss,
            lambda w, h: problem.val_loss(w),
            state.params,
            state.hparams,
            self.solver(problem, report_residual=False, lr=problem.lr),
        )
        return Estimate(result.hypergradient, extra={"solver_iterations": result.iterations})


@register_method("ift_neumann")
@dataclass
class IFTNeumann(_Implicit):
    """Implicit differentiation with a Neumann-series inverse Hessian (Lorraine et al. 2020)."""

    terms: int = 5
    alpha: float | None = None  # None: the inner learning rate, as in the paper

    # ridge at the default decay is ill-conditioned: α = 1/L needs hundreds of terms there
    probe_grid = ({"terms": 0}, {"terms": 1}, {"terms": 5}, {"terms": 20}, {"terms": 500})
    probe_quick = ({"terms": 0}, {"terms": 5}, {"terms": 20})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.terms < 0:
            raise ValueError("terms must be >= 0")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError("alpha must be positive")

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        return neumann(self.terms, self.alpha or lr, report_residual)


@register_method("ift_identity")
@dataclass
class IFTIdentity(_Implicit):
    """Implicit differentiation with H⁻¹ ≈ αI: the one-step approximation (Neumann, i = 0)."""

    alpha: float | None = None

    biased = True  # H⁻¹ ≈ αI converges to nothing: right direction at best

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        return neumann(0, self.alpha or lr, report_residual)


@register_method("ift_cg")
@dataclass
class IFTCG(_Implicit):
    """Implicit differentiation with conjugate gradient for the inverse-Hessian-vector product.

    `damping` λ > 0 solves (H + λI) v = ∂L_V/∂w (hgbench.numerics.linalg.cg): the joint loop's H is
    taken away from the inner optimum and can be indefinite or nearly singular, where plain CG's
    iterate grows without bound. λ = 0 (the default) is plain CG, the paper's solver.
    """

    iterations: int = 20
    tol: float = 1e-10
    damping: float = 0.0

    exact_settings = {"iterations": 5000, "tol": 1e-13}

    probe_grid = ({"iterations": 5}, {"iterations": 20})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if not self.damping >= 0:
            raise ValueError("damping must be >= 0")

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        # CG reports its recursive residual for free when the true one is not asked for
        return cg(self.iterations, self.tol, report_residual, self.damping)


@register_method("ift_exact")
@dataclass
class IFTExact(_Implicit):
    """Implicit differentiation with a dense exact solve of the Hessian system (tiny models)."""

    max_params: int = DENSE_LIMIT

    exact_settings = {}

    def skip_reason(self, problem: Problem) -> str | None:
        if problem.n_params > self.max_params:
            return (
                f"a dense Hessian of {problem.n_params} parameters exceeds max_params="
                f"{self.max_params}"
            )
        return None

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        return dense()
