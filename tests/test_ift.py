"""Implicit-differentiation methods against exact hypergradients (float64)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.method import METHODS, ProbeState
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.methods.ift import _Implicit
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.optimum import tight_optimum

load_plugins()
KEY = WD_PREFIX + "weight"


@pytest.fixture(scope="module")
def ridge():
    """The ridge problem at its exact optimum, with hparams spread over a realistic range."""
    problem = TASKS["ridge"].build(0, "cpu", torch.float64)
    hparams = {KEY: torch.linspace(-6.0, -1.0, 64, dtype=torch.float64)}
    state = ProbeState(problem.task.optimum(problem, hparams), hparams)
    exact = problem.task.exact_hypergradient(problem, hparams)[KEY]
    return problem, state, exact


def _rel_err(method, problem, state, exact) -> float:
    est = method.hypergradient(problem, state).hypergradient[KEY]
    return float((est - exact).norm() / exact.norm())


@pytest.mark.parametrize(
    "method",
    [METHODS["ift_cg"](iterations=500, tol=1e-14), METHODS["ift_exact"]()],
    ids=["ift_cg", "ift_exact"],
)
def test_cg_and_exact_match_the_ridge_closed_form(ridge, method):
    assert _rel_err(method, *ridge) < 1e-6


def test_neumann_error_decreases_with_terms(ridge):
    problem, state, exact = ridge
    # the task's step is 1/λ_max of the data Hessian; the penalty adds at most e^-1, so this α
    # keeps ‖I − αH‖ < 1 and the series converges
    alpha = 1.0 / (1.0 / problem.lr + float(state.hparams[KEY].exp().max()))
    errors = [
        _rel_err(METHODS["ift_neumann"](terms=i, alpha=alpha), problem, state, exact)
        for i in (0, 1, 5, 20, 100, 2000)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-3
    # i = 0 is the identity approximation: the same estimate as ift_identity
    ident = _rel_err(METHODS["ift_identity"](alpha=alpha), problem, state, exact)
    assert ident == pytest.approx(errors[0], rel=1e-12)


def test_neumann_would_catch_a_missing_alpha_or_a_flipped_sign(ridge):
    problem, state, exact = ridge
    alpha = 1.0 / (1.0 / problem.lr + float(state.hparams[KEY].exp().max()))
    est = METHODS["ift_neumann"](terms=2000, alpha=alpha).hypergradient(problem, state)
    g = est.hypergradient[KEY]
    cos, rel = cosine_and_rel_err(g, exact)
    assert cos > 0.9999 and rel < 1e-3
    assert cosine_and_rel_err(-g, exact)[0] < -0.9999  # a sign slip shows as cos ≈ −1
    # without α the estimate is off by the factor 1/α (≈ 1.4 here): a relative error of |1/α − 1|
    assert abs(1 / alpha - 1) > 0.2
    assert cosine_and_rel_err(g / alpha, exact)[1] > 0.5 * abs(1 / alpha - 1)


def test_cg_agrees_with_exact_on_a_converged_mlp():
    """Nonconvex: a small digits MLP at an L-BFGS optimum; CG vs the dense solve."""
    task = dataclasses.replace(
        TASKS["digits_mlp"], hidden=(12,), n_train=300, n_val=100, log_wd_init=-4.0
    )
    problem = task.build(0, "cpu", torch.float64)
    hparams = problem.init_hparams()
    params = tight_optimum(problem, hparams)
    grad_norm = flatten(torch.func.grad(problem.full_train_loss)(params, hparams)).norm()
    assert grad_norm < 1e-6
    state = ProbeState(params, hparams)
    exact = flatten(METHODS["ift_exact"]().hypergradient(problem, state).hypergradient)
    via_cg = flatten(METHODS["ift_cg"](iterations=200).hypergradient(problem, state).hypergradient)
    cos, _ = cosine_and_rel_err(via_cg, exact)
    assert cos > 0.999
    few = flatten(METHODS["ift_cg"](iterations=2).hypergradient(problem, state).hypergradient)
    assert cosine_and_rel_err(few, exact)[0] < cos  # the comparison can tell solvers apart


def test_ift_exact_skips_large_models():
    problem = TASKS["digits_mlp"].build(0)
    reason = METHODS["ift_exact"]().skip_reason(problem)
    assert reason and str(problem.n_params) in reason


def test_joint_loop_logs_the_solver_residual_and_moves_hparams(tmp_path):
    from hgbench.engine.runner import Cell, Runner, RunOptions
    from hgbench.engine.store import ResultStore, read_rows

    task = dataclasses.replace(TASKS["ridge"], epochs=2)
    store = ResultStore(tmp_path)
    runner = Runner(store, RunOptions(torch.device("cpu"), torch.float32))
    for name, settings in (("ift_cg", {"iterations": 5}), ("ift_neumann", {"terms": 3})):
        cell = Cell("run", "t", task, name, METHODS[name](**settings).method_params(), seed=0)
        assert runner.execute(cell) == "ok"
    rows = [r for r in read_rows(store.path) if r["step"] > 0]
    assert rows and all(r["extra"]["solver_residual"] >= 0 for r in rows)
    assert all(r["hparams"] != read_rows(store.path)[0]["hparams"] for r in rows)


@pytest.mark.parametrize(
    "name", sorted(n for n, cls in METHODS.items() if issubclass(cls, _Implicit))
)
def test_a_budget_that_runs_out_in_the_hyper_step_still_ends_on_a_checkpoint(name):
    """A time budget can run out during a hyper-step, after the steps that precede it: the run
    must still yield the state it trained to, not end on its untrained step-0 checkpoint."""
    from hgbench.contracts.method import Budget

    if name == "ift_exact":
        pytest.skip("ridge's exact solve is as fast as any; covered by the other solvers")
    task = dataclasses.replace(TASKS["ridge"], epochs=100)
    problem = task.build(0)
    method = METHODS[name](period=5)
    hyper_steps = 0

    # time is "over" from the moment the first hyper-step's hypergradient is being computed
    original = type(method).solver

    def solver(self, problem, report_residual, lr):
        nonlocal hyper_steps
        hyper_steps += 1
        return original(self, problem, report_residual, lr)

    budget = Budget(epochs=None, seconds=1.0, elapsed=lambda: float(hyper_steps))
    try:
        type(method).solver = solver
        checkpoints = list(method.run(problem, budget))
    finally:
        type(method).solver = original
    assert hyper_steps == 1
    assert checkpoints[-1].step == 5, [c.step for c in checkpoints]
