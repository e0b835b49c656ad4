"""Invariance learning: the marginal likelihood's gradient flows into the augmentation magnitudes
(checked against finite differences), and on rotated digits the learned rotation grows and beats
the same model without learned invariance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.numerics.laplace import Structure, augmented_inputs, hypergradient, log_marglik
from hgbench.tasks.rotated_digits import AFFINE

load_plugins()


def _tiny_rotated():
    task = dataclasses.replace(
        TASKS["rotated_digits_mlp"], hidden=(6,), n_train=12, n_val=4, n_samples=3
    )
    problem = task.build(0, "cpu", torch.float64)
    gen = torch.Generator().manual_seed(5)
    params = {
        k: v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in problem.init_params().items()
    }
    hparams = problem.init_hparams()
    hparams[AFFINE] = torch.tensor([0.1, -0.05, 0.4, 0.08, 0.03, -0.06], dtype=torch.float64)
    for i, k in enumerate(h for h in hparams if h.startswith(WD_PREFIX)):
        hparams[k] = torch.tensor(-3.0 + 0.4 * i, dtype=torch.float64)
    return problem, params, hparams


@pytest.mark.parametrize("structure", ["kernel", "full", "kron", "diag"])
def test_marglik_gradient_in_the_augmentation_matches_finite_differences(structure: str) -> None:
    problem, params, hparams = _tiny_rotated()
    d = problem.data

    def value(h):
        # the same noise on every call: the marglik is then a smooth function of the magnitudes
        inputs = augmented_inputs(problem, h, d.x_train, torch.Generator().manual_seed(9))
        return log_marglik(problem, params, h, inputs, d.y_train, Structure(structure))

    live = {k: v.clone().requires_grad_(True) for k, v in hparams.items()}
    grad = -hypergradient(value(live), live)[AFFINE]  # of log q
    eps = 1e-6
    fd = torch.zeros(6, dtype=torch.float64)
    for i in range(6):
        up = {**hparams, AFFINE: hparams[AFFINE].clone()}
        down = {**hparams, AFFINE: hparams[AFFINE].clone()}
        up[AFFINE][i] += eps
        down[AFFINE][i] -= eps
        fd[i] = (value(up) - value(down)) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-7)
    assert fd.abs().min() > 1e-4  # every magnitude matters here
