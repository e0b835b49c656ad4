"""Contract tests over every registered task, as tests/test_contract.py does for methods.

Parametrized from the registry at collection time, so a new task is tested without anyone writing
a test for it: its splits have consistent shapes and are disjoint, the same seed gives the same
data, its hparams name parameters that exist (with shapes that broadcast), and a forward pass and
the training and validation losses are finite. CIFAR-10 tasks run on generated pickles in
CIFAR-10's format (the real images are tested in tests/test_cifar10_real.py), cut to a small
labelled subset where the task asks for more images than the generated files hold.
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from pathlib import Path

import pytest
import torch
from torch import nn

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.seeding import derive_seed
from hgbench.contracts.task import TASKS, Splits, Task, register_task
from hgbench.engine.plugins import load_plugins

load_plugins()

ALL_TASKS = TASKS.names()
FAKE_PER_BATCH = 60  # 300 generated training images, 10 per class per batch


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        from cifar_fakes import write_fake_cifar_pickles  # tests/cifar_fakes.py
    except ImportError:  # before the fakes moved out of the package
        from hgbench.tasks.cifar10_data import write_fake_cifar_pickles

    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar_pickles(root, n_train_per_batch=FAKE_PER_BATCH, n_test=50, seed=0)
    return root


def _task(name: str, fake_cifar: Path, monkeypatch: pytest.MonkeyPatch) -> Task:
    task = TASKS[name]
    if any(tag.startswith("cifar10") for tag in task.tags):
        monkeypatch.setenv("HGBENCH_DATA", str(fake_cifar))
        # what the generated files hold: 300 labelled images, at most 90% of them for training
        task = dataclasses.replace(task, n_labelled=min(task.n_labelled, 200))
    return task


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(x.shape[0], -1).double()}


@pytest.mark.parametrize("name", ALL_TASKS)
def test_splits_are_consistent_disjoint_and_repeatable(
    name: str, fake_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _task(name, fake_cifar, monkeypatch)
    task.check_available()
    a, b = task.load_data(0), task.load_data(0)
    for field in Splits.__dataclass_fields__:
        assert torch.equal(getattr(a, field), getattr(b, field)), f"{field} differs for one seed"
    for split in ("train", "val", "test"):
        x, y = getattr(a, f"x_{split}"), getattr(a, f"y_{split}")
        assert x.shape[0] == y.shape[0] > 0, split
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < task.n_classes
        assert x.is_floating_point() and bool(torch.isfinite(x).all())
    assert a.x_train.shape[1:] == a.x_val.shape[1:] == a.x_test.shape[1:]
    train, val, test = _rows(a.x_train), _rows(a.x_val), _rows(a.x_test)
    assert not train & val, "a validation point is also a training point"
    assert not train & test and not val & test, "a test point is also a training point"


@pytest.mark.parametrize("name", ALL_TASKS)
def test_model_hparams_and_losses(
    name: str, fake_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _task(name, fake_cifar, monkeypatch)
    problem = task.build(0, "cpu", torch.float32)
    params, hparams = problem.init_params(), problem.init_hparams()
    with torch.random.fork_rng(devices=[]):  # what build does: the init is seeded per (task, seed)
        torch.manual_seed(derive_seed(task.name, 0, "init"))
        again = dict(task.make_model().named_parameters())
    assert all(torch.equal(params[k], again[k]) for k in params), "init differs for one seed"
    assert set(hparams) == set(problem.space.names) and hparams
    for name_, value in hparams.items():
        if name_.startswith(WD_PREFIX):
            param = name_.removeprefix(WD_PREFIX)
            assert param in params, f"{name_} names no parameter"
            torch.broadcast_shapes(value.shape, params[param].shape)  # raises if it cannot
        assert bool(torch.isfinite(value).all()), name_
    d = problem.data
    n = min(8, d.y_train.shape[0])
    f = problem.task.predict(problem, params, hparams, d.x_test[:n])
    assert f.shape == (n, task.n_classes) and bool(torch.isfinite(f).all())
    loss = problem.train_loss(params, hparams, d.x_train[:n], d.y_train[:n])
    assert loss.shape == () and bool(torch.isfinite(loss))
    assert bool(torch.isfinite(problem.val_loss(params)))
    problem.data = dataclasses.replace(d, x_test=d.x_test[:n], y_test=d.y_test[:n])
    metrics = problem.evaluate(params, hparams, "test")
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["test_nll"] > 0


def test_incomplete_task_fails_when_constructed() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoModel(Task):
        def load_data(self, seed: int) -> Splits:
            raise AssertionError("never called")

    assert issubclass(NoModel, ABC)
    with pytest.raises(TypeError, match="abstract"):
        register_task(NoModel(name="incomplete"))
    assert "incomplete" not in TASKS


@pytest.mark.parametrize(
    "change",
    [{"batch_size": 0}, {"epochs": -1}, {"lr": 0.0}, {"momentum": 1.0}, {"eval_every": 0}],
)
def test_task_settings_are_range_checked(change: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(change))):
        dataclasses.replace(TASKS["digits_mlp"], **change)


def test_every_registered_task_is_a_complete_task() -> None:
    for name in ALL_TASKS:
        task = TASKS[name]
        assert isinstance(task, Task) and not getattr(type(task), "__abstractmethods__", None)
        assert isinstance(task.make_model(), nn.Module)
