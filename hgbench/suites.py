"""Suites: named selections of tasks × methods × seeds, with per-method settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hgbench.registry import Registry
from hgbench.task import TASKS


@dataclass(frozen=True)
class Suite:
    """`tasks`/`methods` are name patterns; `tags` adds every task carrying one of them.

    `configs[method]` lists the run-mode configurations of that method (default: one, its
    defaults); probe mode sweeps each method's own `probe_grid`.
    """

    name: str
    description: str
    tasks: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("*",)
    seeds: tuple[int, ...] = (0, 1, 2)
    configs: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    # `--set` items applied before the command line's own (e.g. "task.epochs=2"), and a default
    # `--budget-s` per cell: how a suite sizes its tasks without registering copies of them
    sets: tuple[str, ...] = ()
    budget_s: float | None = None
    gpu: bool = False  # sized for a GPU (the CLI warns when run on a CPU)

    def task_names(self) -> list[str]:
        names = TASKS.names(list(self.tasks)) if self.tasks else []
        names += [n for n, t in TASKS.items() if set(t.tags) & set(self.tags) and n not in names]
        return names


SUITES: Registry[Suite] = Registry("suite")


def register_suite(suite: Suite) -> Suite:
    SUITES.add(suite.name, suite)
    return suite


register_suite(
    Suite(
        name="default",
        description="the core small tasks (digits, ridge, rotated digits), every method, 3 seeds",
        tags=("default",),
    )
)
register_suite(
    Suite(
        name="cifar10",
        description="CIFAR-10 subsets × augmentation settings × every method × 3 seeds; GPU-sized",
        tasks=("cifar10_*",),
        gpu=True,
    )
)
register_suite(
    Suite(
        name="overfit",
        description="Lorraine et al.: per-weight decay tuned on 50 validation images (overfits)",
        tasks=("digits_mlp_smallval",),
        methods=("fixed", "ift_neumann", "ift_cg"),
        configs={
            "ift_neumann": ({"period": 1, "hyper_lr": 0.1, "terms": 5},),
            "ift_cg": ({"period": 1, "hyper_lr": 0.1, "iterations": 10},),
        },
    )
)
register_suite(
    Suite(
        name="small",
        description="every CPU-sized task × every method × 3 seeds (longer than the default)",
        tags=("small",),
    )
)
register_suite(
    Suite(
        name="reversible",
        description="Maclaurin et al.'s schedule and ARD tasks: reversible_sgd and baselines",
        tasks=("digits_mlp3", "digits_logreg_ard"),
        methods=("fixed", "random_search", "unroll", "reversible_sgd"),
        configs={"reversible_sgd": ({"meta_iterations": None},)},
    )
)
