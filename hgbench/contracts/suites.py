"""Suites: named selections of tasks × methods × seeds, with per-method settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hgbench.contracts.registry import Registry
from hgbench.contracts.task import TASKS
from hgbench.tasks.cifar10_protocol import Protocol, method_configs, short_sets


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
    # the order a time-budgeted plan runs cells in, within each seed: task-name patterns, the
    # first matching pattern ranks a cell (unmatched cells last, in suite order)
    priority: tuple[str, ...] = ()

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
# Lorraine et al. 2020's validation overfitting (reports/papers/lorraine2020/). hyper_lr 0.03:
# at 0.1 the hypergradient drives some per-weight decays past the inner SGD's stability limit
# (lr · exp(log_wd) < 2(1 + momentum), log_wd < 4.33 at lr 0.05) within ~250 hyper-steps, where
# the inner weights oscillate and grow without bound (every seed of ift_cg; Neumann to 4.2).
# ift_cg runs plain (the paper's CG) and damped (H + 0.1 I): in the joint loop H is indefinite
# or nearly singular, plain CG's solves reach gains |v|/|b| of 10^4, damping caps them.
register_suite(
    Suite(
        name="overfit",
        description="Lorraine et al. 2020: per-weight decay (~6k hparams) tuned on 50 "
        "validation images: validation loss falls while test NLL does not follow",
        tasks=("digits_mlp_smallval",),
        methods=("fixed", "ift_neumann", "ift_cg"),
        seeds=(0, 1, 2, 3, 4),
        configs={
            "ift_neumann": ({"period": 1, "hyper_lr": 0.03, "terms": 5},),
            "ift_cg": (
                {"period": 1, "hyper_lr": 0.03, "iterations": 10},
                {"period": 1, "hyper_lr": 0.03, "iterations": 10, "damping": 0.1},
            ),
        },
        # one step is an epoch here: a row every 10 steps keeps the curves and a 1.5 MB file
        sets=("task.eval_every=10",),
    )
)
register_suite(
    Suite(
        name="small",
        description="every CPU-sized task × every method × 3 seeds (longer than the default)",
        tags=("small",),
    )
)
# Maclaurin et al. 2015 (reports/papers/maclaurin2015/): per-layer learning-rate and momentum
# schedules of T = 100 steps on the 3-hidden-layer net, batch 200, meta-learned over 50
# meta-iterations (an epoch of budget is one meta-iteration), each from a fresh init draw.
register_suite(
    Suite(
        name="reversible",
        description="Maclaurin et al. 2015: learning-rate and momentum schedules per layer (T = "
        "100) meta-learned by exact reversal over 50 meta-iterations on the 3-hidden-layer net",
        tasks=("digits_mlp3",),
        methods=("fixed", "reversible_sgd"),
        configs={"reversible_sgd": ({"T": 100, "meta_iterations": None},)},
        seeds=(0, 1, 2, 3, 4),
        sets=("task.epochs=50",),
    )
)
# Their ARD experiment: logistic regression, one L2 hparam per weight, T = 50, α = 1 (the task's
# lr 0.1 / (1 − 0.9)), γ = 0.9, the schedules and init scale meta-learned alongside.
register_suite(
    Suite(
        name="reversible-ard",
        description="Maclaurin et al. 2015: per-weight L2 of logistic regression (T = 50, α = 1, "
        "γ = 0.9) meta-learned by exact reversal over 50 meta-iterations",
        tasks=("digits_logreg_ard",),
        methods=("fixed", "reversible_sgd"),
        configs={"reversible_sgd": ({"T": 50, "meta_iterations": None},)},
        seeds=(0, 1, 2, 3, 4),
        sets=("task.epochs=50",),
    )
)

# --- CIFAR-10 (tasks/cifar10.py, tasks/cifar10_lila.py) --------------------------------------
# A few timed seconds per cell on a CPU: batches of 32 (many more steps per second than 128 there)
# and small units of work, so that every method takes some hyper-steps within its seconds and no
# single unit (a reversal of T steps, an NTK block, a Nyström rank) outlasts the budget.
_SMOKE_CONFIGS: dict[str, tuple[dict[str, Any], ...]] = {
    "ift_neumann": ({"period": 3},),
    "ift_identity": ({"period": 3},),
    "ift_cg": ({"period": 3, "iterations": 5},),
    "ift_nystrom": ({"period": 3, "rank": 5},),
    "darts": ({"period": 3},),
    "sama": ({"period": 3},),
    "amigo": ({"period": 3, "v_steps": 2},),
    "forward_mode": ({"period": 3, "K": 1},),
    "unroll": ({"K": 3},),
    "truncated_bptt": ({"horizon": 6, "truncation": 3},),
    "pes": ({"n_pairs": 1, "truncation": 3, "horizon": 9},),
    "reversible_sgd": ({"T": 5},),
    "drmad": ({"T": 5},),
    # no differentiable refit through learned_affine's copies: it holds every activation of
    # all N × S images (about 50 GB at S = 4 on the 1k subset), more than a CPU machine has
    "laplace_full": ({"burnin": 0, "frequency": 1, "aug_hypersteps": 0},),
    "laplace_ntk": ({"burnin": 0, "hyper_every": 10, "block_size": 16},),
}
register_suite(
    Suite(
        name="cifar10-smoke",
        description="every method on the CIFAR-10 1k subsets × every augmentation setting, 3 s "
        "per cell, 500 test images: the CIFAR pipeline end to end on a CPU in < 15 min",
        tasks=("cifar10_1k_*",),
        seeds=(0,),
        configs=_SMOKE_CONFIGS,
        sets=(
            # the short protocol's cosine span (30 epochs on 1k), cut by the 3 s budget
            *short_sets("1k"),
            "task.batch_size=32",
            "task.n_test=500",
            "task.eval_test_subset=100",
            "task.n_samples=1",  # learned_affine: one random copy per image in training,
            "task.test_samples=4",  # four at test time
        ),
        budget_s=3.0,
    )
)
# The reference grid (docs/cifar10.md): the authors' protocol (tasks/cifar10_protocol.py: the
# tasks' epochs, batch and schedule; the marginal-likelihood cadences here), every method family,
# 3 seeds, LILA's rotated variants for the invariance claim. It grows across GPU runs: a
# time-budgeted plan takes whole seeds, and within a seed the cells in `priority` order (subset
# 1k, then 5k and 10k, then 20k and 50k; per subset the plain augmentations before the rotated).
# unroll is truncated to its window of K = 10 steps (Shaban et al.'s truncation).
CIFAR_SUBSET_ORDER = ("1k", "5k", "10k", "20k", "50k")
CIFAR_AUGMENTATIONS = ("none", "flipcrop", "learned_affine")
CIFAR_ROTATIONS = ("rot90", "rot180")
CIFAR_GRID_METHODS = (
    "fixed",
    "random_search",
    "ift_neumann",
    "unroll",
    "laplace_ntk",
    "laplace_full",
    "soba",
    "hypergradient_descent",
)
register_suite(
    Suite(
        name="cifar10",
        description="the CIFAR-10 reference grid under the authors' protocol: subsets 1k-50k × "
        "none/flipcrop/learned_affine + rotated (lila) × 8 methods × 3 seeds; GPU-sized, grown "
        "across runs in priority order (docs/cifar10.md)",
        tasks=tuple(
            name
            for size in CIFAR_SUBSET_ORDER
            for name in (
                *(f"cifar10_{size}_{aug}" for aug in CIFAR_AUGMENTATIONS),
                *(
                    f"lila_cifar10_{rot}_{size}_{aug}"
                    for rot in CIFAR_ROTATIONS
                    for aug in ("none", "learned_affine")
                ),
            )
        ),
        methods=CIFAR_GRID_METHODS,
        configs={**method_configs(Protocol.AUTHORS), "unroll": ({"K": 10},)},
        gpu=True,
        priority=(
            "cifar10_1k_*",
            "lila_cifar10_*_1k_*",
            "cifar10_5k_*",
            "cifar10_10k_*",
            "lila_cifar10_*_5k_*",
            "lila_cifar10_*_10k_*",
            "cifar10_20k_*",
            "cifar10_50k_*",
            "lila_cifar10_*_20k_*",
            "lila_cifar10_*_50k_*",
        ),
    )
)
# The invariance-learning grid of Immer et al. (lila 2022; NTK bounds 2023): transformed CIFAR-10
# × subset sizes, without and with learned affine invariance, under the same protocol.
register_suite(
    Suite(
        name="cifar10-lila",
        description="lila's transformed CIFAR-10 (rotated ±90°/±180°, translated, scaled) × "
        "subsets × {none, learned_affine}: does learned_affine recover the invariance? GPU-sized",
        tags=("cifar10-lila",),
        methods=("fixed", "ift_neumann", "laplace_full", "laplace_ntk"),
        configs=method_configs(Protocol.AUTHORS),
        gpu=True,
    )
)

# --- The papers' reproductions (benchmarks/papers.py writes reports/papers/<paper>/) ----------
# Immer et al. 2021: the online Laplace loop (laplace-torch's marglik_training defaults, which
# implement their Alg. 1: a K-FAC fit and 10 Adam steps on the priors every epoch from the first)
# against a validation-tuned baseline, and its value as a model-selection criterion across four
# architectures on the same digits splits (every task trains 30 epochs of batch 100; per-tensor
# priors so that K-FAC applies to all; the CNN without its learned translation).
register_suite(
    Suite(
        name="marglik-selection",
        description="Immer et al. 2021: online Laplace marglik vs validation-tuned baselines, "
        "and marglik ranking four architectures (logistic, MLP 2×50, MLP 3×50, CNN) on digits",
        tasks=("digits_logreg_ard", "digits_mlp", "digits_mlp3", "digits_cnn"),
        methods=("fixed", "random_search", "laplace_full"),
        seeds=(0, 1, 2, 3, 4),  # 60 cells in about 2 minutes on a 2-core CPU
        configs={
            "laplace_full": ({"structure": "kron", "burnin": 0, "frequency": 1, "hypersteps": 10},)
        },
        sets=(
            "task.epochs=30",
            "task.batch_size=100",
            "task.weight_decay=tensor",
            "task.learn_translate=False",
        ),
    )
)
# The CIFAR-scale parts (the papers part of benchmarks/gpu_reference.sh): Lorraine et al.'s
# data-augmentation network against no augmentation, and Immer et al. 2023's stochastic NTK bound
# against the full-batch Laplace loop at equal time (`--budget-s`) on a CIFAR-10 subset.
register_suite(
    Suite(
        name="augnet-gpu",
        description="Lorraine et al. 2020: a learned augmentation network (every weight an "
        "hparam, IFT-Neumann) against no augmentation on CIFAR-10; GPU-sized",
        tasks=("cifar10_10k_none", "cifar10_10k_augnet"),
        methods=("fixed", "ift_neumann"),
        configs={"ift_neumann": ({"period": 9, "terms": 5},)},  # k = 9: their 45k/5k ratio
        gpu=True,
    )
)
register_suite(
    Suite(
        name="ntk-vs-full-gpu",
        description="Immer et al. 2023: the NTK block bound (M = 500) against the full-batch "
        "Laplace loop at equal time on CIFAR-10 5k; GPU-sized (run with --budget-s)",
        tasks=("cifar10_5k_none",),
        methods=("laplace_full", "laplace_ntk"),
        configs={
            "laplace_full": ({"structure": "kron", "burnin": 10, "frequency": 5},),
            "laplace_ntk": ({"burnin": 10, "block_size": 500},),
        },
        gpu=True,
    )
)
# The papers' reproductions need per-task settings one suite cannot carry (a suite is one cross
# product under one set of --set items): `benchmarks/papers.py` runs them. `papers` is their
# quick look: every method the four papers use on every CPU task they use, 5 timed seconds a cell.
register_suite(
    Suite(
        name="papers",
        description="every method of the four reproduced papers on their digits tasks, 5 s per "
        "cell, one seed: a quick look (the reproductions: python benchmarks/papers.py all)",
        tasks=("digits_mlp_smallval", "digits_mlp3", "digits_logreg_ard", "digits_mlp"),
        methods=(
            "fixed",
            "random_search",
            "ift_neumann",
            "ift_cg",
            "reversible_sgd",
            "laplace_full",
            "laplace_ntk",
        ),
        seeds=(0,),
        configs={
            "ift_neumann": ({"period": 1, "hyper_lr": 0.03, "terms": 5},),
            "ift_cg": ({"period": 1, "hyper_lr": 0.03, "iterations": 10, "damping": 0.1},),
            "reversible_sgd": ({"T": 50, "meta_iterations": None},),
            "laplace_full": ({"structure": "kron", "burnin": 0, "frequency": 1},),
        },
        budget_s=5.0,
    )
)
