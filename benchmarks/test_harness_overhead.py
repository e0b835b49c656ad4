"""pytest-benchmark: the `fixed` method through the runner against a bare PyTorch loop, one epoch
group per task so the table shows them side by side. Never asserts on times.

    python -m pytest benchmarks --benchmark-only
"""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from harness_overhead import bare_loop, harness_fixed  # noqa: I001 (benchmarks/ is on sys.path)

from hgbench.contracts.task import TASKS
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Cell, Runner, RunOptions
from hgbench.engine.store import ResultStore

EPOCHS = 5


@pytest.fixture(scope="module", params=["digits_mlp", "digits_cnn"])
def setup(request, tmp_path_factory):
    load_plugins()
    task = dataclasses.replace(TASKS[request.param], epochs=EPOCHS)
    store = ResultStore(tmp_path_factory.mktemp(request.param))
    runner = Runner(store, RunOptions(torch.device("cpu"), torch.float32), log=io.StringIO())
    return task, runner, store


def test_bare_loop(benchmark, setup):
    task, runner, _ = setup
    benchmark.group = f"{task.name}: {EPOCHS} epochs of plain training"
    problem = runner.problem(task, 0)
    images_per_s = benchmark.pedantic(bare_loop, (problem, EPOCHS), rounds=5, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = images_per_s


def test_fixed_through_harness(benchmark, setup):
    task, runner, store = setup
    benchmark.group = f"{task.name}: {EPOCHS} epochs of plain training"
    cell = Cell("run", "bench", task, "fixed", {}, seed=0)
    # wall time here includes the harness's untimed evaluation; images_per_s is the timed figure
    images_per_s = benchmark.pedantic(
        harness_fixed, (runner, cell, store), rounds=5, warmup_rounds=1
    )
    benchmark.extra_info["images_per_s"] = images_per_s
