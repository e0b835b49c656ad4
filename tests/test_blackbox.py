"""Black-box baselines at equal budget: successive halving spends exactly one run's steps, keeps
the best configurations, and TPE (Optuna) is refused cleanly when Optuna is missing."""

from __future__ import annotations

import math

import pytest
import torch

from hgbench.contracts.method import METHODS, Budget
from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins

load_plugins()


def _problem(epochs: int = 3):
    import dataclasses

    task = dataclasses.replace(TASKS["ridge"], epochs=epochs)
    return task.build(0, "cpu", torch.float32)


def test_successive_halving_spends_exactly_one_runs_steps() -> None:
    problem = _problem(epochs=3)
    method = METHODS["random_search"](n_configs=9, eta=3)
    checkpoints = list(method.run(problem, Budget(epochs=3, seconds=None)))
    total = 3 * problem.steps_per_epoch
    assert checkpoints[0].step == 0
    assert checkpoints[-1].step == total  # all of it, and not one step more
    assert len(checkpoints) == 1 + 3  # the start, then one checkpoint per rung (9 → 3 → 1)
    assert all(c.objective is None or math.isfinite(c.objective) for c in checkpoints[1:])
    # the best validation loss so far never gets worse
    objectives = [c.objective for c in checkpoints[1:]]
    assert all(b <= a for a, b in zip(objectives, objectives[1:], strict=False))


def test_successive_halving_keeps_the_best_and_starts_from_the_default() -> None:
    problem = _problem(epochs=2)
    method = METHODS["random_search"](n_configs=4, eta=2, include_default=True)
    last = list(method.run(problem, Budget(epochs=2, seconds=None)))[-1]
    # the reported hparams are one of the tried configurations: its validation loss is reported
    assert set(last.hparams) == set(problem.init_hparams())
    with torch.no_grad():
        assert float(problem.val_loss(last.params)) == pytest.approx(last.objective)


def test_successive_halving_under_a_seconds_budget_stops_near_it() -> None:
    import time

    problem = _problem(epochs=100)
    start = time.perf_counter()
    budget = Budget(epochs=None, seconds=0.5, elapsed=lambda: time.perf_counter() - start)
    checkpoints = list(METHODS["random_search"]().run(problem, budget))
    assert checkpoints[-1].step > 0
    assert time.perf_counter() - start < 5.0  # a guard against never stopping, not a timing


def test_tpe_spends_the_budget_and_reports_the_best() -> None:
    pytest.importorskip("optuna")
    problem = _problem(epochs=3)
    checkpoints = list(METHODS["tpe"]().run(problem, Budget(epochs=3, seconds=None)))
    assert checkpoints[-1].step == 3 * problem.steps_per_epoch
    objectives = [c.objective for c in checkpoints[1:] if c.objective is not None]
    assert objectives and all(b <= a for a, b in zip(objectives, objectives[1:], strict=False))


def test_a_method_whose_package_is_missing_exits_2_naming_it(cli, monkeypatch, tmp_path) -> None:
    # Optuna is a core dependency (the default suite runs tpe); a plugin method can still
    # declare packages of its own in `requires`: checked before any work, named in the error
    monkeypatch.setattr(METHODS["tpe"], "requires", ("hgbench_no_such_package",), raising=False)
    res = cli("run", "--tasks", "ridge", "--methods", "fixed,tpe", "--out", tmp_path)
    assert res.code == 2
    assert "hgbench_no_such_package" in res.err and "pip install" in res.err
    assert not (tmp_path / "results.jsonl").exists()
