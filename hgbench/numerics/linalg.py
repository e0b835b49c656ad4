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


def cg(
    iterations: int,
    tol: float = 0.0,
    report_residual: bool = True,
    damping: float = 0.0,
) -> Solver:
    """Conjugate gradient from x = 0: at most `iterations` matvecs, or until residual < tol.

    With tol = 0 (a fixed number of steps, as the IFT methods and peers.py's contest run it) no
    value is read back to the host inside the loop, so on a GPU the steps queue without a
    synchronisation each; tol > 0 reads the residual's norm once per step to stop early.

    With `report_residual` the true residual is computed with one more matvec (the recursive one
    drifts in finite precision); without, the recursive residual is reported for free.

    CG assumes A ≻ 0. A training-loss Hessian away from the inner optimum (in a joint loop) can
    be indefinite or nearly singular; there a step rᵀr / pᵀAp divides by a curvature near or
    below zero and the iterate grows without bound. `damping` λ > 0 solves (A + λI) x = b
    instead (Levenberg-Marquardt / Tikhonov damping; iMAML's proximal term): eigenvalues of A
    above −λ become positive, and along directions of curvature ≥ 0 the gain is at most 1/λ. The
    residual reported is then the damped system's. The default λ = 0 is plain CG.
    """
    if damping < 0 or damping != damping:
        raise ValueError("damping must be >= 0")

    def solve(matvec: MatVec, b: Tensor) -> Solution:
        if damping:
            matvec = _damped(matvec, damping)
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rr = r @ r
        b_norm = b.norm().clamp_min(torch.finfo(b.dtype).tiny)
        if tol > 0:  # stop early: reads ‖r‖ back each iteration (a host-device sync on a GPU)
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
        else:  # a fixed number of steps: nothing read back inside the loop (no sync per step)
            # Where the residual is exactly 0 (b = 0, or an exact solve in fewer steps) the
            # early-stop loop above stops; here the steps go on with α = β = 0, which leaves x
            # as it is, where rr / pᵀAp would be 0/0. With rr > 0 the where() picks the same
            # values as above: the iterates are bit-identical. `active` counts the real steps.
            active = torch.zeros((), dtype=torch.long, device=b.device)
            for _ in range(iterations):
                ap = matvec(p)
                live = rr > 0
                alpha = torch.where(live, rr / (p @ ap), 0.0)
                x = x + alpha * p
                r = r - alpha * ap
                rr_new = r @ r
                p = r + torch.where(live, rr_new / rr, 0.0) * p
                rr = rr_new
                active = active + live
            k = int(active)  # one read, after the loop
        res = _relative_residual(matvec, x, b) if report_residual else float(rr.sqrt() / b_norm)
        return Solution(x, res, k)

    return solve


def _damped(matvec: MatVec, damping: float) -> MatVec:
    """v ↦ (A + λI) v."""

    def damped(v: Tensor) -> Tensor:
        return matvec(v) + damping * v

    return damped


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


def nystrom(
    rank: int | None,
    rho: float = 0.0,
    seed: int = 0,
    report_residual: bool = True,
    chunk: int = 64,
) -> Solver:
    """Nyström inverse (Hataya & Yamada 2023): x = (Â + ρI)⁻¹ b with Â = C W⁺ Cᵀ the Nyström
    approximation of A from `rank` of its columns, C = A[:, S], W = A[S, S], S drawn uniformly
    without replacement (seeded: the same columns for the same `seed` and size).

    Costs `rank` matvecs (batched, `chunk` at a time), plus one to report the residual. With C = QR
    (thin QR), Â = Q M Qᵀ, M = R W⁻¹ Rᵀ, so

        x = Q (M + ρI)⁻¹ Qᵀ b + (b − Q Qᵀ b) / ρ      (ρ > 0: Woodbury, as in the paper)
        x = Q R⁻ᵀ W R⁻¹ Qᵀ b                           (ρ = 0: Â⁺ b, no W⁻¹ formed)

    `rank` None (or ≥ n) takes every column: then Â = A, and with ρ = 0 the solve is exact.
    """
    if rank is not None and rank < 1:
        raise ValueError("rank must be at least 1 (or None: every column)")
    if rho < 0:
        raise ValueError("rho must be >= 0")

    def solve(matvec: MatVec, b: Tensor) -> Solution:
        n = b.numel()
        k = n if rank is None else min(rank, n)
        gen = torch.Generator().manual_seed(seed)
        cols = torch.randperm(n, generator=gen)[:k].sort().values.to(b.device)
        c = b.new_empty(n, k)  # the columns A[:, S]
        for start in range(0, k, chunk):  # batched matvecs, a chunk at a time: bounded memory
            part = cols[start : start + chunk]
            basis = torch.zeros(len(part), n, dtype=b.dtype, device=b.device)
            basis[torch.arange(len(part), device=b.device), part] = 1.0
            c[:, start : start + len(part)] = torch.func.vmap(matvec)(basis).T
        w = c[cols]  # (k, k)
        w = 0.5 * (w + w.T)
        q, r = torch.linalg.qr(c)  # C = QR, Q (n, k)
        qb = q.T @ b
        if rho == 0.0:
            # Â⁺ b = Q R⁻ᵀ W R⁻¹ Qᵀ b: triangular solves only (R is invertible when C has full
            # column rank: distinct columns of a nonsingular A)
            y = torch.linalg.solve_triangular(r, qb[:, None], upper=True)
            y = torch.linalg.solve_triangular(r.T, w @ y, upper=False)[:, 0]
            x = q @ y
        else:
            m = r @ torch.linalg.solve(w, r.T)
            m = 0.5 * (m + m.T) + rho * torch.eye(k, dtype=b.dtype, device=b.device)
            x = q @ torch.linalg.solve(m, qb) + (b - q @ qb) / rho
        res = _relative_residual(matvec, x, b) if report_residual else float("nan")
        return Solution(x, res, k)

    return solve
