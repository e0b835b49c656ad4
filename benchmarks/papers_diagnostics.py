"""Diagnostics of the paper reproductions that are not result rows: out/diagnostics.json.

- `lorraine_traces`: the joint IFT loop of Lorraine et al. on `digits_mlp_smallval`, traced per
  hyper-step: the largest per-weight log decay (against the inner SGD's stability limit), the
  solver's gain |v| / |∂L_V/∂w| and whether the weights stayed finite. Rows keep only hparam
  means, so the mechanism of a divergence needs this trace.
- `ard_maps`: the per-weight L2 that `reversible_sgd` learns on `digits_logreg_ard` (Maclaurin et
  al.'s ARD experiment), as 10 × 64 maps; rows keep only their mean.

Both rerun the methods' own `run` generators with the settings of the matching cells (same task,
seed and method settings, so the same trajectories), outside the runner's timer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hgbench.contracts.method import METHODS, Budget
from hgbench.contracts.task import TASKS, Problem
from hgbench.methods.ift import IFTCG, IFTNeumann, _Implicit
from hgbench.numerics.linalg import Solution, Solver

DIAGNOSTICS = "diagnostics.json"
SEEDS = (0, 1, 2)  # the traces of the joint IFT loop
ARD_SEEDS = (0, 1, 2, 3, 4)  # the reversible-ard suite's seeds


def _update(out: Path, key: str, value: Any) -> None:
    path = out / DIAGNOSTICS
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


class _Gains:
    """Wraps a solver and records |x| / |b| of every solve."""

    def __init__(self) -> None:
        self.gains: list[float] = []

    def wrap(self, solver: Solver) -> Solver:
        def solve(matvec, b: torch.Tensor) -> Solution:
            sol = solver(matvec, b)
            self.gains.append(float(sol.x.norm() / b.norm().clamp_min(1e-30)))
            return sol

        return solve


class _Traced(_Implicit):
    """Mixed in before an `ift_*` class: the same method, its solver's gains recorded."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.trace = _Gains()

    def solver(self, problem: Problem, report_residual: bool, lr: float) -> Solver:
        return self.trace.wrap(super().solver(problem, report_residual, lr))


@dataclass
class _TracedCG(_Traced, IFTCG):
    pass


@dataclass
class _TracedNeumann(_Traced, IFTNeumann):
    pass


# (label, class, settings): the overfit suite's IFT configs and the hyper_lr 0.1
TRACED = (
    ("ift_neumann, hyper_lr 0.03", _TracedNeumann, {"period": 1, "hyper_lr": 0.03, "terms": 5}),
    ("ift_cg, hyper_lr 0.03", _TracedCG, {"period": 1, "hyper_lr": 0.03, "iterations": 10}),
    (
        "ift_cg damping 0.1, hyper_lr 0.03",
        _TracedCG,
        {"period": 1, "hyper_lr": 0.03, "iterations": 10, "damping": 0.1},
    ),
    ("ift_cg, hyper_lr 0.1", _TracedCG, {"period": 1, "hyper_lr": 0.1, "iterations": 10}),
    (
        "ift_cg damping 1, hyper_lr 0.1",
        _TracedCG,
        {"period": 1, "hyper_lr": 0.1, "iterations": 10, "damping": 1.0},
    ),
)


def _trace(problem: Problem, method: _Traced) -> dict[str, Any]:
    budget = Budget(epochs=problem.task.epochs, seconds=None)
    max_log_wd, max_abs_w, steps = [], [], []
    diverged_at = None
    for ckpt in method.run(problem, budget):
        log_wd = torch.cat([v.detach().reshape(-1) for v in ckpt.hparams.values()])
        w = torch.cat([v.detach().reshape(-1) for v in ckpt.params.values()])
        finite = bool(torch.isfinite(log_wd).all() and torch.isfinite(w).all())
        steps.append(ckpt.step)
        max_log_wd.append(float(log_wd.max()) if finite else math.nan)
        max_abs_w.append(float(w.abs().max()) if finite else math.nan)
        if not finite:
            diverged_at = ckpt.step
            break
    return {
        "step": steps,
        "max_log_wd": max_log_wd,
        "max_abs_w": max_abs_w,
        "gain": [g if math.isfinite(g) else None for g in method.trace.gains],
        "diverged_at": diverged_at,
    }


def lorraine_traces(out: Path) -> None:
    task = TASKS["digits_mlp_smallval"]
    # lr · c < 2 (1 + μ): heavy-ball SGD on the decay's quadratic is stable below this c
    limit = math.log(2 * (1 + task.momentum) / task.lr)
    torch.set_num_threads(1)
    traces = []
    for seed in SEEDS:
        problem = task.build(seed)
        for label, cls, settings in TRACED:
            traces.append({"label": label, "seed": seed, **_trace(problem, cls(**settings))})
    _update(out, "lorraine_traces", {"stability_limit": limit, "traces": traces})


def ard_maps(out: Path) -> None:
    task = TASKS["digits_logreg_ard"]
    meta_iterations = 50  # the reversible-ard suite's task.epochs
    torch.set_num_threads(1)
    maps = []
    for seed in ARD_SEEDS:
        problem = task.build(seed)
        method = METHODS["reversible_sgd"](T=50, meta_iterations=None)
        last = None
        for ckpt in method.run(problem, Budget(epochs=meta_iterations, seconds=None)):
            last = ckpt
        assert last is not None
        weight = last.hparams["log_wd.1.weight"].detach().double()  # (10, 64)
        pixels = problem.data.x_train.reshape(len(problem.data.x_train), -1)
        maps.append(
            {
                "seed": seed,
                "log_wd": weight.tolist(),
                "init": float(problem.init_hparams()["log_wd.1.weight"].mean()),
                "pixel_mean_square": pixels.double().square().mean(0).tolist(),  # (64,)
            }
        )
    _update(out, "ard_maps", maps)
