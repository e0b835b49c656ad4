"""`reversible_sgd`: the reversal is bit-exact, its hypergradients equal autograd through an
independently written stored trajectory, the information buffer costs log2(d/n) bits per step,
and every guard fails loudly instead of returning a wrong number."""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from hgbench.contracts.hparams import WD_PREFIX
from hgbench.contracts.method import METHODS, ProbeState
from hgbench.contracts.task import TASKS
from hgbench.engine.executors import LocalExecutor
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Cell, Runner, RunOptions
from hgbench.engine.store import ResultStore, read_rows
from hgbench.methods.reversible import (
    INIT_PREFIX,
    LR_PREFIX,
    MOMENTUM_PREFIX,
    MetaIteration,
    ReversibleSGD,
)
from hgbench.numerics.functional import flatten
from hgbench.numerics.reversible import (
    DENOMINATOR,
    DENOMINATOR_BITS,
    FixedPointRangeError,
    FixedPointSGD,
    GradientMismatchError,
    InfoBuffer,
    StepConstants,
    StoredSGD,
    rational_value,
    rationalise,
    reversible_hypergradient,
    to_fixed,
)
from hgbench.report.configs import with_labels
from hgbench.report.load import load_rows
from hgbench.report.schedules import has_schedules, schedule_figure

load_plugins()


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one intra-op thread is as fast, and on a loaded CPU far faster
    (no waiting for a descheduled second thread at every kernel). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _problem(name: str, dtype: torch.dtype = torch.float64, **changes):
    task = dataclasses.replace(TASKS[name], n_train=200, n_val=100, **changes)
    return task.build(0, "cpu", dtype)


def _schedules(steps: int, k: int, dtype: torch.dtype, seed: int = 0):
    """Step sizes and momenta that differ per step and tensor, momenta from 0.1 to 0.95 (so the
    buffer spills into its stack of words within 100 steps)."""
    gen = torch.Generator().manual_seed(seed)
    lr = 0.2 + 0.3 * torch.rand(steps, k, generator=gen, dtype=dtype)
    momentum = 0.1 + 0.85 * torch.rand(steps, k, generator=gen, dtype=dtype)
    return lr, momentum


# --- exact reversal ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "skip_idle"),
    [(torch.float32, True), (torch.float64, True), (torch.float64, False)],
    ids=["float32", "float64", "float64-device-path"],
)
def test_reversal_restores_the_initial_state_bit_for_bit(
    dtype: torch.dtype, skip_idle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(InfoBuffer, "skip_idle_on_cpu", skip_idle)  # False: as on a GPU
    problem = _problem("digits_mlp", dtype, hidden=(16, 16))
    run = MetaIteration(problem, "test", batch_size=50)
    params0 = problem.init_params()
    gen = torch.Generator().manual_seed(1)
    velocity0 = {
        k: 0.05 * torch.randn(v.shape, generator=gen, dtype=dtype) for k, v in params0.items()
    }
    lr, momentum = _schedules(100, len(params0), dtype)
    result = reversible_hypergradient(
        run.loss, problem.val_loss, params0, velocity0, problem.init_hparams(), lr, momentum
    )
    w, v = result.reversed_state
    assert torch.equal(w, to_fixed(flatten(params0)))
    assert torch.equal(v, to_fixed(flatten(velocity0)))
    assert result.bit_exact is True
    # the run was not trivial: the weights moved and the buffer spilled into its word stack
    assert (flatten(result.params) - flatten(params0)).norm() > 0.1 * flatten(params0).norm()
    assert result.buffer_bits > 2 * 32


# --- hypergradients against an independent autograd unroll --------------------------------------
def _autograd_hypergradient(problem, method: ReversibleSGD, state: ProbeState) -> dict:
    """The same T steps in torch.optim.SGD's convention with dampening (b ← γ b + (1−γ) g,
    w ← w − α b, i.e. b = −v), written from scratch on the model and differentiated by
    torch.autograd through the whole stored graph. γ is the rational n/2^16 the method uses,
    with the sigmoid's derivative passed straight through."""
    names = list(state.params)
    hp = {k: v.detach().clone().requires_grad_(True) for k, v in state.hparams.items()}
    run = MetaIteration(problem, "reversible/0", method.batch_size or problem.task.batch_size)
    w = {k: state.params[k] * hp[INIT_PREFIX + k].exp() for k in names}
    b = {k: torch.zeros_like(p) for k, p in w.items()}
    d = problem.data
    for t in range(method.T):
        idx = run.indices(t)
        x, y = d.x_train[idx], d.y_train[idx]
        x = problem.task.augment(x, hp, problem.generator(f"reversible/0/augment/{t}"))
        loss = F.cross_entropy(functional_call(problem.model, w, (x,)), y)
        loss = loss + sum(0.5 * (hp[WD_PREFIX + k].exp() * w[k] ** 2).sum() for k in names)
        grads = torch.autograd.grad(loss, [w[k] for k in names], create_graph=True)
        for k, g in zip(names, grads, strict=True):
            logit = hp[MOMENTUM_PREFIX + k][t]
            gamma = torch.round(logit.detach().sigmoid() * 2**16) / 2**16
            gamma = gamma + logit.sigmoid() - logit.sigmoid().detach()
            b[k] = gamma * b[k] + (1 - gamma) * g
            w[k] = w[k] - hp[LR_PREFIX + k][t].exp() * b[k]
    val = F.cross_entropy(functional_call(problem.model, w, (d.x_val,)), d.y_val)
    grads = torch.autograd.grad(val, list(hp.values()), allow_unused=True)
    return {k: torch.zeros_like(hp[k]) if g is None else g for k, g in zip(hp, grads, strict=True)}


def _moved_state(problem, method: ReversibleSGD) -> ProbeState:
    """Hparams off their shared init (schedules vary per step, decay per weight), so a mix-up
    between steps, tensors or weights would show."""
    gen = torch.Generator().manual_seed(3)
    hparams = {
        k: v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in method.init_hparams(problem).items()
    }
    return ProbeState(problem.init_params(), hparams)


@pytest.mark.parametrize(
    ("task", "changes", "steps"),
    [
        ("digits_mlp", {"hidden": (16,)}, 40),
        ("digits_logreg_ard", {}, 40),  # one L2 hparam per weight
        ("digits_cnn", {}, 8),  # a learned augmentation magnitude
    ],
    ids=["mlp", "logreg_ard", "cnn"],
)
def test_hypergradients_equal_autograd_through_the_stored_trajectory(task, changes, steps) -> None:
    problem = _problem(task, **changes)
    method = ReversibleSGD(T=steps, batch_size=50)
    state = _moved_state(problem, method)
    estimate = method.hypergradient(problem, state)
    reference = _autograd_hypergradient(problem, method, state)
    assert estimate.extra["bit_exact"] == 1
    groups = {
        "lr": [k for k in reference if k.startswith(LR_PREFIX)],
        "momentum": [k for k in reference if k.startswith(MOMENTUM_PREFIX)],
        "init": [k for k in reference if k.startswith(INIT_PREFIX)],
        "l2": [k for k in reference if k.startswith(WD_PREFIX)],
        "aug": [k for k in reference if k.startswith("aug.")],
    }
    assert sum(map(len, groups.values())) == len(reference)
    for group, keys in groups.items():
        if not keys:
            continue
        ours = flatten({k: estimate.hypergradient[k] for k in keys})
        ref = flatten({k: reference[k] for k in keys})
        assert ref.norm() > 0, group  # an all-zero reference would prove nothing
        rel = float((ours - ref).norm() / ref.norm())
        assert rel < 1e-6, (group, rel)


def test_stored_and_exact_modes_agree_and_report_memory() -> None:
    problem = _problem("digits_logreg_ard")
    state = _moved_state(problem, ReversibleSGD(T=30))
    exact = ReversibleSGD(T=30, batch_size=50).hypergradient(problem, state)
    stored = ReversibleSGD(T=30, batch_size=50, exact=False).hypergradient(problem, state)
    ours, ref = flatten(exact.hypergradient), flatten(stored.hypergradient)
    assert float((ours - ref).norm() / ref.norm()) < 1e-9  # fixed point rounds at 2^-52 only
    p = problem.n_params
    assert stored.extra["memory_bytes"] == (30 + 1) * 2 * p * 8  # (w_t, v_t), t = 0..T, float64
    assert exact.extra["stored_trajectory_bytes"] == stored.extra["memory_bytes"]
    # int64 w and v, int64 head and int32 fill level per weight; per step two int64 checksums
    # and two flags; 30 steps at these momenta fit in the heads, so no stack row is allocated
    assert exact.extra["memory_bytes"] == (8 + 8 + 8 + 4) * p + (16 + 2) * 30


# --- the information buffer ----------------------------------------------------------------------
@pytest.mark.parametrize("skip_idle", [True, False], ids=["cpu-path", "device-path"])
def test_buffer_round_trips_any_sequence_of_pushes_and_pops(
    skip_idle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 300
    monkeypatch.setattr(InfoBuffer, "skip_idle_on_cpu", skip_idle)  # False: as on a GPU
    buffer = InfoBuffer(size, "cpu", chunk_rows=2)
    gen = torch.Generator().manual_seed(0)
    history = []
    for _ in range(20):  # some information to pop
        s = torch.randint(0, DENOMINATOR, (size,), generator=gen)
        buffer.push_bits(s, DENOMINATOR_BITS)
        history.append(("bits", s, None))
    head = buffer.head.clone()
    for _ in range(400):
        base = torch.randint(1, DENOMINATOR + 1, (size,), generator=gen)
        if torch.rand((), generator=gen) < 0.5:
            s = (torch.rand(size, generator=gen, dtype=torch.float64) * base).long()
            buffer.push(s, base)
            history.append(("push", s, base))
        else:
            history.append(("pop", buffer.pop(base), base))
    assert buffer.stack.shape[0] > 0  # words were spilled
    for kind, s, base in reversed(history[20:]):
        if kind == "push":
            assert torch.equal(buffer.pop(base), s)
        else:
            buffer.push(s, base)
    assert torch.equal(buffer.head, head)
    buffer.check()


def test_buffer_grows_by_log2_d_over_n_bits_per_step() -> None:
    """Maclaurin et al.'s cost: log2(1/γ) bits per weight per step (0.152 at γ = 0.9). Stated
    overhead (hgbench.numerics.reversible): below 1e-4 bits per step from quantised frequencies,
    plus the head's fill, which log2(head) measures to within a bit."""
    group, steps = 100, 1000
    gen = torch.Generator().manual_seed(0)
    gammas = [torch.full((group,), g, dtype=torch.float64) for g in (0.5, 0.9, 0.98)]
    gammas.append(0.3 + 0.69 * torch.rand(group, generator=gen, dtype=torch.float64))
    numer = rationalise(torch.cat(gammas))
    buffer = InfoBuffer(len(numer), "cpu")
    for _ in range(steps):  # v ← (n/d) v: push v mod d, then pop a symbol < n
        v = torch.randint(0, DENOMINATOR, numer.shape, generator=gen)
        buffer.push_bits(v, DENOMINATOR_BITS)
        buffer.pop(numer)
    expected = steps * torch.log2(DENOMINATOR / numer.double())
    excess = buffer.bits() - expected
    assert float(excess.abs().max()) < 1.0 + 1e-4 * steps, float(excess.abs().max())
    at_09 = buffer.bits()[group : 2 * group].mean() / steps
    assert abs(float(at_09) - 0.152) < 1e-3, float(at_09)
    # memory: the words in use, within one chunk of allocation
    words = -(-int(expected.max()) // 32)
    assert buffer.stack.shape[0] <= words + buffer.chunk_rows + 1


def test_memory_at_t1000_is_at_least_20x_below_the_stored_trajectory() -> None:
    size, steps = 1000, 1000
    gen = torch.Generator().manual_seed(0)
    w0 = 0.1 * torch.randn(size, generator=gen)
    exact = FixedPointSGD(w0, torch.zeros(size), torch.float32, steps)
    stored = StoredSGD(w0, torch.zeros(size), torch.float32)
    numer = rationalise(torch.full((size,), 0.9))
    c = StepConstants(
        torch.full((size,), 0.1), numer, rational_value(numer, torch.float32),
        rational_value(DENOMINATOR - numer, torch.float32),
    )  # fmt: skip
    for _ in range(steps):
        g = torch.randn(size, generator=gen)
        exact.forward_step(g, c)
        stored.forward_step(g, c)
    exact.check_forward()
    assert stored.nbytes == (steps + 1) * 2 * size * 4
    assert stored.nbytes / exact.nbytes > 20, (stored.nbytes, exact.nbytes)


# --- guards ------------------------------------------------------------------------------------
def test_a_value_out_of_the_fixed_point_range_fails_instead_of_returning(tmp_path: Path) -> None:
    problem = _problem("digits_logreg_ard")
    run = MetaIteration(problem, "test", batch_size=50)
    params0 = problem.init_params()
    zeros = {k: torch.zeros_like(v) for k, v in params0.items()}
    lr = torch.full((20, len(params0)), 1e4, dtype=torch.float64)  # weights blow up past 2^10
    momentum = torch.full_like(lr, 0.9)
    with pytest.raises(FixedPointRangeError, match=r"fixed-point range .* at step \d+"):
        reversible_hypergradient(run.loss, problem.val_loss, params0, zeros, {}, lr, momentum)
    # through the runner: a failed row that names the cause, not a hypergradient
    task = dataclasses.replace(problem.task, epochs=1)
    cell = Cell("run", "test", task, "reversible_sgd", {"T": 20, "lr_init": 1e4}, 0)
    rows = _run_cells([cell], torch.float32, tmp_path)
    assert rows[-1]["status"] == "failed" and rows[-1]["final"]
    assert "FixedPointRangeError" in rows[-1]["error"]


def test_a_gradient_that_does_not_reproduce_fails() -> None:
    problem = _problem("digits_logreg_ard")
    run = MetaIteration(problem, "test", batch_size=50)
    params0 = problem.init_params()
    zeros = {k: torch.zeros_like(v) for k, v in params0.items()}
    lr, momentum = _schedules(30, len(params0), torch.float64)
    calls = []

    def flaky_loss(w, h, t):  # the reverse pass's recomputation of step 17 comes out different
        calls.append(t)
        loss = run.loss(w, h, t)
        return loss * (1 + 1e-9) if t == 16 and len(calls) > 30 else loss

    with pytest.raises(GradientMismatchError, match="step 17"):
        reversible_hypergradient(flaky_loss, problem.val_loss, params0, zeros, {}, lr, momentum)


# --- through the runner: probe and run rows ------------------------------------------------------
def _run_cells(cells: list[Cell], dtype: torch.dtype, out: Path) -> list[dict]:
    LocalExecutor(
        Runner(ResultStore(out), RunOptions(torch.device("cpu"), dtype), log=io.StringIO())
    ).run(cells)
    return read_rows(out / "results.jsonl")


def test_probe_reports_error_memory_and_bit_exactness(tmp_path: Path) -> None:
    task = dataclasses.replace(TASKS["digits_logreg_ard"], n_train=200, n_val=100)
    cells = [
        Cell(
            "probe",
            "test",
            task,
            "reversible_sgd",
            METHODS["reversible_sgd"](T=10, exact=e).method_params(),
            0,
        )
        for e in (True, False)
    ]
    rows = [r for r in _run_cells(cells, torch.float64, tmp_path) if r["final"]]
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    for row in rows:
        assert row["hg_rel_err"] < 1e-8 and row["hg_cos"] > 1 - 1e-12
        assert "stored trajectory" in row["reference"]
        assert math.isclose(row["value"], row["exact_value"], rel_tol=1e-10)
    exact = rows[0]["extra"]
    assert exact["bit_exact"] == 1
    assert exact["memory_bytes"] < exact["stored_trajectory_bytes"]


def test_run_rows_carry_memory_and_the_learned_schedules(tmp_path: Path) -> None:
    deterministic = torch.are_deterministic_algorithms_enabled()
    task = dataclasses.replace(TASKS["digits_logreg_ard"], n_train=200, n_val=100, epochs=5)
    settings = METHODS["reversible_sgd"](T=10, meta_iterations=3).method_params()
    rows = _run_cells(
        [Cell("run", "test", task, "reversible_sgd", settings, 0)], torch.float32, tmp_path
    )
    assert torch.are_deterministic_algorithms_enabled() == deterministic  # nothing global changed
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]  # meta-iterations, capped at 3
    assert [r["step"] for r in rows] == [0, 10, 20, 30]
    final = rows[-1]
    assert final["final"] and final["extra"]["bit_exact"] == 1
    assert final["extra"]["memory_bytes"] < final["extra"]["stored_trajectory_bytes"]
    schedule = final["extra"]["lr_schedule"]
    assert set(schedule) == {"1.weight", "1.bias"} and all(len(s) == 10 for s in schedule.values())
    assert len(set(schedule["1.weight"])) > 1  # learned per step
    assert "lr_schedule" not in rows[-2]["extra"]
    frame = with_labels(load_rows(tmp_path))
    assert has_schedules(frame)
    for key in ("lr_schedule", "momentum_schedule"):
        fig = schedule_figure(frame, key, title=key)
        ax, _colorbar = fig.axes
        assert ax.get_title().startswith(f"{task.name}: reversible_sgd")
        (image,) = ax.get_images()  # tensors × steps: the one cell's schedule, as stored
        expected = [final["extra"][key][t] for t in ("1.weight", "1.bias")]
        assert np.allclose(image.get_array(), expected)
