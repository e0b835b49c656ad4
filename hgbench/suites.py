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
        description="every method on three small tasks with something to tune (data "
        "hyper-cleaning, augmentation and weight decay, weight decay), 5 seeds, hyper_lr 0.1",
        tags=("default",),
        seeds=(0, 1, 2, 3, 4),
        # the methods' own default (0.03) takes too few hyper-steps' worth of movement on tasks
        # of a few hundred steps: every gradient-based tuner gets the same larger rate here
        sets=("hyper_lr=0.1",),
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

# --- CIFAR-10 (tasks/cifar10.py, tasks/cifar10_lila.py) --------------------------------------
# Small budgets make hyper-steps frequent, so that every method takes some within its seconds.
_SMOKE_CONFIGS: dict[str, tuple[dict[str, Any], ...]] = {
    "ift_neumann": ({"period": 3},),
    "ift_identity": ({"period": 3},),
    "ift_cg": ({"period": 3, "iterations": 5},),
    "unroll": ({"K": 3},),
    "laplace_full": ({"burnin": 0, "frequency": 1},),
    "laplace_ntk": ({"burnin": 0, "hyper_every": 3},),
    "reversible_sgd": ({"T": 5},),
}
register_suite(
    Suite(
        name="cifar10-smoke",
        description="every method on the CIFAR-10 1k subsets × every augmentation setting, 4 s "
        "per cell, 500 test images: the CIFAR pipeline end to end on a CPU in < 15 min",
        tasks=("cifar10_1k_*",),
        seeds=(0,),
        configs=_SMOKE_CONFIGS,
        sets=(
            "task.epochs=2",  # the span of the cosine schedule: about what 4 s train on a CPU
            "task.n_test=500",
            "task.eval_test_subset=100",
            "task.n_samples=2",
        ),
        budget_s=4.0,
    )
)
# The invariance-learning grid of Immer et al. (lila 2022; NTK bounds 2023): transformed CIFAR-10
# × subset sizes, without and with learned affine invariance, under the reference schedule
# (the tasks' SGD, lr 0.1 cosine, batch 128) and the authors' marginal-likelihood cadence:
# 10 burn-in epochs, then every 5 epochs 50 prior steps (laplace_full), and block bounds of
# M = 150 points (laplace_ntk, their lila setting).
register_suite(
    Suite(
        name="cifar10-lila",
        description="lila's transformed CIFAR-10 (rotated ±90°/±180°, translated, scaled) × "
        "subsets × {none, learned_affine}: does learned_affine recover the invariance? GPU-sized",
        tags=("cifar10-lila",),
        methods=("fixed", "ift_neumann", "laplace_full", "laplace_ntk"),
        configs={
            "laplace_full": ({"burnin": 10, "frequency": 5, "hypersteps": 50},),
            "laplace_ntk": ({"burnin": 10, "block_size": 150},),
        },
        gpu=True,
    )
)
