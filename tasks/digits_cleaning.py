"""Data hyper-cleaning on digits (Franceschi et al. 2017; the benchmark of SOBA and AmIGO too).

A fraction `noise` of the training labels is replaced by a uniformly drawn other class (fixed per
seed); the validation and test labels are clean. One hparam per training example, `data.weight`,
weights its loss by 2·σ(λ_i) (1 at the initial λ = 0), so a tuner that finds the corrupted
examples can switch them off, which no per-tensor setting can do: here the number of hparams
(one per example) is the point. Weight decay per tensor is tuned alongside.

Each input carries its example's index as a last column (−1 off the training split), which the
loss weights read and the model drops: batches stay plain (x, y) pairs for every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hgbench.contracts.hparams import HParam, HParams
from hgbench.contracts.seeding import derive_seed, make_generator
from hgbench.contracts.task import Splits, register_task
from hgbench.tasks.digits import DigitsModel, DigitsTask, digits_splits
from hgbench.tasks.models import MLP

WEIGHTS = "data.weight"


class DropIndex(nn.Module):
    """Runs `net` on the inputs without their last column (the example index)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x[..., :-1])


def _with_index(x: Tensor, index: Tensor) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    return torch.cat([flat, index.to(flat.dtype)[:, None]], dim=1)  # (n, d + 1)


def corrupt(labels: Tensor, fraction: float, n_classes: int, generator: torch.Generator) -> Tensor:
    """`labels` with round(fraction · n) of them, chosen at random, moved to another class."""
    n = labels.shape[0]
    chosen = torch.randperm(n, generator=generator)[: round(fraction * n)]
    shift = torch.randint(1, n_classes, (chosen.numel(),), generator=generator)
    out = labels.clone()
    out[chosen] = (labels[chosen] + shift) % n_classes
    return out


@dataclass(frozen=True)
class DigitsCleaningTask(DigitsTask):
    """Digits with corrupted training labels and one learned loss weight per training example."""

    noise: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"task {self.name!r}: noise must be in [0, 1)")

    def load_data(self, seed: int) -> Splits:
        s = digits_splits(seed, self.n_train, self.n_val)
        gen = make_generator(derive_seed("digits-cleaning", seed))
        y_train = corrupt(s.y_train, self.noise, self.n_classes, gen)
        n = s.y_train.shape[0]
        return Splits(
            _with_index(s.x_train, torch.arange(n)),
            y_train,
            _with_index(s.x_val, torch.full((s.y_val.shape[0],), -1)),
            s.y_val,
            _with_index(s.x_test, torch.full((s.y_test.shape[0],), -1)),
            s.y_test,
        )

    def make_model(self) -> nn.Module:
        if self.model != DigitsModel.MLP:
            raise ValueError("the hyper-cleaning task uses an MLP (or logistic regression)")
        return DropIndex(MLP(64, self.hidden, self.n_classes, activation="tanh"))

    def extra_hparams(self) -> list[HParam]:
        # black-box search draws one value for the whole tensor: a uniform weight, no cleaning
        return [HParam(WEIGHTS, (self.n_train,), 0.0, -4.0, 4.0)]

    def loss_weights(self, hparams: HParams, x: Tensor) -> Tensor | None:
        index = x[:, -1].long()
        if bool((index < 0).any()):
            return None  # not training examples: every one counts once
        return 2.0 * torch.sigmoid(hparams[WEIGHTS][index])


register_task(
    DigitsCleaningTask(
        name="digits_cleaning",
        description="digits 8×8, logistic regression, half of the 200 training labels corrupted, "
        "one loss weight per training example (data hyper-cleaning) + per-tensor weight decay",
        hidden=(),
        n_train=200,
        n_val=200,
        epochs=100,
        batch_size=50,
        lr=0.1,
        tags=("small", "default"),
    )
)
