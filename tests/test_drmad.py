"""DrMAD: exact when its path is the true trajectory, or when the trajectory is a straight line
traversed at constant speed; an approximation otherwise."""

from __future__ import annotations

import dataclasses

import torch
from torch.func import grad

from hgbench.contracts.method import METHODS
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.methods._unrolled import rel_err
from hgbench.methods.drmad import drmad_hypergradient
from hgbench.methods.reversible import MetaIteration
from hgbench.numerics.reversible import rational_value, rationalise

load_plugins()
F64 = torch.float64


def _trajectory(loss, w0, hparams, lr, gamma):
    """(w_t, v_t) for t = 0..T, Maclaurin et al.'s recursion, one tensor per name."""
    names = list(w0)
    w, v = dict(w0), {k: torch.zeros_like(x) for k, x in w0.items()}
    states = [(w, v)]
    for t in range(lr.shape[0]):
        g = grad(loss)(w, hparams, t)
        v = {k: gamma[t, j] * v[k] - (1 - gamma[t, j]) * g[k] for j, k in enumerate(names)}
        w = {k: w[k] + lr[t, j] * v[k] for j, k in enumerate(names)}
        states.append((w, v))
    return states


def _autograd(loss, val, w0, hparams, lr, gamma):
    """The reference: torch.autograd through the plain recursion."""
    leaves = [x.clone().requires_grad_(True) for x in (lr, gamma)]
    h = {k: x.clone().requires_grad_(True) for k, x in hparams.items()}
    w0 = {k: x.clone().requires_grad_(True) for k, x in w0.items()}
    w, v, names = dict(w0), {k: torch.zeros_like(x) for k, x in w0.items()}, list(w0)
    for t in range(lr.shape[0]):
        (g,) = torch.autograd.grad(loss(w, h, t), [w[names[0]]], create_graph=True)
        k = names[0]
        v = {k: leaves[1][t, 0] * v[k] - (1 - leaves[1][t, 0]) * g}
        w = {k: w[k] + leaves[0][t, 0] * v[k]}
    out = torch.autograd.grad(val(w), [*leaves, *h.values(), *w0.values()])
    return {"d_lr": out[0], "d_momentum": out[1], "d_hparams": out[2], "d_params0": out[3]}


def _line_problem(schedule: bool):
    """L(w, θ) = ½ wᵀ diag(0, 1, 2) w + e^θ w₀: the gradient e^θ e₀ is constant along the path
    (the motion stays in the Hessian's null space), and α_t = α / (1 − γ^t) makes every step
    the same length, so the trajectory is exactly DrMAD's straight line (schedule=False: a
    constant α, and the line is traversed at varying speed)."""
    a = torch.tensor([0.0, 1.0, 2.0], dtype=F64)
    c = torch.tensor([1.0, 2.0, 3.0], dtype=F64)

    def loss(w, h, t):
        return 0.5 * (a * w["w"] ** 2).sum() + h["theta"].exp() * w["w"][0]

    def val(w):
        return 0.5 * ((w["w"] - c) ** 2).sum()

    steps, gamma = 8, 0.7
    t = torch.arange(1, steps + 1, dtype=F64)
    lr = (0.1 / (1 - gamma**t) if schedule else torch.full((steps,), 0.1, dtype=F64))[:, None]
    momentum = torch.full((steps, 1), gamma, dtype=F64)
    w0 = {"w": torch.tensor([0.3, 0.0, 0.0], dtype=F64)}
    return loss, val, w0, {"theta": torch.tensor(0.2, dtype=F64)}, lr, momentum


def _compare(ours, ref) -> float:
    keys = [("d_lr", None), ("d_momentum", None), ("d_hparams", "theta"), ("d_params0", "w")]
    errs = []
    for key, sub in keys:
        a = ours[key] if sub is None else ours[key][sub]
        errs.append(float((a - ref[key]).norm() / ref[key].norm().clamp_min(1e-300)))
    return max(errs)


def test_linear_path_is_exact_when_the_trajectory_is_a_uniform_line():
    loss, val, w0, h, lr, gamma = _line_problem(schedule=True)
    states = _trajectory(loss, w0, h, lr, gamma)
    steps = [float((states[t + 1][0]["w"] - states[t][0]["w"]).norm()) for t in range(8)]
    assert max(steps) - min(steps) < 1e-12  # the premise: equal steps on a line
    ours = drmad_hypergradient(loss, val, w0, h, lr, gamma)
    ref = _autograd(loss, val, w0, h, lr, gamma)
    assert _compare(ours, ref) < 1e-10
    assert float(ref["d_momentum"].abs().max()) > 0 and float(ref["d_hparams"].abs()) > 0
    # the same problem at a constant step size: the line is traversed unevenly, DrMAD errs
    loss, val, w0, h, lr, gamma = _line_problem(schedule=False)
    ours = drmad_hypergradient(loss, val, w0, h, lr, gamma)
    assert _compare(ours, _autograd(loss, val, w0, h, lr, gamma)) > 1e-3


def test_with_the_true_trajectory_as_path_it_is_the_exact_reversal():
    task = dataclasses.replace(TASKS["digits_mlp"], hidden=(8,), n_train=100, n_val=50)
    problem = task.build(0, "cpu", F64)
    method = METHODS["drmad"](T=6)
    ref = method.probe_reference(problem)
    names = list(ref.state.params)
    lr, gamma = method._schedules(names, ref.state.hparams)
    used = rational_value(rationalise(gamma), lr.dtype)
    run = MetaIteration(problem, "reversible/0", task.batch_size)
    task_h = method._task_hparams(ref.state.hparams)
    states = _trajectory(run.loss, ref.state.params, task_h, lr, used)
    out = drmad_hypergradient(
        run.loss,
        lambda w: problem.val_loss(w),
        ref.state.params,
        task_h,
        lr,
        used,
        path=lambda w0, wT, names: lambda s: states[s],
    )
    for j, k in enumerate(names):  # d log α_t = α_t dα_t, as the method maps it
        exact = ref.hypergradient["sched.lr." + k]
        assert float((out["d_lr"][:, j] * lr[:, j] - exact).norm() / exact.norm()) < 1e-9
    assert rel_err(out["d_hparams"], {k: ref.hypergradient[k] for k in task_h}) < 1e-9
    # the straight line is an approximation here, and the probe reports it against the reversal
    est = method.hypergradient(problem, ref.state)
    assert rel_err(est.hypergradient, ref.hypergradient) > 1e-3
    assert est.extra["rel_err_vs_reversible_sgd"] > 1e-3
    # one step is its own straight line: exact
    one = METHODS["drmad"](T=1)
    ref1 = one.probe_reference(problem)
    assert rel_err(one.hypergradient(problem, ref1.state).hypergradient, ref1.hypergradient) < 1e-9
