"""hgbench.numerics.linalg.cg with tol = 0 reads nothing back inside its loop (no host-device
sync per step on a GPU) and gives bit for bit the iterates of the early-stop loop it replaced;
tol > 0 still stops early."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hgbench.numerics.linalg import cg


def _reference_cg(matvec, b: torch.Tensor, iterations: int, tol: float = 0.0):
    """The loop as it was before (it checked ‖r‖ > tol ‖b‖ every step, tol = 0 included)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    b_norm = b.norm().clamp_min(torch.finfo(b.dtype).tiny)
    k = 0
    while k < iterations and rr.sqrt() > tol * b_norm:
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
        k += 1
    return x, k, float(rr.sqrt() / b_norm)


def _spd(n: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, n, generator=g, dtype=dtype)
    a = q @ q.T / n + 0.05 * torch.eye(n, dtype=dtype)  # condition number ~ 100
    return a, torch.randn(n, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_fixed_steps_are_bit_identical_to_the_early_stop_loop(dtype, damping):
    a, b = _spd(40, dtype, seed=3)

    def damped(v: torch.Tensor) -> torch.Tensor:  # (A + λI) v as the solver forms it
        return a @ v + damping * v if damping else a @ v

    for iterations in (0, 1, 2, 7, 20, 60):
        sol = cg(iterations, tol=0.0, report_residual=False, damping=damping)(lambda v: a @ v, b)
        x, k, res = _reference_cg(damped, b, iterations)
        assert torch.equal(sol.x, x), iterations
        assert (sol.iterations, sol.residual) == (k, res)


def test_a_zero_right_hand_side_stays_zero_and_counts_no_step():
    a, _ = _spd(10, torch.float64, seed=0)
    sol = cg(5, tol=0.0, report_residual=False)(
        lambda v: a @ v, torch.zeros(10, dtype=torch.float64)
    )
    assert torch.equal(sol.x, torch.zeros(10, dtype=torch.float64))
    assert sol.iterations == 0 and sol.residual == 0.0
    # converged exactly after 1 step (b an eigenvector): the extra steps leave x unchanged
    eye = torch.eye(6, dtype=torch.float64) * 2.0
    b = torch.ones(6, dtype=torch.float64)
    sol = cg(4, tol=0.0, report_residual=False)(lambda v: eye @ v, b)
    assert torch.equal(sol.x, b / 2) and sol.iterations == 1


class _HostReads(TorchDispatchMode):
    """Counts the ops that copy a tensor's value to the host (bool(), float(), int(), .item())."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        return func(*args, **(kwargs or {}))


def _reads(iterations: int, tol: float) -> int:
    a, b = _spd(30, torch.float32, seed=1)
    with _HostReads() as mode:
        cg(iterations, tol=tol, report_residual=False)(lambda v: a @ v, b)
    return mode.reads


def test_fixed_steps_read_nothing_back_inside_the_loop():
    # the same reads (the step count and the residual, after the loop) for 3 steps and for 30
    assert _reads(3, 0.0) == _reads(30, 0.0) == 2
    # the early stop reads the residual every step: the count grows with the steps
    assert _reads(30, 1e-30) > _reads(3, 1e-30) >= 3


def test_early_stop_still_stops_at_the_tolerance():
    a, b = _spd(40, torch.float64, seed=2)
    sol = cg(200, tol=1e-6, report_residual=True)(lambda v: a @ v, b)
    x, k, _ = _reference_cg(lambda v: a @ v, b, 200, tol=1e-6)
    assert 0 < sol.iterations == k < 200  # stopped before the cap
    assert torch.equal(sol.x, x)
    assert sol.residual < 1e-6
    assert cg(200, tol=0.0)(lambda v: a @ v, b).iterations == 200  # tol 0 runs every step
