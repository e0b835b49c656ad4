"""DARTS and SAMA one-step hypergradients: against finite differences of the one-step objective,
the exact mixed product, the Neumann-0 implicit estimate, and Betty's DARTS where it installs."""

from __future__ import annotations

import types

import pytest
import torch
from torch.func import grad

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.methods.one_step import darts_hypergradient, sama_hypergradient
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.implicit import implicit_hypergradient
from hgbench.numerics.linalg import neumann

load_plugins()
F64 = torch.float64
KEY = WD_PREFIX + "weight"


@pytest.fixture(scope="module")
def ridge():
    """Ridge at a point that is not the optimum (the lookahead step then matters)."""
    problem = TASKS["ridge"].build(0, "cpu", F64)
    hparams = {KEY: torch.linspace(-4.0, -1.0, 64, dtype=F64)}
    params = problem.init_params()
    return problem, params, hparams


def _losses(problem):
    return problem.full_train_loss, lambda w, h: problem.val_loss(w)


def _rel(a, b) -> float:
    return cosine_and_rel_err(flatten(a), flatten(b))[1]


def test_darts_second_order_is_the_gradient_of_the_one_step_objective(ridge):
    problem, params, hparams = ridge
    train, val = _losses(problem)
    xi = 0.3
    exact = darts_hypergradient(train, val, params, hparams, xi, 2, finite_difference=False)

    def one_step(h):
        g = grad(train)(params, h)
        return val({k: params[k] - xi * g[k] for k in params}, h)

    # central differences along random directions of λ
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        d = torch.randn(64, generator=gen, dtype=F64)
        eps = 1e-5
        fd = one_step({KEY: hparams[KEY] + eps * d}) - one_step({KEY: hparams[KEY] - eps * d})
        fd = fd / (2 * eps)
        assert float(exact[KEY] @ d) == pytest.approx(float(fd), rel=1e-6)
    # DARTS's own finite-difference mixed product agrees to its O(ε²) error
    fd_est = darts_hypergradient(train, val, params, hparams, xi, 2, finite_difference=True)
    assert _rel(fd_est, exact) < 1e-5
    # first order keeps ∂_λ L_V only: zero, since weight decay enters the training loss alone
    first = darts_hypergradient(train, val, params, hparams, xi, 1)
    assert float(first[KEY].abs().max()) == 0.0


def test_sama_is_identity_implicit_differentiation_with_the_lr(ridge):
    problem, _, hparams = ridge
    train, val = _losses(problem)
    params = problem.task.optimum(problem, hparams)
    lr = problem.lr
    ours = sama_hypergradient(train, val, params, hparams, lr, finite_difference=True)
    ift = implicit_hypergradient(train, val, params, hparams, neumann(0, lr)).hypergradient
    assert _rel(ours, ift) < 1e-6
    exact_mixed = sama_hypergradient(train, val, params, hparams, lr, finite_difference=False)
    assert _rel(exact_mixed, ift) < 1e-12
    # at the optimum the lookahead vanishes: DARTS with ξ = lr is the same estimate
    darts = darts_hypergradient(train, val, params, hparams, lr, 2, finite_difference=False)
    assert _rel(darts, ift) < 1e-6


def test_darts_matches_bettys_implementation():
    """Betty (Choe et al. 2023) reinterprets DARTS as implicit differentiation with an identity
    Hessian, its mixed product by the same finite difference (ε = darts_alpha / ‖v‖): our SAMA
    with the adaptation factor 1 is that estimate."""
    betty = pytest.importorskip(
        "betty.hypergradient", reason="betty-ml is not installed (pip install betty-ml)"
    )
    problem = TASKS["ridge"].build(0, "cpu", F64)
    hparams = {KEY: torch.linspace(-4.0, -1.0, 64, dtype=F64)}
    params = problem.task.optimum(problem, hparams)
    train, val = _losses(problem)

    lower = {k: v.clone() for k, v in params.items()}
    upper = {k: v.clone().requires_grad_(True) for k, v in hparams.items()}
    curr = types.SimpleNamespace(
        config=types.SimpleNamespace(darts_alpha=0.01),
        trainable_parameters=lambda: list(lower.values()),
        training_step_exec=lambda batch: train(lower, upper),
        cur_batch=None,
    )
    prev = types.SimpleNamespace(trainable_parameters=lambda: list(upper.values()))
    vector = list(grad(val)(params, hparams).values())  # Betty's first jvp: ∂L_V/∂w
    implicit = betty.darts(vector, curr, prev)
    theirs = {k: g for k, g in zip(hparams, implicit, strict=True)}  # + ∂_λ L_V, which is 0

    ours = sama_hypergradient(train, val, params, hparams, 1.0, finite_difference=True, r=0.01)
    assert _rel(ours, theirs) < 1e-9
    assert float(flatten(theirs).abs().max()) > 0
