"""The per-layer curvature contractions (hgbench.numerics.laplace.layers, .capture) against rows
from per-example Jacobians of the whole network (vmap(jacrev)), in float64: Fixup's scalar Bias and
Scale modules (a per-row VJP of the module alone), a module called twice (weight sharing), masked
row groups, K-FAC sums over output splits, and fits of a plain nn.Module without a Problem.

The closed-form diagonal of Linear/Conv2d layers on the digits MLP, CNN and S-copy model is
checked in tests/test_laplace.py (`test_layerwise_rows_and_ntk_match_torch_func_jacobians`).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS, Likelihood
from hgbench.engine.plugins import load_plugins
from hgbench.numerics.laplace import Structure, fit_laplace, log_marglik
from hgbench.numerics.laplace import capture as capture_module
from hgbench.numerics.laplace.capture import capture
from hgbench.numerics.laplace.ggn import BlockDiagCurvature, KronCurvature, SplitCurvature
from hgbench.tasks.models import FixupResNet

load_plugins()


class Shared(nn.Module):
    """One Linear layer applied twice (weight sharing) and a scalar bias between."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(6, 6)
        self.shift = nn.Parameter(torch.zeros(()))
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.tanh(self.inner(x.flatten(1)[:, :6]))
        h = torch.tanh(self.inner(h) + self.shift)
        return self.head(h)


def _perturbed(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        k: v.detach() + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in model.named_parameters()
    }


def _fixup() -> nn.Module:
    torch.manual_seed(0)
    return FixupResNet(depth=8, width=4, n_classes=10, in_channels=1).double()


def _inputs(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


@pytest.mark.parametrize("which", ["fixup", "shared"])
def test_module_rules_match_whole_network_jacobians(which: str, monkeypatch) -> None:
    model = _fixup() if which == "fixup" else Shared().double()
    params, x = _perturbed(model), _inputs()
    wrt = list(params)
    ref = capture(model, params, x, Likelihood.CATEGORICAL, wrt, layerwise=False)
    # the hooks must cover every tensor: no fallback to whole-network Jacobians
    monkeypatch.setattr(capture_module, "linearize", lambda *a, **k: pytest.fail("fallback"))
    ours = capture(model, params, x, Likelihood.CATEGORICAL, wrt)
    k = ref.k
    mask = torch.rand(x.shape[0], k, generator=torch.Generator().manual_seed(1)) > 0.5
    rows, ref_rows = ours.rows(), ref.rows()
    diags, ref_diags = ours.diag([None, mask]), ref.diag([None, mask])
    grams, ref_grams = ours.grams(set(wrt)), ref.grams(set(wrt))
    assert set(rows) == set(wrt)
    for name in wrt:
        torch.testing.assert_close(rows[name], ref_rows[name], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grams[name], ref_grams[name], rtol=1e-9, atol=1e-12)
        for d, ref_d in zip(diags, ref_diags, strict=True):
            torch.testing.assert_close(d[name], ref_d[name], rtol=1e-9, atol=1e-12)
    if which == "fixup":  # Bias/Scale by the module rule; every convolution by the Linear rule
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        assert set(convs) <= set(ours.layers)
        assert any(".scale." in t for t in ours.other.rows_)
    else:  # the shared layer's two calls are summed into one layer's rows
        assert "inner" in ours.layers and ours.layers["inner"].a.shape[-1] == 2


def _hparams(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    values = torch.linspace(-3.0, -1.0, len(params), dtype=torch.float64)
    return {WD_PREFIX + k: values[i].clone() for i, k in enumerate(params)}


def test_kron_sums_over_an_output_split_add_up_and_other_tensors_get_exact_blocks() -> None:
    """The `independent` split's groups partition the factor rows, so their K-FAC output
    factors B add up to the unsplit one (a wrong row weighting would not); tensors outside
    Linear/Conv2d get their exact per-tensor GGN block."""
    model = _fixup()
    params, x = _perturbed(model), _inputs(8)
    y = torch.arange(8) % 10
    hparams = _hparams(params)
    whole = fit_laplace(model, params, hparams, x, y, Structure.KRON, chunk_size=3)
    split = fit_laplace(model, params, hparams, x, y, Structure.KRON, "independent", chunk_size=3)
    assert isinstance(whole.curvature, KronCurvature)
    assert isinstance(split.curvature, SplitCurvature)
    for name, block in whole.curvature.layers.items():
        parts = [g.layers[name].B for g in split.curvature.groups]
        torch.testing.assert_close(sum(parts), block.B, rtol=1e-10, atol=1e-12)
        for g in split.curvature.groups:
            torch.testing.assert_close(g.layers[name].A, block.A)
    rest = whole.curvature.rest
    assert rest is not None and any(".bias1a." in t for t in rest.shapes)
    exact = BlockDiagCurvature(dict(rest.shapes))
    rows = capture(model, params, x, Likelihood.CATEGORICAL, list(rest.shapes), layerwise=False)
    exact.add({t: r.flatten(0, 1) for t, r in rows.rows().items()})
    for t in rest.shapes:
        torch.testing.assert_close(rest.blocks[t], exact.blocks[t], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("likelihood", [Likelihood.CATEGORICAL, Likelihood.GAUSSIAN])
@pytest.mark.parametrize("structure", [Structure.DIAG, Structure.KRON, Structure.FULL])
def test_a_plain_module_fits_as_its_problem_does(likelihood, structure) -> None:
    """fit_laplace and log_marglik take a model, params and data: the same numbers as through
    a Problem holding that model (whose likelihood and log-likelihood are the task's)."""
    task = dataclasses.replace(
        TASKS["digits_mlp"], hidden=(6,), n_train=30, n_val=10, likelihood=likelihood
    )
    problem = task.build(0, "cpu", torch.float64)
    params = _perturbed(problem.model, seed=3)
    hparams = _hparams(params)
    d = problem.data
    ours = log_marglik(
        problem.model, params, hparams, d.x_train, d.y_train, structure, likelihood=likelihood
    )
    via_problem = log_marglik(problem, params, hparams, d.x_train, d.y_train, structure)
    assert float(ours) == pytest.approx(float(via_problem), rel=1e-12)
    # the log-likelihood is the task's own: −N times its mean NLL
    fit = fit_laplace(
        problem.model, params, hparams, d.x_train, d.y_train, structure, likelihood=likelihood
    )
    f = problem.forward(params, d.x_train)
    expected = -problem.nll(f, d.y_train) * d.y_train.shape[0]
    assert float(fit.log_lik) == pytest.approx(float(expected), rel=1e-12)
    assert math.isfinite(float(ours))


def test_a_model_of_ones_own_without_any_task() -> None:
    """The user-facing call on a model of one's own: nn.Sequential, no hgbench task."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.randn(12, 1, 8, 8, dtype=torch.float64)
    y = torch.arange(12) % 3
    hparams = _hparams(params)
    diag = float(log_marglik(model, params, hparams, x, y, Structure.DIAG))
    full = float(log_marglik(model, params, hparams, x, y, Structure.FULL))
    kernel = float(log_marglik(model, params, hparams, x, y, Structure.KERNEL))
    assert kernel == pytest.approx(full, rel=1e-10)
    assert diag < full  # Hadamard: the diagonal's log det is larger, its log marglik smaller


@pytest.mark.parametrize("budget", [1, 2**21])  # one column per group; all columns at once
def test_diag_and_kron_take_columns_in_groups_with_the_same_result(budget, monkeypatch) -> None:
    """diag and kron fits hand factor columns to their sums a group at a time (memory): the
    diagonal must equal Σ rows² from whole-network Jacobians whatever the grouping and chunks,
    and K-FAC's input factor must count each chunk's inputs once."""
    monkeypatch.setattr(capture_module, "_GRAD_BUDGET", budget)
    model = _fixup()
    params, x = _perturbed(model), _inputs(7)
    y = torch.arange(7) % 10
    hparams = _hparams(params)
    fit = fit_laplace(model, params, hparams, x, y, Structure.DIAG, chunk_size=3)
    ref = capture(model, params, x, Likelihood.CATEGORICAL, list(params), layerwise=False)
    (expected,) = ref.diag([None])
    for name, d in fit.curvature.diag.items():
        torch.testing.assert_close(d, expected[name], rtol=1e-9, atol=1e-12)
    kron = fit_laplace(model, params, hparams, x, y, Structure.KRON, chunk_size=3)
    whole = capture(model, params, x, Likelihood.CATEGORICAL, list(params))  # all columns
    assert kron.curvature.layers.keys() == whole.layers.keys()
    for name, block in kron.curvature.layers.items():
        a_sum, count = whole.layers[name].kron_a()
        (b_sum,) = whole.layers[name].kron_b([None])
        torch.testing.assert_close(block.A, a_sum / count, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(block.B, b_sum, rtol=1e-10, atol=1e-12)
