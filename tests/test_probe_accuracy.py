"""Probe contract: every hypergradient estimator is accurate somewhere, and exact where it claims.

For every registered method that estimates a hypergradient, on `ridge` (or the first small task it
applies to): its most accurate `probe_grid` setting reaches cos > 0.9 with the exact reference
(a method declared `biased`, converging to it at no setting, only a positive cosine),
and at its `exact_settings` (exact methods, iterative ones run to convergence) the relative error
is below 1e-6. A deliberately wrong estimator (the sign flipped) fails the same check, so the
check can fail. `unroll` is also held to the exact gradient of its own unrolled objective,
computed independently by forward mode.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch
from torch.func import jvp

from hgbench.contracts.method import METHODS, Estimate, Objective, ProbeState
from hgbench.contracts.schema import Mode, Status
from hgbench.contracts.task import TASKS
from hgbench.engine.executors import LocalExecutor
from hgbench.engine.plugins import load_plugins
from hgbench.engine.runner import Cell, Runner, RunOptions
from hgbench.engine.store import ResultStore, read_rows
from hgbench.numerics.functional import flatten, unflatten
from hgbench.numerics.optimum import tight_optimum
from hgbench.numerics.training import sgd_momentum_step

load_plugins()

COS_MIN = 0.9
EXACT_REL_ERR = 1e-6
TASK_ORDER = ["ridge", *(n for n, t in TASKS.items() if "small" in t.tags and n != "ridge")]
ESTIMATORS = [n for n, cls in METHODS.items() if cls.objective != Objective.NONE]
SLOW = {"reversible_sgd"}  # each probe setting runs T = 100 exact steps forward and back


def _probe(name: str, configs: list[dict], task: str, out: Path) -> list[dict]:
    """Final probe rows of `name` at each config on `task` (float64, one repeat)."""
    cls = METHODS[name]
    cells = [
        Cell(Mode.PROBE, "accuracy", TASKS[task], name, cls(**c).method_params(), 0)
        for c in configs
    ]
    store = ResultStore(out)
    options = RunOptions(torch.device("cpu"), torch.float64, probe_repeats=1, timeout_s=300)
    LocalExecutor(Runner(store, options, log=io.StringIO())).run(cells)
    finals = {r["cell"]: r for r in read_rows(store.path) if r["final"]}
    return [finals[c.key] for c in cells]


def accuracy_failures(name: str, out: Path) -> list[str]:
    """What is wrong with `name`'s accuracy on the first small task it applies to ([]: nothing)."""
    cls = METHODS[name]
    grid = [dict(c) for c in cls.probe_grid]
    exact = cls.exact_settings
    configs = grid + ([dict(exact)] if exact is not None and dict(exact) not in grid else [])
    for task in TASK_ORDER:
        rows = _probe(name, configs, task, out / task)
        if all(r["status"] == Status.SKIPPED for r in rows):
            continue
        failures = [
            f"{task} {c}: {r['status']}: {r['error']}"
            for c, r in zip(configs, rows, strict=True)
            if r["status"] not in (Status.OK, Status.SKIPPED)
        ]
        cosines = [r["hg_cos"] for r in rows[: len(grid)] if r["status"] == Status.OK]
        best = max(cosines, default=-math.inf)
        floor = 0.0 if cls.biased else COS_MIN  # a biased approximation: the right direction
        if not best > floor:
            failures.append(f"{task}: best probe_grid cos {best:.4f} ≤ {floor}")
        if exact is not None:
            row = rows[configs.index(dict(exact))]
            if row["status"] != Status.OK or not row["hg_rel_err"] < EXACT_REL_ERR:
                failures.append(
                    f"{task} at exact_settings {exact}: rel err {row['hg_rel_err']} "
                    f"({row['status']}) ≥ {EXACT_REL_ERR}"
                )
        return failures
    return [f"{name} applies to none of {TASK_ORDER}"]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in ESTIMATORS]
)
def test_most_accurate_setting_is_accurate_and_exact_settings_are_exact(
    name: str, tmp_path: Path
) -> None:
    assert accuracy_failures(name, tmp_path) == []


def test_a_sign_flipped_estimator_fails_the_accuracy_check(
    register_test_method, tmp_path: Path
) -> None:
    @dataclasses.dataclass
    class Flipped(METHODS["ift_exact"]):  # type: ignore[misc, valid-type]
        """The exact implicit hypergradient with its sign flipped: a planted bug."""

        def hypergradient(self, problem, state: ProbeState) -> Estimate:
            est = super().hypergradient(problem, state)
            return Estimate({k: -v for k, v in est.hypergradient.items()}, est.value, est.extra)

    name = register_test_method(Flipped)
    failures = accuracy_failures(name, tmp_path)
    assert any("cos" in f for f in failures) and any("rel err" in f for f in failures), failures


def test_unroll_is_the_exact_gradient_of_its_own_unrolled_objective() -> None:
    """Reverse mode through K steps (the method) against forward mode (jvp per hparam)."""
    problem = TASKS["ridge"].build(0, "cpu", torch.float64)
    hparams = problem.init_hparams()
    state = ProbeState(tight_optimum(problem, hparams), hparams)
    # move off the optimum, so the K steps change the params and the gradient is not tiny
    params = {k: v + 0.05 * torch.randn_like(v) for k, v in state.params.items()}
    state = ProbeState(params, hparams)
    K = 5
    method = METHODS["unroll"](K=K)
    estimate = flatten(method.hypergradient(problem, state).hypergradient)

    d = problem.data

    def unrolled(h_flat: torch.Tensor) -> torch.Tensor:
        h = unflatten(h_flat, hparams)
        w, v = state.params, {k: torch.zeros_like(p) for k, p in state.params.items()}
        for _ in range(K):
            g = torch.func.grad(problem.train_loss)(w, h, d.x_train, d.y_train)
            w, v = sgd_momentum_step(w, v, g, problem.lr, problem.task.momentum)
        return problem.val_loss(w)

    # directional derivatives along a few random directions: a sign slip, a missing factor or
    # a wrong coordinate shows in any of them
    h0 = flatten(hparams)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        e = torch.randn(h0.shape, generator=gen, dtype=h0.dtype)
        forward = jvp(unrolled, (h0,), (e,))[1]
        assert abs(float(forward)) > 0
        rel = abs(float(estimate @ e - forward)) / abs(float(forward))
        assert rel < 1e-9, rel
