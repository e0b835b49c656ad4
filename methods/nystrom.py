"""Implicit differentiation with a Nyström inverse Hessian (Hataya & Yamada, AISTATS 2023)."""

from __future__ import annotations

from dataclasses import dataclass

from hgbench.contracts.method import Estimate, ProbeState, register_method
from hgbench.contracts.task import Problem
from hgbench.methods.ift import _Implicit
from hgbench.numerics.linalg import DENSE_LIMIT, Solver, nystrom


@register_method("ift_nystrom")
@dataclass
class IFTNystrom(_Implicit):
    """Implicit differentiation with a rank-k Nyström approximation of the Hessian inverse.

    Hataya & Yamada, "Nyström method for accurate and scalable implicit differentiation",
    AISTATS 2023: H ≈ H[:, S] H[S, S]⁺ H[S, :] from k Hessian columns (k HVPs, batched in
    chunks), inverted with damping ρ by the Woodbury identity (`hgbench.numerics.linalg.nystrom`).
    The joint loop and probe path are `ift_*`'s; probe mode compares with the exact IFT
    hypergradient at a tight optimum (the harness's reference), and its grid sweeps the rank:
    `rank=None, rho=0` takes every column and is exact. The columns are drawn from `seed`.
    """

    rank: int | None = 20
    rho: float = 0.01
    seed: int = 0

    probe_grid = (
        {"rank": 5},
        {"rank": 20},
        {"rank": 100},
        {"rank": 400},
        {"rank": None, "rho": 0.0},
    )
    probe_quick = ({"rank": 20}, {"rank": None, "rho": 0.0})
    exact_settings = {"rank": None, "rho": 0.0}  # every column: Â = H

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank is not None and self.rank < 1:
            raise ValueError("rank must be >= 1 (or None: every column)")
        if self.rho < 0:
            raise ValueError("rho must be >= 0")

    def skip_reason(self, problem: Problem) -> str | None:
        if self.rank is None and problem.n_params > DENSE_LIMIT:
            return (
                f"rank=None builds all {problem.n_params} Hessian columns (> DENSE_LIMIT="
                f"{DENSE_LIMIT}, as ift_exact)"
            )
        return None

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        return nystrom(self.rank, self.rho, self.seed, report_residual)

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        est = super().hypergradient(problem, state)
        est.extra["rank"] = min(self.rank or problem.n_params, problem.n_params)
        return est
