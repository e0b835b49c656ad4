"""The CIFAR-10 training protocol of the invariance-learning and NTK-bound papers, and a named
short copy of it: what every CIFAR task trains for and how the marginal-likelihood methods are
scheduled on it.

Sources (the papers' public scripts, as we read them):
- epochs by subset, 1k 600, 5k 400, 10k 300, 20k 250, 50k 200: LILA's CIFAR-10 subset scripts
  (Immer et al., *Invariance Learning in Deep Neural Networks with Differentiable Laplace
  Approximations*, NeurIPS 2022);
- SGD with momentum 0.9, lr 0.1 with cosine decay to 0 over the run: both code bases;
- batch 128 for every method: ntk-marglik's CIFAR configurations (Immer et al., *Stochastic
  Marginal Likelihood Gradients using Neural Tangent Kernels*, ICML 2023). LILA uses 250. We take
  128 because the marginal-likelihood cadences below are ntk-marglik's and were set for it, because
  a 1k subset then still takes 8 steps an epoch (4 at 250), and because the tasks' earlier GPU
  timings were measured at 128;
- the stochastic NTK bound: blocks of M = 150 points, one output per block with the outputs
  treated as independent (`split=single`, the kernel structure), a marginal-likelihood phase every
  epoch of 20 hyper-steps (one block each): ntk-marglik's CIFAR configuration;
- full-batch Laplace (K-FAC): every 5 epochs, 20 hyper-steps, after 10 burn-in epochs:
  ntk-marglik's CIFAR configuration of the baseline; the NTK bound burns in the same 10 epochs;
- `learned_affine`: 20 augmented copies per image in training: LILA's `n_samples_aug`.

The short protocol (`Protocol.SHORT`) keeps the schedule's shape (cosine over the run, burn-in
and marginal-likelihood phases at the same fractions of it, the same 20 hyper-steps a phase) at
`SHORT_FRACTION` of the epochs: what the smoke suite and the tests use. Epoch counts are task
settings (registered per subset); the cadences are method settings, which suites pass through
their `configs` (`method_configs`).
"""

from __future__ import annotations

import math
from typing import Any

from hgbench.contracts.schema import StrEnum

EPOCHS = {"1k": 600, "5k": 400, "10k": 300, "20k": 250, "50k": 200}  # LILA's scripts
BATCH_SIZE = 128  # ntk-marglik's (LILA: 250); see the module docstring for the choice
LR, MOMENTUM = 0.1, 0.9  # SGD, cosine decay over the run
AFFINE_SAMPLES = 20  # learned_affine's copies per image in training (LILA)
BURNIN = 10  # epochs before the first marginal-likelihood phase (ntk-marglik)
FULL_FREQUENCY = 5  # epochs between full-batch Laplace phases (ntk-marglik)
NTK_FREQUENCY = 1  # epochs between stochastic-bound phases (ntk-marglik)
HYPERSTEPS = 20  # hyper-steps per phase, both (ntk-marglik)
NTK_BLOCK = 150  # M, points per NTK block (ntk-marglik)
SHORT_FRACTION = 1 / 20  # the short protocol's share of every epoch count
EVAL_POINTS = 10  # evaluations per run: every tenth, so the last tenth is one step of the curve


class Protocol(StrEnum):
    """Which CIFAR-10 schedule: the authors' (the reference grid), or its short copy."""

    AUTHORS = "authors"
    SHORT = "short"


def scaled(epochs: float, protocol: Protocol) -> int:
    """An epoch count of the authors' protocol under `protocol` (at least 1)."""
    if Protocol(protocol) == Protocol.AUTHORS:
        return int(epochs)
    return max(1, math.ceil(epochs * SHORT_FRACTION))


def subset_epochs(subset: str, protocol: Protocol = Protocol.AUTHORS) -> int:
    """Training epochs of the `subset` ("1k" … "50k") under `protocol`."""
    return scaled(EPOCHS[subset], protocol)


def eval_every(epochs: int) -> int:
    """Evaluate every tenth of the run (at least every epoch)."""
    return max(1, epochs // EVAL_POINTS)


def short_sets(subset: str) -> tuple[str, ...]:
    """`--set` items that put a `subset` ("1k" …) task on the short protocol (suites' `sets`)."""
    epochs = subset_epochs(subset, Protocol.SHORT)
    return (f"task.epochs={epochs}", f"task.eval_every={eval_every(epochs)}")


def method_configs(protocol: Protocol = Protocol.AUTHORS) -> dict[str, tuple[dict[str, Any], ...]]:
    """The marginal-likelihood methods' cadences under `protocol`, as a suite's `configs`."""
    burnin = scaled(BURNIN, protocol)
    return {
        "laplace_full": (
            {
                "structure": "kron",
                "burnin": burnin,
                "frequency": scaled(FULL_FREQUENCY, protocol),
                "hypersteps": HYPERSTEPS,
            },
        ),
        "laplace_ntk": (
            {
                "structure": "kernel",
                "split": "single",
                "block_size": NTK_BLOCK,
                "burnin": burnin,
                "frequency": NTK_FREQUENCY,
                "hypersteps": HYPERSTEPS,
            },
        ),
    }


def protocol_table() -> list[tuple[str, str, str]]:
    """(setting, value, source) rows for documentation and reports."""
    epochs = ", ".join(f"{k} {v}" for k, v in EPOCHS.items())
    short = ", ".join(f"{k} {subset_epochs(k, Protocol.SHORT)}" for k in EPOCHS)
    return [
        ("epochs by subset", epochs, "LILA's CIFAR-10 subset scripts"),
        ("batch (every method)", str(BATCH_SIZE), "ntk-marglik's CIFAR configurations"),
        ("optimiser", f"SGD, momentum {MOMENTUM}, lr {LR}, cosine to 0", "both code bases"),
        (
            "laplace_ntk",
            f"M = {NTK_BLOCK}, single output, independent; every {NTK_FREQUENCY} epoch, "
            f"{HYPERSTEPS} hyper-steps; {BURNIN} burn-in epochs",
            "ntk-marglik's CIFAR configurations",
        ),
        (
            "laplace_full",
            f"K-FAC, every {FULL_FREQUENCY} epochs, {HYPERSTEPS} hyper-steps, after {BURNIN} "
            "burn-in epochs",
            "ntk-marglik's CIFAR configurations",
        ),
        ("learned_affine", f"{AFFINE_SAMPLES} copies in training", "LILA"),
        ("evaluation", "every tenth of the run, all 10,000 test images", "hgbench"),
        (
            f"short protocol ({SHORT_FRACTION:g} of the epochs)",
            f"{short}; burn-in {scaled(BURNIN, Protocol.SHORT)}, laplace_full every "
            f"{scaled(FULL_FREQUENCY, Protocol.SHORT)}",
            "hgbench (smoke suite, tests)",
        ),
    ]
