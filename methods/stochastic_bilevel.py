"""Stochastic bilevel methods with a warm-started linear-system variable: SOBA (Dagréou, Ablin,
Vaiter & Moreau, NeurIPS 2022) and AmIGO (Arbel & Mairal, ICLR 2022).

Both keep v ≈ H⁻¹ ∇_w L_V across hyper-steps and improve it by a few gradient steps on the
quadratic ½ vᵀHv − vᵀ∇_w L_V (step ρ) from where the last hyper-step left it, instead of
solving from zero each time; the hypergradient is then ∂L_V/∂λ − ∂²L_T/∂λ∂w v. SOBA takes one
v-step per inner step (a single loop: w, v and λ all move every step); AmIGO takes several
inner steps, then several v-steps, then a hyper-step.

Gradient descent on the quadratic from x₀ is the Neumann series on the residual:
x₀ + ρ Σ_{j<m} (I − ρH)^j (b − H x₀), so the v-steps are `hgbench.numerics.linalg.neumann` (m − 1
terms) applied to b − H x₀: one copy of the iteration in hgbench.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor

from hgbench.contracts.method import Budget, Checkpoint, Estimate, ProbeState, register_method
from hgbench.contracts.task import Problem
from hgbench.methods.ift import _Implicit
from hgbench.numerics.linalg import MatVec, Solution, Solver, neumann


@dataclass
class _WarmStarted(_Implicit):
    """The `ift_*` joint loop (inner SGD; every `period` steps a hyper-step from one training
    and one validation minibatch; Adam on the hparams) with a warm-started linear-system
    variable: each hyper-step takes `v_steps` gradient steps of size ρ (`v_lr`; None: the inner
    learning rate) from the previous v. Probe mode starts v from zero and takes `v_steps`
    full-batch steps; its reference is the harness's exact IFT hypergradient at a tight optimum
    (the quantity v → H⁻¹∇L_V makes these methods converge to)."""

    v_steps: int = 1
    v_lr: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.v_steps < 1:
            raise ValueError("v_steps must be >= 1")
        if self.v_lr is not None and self.v_lr <= 0:
            raise ValueError("v_lr must be positive")
        self._v: Tensor | None = None  # the warm start (state of a run, not a setting)

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        steps = neumann(self.v_steps - 1, self.v_lr or lr, report_residual=False)

        def solve(matvec: MatVec, b: Tensor) -> Solution:
            if self._v is None or self._v.shape != b.shape:
                x = steps(matvec, b).x
            else:
                x = self._v + steps(matvec, b - matvec(self._v)).x
            self._v = x.detach()
            res = float((matvec(x) - b).norm() / b.norm()) if report_residual else float("nan")
            return Solution(x, res, self.v_steps)

        return solve

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        self._v = None
        yield from super().run(problem, budget)

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        self._v = None  # every probe estimate starts cold: repeats must not improve on each other
        est = super().hypergradient(problem, state)
        self._v = None
        return est


@register_method("soba")
@dataclass
class SOBA(_WarmStarted):
    """SOBA (Dagréou et al. 2022): single-loop stochastic bilevel optimisation, warm-started v.

    Every inner step (`period` = 1) one v-step and one hyper-step, each from one training and
    one validation minibatch: v ← v − ρ(Hv − ∇_w L_V), λ ← λ − γ(∂_λ L_V − ∂²L_T/∂λ∂w v)
    (the paper's SGD on λ is Adam here, as in every hgbench joint loop). Probe mode: `v_steps`
    full-batch v-steps from zero, against the exact IFT hypergradient.
    """

    period: int = 1
    hyper_lr: float = 0.01

    probe_grid = ({"v_steps": 1}, {"v_steps": 10}, {"v_steps": 100}, {"v_steps": 1000})
    probe_quick = ({"v_steps": 10}, {"v_steps": 300})


@register_method("amigo")
@dataclass
class AmIGO(_WarmStarted):
    """AmIGO (Arbel & Mairal 2022): amortized implicit gradient optimisation, warm-started v.

    `period` inner SGD steps, then `v_steps` warm-started gradient steps on the linear system
    (on that hyper-step's training minibatch), then one hyper-step (Adam). Probe mode:
    `v_steps` full-batch v-steps from zero, against the exact IFT hypergradient.
    """

    period: int = 10
    v_steps: int = 10

    probe_grid = ({"v_steps": 1}, {"v_steps": 10}, {"v_steps": 100}, {"v_steps": 1000})
    probe_quick = ({"v_steps": 10}, {"v_steps": 300})
