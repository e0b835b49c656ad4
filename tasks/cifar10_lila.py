"""Transformed CIFAR-10: the invariance-learning grid of Immer et al. (lila, NeurIPS 2022; the NTK
bounds of ICML 2023 reuse it).

Every image of every split (training, validation and test alike) is transformed once by its own
random transform, drawn per seed, so the labels are invariant to that transformation and a model
that learns the invariance (`learned_affine`: six affine magnitudes, logits averaged over copies)
should generalise better than one that does not. The transformations are those of lila's
datasets (`RotatedCIFAR10(90)`, `RotatedCIFAR10(180)`, `TranslatedCIFAR10(8)`,
`ScaledCIFAR10(log 2)`):

- `rot90`, `rot180`: rotation by u · 90° or u · 180°, u ~ U[−1, 1];
- `translate`: a shift by u · 8/14 of the half-width on each axis (±9.1 pixels of 32);
- `scale`: isotropic scaling by exp(u · log 2), i.e. by a factor between ½ and 2.

Resampling is bilinear with zero fill in the normalised space (the fill is the mean colour). The
transform of an image depends only on the seed, the split and the image's index in CIFAR-10, so
a 1k subset's images look exactly as they do in the 10k subset of the same seed.

Tasks `lila_cifar10_<transform>_<subset>_<none|learned_affine>` (apart from the `cifar10_*` tasks,
under the same protocol as those (tasks/cifar10_protocol.py); the `cifar10` reference grid runs
the rotated ones, the `cifar10-lila` suite all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hgbench.contracts.schema import StrEnum
from hgbench.contracts.seeding import derive_seed, make_generator
from hgbench.contracts.task import Splits, register_task
from hgbench.numerics.augment import AFFINE_NAMES, affine
from hgbench.tasks.cifar10 import (
    N_TEST,
    N_TRAIN,
    SUBSETS,
    Augmentation,
    Cifar10Task,
    subset_protocol,
)

TRANSFORM_CHUNK = 4096  # images resampled at once (bounds the sampling grid's memory)


class Transform(StrEnum):
    """How the data itself is transformed (lila's transformed CIFAR-10 data sets)."""

    ROT90 = "rot90"
    ROT180 = "rot180"
    TRANSLATE = "translate"
    SCALE = "scale"


_INDEX = {name: k for k, name in enumerate(AFFINE_NAMES)}


def transform_magnitudes(transform: Transform) -> tuple[Tensor, tuple[tuple[str, ...], ...]]:
    """The affine magnitudes η (6,) of a transform, and which of them share one draw u: each
    group of names gets its own u ~ U[−1, 1] per image (isotropic scaling shares one)."""
    eta = torch.zeros(6, dtype=torch.float64)
    if transform in (Transform.ROT90, Transform.ROT180):
        eta[_INDEX["rotate"]] = math.pi / 2 if transform == Transform.ROT90 else math.pi
        return eta, (("rotate",),)
    if transform == Transform.TRANSLATE:
        eta[_INDEX["translate_x"]] = eta[_INDEX["translate_y"]] = 8 / 14
        return eta, (("translate_x",), ("translate_y",))
    eta[_INDEX["scale_x"]] = eta[_INDEX["scale_y"]] = math.log(2)
    return eta, (("scale_x", "scale_y"),)


def transform_noise(transform: Transform, n: int, generator: torch.Generator) -> Tensor:
    """The per-image draws u for `n` images, (n, 6): one U[−1, 1] per group of magnitudes."""
    _, groups = transform_magnitudes(transform)
    u = 2 * torch.rand(n, len(groups), generator=generator, dtype=torch.float64) - 1
    noise = torch.zeros(n, 6, dtype=torch.float64)
    for g, names in enumerate(groups):
        for name in names:
            noise[:, _INDEX[name]] = u[:, g]
    return noise


def transform_each(x: Tensor, transform: Transform, noise: Tensor) -> Tensor:
    """Image i of `x` (N, C, H, W) under the transform with draws `noise[i]` (N, 6)."""
    eta, _ = transform_magnitudes(transform)
    eta = eta.to(x.dtype)
    parts = [
        affine(xs, eta, noise=us[None].to(x.dtype))
        for xs, us in zip(x.split(TRANSFORM_CHUNK), noise.split(TRANSFORM_CHUNK), strict=True)
    ]
    return torch.cat(parts) if parts else x


@dataclass(frozen=True)
class TransformedCifar10Task(Cifar10Task):
    """A CIFAR-10 subset whose every image (all splits) is transformed by its own random
    `transform` (see the module docstring)."""

    transform: Transform = Transform.ROT90

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "transform", Transform(self.transform))

    def transform_splits(self, splits: Splits, seed: int, indices: dict[str, Tensor]) -> Splits:
        # one draw per CIFAR-10 image, whichever subset it lands in
        pools = {"train": N_TRAIN, "test": N_TEST}
        noise = {}
        for pool, n in pools.items():
            gen = make_generator(derive_seed("cifar10-transform", self.transform.value, pool, seed))
            noise[pool] = transform_noise(self.transform, n, gen)

        def moved(x: Tensor, pool: str, split: str) -> Tensor:
            return transform_each(x, self.transform, noise[pool][indices[split].cpu()])

        return Splits(
            moved(splits.x_train, "train", "train"),
            splits.y_train,
            moved(splits.x_val, "train", "val"),
            splits.y_val,
            moved(splits.x_test, "test", "test"),
            splits.y_test,
        )


for _transform in Transform:
    for _size, _n in SUBSETS.items():
        for _aug in (Augmentation.NONE, Augmentation.LEARNED_AFFINE):
            _protocol = subset_protocol(_size)
            register_task(
                TransformedCifar10Task(
                    name=f"lila_cifar10_{_transform}_{_size}_{_aug}",
                    description=f"CIFAR-10 {_size}, every image {_transform}-transformed (lila), "
                    f"augmentation {_aug}, {_protocol['arch'].value.replace('_', ' ')}",
                    n_labelled=_n,
                    augmentation=_aug,
                    transform=_transform,
                    tags=("cifar10-lila",),
                    **_protocol,
                )
            )
