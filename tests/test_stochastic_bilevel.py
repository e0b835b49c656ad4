"""SOBA and AmIGO: the warm-started linear-system variable converges to the IFT solution."""

from __future__ import annotations

import pytest
import torch

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.method import METHODS, ProbeState
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.numerics.functional import cosine_and_rel_err
from hgbench.numerics.implicit import implicit_hypergradient

load_plugins()
KEY = WD_PREFIX + "weight"


@pytest.fixture(scope="module")
def ridge():
    problem = TASKS["ridge"].build(0, "cpu", torch.float64)
    hparams = {KEY: torch.full((64,), -2.0, dtype=torch.float64)}
    state = ProbeState(problem.task.optimum(problem, hparams), hparams)
    exact = problem.task.exact_hypergradient(problem, hparams)[KEY]
    return problem, state, exact


def _rel(est, exact) -> float:
    return float((est[KEY] - exact).norm() / exact.norm())


@pytest.mark.parametrize("name", ["soba", "amigo"])
def test_warm_started_v_converges_to_the_ift_solution(ridge, name):
    """Hyper-step after hyper-step at one state, v moves on from where it stopped: the
    hypergradient converges to the closed form (the joint loop's fixed point)."""
    problem, state, exact = ridge
    method = METHODS[name]()
    errors = []
    for _ in range(200 // method.v_steps):  # 200 v-steps in all
        solver = method.solver(problem, report_residual=False, lr=problem.lr)
        result = implicit_hypergradient(
            problem.full_train_loss,
            lambda w, h: problem.val_loss(w),
            state.params,
            state.hparams,
            solver,
        )
        errors.append(_rel(result.hypergradient, exact))
    assert errors[-1] < 1e-6, errors[-5:]
    assert errors[1] < errors[0]  # the warm start is used: the second call improves on the first
    # with v run to convergence the result is the IFT hypergradient, a flipped sign would not be
    assert cosine_and_rel_err(-result.hypergradient[KEY], exact)[0] < -0.999


@pytest.mark.parametrize("name", ["soba", "amigo"])
def test_probe_starts_cold_and_equals_the_neumann_series(ridge, name):
    """From v = 0, m gradient steps of size α are the Neumann series with m − 1 terms, and
    repeated probe calls do not warm-start each other."""
    problem, state, _ = ridge
    method = METHODS[name](v_steps=7)
    first = method.hypergradient(problem, state).hypergradient
    again = method.hypergradient(problem, state).hypergradient
    neumann = METHODS["ift_neumann"](terms=6).hypergradient(problem, state).hypergradient
    assert torch.equal(first[KEY], again[KEY])
    assert float((first[KEY] - neumann[KEY]).norm() / neumann[KEY].norm()) < 1e-12
