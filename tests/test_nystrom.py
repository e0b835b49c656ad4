"""The Nyström inverse (hgbench.numerics.linalg.nystrom) against dense solves, and ift_nystrom on
ridge."""

from __future__ import annotations

import pytest
import torch

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.method import METHODS, ProbeState
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.numerics.linalg import nystrom

load_plugins()
F64 = torch.float64


def _rel(x, y) -> float:
    return float((x - y).norm() / y.norm())


@pytest.fixture
def system():
    gen = torch.Generator().manual_seed(0)
    n = 40
    m = torch.randn(n, n, generator=gen, dtype=F64)
    spd = m @ m.T / n + 0.05 * torch.eye(n, dtype=F64)
    b = torch.randn(n, generator=gen, dtype=F64)
    return spd, b


def test_full_rank_without_damping_is_the_dense_solve(system):
    a, b = system
    sol = nystrom(None, 0.0)(lambda v: a @ v, b)
    assert _rel(sol.x, torch.linalg.solve(a, b)) < 1e-10
    assert sol.residual < 1e-10 and sol.iterations == b.numel()
    # an indefinite matrix (a nonconvex model's Hessian) too
    sym = a - 0.5 * torch.eye(b.numel(), dtype=F64)
    assert _rel(nystrom(None)(lambda v: sym @ v, b).x, torch.linalg.solve(sym, b)) < 1e-9


def test_full_rank_with_damping_solves_the_damped_system(system):
    a, b = system
    eye = torch.eye(b.numel(), dtype=F64)
    sol = nystrom(None, 0.3)(lambda v: a @ v, b)
    assert _rel(sol.x, torch.linalg.solve(a + 0.3 * eye, b)) < 1e-10


def test_a_low_rank_matrix_is_recovered_from_that_many_columns():
    """For A of rank k, k generic columns give Â = A exactly: the Woodbury branch is then
    (A + ρI)⁻¹ b to rounding, which catches a wrong sign or factor of ρ."""
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(30, 6, generator=gen, dtype=F64)
    a = u @ u.T
    b = torch.randn(30, generator=gen, dtype=F64)
    eye = torch.eye(30, dtype=F64)
    for rho in (1e-2, 1.0):
        sol = nystrom(6, rho, seed=4)(lambda v: a @ v, b)
        assert _rel(sol.x, torch.linalg.solve(a + rho * eye, b)) < 1e-8
    # fewer columns than the rank: an approximation, and a visibly worse one
    approx = nystrom(3, 1.0, seed=4)(lambda v: a @ v, b)
    assert _rel(approx.x, torch.linalg.solve(a + eye, b)) > 1e-3


def test_ift_nystrom_at_full_rank_matches_the_ridge_closed_form():
    problem = TASKS["ridge"].build(0, "cpu", F64)
    key = WD_PREFIX + "weight"
    hparams = {key: torch.linspace(-6.0, -1.0, 64, dtype=F64)}
    state = ProbeState(problem.task.optimum(problem, hparams), hparams)
    exact = problem.task.exact_hypergradient(problem, hparams)[key]
    est = METHODS["ift_nystrom"](rank=None, rho=0.0).hypergradient(problem, state)
    assert _rel(est.hypergradient[key], exact) < 1e-6
    assert est.extra["rank"] == problem.n_params
    low = METHODS["ift_nystrom"](rank=20).hypergradient(problem, state)
    assert _rel(low.hypergradient[key], exact) > 1e-3
