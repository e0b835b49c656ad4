"""The CIFAR-10 tasks end to end on small files written in CIFAR-10's own pickle format: every
augmentation setting builds and trains through the command line, and under `learned_affine` the
marginal likelihood's gradient flows into the six magnitudes (against finite differences)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cifar_fakes import write_fake_cifar_pickles

from hgbench.augment import AFFINE
from hgbench.laplace import Structure, augmented_inputs, hypergradient, log_marglik
from hgbench.plugins import load_plugins
from hgbench.store import RESULTS_FILE
from hgbench.task import TASKS

load_plugins()


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar_pickles(root, n_train_per_batch=20, n_test=20, seed=0)  # 100 images
    return root


@pytest.mark.parametrize("augmentation", ["none", "flipcrop", "augnet", "learned_affine"])
def test_every_augmentation_setting_trains_through_the_cli(
    cli, fake_cifar: Path, tmp_path: Path, augmentation: str
) -> None:
    out = tmp_path / "out"
    res = cli(
        "run",
        "--tasks",
        f"cifar10_1k_{augmentation}",
        "--methods",
        "fixed",
        "--seeds",
        "0",
        "--set",
        "task.n_labelled=100",
        "--set",
        "task.epochs=1",
        "--set",
        "task.batch_size=10",
        "--data-dir",
        fake_cifar,
        "--out",
        out,
        "--no-report",
    )
    assert res.code == 0, res.err
    final = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()][-1]
    assert final["status"] == "ok", final["error"]
    assert final["epoch"] == 1 and 0.0 <= final["test_acc"] <= 1.0
    if augmentation == "learned_affine":
        assert final["hparams"]["aug.affine.mean"] == pytest.approx(0.05)


def test_learned_affine_shapes_and_test_time_averaging(fake_cifar: Path, monkeypatch) -> None:
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    task = dataclasses.replace(TASKS["cifar10_1k_learned_affine"], n_labelled=20, val_fraction=0.5)
    problem = task.build(0, "cpu", torch.float32)
    hparams = problem.init_hparams()
    x = problem.data.x_train[:5]
    copies = task.augment(x, hparams, torch.Generator().manual_seed(0))
    assert copies.shape == (5, task.n_samples, 3, 32, 32)
    params = problem.init_params()
    assert problem.forward(params, copies).shape == (5, 10)
    # the S copies differ (the magnitudes act), and at η = 0 each copy is the image itself
    assert not torch.allclose(copies[:, 0], copies[:, 1])
    still = task.augment(x, {**hparams, AFFINE: torch.zeros(6)}, torch.Generator())
    torch.testing.assert_close(still, x[:, None].expand_as(still), atol=1e-5, rtol=0)
    # test-time prediction averages over test_samples copies from a fixed stream: repeatable
    a = task.predict(problem, params, hparams, problem.data.x_test)
    b = task.predict(problem, params, hparams, problem.data.x_test)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("structure", [Structure.DIAG, Structure.KRON])
def test_marglik_gradient_reaches_the_affine_magnitudes(
    fake_cifar: Path, monkeypatch: pytest.MonkeyPatch, structure: Structure
) -> None:
    """Fixup ResNet-8, float64: d log q / d η against central differences along a random
    direction (a dropped path through grid_sample, the logit average or the curvature's
    dependence on the inputs would show).

    ReLU is swapped for a steep softplus here: with ReLU the Jacobian, hence the log-determinant,
    jumps wherever a unit flips sign, so a finite difference across a flip means nothing (autograd
    gives the derivative almost everywhere; the factor between the two was 12 with ReLU). The
    step is small because bilinear sampling is only piecewise linear in the magnitudes.
    """
    monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
    monkeypatch.setattr(F, "relu", lambda x, inplace=False: F.softplus(x, beta=4.0))
    task = dataclasses.replace(
        TASKS["cifar10_1k_learned_affine"], n_labelled=20, val_fraction=0.5, n_samples=2
    )
    problem = task.build(0, "cpu", torch.float64)
    gen = torch.Generator().manual_seed(3)
    params = {
        k: v + 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in problem.init_params().items()
    }
    hparams = problem.init_hparams()
    hparams[AFFINE] = torch.tensor([0.1, -0.05, 0.3, 0.08, 0.03, -0.06], dtype=torch.float64)
    d = problem.data

    def value(h):
        inputs = augmented_inputs(problem, h, d.x_train, torch.Generator().manual_seed(9))
        return log_marglik(problem, params, h, inputs, d.y_train, structure)

    live = {k: v.clone().requires_grad_(True) for k, v in hparams.items()}
    grad = -hypergradient(value(live), live)[AFFINE]  # of log q
    direction = torch.randn(6, generator=gen, dtype=torch.float64)
    eps = 1e-7
    up = {**hparams, AFFINE: hparams[AFFINE] + eps * direction}
    down = {**hparams, AFFINE: hparams[AFFINE] - eps * direction}
    fd = (value(up) - value(down)) / (2 * eps)
    assert abs(float(fd)) > 1e-3  # the magnitudes matter
    assert float(grad @ direction) == pytest.approx(float(fd), rel=1e-4)
