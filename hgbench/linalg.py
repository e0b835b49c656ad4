"""Linear solvers as factories: `make_x(settings)` returns `solve(matvec, b) -> Solution`.

They approximate x = A⁻¹ b for a symmetric positive-definite A that is only available through
`matvec` (a Hessian-vector product). Each reports its final residual ‖A x − b‖ / ‖b‖.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

MatVec = Callable[[Tensor], Tensor]

# Parameters: above this a dense Hessian (DENSE_LIMIT² entries, as many HVPs) costs too much for a
# benchmark cell on a CPU; exact references switch to CG run to convergence.
DENSE_LIMIT = 3000


@dataclass(frozen=True)
class Solution:
    x: Tensor
    residual: float  # ‖A x − b‖ / ‖b‖
    iterations: int


class Solver(Protocol):
    def __call__(self, matvec: MatVec, b: Tensor) -> Solution: ...


def _relative_residual(matvec: MatVec, x: Tensor, b: Tensor) -> float:
    return float((matvec(x) - b).norm() / b.norm().clamp_min(torch.finfo(b.dtype).tiny))


def neumann(terms: int, alpha: float, report_residual: bool = True) -> Solver:
    """x ≈ α Σ_{j=0..terms} (I − αA)^j b (Lorraine et al. 2020); converges when ‖I − αA‖ < 1.

    `terms` = 0 gives x = α b, the one-step (identity) approximation. Costs `terms` matvecs, plus
    one to report the residual (NaN when `report_residual` is off).
    """

    def solve(matvec: MatVec, b: Tensor) -> Solution:
        p = b.clone()  # (I − αA)^j b
        acc = b.clone()
        for _ in range(terms):
            p = p - alpha * matvec(p)
            acc = acc + p
        x = alpha * acc
        res = _relative_residual(matvec, x, b) if report_residual else float("nan")
        return Solution(x, res, terms)

    return solve


def cg(iterations: int, tol: float = 0.0, report_residual: bool = True) -> Solver:
    """Conjugate gradient from x = 0: at most `iterations` matvecs, or until residual < tol.

    With `report_residual` the true residual is computed with one more matvec (the recursive one
    drifts in finite precision); without, the recursive residual is reported for free.
    """

    def solve(matvec: MatVec, b: Tensor) -> Solution:
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rr = r @ r
        b_norm = b.norm().clamp_min(torch.finfo(b.dtype).tiny)
        k = 0
        while k < iterations and rr.sqrt() > tol * b_norm:
            ap = matvec(p)
            alpha = rr / (p @ ap)
            x = x + alpha * p
            r = r - alpha * ap
            rr_new = r @ r
            p = r + (rr_new / rr) * p
            rr = rr_new
            k += 1
        res = _relative_residual(matvec, x, b) if report_residual else float(rr.sqrt() / b_norm)
        return Solution(x, res, k)

    return solve


def dense_matrix(matvec: MatVec, n: int, like: Tensor) -> Tensor:
    """Materialise A column by column (vmap over the identity): for small problems only."""
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    return torch.func.vmap(matvec)(eye).T


def dense() -> Solver:
    """Exact solve: build A with n matvecs and factorise it (Cholesky, LU if A is indefinite)."""

    def solve(matvec: MatVec, b: Tensor) -> Solution:
        a = dense_matrix(matvec, b.numel(), b)
        a = 0.5 * (a + a.T)  # symmetric up to rounding; symmetrise so Cholesky sees it exactly
        chol, info = torch.linalg.cholesky_ex(a)
        x = torch.cholesky_solve(b[:, None], chol)[:, 0] if info == 0 else torch.linalg.solve(a, b)
        return Solution(x, float((a @ x - b).norm() / b.norm()), b.numel())

    return solve
