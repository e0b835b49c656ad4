"""What only a GPU can show: exact reversal bit-exact on the device, the calibration step timed
alike for every method (a kept CUDA graph gives the eager numbers), and peak memory read from the
device's allocator. Every test here is marked `gpu` and skipped without CUDA; the GPU session
(benchmarks/gpu_session.sh) runs them with `python -m pytest -m gpu`."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hgbench.contracts.task import TASKS
from hgbench.engine import calibration
from hgbench.engine.graphcheck import check_capture
from hgbench.engine.memory import MB, PeakRegion
from hgbench.engine.plugins import load_plugins
from hgbench.methods.reversible import MetaIteration
from hgbench.numerics.functional import flatten
from hgbench.numerics.reversible import reversible_hypergradient, to_fixed

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (a GPU-only test)"),
]


@pytest.fixture(scope="module", autouse=True)
def _plugins() -> None:
    load_plugins()


def _problem(name: str, dtype: torch.dtype = torch.float32, **changes):
    task = dataclasses.replace(TASKS[name], n_train=200, n_val=100, **changes)
    return task.build(0, "cuda", dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_reversal_is_bit_exact_on_the_device(dtype: torch.dtype) -> None:
    """100 steps forward and back on the GPU end exactly at the start (weights and velocity as
    fixed-point words), with the information buffer kept on the device (no idle skipping)."""
    problem = _problem("digits_mlp", dtype, hidden=(16, 16))
    run = MetaIteration(problem, "test", batch_size=50)
    params0 = problem.init_params()
    gen = torch.Generator().manual_seed(1)
    velocity0 = {
        k: (0.05 * torch.randn(v.shape, generator=gen, dtype=dtype)).cuda()
        for k, v in params0.items()
    }
    gen = torch.Generator().manual_seed(0)
    lr = (0.2 + 0.3 * torch.rand(100, len(params0), generator=gen, dtype=dtype)).cuda()
    momentum = (0.1 + 0.85 * torch.rand(100, len(params0), generator=gen, dtype=dtype)).cuda()
    result = reversible_hypergradient(
        run.loss, problem.val_loss, params0, velocity0, problem.init_hparams(), lr, momentum
    )
    w, v = result.reversed_state
    assert w.is_cuda and v.is_cuda
    assert torch.equal(w, to_fixed(flatten(params0)))
    assert torch.equal(v, to_fixed(flatten(velocity0)))
    assert result.bit_exact is True
    assert (flatten(result.params) - flatten(params0)).norm() > 0.1 * flatten(params0).norm()


@pytest.mark.parametrize("task", ["digits_mlp", "digits_cnn"])
def test_a_kept_graph_gives_the_eager_numbers(task: str) -> None:
    """Where the check keeps a CUDA graph for `fixed` and the calibration step, the captured
    step ends an epoch and more with the eager params bit for bit; where it does not, it says
    why (and the eager step is used)."""
    check = check_capture(_problem(task))
    assert check.steps > 0
    if check.kept:
        assert check.max_abs_diff == 0.0 and check.reason == ""
    else:
        assert check.reason, "a capture left out must say why"


def test_the_calibration_step_is_timed_on_the_device() -> None:
    """TSE's unit: the median seconds of a `fixed` step in blocks, after a warm-up, synchronised
    with the device: positive, finite, and within a factor of 3 when measured twice."""
    problem = _problem("digits_mlp")
    first = calibration.step_time(problem)
    second = calibration.step_time(problem)
    assert 0 < first < 1 and math.isfinite(second)
    assert calibration.drift(first, second) < 2.0


def test_peak_memory_is_the_allocators_peak() -> None:
    """A 64 MiB tensor made and freed inside the region reads as a 64 MiB peak (not 0, not the
    process's RSS), from the device allocator."""
    device = torch.device("cuda")
    with PeakRegion(device) as region:
        x = torch.empty(64 * 2**20 // 4, dtype=torch.float32, device=device)
        x.fill_(1.0)
        del x
    result = region.result
    assert result is not None and result.method == "cuda-max-allocated"
    peak = result.peak_mb - result.base_mb
    assert 64 * 2**20 / MB * 0.99 <= peak <= 64 * 2**20 / MB + 8
