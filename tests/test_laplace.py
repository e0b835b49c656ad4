"""hgbench's Laplace log marginal likelihood against laplace-torch (an independent implementation).

float64, a small MLP and a small CNN (no BatchNorm), layer-wise prior precisions, at params that
are not a MAP (the formula does not need one). For each structure the value and its gradient with
respect to the log prior precisions must agree to relative error < 1e-4.

Kronecker-factor convention, the same on both sides: K-FAC "expand" with weight and bias blocks
kept separate; a weight block is B ⊗ A with B = Σ_{n,k,positions} g gᵀ (g: output gradients of
the rows of the loss-Hessian square root, the type-2 GGN) and A = the mean of a aᵀ over examples
and positions; a bias block is B. On laplace-torch's side this is its default backend,
CurvlinopsGGN (curvlinops' KFACLinearOperator, fisher_type="type-2", kfac_approx="expand",
separate_weight_and_bias=True), named explicitly below.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS, Problem
from hgbench.engine.plugins import load_plugins
from hgbench.numerics.laplace import Structure, hypergradient, log_marglik
from hgbench.tasks.models import SmallCNN

laplace = pytest.importorskip("laplace")
from laplace.curvature import CurvlinopsGGN  # noqa: E402

load_plugins()

N = 40
RTOL = 1e-4


def _mlp() -> Problem:
    task = dataclasses.replace(TASKS["digits_mlp"], hidden=(8,), n_train=N, n_val=10)
    return task.build(0, "cpu", torch.float64)


def _cnn() -> Problem:
    task = dataclasses.replace(TASKS["digits_cnn"], n_train=N, n_val=10, learn_translate=False)
    base = task.build(0, "cpu", torch.float64)
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, n_classes=10, width=4).to(torch.float64)  # P = 358
    for p in model.parameters():
        p.requires_grad_(False)
    return Problem(base.task, 0, base.device, base.dtype, base.data, model)


def _state(problem: Problem):
    gen = torch.Generator().manual_seed(1)
    params = {
        k: v + 0.2 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in problem.init_params().items()
    }
    # distinct log prior precisions per tensor, so a mix-up between tensors would show
    log_delta = torch.linspace(-1.0, 2.5, len(params), dtype=torch.float64)
    return params, log_delta


def _ours(problem: Problem, params, log_delta, structure: str):
    """log q and d log q / d log δ_t; hgbench's hparam is log_wd = log δ − log N."""
    hparams = {
        WD_PREFIX + k: (log_delta[i] - math.log(N)).clone().requires_grad_(True)
        for i, k in enumerate(params)
    }
    d = problem.data
    value = log_marglik(problem, params, hparams, d.x_train, d.y_train, Structure(structure))
    grads = hypergradient(value, hparams)  # of −log q
    return value.detach(), -torch.stack([grads[WD_PREFIX + k] for k in params])


def _laplace_torch(problem: Problem, params, log_delta, structure: str):
    model = problem.bind(params)
    la = laplace.Laplace(
        model,
        "classification",
        subset_of_weights="all",
        hessian_structure=structure,
        backend=CurvlinopsGGN,
    )
    d = problem.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la.fit(DataLoader(TensorDataset(d.x_train, d.y_train), batch_size=N))
        log_delta = log_delta.clone().requires_grad_(True)
        value = la.log_marginal_likelihood(prior_precision=log_delta.exp())
        (grad,) = torch.autograd.grad(value, log_delta)
    return value.detach(), grad


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_log_marglik_and_gradient_match_laplace_torch(model: str, structure: str) -> None:
    problem = _mlp() if model == "mlp" else _cnn()
    params, log_delta = _state(problem)
    ours, our_grad = _ours(problem, params, log_delta, structure)
    ref, ref_grad = _laplace_torch(problem, params, log_delta, structure)
    assert abs(float(ours - ref)) < RTOL * abs(float(ref)), (float(ours), float(ref))
    err = float((our_grad - ref_grad).norm() / ref_grad.norm())
    assert err < RTOL, (our_grad, ref_grad)
    # every tensor's prior matters: a gradient that ignored one would not be caught otherwise
    assert bool((ref_grad.abs() > 1e-6).all()), ref_grad


@pytest.mark.parametrize("model", ["mlp", "cnn", "averaged"])
def test_layerwise_rows_and_ntk_match_torch_func_jacobians(model: str) -> None:
    """The hook-based rows, diagonal and layer NTK blocks against vmap(jacrev) per-example
    Jacobians of the whole network."""
    from hgbench.numerics.laplace.capture import capture

    if model == "averaged":  # S = 3 augmented copies per example, logits averaged
        task = dataclasses.replace(TASKS["rotated_digits_mlp"], hidden=(5,), n_train=N, n_samples=3)
        problem = task.build(0, "cpu", torch.float64)
    else:
        problem = _mlp() if model == "mlp" else _cnn()
    params, _ = _state(problem)
    hparams = problem.init_hparams()
    x = augment_fixed(problem, hparams)[:7]
    wrt = list(params)
    like = problem.task.likelihood
    ours = capture(problem.model, params, x, like, wrt)
    ref = capture(problem.model, params, x, like, wrt, layerwise=False)
    assert ours.layers and not ref.layers  # the hooks did the work on one side only
    torch.testing.assert_close(ours.f, ref.f, rtol=1e-10, atol=1e-12)
    rows, ref_rows = ours.rows(), ref.rows()
    grams, ref_grams = ours.grams(set(wrt)), ref.grams(set(wrt))
    mask = torch.rand(7, problem.task.n_classes, generator=torch.Generator().manual_seed(0)) > 0.5
    diags, ref_diags = ours.diag([None, mask]), ref.diag([None, mask])
    for name in wrt:
        torch.testing.assert_close(rows[name], ref_rows[name], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grams[name], ref_grams[name], rtol=1e-9, atol=1e-12)
        for d, ref_d in zip(diags, ref_diags, strict=True):
            torch.testing.assert_close(d[name], ref_d[name], rtol=1e-9, atol=1e-12)


def augment_fixed(problem: Problem, hparams):
    from hgbench.numerics.laplace import augmented_inputs

    return augmented_inputs(problem, hparams, problem.data.x_train)


def test_full_structure_forms_give_the_same_value() -> None:
    """FullCurvature keeps the rows while r ≤ P and takes the cheapest of three forms: per-tensor
    kernel Grams, whitened rows (r × r), or the folded P × P Gram; past r = P the rows fold as
    they come. Every form must give the dense log det(P0 + LᵀL) − log det P0, and its gradient
    in the prior. (The comparisons with laplace-torch above exercise the choice too.)"""
    from hgbench.numerics.laplace.ggn import FullCurvature

    gen = torch.Generator().manual_seed(0)
    shapes = {"w": torch.Size([6, 5]), "b": torch.Size([6])}  # P = 36

    def chunk(r: int) -> dict[str, torch.Tensor]:
        return {
            k: torch.randn(r, *s, generator=gen, dtype=torch.float64) for k, s in shapes.items()
        }

    for sizes in ([4, 6], [10, 20], [10, 20, 30]):  # r = 10, 30 ≤ P: rows kept; 60 > P: a Gram
        chunks = [chunk(r) for r in sizes]
        rows = torch.cat([torch.cat([c["w"].flatten(1), c["b"]], 1) for c in chunks])
        for log_delta in (torch.tensor([-0.4, 1.1]), torch.tensor([0.3, 0.3])):
            delta = {
                "w": log_delta[0].double().exp().requires_grad_(True),
                "b": log_delta[1].double().exp().requires_grad_(True),
            }
            flat = torch.cat([delta["w"].expand(30), delta["b"].expand(6)])
            dense = torch.logdet(torch.diag(flat) + rows.T @ rows) - flat.log().sum()
            ref = torch.autograd.grad(dense, list(delta.values()))
            forms = ["grams", "rows", "gram"] if sum(sizes) <= 36 else ["gram"]
            for form in forms:
                curvature = FullCurvature(shapes)
                for c in chunks:
                    curvature.add(c)
                assert (curvature.gram is None) == (sum(sizes) <= 36)
                value = curvature.logdet_ratio(delta, form)
                torch.testing.assert_close(value, dense, rtol=1e-12, atol=0)
                got = torch.autograd.grad(value, list(delta.values()))
                torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    cheap = FullCurvature(shapes)  # few rows: the kernel side, by Grams where priors are scalars
    cheap.add(chunk(4))
    assert cheap.form({"w": torch.tensor(1.0), "b": torch.tensor(2.0)}) == "grams"
    assert cheap.form({"w": torch.ones(6, 5), "b": torch.tensor(2.0)}) == "rows"
