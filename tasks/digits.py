"""Small tasks on scikit-learn's bundled 8×8 digits: real data that ships with a dependency."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hgbench.contracts.hparams import AUG_PREFIX, HParam, HParams, WeightDecay
from hgbench.contracts.schema import StrEnum
from hgbench.contracts.seeding import derive_seed, make_generator
from hgbench.contracts.task import Splits, Task, register_task
from hgbench.numerics.augment import augment_net, augnet_hparams, translate
from hgbench.tasks.models import MLP, SmallCNN


@functools.cache
def digits_arrays() -> tuple[Tensor, Tensor]:
    """All 1,797 digits as (N, 1, 8, 8) float64 in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float64).unsqueeze(1) / 16.0
    return x, torch.as_tensor(d.target, dtype=torch.int64)


def digits_splits(seed: int, n_train: int, n_val: int, n_test: int = 397) -> Splits:
    """A random split per seed, shared by every digits task (same seed: same images)."""
    x, y = digits_arrays()
    if n_train + n_val + n_test > len(y):
        raise ValueError(f"digits has {len(y)} images; asked for {n_train}+{n_val}+{n_test}")
    perm = torch.randperm(len(y), generator=make_generator(derive_seed("digits-split", seed)))
    test, rest = perm[:n_test], perm[n_test:]  # the test set depends on the seed only
    tr, va = rest[:n_train], rest[n_train : n_train + n_val]
    return Splits(x[tr], y[tr], x[va], y[va], x[test], y[test])


class DigitsModel(StrEnum):
    MLP = "mlp"  # tanh MLP of widths `hidden`
    CNN = "cnn"  # SmallCNN


@dataclass(frozen=True)
class DigitsTask(Task):
    """Digits classification with an MLP or a small CNN (no BatchNorm)."""

    model: DigitsModel = DigitsModel.MLP
    hidden: tuple[int, ...] = (50, 50)
    n_train: int = 1000
    n_val: int = 400
    learn_translate: bool = False  # an `aug.translate` magnitude hparam (CNN)
    translate_init: float = 0.1  # in grid units: the 8-pixel image spans [-1, 1], 1 px = 0.25
    learn_augnet: bool = False  # a small augmentation network whose weights are hparams

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "model", DigitsModel(self.model))
        if self.n_train < 1 or self.n_val < 1:
            raise ValueError(f"task {self.name!r}: n_train and n_val must be at least 1")

    def load_data(self, seed: int) -> Splits:
        return digits_splits(seed, self.n_train, self.n_val)

    def make_model(self) -> nn.Module:
        if self.model == DigitsModel.MLP:
            # tanh, not ReLU: the exact IFT reference needs a tight L-BFGS optimum, which stalls
            # at ReLU's kinks
            return MLP(64, self.hidden, 10, activation="tanh")
        return SmallCNN(in_channels=1, n_classes=10)

    def extra_hparams(self) -> list[HParam]:
        extra = augnet_hparams(channels=1) if self.learn_augnet else []
        if self.learn_translate:
            extra.append(HParam(AUG_PREFIX + "translate", (), self.translate_init, 0.0, 0.5))
        return extra

    def augment(self, x: Tensor, hparams: HParams, generator: torch.Generator) -> Tensor:
        if self.learn_augnet:
            x = augment_net(x, hparams, generator)
        if self.learn_translate:
            x = translate(x, hparams[AUG_PREFIX + "translate"], generator)
        return x


register_task(
    DigitsTask(
        name="digits_mlp",
        description="digits 8×8, MLP 64-50-50-10 (tanh), per-tensor weight decay",
        epochs=20,
        batch_size=100,
        lr=0.05,
        tags=("small", "default"),
    )
)
register_task(
    DigitsTask(
        name="digits_cnn",
        description="digits 8×8, small CNN, per-tensor weight decay + learnable translation",
        model="cnn",
        learn_translate=True,
        epochs=10,
        batch_size=100,
        lr=0.05,
        tags=("small",),
    )
)
# The default suite's CNN task: with 200 training images, translation augmentation and weight
# decay matter (the 1,000-image digits_cnn trains to the same place whatever its hparams).
register_task(
    DigitsTask(
        name="digits_cnn_small",
        description="digits 8×8, small CNN, 200 training / 200 validation images, per-tensor "
        "weight decay + learnable translation",
        model="cnn",
        learn_translate=True,
        n_train=200,
        n_val=200,
        epochs=40,
        batch_size=50,
        lr=0.05,
        tags=("small", "default"),
    )
)
register_task(
    DigitsTask(
        name="digits_cnn_augnet",
        description="digits 8×8, small CNN, per-tensor weight decay + learned augmentation network",
        model="cnn",
        learn_augnet=True,
        epochs=10,
        batch_size=100,
        lr=0.05,
        tags=("small",),
    )
)
# Lorraine et al. 2020's demonstration: with one weight decay per weight (~6k hparams) and only 50
# validation images, a tuner can fit the validation set through the hparams; test loss does not
# follow. Not in the default suite: the `overfit` suite runs it.
register_task(
    DigitsTask(
        name="digits_mlp_smallval",
        description="digits 8×8, MLP, per-weight weight decay, 50 training / 50 validation images",
        n_train=50,
        n_val=50,
        weight_decay=WeightDecay.PARAM,
        # one step per epoch: by ~300 hyper-steps validation loss keeps falling (0.07 -> 0.014
        # on seed 0) while test NLL stays at ~0.6; much longer and Adam on the hparams diverges
        epochs=600,
        batch_size=50,
        lr=0.05,
    )
)
