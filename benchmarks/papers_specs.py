"""What each paper's reproduction runs: its suites (hgbench/contracts/suites.py) and its extra
cells.

A `SuitePart` is a registered suite run as `python -m hgbench <mode> --suite S` would; a
`CellsPart` lists cells whose settings no suite or probe grid carries (a sweep of solver
iterations, of block sizes, of momenta). Every cell goes through hgbench's runner, so every
number in a report is a stored row. Sizes (seeds, grids) keep each paper's CPU part within 20
minutes on a 2-core CPU; the CIFAR-scale parts run from benchmarks/gpu_reference.sh (its papers
part).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hgbench.contracts.schema import Mode
from hgbench.contracts.task import TASKS, Task
from hgbench.engine.planning import method_configs
from hgbench.engine.runner import Cell
from hgbench.report.papers.immer import immer2021_report, immer2023_report
from hgbench.report.papers.lorraine import lorraine_report
from hgbench.report.papers.maclaurin import maclaurin_report

SUITE = "papers"  # the suite name the extra cells' rows carry
PROBE_REPEATS = 3
SEEDS = (0, 1, 2)
SEEDS5 = (0, 1, 2, 3, 4)  # where the CPU budget allows a reference report's 5 seeds


def context(mode: Mode, dtype: str) -> dict[str, Any]:
    """What the CLI puts in a cell's key for these options (so the CLI would find them)."""
    ctx: dict[str, Any] = {"device": "cpu", "dtype": dtype, "budget_s": None}
    if mode == Mode.PROBE:
        ctx["repeats"] = PROBE_REPEATS
    return ctx


@dataclass(frozen=True)
class SuitePart:
    label: str
    suite: str
    mode: Mode = Mode.RUN
    dtype: str = "float32"


@dataclass(frozen=True)
class CellsPart:
    label: str
    mode: Mode
    dtype: str
    method: str
    configs: Sequence[dict[str, Any]]
    tasks: Sequence[str]
    seeds: Sequence[int] = SEEDS
    task_changes: dict[str, Any] = field(default_factory=dict)  # e.g. {"epochs": 1}

    def cells(self) -> list[Cell]:
        full = method_configs(self.method, tuple(self.configs), [])
        ctx = context(self.mode, self.dtype)
        tasks = [_task(name, **self.task_changes) for name in self.tasks]
        # grouped by (task, seed), as the CLI orders them: each problem is built once
        return [
            Cell(self.mode, SUITE, task, self.method, config, seed, ctx)
            for task in tasks
            for seed in self.seeds
            for config in full
        ]


@dataclass(frozen=True)
class Paper:
    key: str
    parts: Sequence[SuitePart | CellsPart]
    report: Callable[[Path], Path]
    diagnostics: Callable[[Path], None] | None = field(default=None)


def _task(name: str, **changes: Any) -> Task:
    return dataclasses.replace(TASKS[name], **changes) if changes else TASKS[name]


def _lorraine_diagnostics(out: Path) -> None:
    from papers_diagnostics import lorraine_traces  # benchmarks/, on sys.path from papers.py

    lorraine_traces(out)


def _maclaurin_diagnostics(out: Path) -> None:
    from papers_diagnostics import ard_maps

    ard_maps(out)


NEUMANN_TERMS = (0, 1, 2, 5, 10, 20, 50, 100, 200)
CG_ITERATIONS = (1, 2, 5, 10, 20, 50, 100, 200)
FIDELITY_TASKS = ("digits_logreg_ard", "digits_mlp_smallval")  # per-weight decay: 650, 6,310

LORRAINE = Paper(
    key="lorraine2020",
    parts=(
        SuitePart("validation overfitting (suite overfit)", "overfit"),
        CellsPart(
            "Neumann terms vs the exact hypergradient",
            Mode.PROBE,
            "float64",
            "ift_neumann",
            [{"terms": k} for k in NEUMANN_TERMS],
            FIDELITY_TASKS,
            seeds=SEEDS5,
        ),
        CellsPart(
            "CG iterations vs the exact hypergradient",
            Mode.PROBE,
            "float64",
            "ift_cg",
            [{"iterations": k} for k in CG_ITERATIONS],
            FIDELITY_TASKS,
            seeds=SEEDS5,
        ),
        CellsPart(
            "the issue's setting, hyper_lr 0.1, plain and damped CG",
            Mode.RUN,
            "float32",
            "ift_cg",
            [
                {"period": 1, "hyper_lr": 0.1, "iterations": 10},
                {"period": 1, "hyper_lr": 0.1, "iterations": 10, "damping": 1.0},
            ],
            ["digits_mlp_smallval"],
            task_changes={"eval_every": 10},  # as the overfit suite: a row every 10 steps
        ),
    ),
    report=lorraine_report,
    diagnostics=_lorraine_diagnostics,
)

GAMMAS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
HORIZONS = (10, 30, 100, 300, 1000, 3000)
ONE_META = {"epochs": 1}  # an epoch of budget is one meta-iteration of reversible_sgd

MACLAURIN = Paper(
    key="maclaurin2015",
    parts=(
        SuitePart("schedules (suite reversible)", "reversible"),
        SuitePart("per-weight L2 (suite reversible-ard)", "reversible-ard"),
        CellsPart(
            "buffer bits per parameter per step against γ",
            Mode.RUN,
            "float32",
            "reversible_sgd",
            [{"T": 20, "meta_iterations": 1, "lr_init": 0.5, "momentum_init": g} for g in GAMMAS],
            ["digits_mlp3"],
            task_changes=ONE_META,
        ),
        CellsPart(
            "memory against T (γ = 0.9)",
            Mode.RUN,
            "float32",
            "reversible_sgd",
            [{"T": t, "meta_iterations": 1} for t in HORIZONS],
            ["digits_mlp3"],
            seeds=(0,),
            task_changes=ONE_META,
        ),
    ),
    report=maclaurin_report,
    diagnostics=_maclaurin_diagnostics,
)

BLOCK_SIZES = (10, 20, 50, 100, 200, 500)

IMMER2023 = Paper(
    key="immer2023",
    parts=(
        CellsPart(
            "bound tightness against M, random and grouped partitions",
            Mode.PROBE,
            "float64",
            "laplace_ntk",
            [{"block_size": m, "partition": p} for p in ("random", "grouped") for m in BLOCK_SIZES],
            ["digits_mlp"],
            seeds=SEEDS5,
        ),
    ),
    report=immer2023_report,
)

IMMER2021 = Paper(
    key="immer2021",
    parts=(SuitePart("marglik vs validation tuning, model selection", "marglik-selection"),),
    report=immer2021_report,
)

PAPERS = {p.key: p for p in (LORRAINE, MACLAURIN, IMMER2023, IMMER2021)}
