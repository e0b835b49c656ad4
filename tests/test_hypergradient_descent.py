"""Hypergradient descent: its α and μ updates are Baydin et al.'s, checked by autograd."""

from __future__ import annotations

import torch
from torch.func import grad

from hgbench.contracts.method import METHODS
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.methods._unrolled import rel_err
from hgbench.methods.hypergradient_descent import LR_KEY, MOMENTUM_KEY, hd_update

load_plugins()
F64 = torch.float64
A = torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=F64)


def f(w):
    return 0.5 * w @ A @ w - w.sum()


def test_updates_are_gradient_steps_on_the_previous_lr_and_momentum():
    """On a quadratic: after steps with (α_{t−1}, μ_{t−1}), the update equals a gradient step on
    f(w_{t−1}) with respect to the α and μ of the last step, as autograd computes them."""
    beta, beta_m = 0.05, 0.02
    lr, mu = torch.tensor(0.2, dtype=F64), torch.tensor(0.6, dtype=F64)
    w = torch.tensor([1.0, -1.0], dtype=F64)
    v1, v2 = torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64)
    for _ in range(5):
        w_before, v_before = w, v1

        def last_step(a, m, w_before=w_before, v_before=v_before):
            v = m * v_before + grad(f)(w_before)
            return f(w_before - a * v)

        d_lr, d_mu = grad(last_step, argnums=(0, 1))(lr, mu)
        g = grad(f)(w_before - lr * (mu * v_before + grad(f)(w_before)))
        # advance one step with the current α, μ (the state HD sees at the next step)
        v2, v1 = v1, mu * v1 + grad(f)(w)
        w = w - lr * v1
        torch.testing.assert_close(g, grad(f)(w), rtol=1e-12, atol=1e-14)
        new_lr, new_mu = hd_update(lr, mu, g, v1, v2, beta, beta_m)
        torch.testing.assert_close(new_lr, lr - beta * d_lr, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(new_mu, mu - beta_m * d_mu, rtol=1e-12, atol=1e-14)
        lr, mu = new_lr, new_mu
    # without momentum it is SGD-HD: α_t = α_{t−1} + β ∇f(w_{t−1}) · ∇f(w_{t−2})
    g1, g2 = torch.tensor([0.5, 1.0], dtype=F64), torch.tensor([2.0, -1.0], dtype=F64)
    assert float(hd_update(lr, mu, g2, g1, g1, beta, 0.0)[0] - lr) == beta * float(g2 @ g1)


def test_probe_is_exact_for_one_step_and_greedy_beyond():
    problem = TASKS["ridge"].build(0, "cpu", F64)
    errors = []
    for k in (1, 5):
        method = METHODS["hypergradient_descent"](K=k)
        ref = method.probe_reference(problem)
        est = method.hypergradient(problem, ref.state).hypergradient
        assert est.keys() == {LR_KEY, MOMENTUM_KEY}
        errors.append(rel_err(est, ref.hypergradient))
    assert errors[0] < 1e-12 and errors[1] > 1e-3, errors
