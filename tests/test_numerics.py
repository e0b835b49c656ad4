"""The shared numerical pieces against independent references (float64)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.autograd.functional import hessian, jacobian

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.engine.probe import validation_reference
from hgbench.numerics.functional import (
    LinearizedGradient,
    flatten,
    hvp,
    hvp_operator,
    mixed_vjp,
    unflatten,
)
from hgbench.numerics.implicit import implicit_hypergradient
from hgbench.numerics.linalg import cg, dense, neumann

load_plugins()


def _spd(n: int, seed: int = 0, cond: float = 50.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


def _toy_loss(params, hparams):
    w, b = params["w"], params["b"]
    return (
        (torch.tanh(w) ** 2).sum() * b.sum()
        + 0.5 * (hparams["h"].exp() * w**2).sum()
        + (w.sum() * hparams["s"]) ** 2
    )


def _toy():
    g = torch.Generator().manual_seed(1)
    params = {
        "w": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "b": torch.randn(2, generator=g, dtype=torch.float64),
    }
    hparams = {
        "h": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "s": torch.randn((), generator=g, dtype=torch.float64),
    }
    return params, hparams


def test_hvp_matches_dense_hessian():
    params, hparams = _toy()
    flat = flatten(params)
    h = hessian(lambda f: _toy_loss(unflatten(f, params), hparams), flat)
    v = torch.randn_like(flat)
    got = flatten(hvp(lambda p: _toy_loss(p, hparams), params, unflatten(v, params)))
    torch.testing.assert_close(got, h @ v, rtol=1e-10, atol=1e-12)
    operator = hvp_operator(lambda p: _toy_loss(p, hparams), params)
    for vec in (v, torch.randn_like(flat)):  # the linearised operator, reused across products
        got = flatten(operator(unflatten(vec, params)))
        torch.testing.assert_close(got, h @ vec, rtol=1e-10, atol=1e-12)


def test_mixed_vjp_matches_dense_jacobian():
    params, hparams = _toy()
    pf, hf = flatten(params), flatten(hparams)

    def grad_w(h_flat):
        p = {k: v.requires_grad_() for k, v in unflatten(pf.clone(), params).items()}
        loss = _toy_loss(p, unflatten(h_flat, hparams))
        return flatten(
            dict(
                zip(p, torch.autograd.grad(loss, list(p.values()), create_graph=True), strict=True)
            )
        )

    jac = jacobian(grad_w, hf)  # (P, H) = ∂²L/∂w∂λ
    v = torch.randn_like(pf)
    got = flatten(mixed_vjp(_toy_loss, params, hparams, unflatten(v, params)))
    torch.testing.assert_close(got, v @ jac, rtol=1e-10, atol=1e-12)
    # the linearised gradient: Hessian products and the mixed product from one graph
    h = hessian(lambda f: _toy_loss(unflatten(f, params), hparams), pf)
    lin = LinearizedGradient(_toy_loss, params, hparams)
    for vec in (v, torch.randn_like(pf)):
        torch.testing.assert_close(flatten(lin.hvp(unflatten(vec, params))), h @ vec)
    got = flatten(lin.mixed_vjp(unflatten(v, params)))
    torch.testing.assert_close(got, v @ jac, rtol=1e-10, atol=1e-12)


def test_dense_and_cg_solve_spd_systems():
    a = _spd(30)
    b = torch.randn(30, dtype=torch.float64)
    exact = torch.linalg.solve(a, b)
    sol = dense()(lambda v: a @ v, b)
    torch.testing.assert_close(sol.x, exact, rtol=1e-10, atol=1e-12)
    sol = cg(iterations=200, tol=1e-12)(lambda v: a @ v, b)
    torch.testing.assert_close(sol.x, exact, rtol=1e-9, atol=1e-11)
    assert sol.residual < 1e-10 and sol.iterations <= 200
    few = cg(iterations=3)(lambda v: a @ v, b)
    assert few.iterations == 3 and few.residual > sol.residual


def test_neumann_converges_with_terms_and_needs_its_alpha():
    a = _spd(20, cond=10.0)
    b = torch.randn(20, dtype=torch.float64)
    exact = torch.linalg.solve(a, b)
    alpha = 1.0 / float(torch.linalg.eigvalsh(a).max())  # ‖I − αA‖ < 1

    def err(x):
        return float((x - exact).norm() / exact.norm())

    errors = [err(neumann(i, alpha)(lambda v: a @ v, b).x) for i in (0, 1, 5, 20, 200)]
    assert all(e1 > e2 for e1, e2 in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-6
    # the α factor in front of the series is essential: without it the answer is off by 1/α
    series = neumann(200, alpha)(lambda v: a @ v, b).x / alpha
    assert err(series) > 0.5


def _ridge(dtype=torch.float64):
    return TASKS["ridge"].build(0, "cpu", dtype)


def test_ridge_closed_form_matches_finite_differences():
    problem = _ridge()
    task = problem.task
    hparams = problem.init_hparams()
    hparams[WD_PREFIX + "weight"] = torch.linspace(-4, 0, 64, dtype=torch.float64)
    hg = task.exact_hypergradient(problem, hparams)[WD_PREFIX + "weight"]

    def val(h):
        return float(problem.val_loss(task.optimum(problem, {WD_PREFIX + "weight": h})))

    eps = 1e-5
    for j in (0, 20, 36, 63):
        e = torch.zeros(64, dtype=torch.float64)
        e[j] = eps
        base = hparams[WD_PREFIX + "weight"]
        fd = (val(base + e) - val(base - e)) / (2 * eps)
        assert fd == pytest.approx(float(hg[j]), rel=1e-5, abs=1e-12)


def test_dense_ift_equals_ridge_closed_form():
    problem = _ridge()
    hparams = problem.init_hparams()
    params = problem.task.optimum(problem, hparams)
    result = implicit_hypergradient(
        problem.full_train_loss, lambda w, h: problem.val_loss(w), params, hparams, dense()
    )
    exact = problem.task.exact_hypergradient(problem, hparams)
    key = WD_PREFIX + "weight"
    rel = (result.hypergradient[key] - exact[key]).norm() / exact[key].norm()
    assert rel < 1e-8
    assert result.residual < 1e-10


def test_generic_reference_dense_and_cg_agree_on_a_small_mlp():
    """The probe's generic reference: L-BFGS optimum, then dense vs converged-CG IFT solves."""
    task = dataclasses.replace(
        TASKS["digits_mlp"], hidden=(8,), n_train=300, n_val=100, log_wd_init=-3.0
    )
    problem = task.build(0, "cpu", torch.float64)
    ref = validation_reference(problem)  # dense: 610 params
    assert "dense" in ref.name
    params, hparams = ref.state.params, ref.state.hparams
    grad_norm = flatten(torch.func.grad(problem.full_train_loss)(params, hparams)).norm()
    assert grad_norm < 1e-6  # a tight optimum
    via_cg = implicit_hypergradient(
        problem.full_train_loss,
        lambda w, h: problem.val_loss(w),
        params,
        hparams,
        cg(iterations=3000, tol=1e-12),
    )
    cos = torch.nn.functional.cosine_similarity(
        flatten(via_cg.hypergradient), flatten(ref.hypergradient), dim=0
    )
    assert cos > 0.999999
