"""Truncated back-propagation: exact at truncation = horizon, biased below it."""

from __future__ import annotations

import torch

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.method import METHODS, ProbeState
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.methods._unrolled import full_batches, zeros_like
from hgbench.methods.truncated import plain_steps
from hgbench.numerics.functional import cosine_and_rel_err, flatten
from hgbench.numerics.unroll import unrolled_hypergradient

load_plugins()


def _ridge():
    problem = TASKS["ridge"].build(0, "cpu", torch.float64)
    hparams = {WD_PREFIX + "weight": torch.linspace(-6.0, -1.0, 64, dtype=torch.float64)}
    return problem, ProbeState(problem.task.optimum(problem, hparams), hparams)


def _rel(a, b) -> float:
    return cosine_and_rel_err(flatten(a), flatten({k: b[k] for k in a}))[1]


def test_truncation_equal_to_the_horizon_is_the_full_unroll():
    problem, state = _ridge()
    method = METHODS["truncated_bptt"](horizon=12, truncation=12)
    ref = method.probe_reference(problem, state.hparams)
    est = method.hypergradient(problem, ref.state).hypergradient
    full = METHODS["unroll"](K=12).hypergradient(problem, ref.state).hypergradient
    assert _rel(est, full) < 1e-10
    assert _rel(est, ref.hypergradient) < 1e-10


def test_a_shorter_truncation_differentiates_only_the_last_steps():
    problem, state = _ridge()
    method = METHODS["truncated_bptt"](horizon=12, truncation=3)
    est = method.hypergradient(problem, state).hypergradient
    # by hand: 9 steps without a graph, then reverse mode through the last 3
    w, v = plain_steps(
        problem,
        state.params,
        zeros_like(state.params),
        state.hparams,
        full_batches(problem, 9),
        problem.lr,
    )
    manual, *_ = unrolled_hypergradient(
        problem.train_loss,
        lambda w, h: problem.val_loss(w),
        w,
        v,
        state.hparams,
        full_batches(problem, 3),
        problem.lr,
        problem.task.momentum,
    )
    assert _rel(est, manual) < 1e-12
    full = METHODS["unroll"](K=12).hypergradient(problem, state).hypergradient
    bias = _rel(est, full)
    assert bias > 1e-3, "truncation should be biased against the full unroll"
    # more truncation steps, less bias
    longer = METHODS["truncated_bptt"](horizon=12, truncation=8).hypergradient(problem, state)
    assert _rel(longer.hypergradient, full) < bias
