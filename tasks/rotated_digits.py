"""Rotated digits: a real invariance to learn, with the `learned_affine` augmentation setting.

Every image of every split is rotated by its own random angle (uniform in ±`max_angle`, fixed per
seed), so the labels are invariant to rotation and a model that averages its predictions over
rotated copies generalises better. `learned_affine` (the lila setting, Immer et al. 2022): the
hparam `aug.affine` holds 6 magnitudes η (translate x/y, rotate, scale x/y, shear; see
hgbench.numerics.augment.AFFINE_NAMES); per sample, S transforms exp(Σ_k u_k η_k G_k), u ~ U[−1,
1]^6, are applied with `grid_sample` batched on the device, and the model averages its logits over
the S copies, at training time (through `augment` + the averaging model, so every method trains the
same model) and at test time (`predict`). Gradients flow into η through the sampled images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgbench.contracts.hparams import HParam, HParams, Params
from hgbench.contracts.seeding import derive_seed, make_generator
from hgbench.contracts.task import Problem, Splits, register_task
from hgbench.numerics.augment import (
    AFFINE,
    AveragedLogits,
    affine,
    affine_hparam,
    learned_affine_copies,
    learned_affine_prediction,
)
from hgbench.tasks.digits import DigitsModel, DigitsTask, digits_splits
from hgbench.tasks.models import MLP, SmallCNN

ROTATE = 2  # index of the rotation magnitude in aug.affine


def rotate_each(x: Tensor, max_angle: float, generator: torch.Generator) -> Tensor:
    """Rotate every image by its own angle u · max_angle, u ~ U[−1, 1] (bilinear, zero fill)."""
    magnitudes = torch.zeros(6, dtype=x.dtype)
    magnitudes[ROTATE] = max_angle
    noise = torch.zeros(1, x.shape[0], 6, dtype=x.dtype)
    noise[0, :, ROTATE] = 2 * torch.rand(x.shape[0], generator=generator, dtype=x.dtype) - 1
    return affine(x, magnitudes, noise=noise)


@dataclass(frozen=True)
class RotatedDigitsTask(DigitsTask):
    """Digits, each image rotated by a random angle; learned affine invariance (lila)."""

    max_angle: float = math.pi  # rotation of the data: uniform in ±max_angle
    size: int = 8  # images resized (bilinear) to size × size before rotating: less rotation blur
    n_samples: int = 4  # S: augmented copies per example, logits averaged (train and test)
    test_samples: int = 8  # S at test time
    affine_init: float = 0.05  # initial magnitude of all six transformations
    learn_affine: bool = True

    def load_data(self, seed: int) -> Splits:
        s = digits_splits(seed, self.n_train, self.n_val)
        gen = make_generator(derive_seed("rotated-digits", seed))

        def prepare(x: Tensor) -> Tensor:
            if self.size != x.shape[-1]:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=False)
            return rotate_each(x, self.max_angle, gen)

        return Splits(
            prepare(s.x_train),
            s.y_train,
            prepare(s.x_val),
            s.y_val,
            prepare(s.x_test),
            s.y_test,
        )

    def make_model(self) -> nn.Module:
        if self.model == DigitsModel.MLP:
            return AveragedLogits(MLP(self.size**2, self.hidden, 10, activation="tanh"))
        return AveragedLogits(SmallCNN(in_channels=1, n_classes=10))

    def extra_hparams(self) -> list[HParam]:
        if not self.learn_affine:
            return []
        return [affine_hparam(self.affine_init)]

    def augment(self, x: Tensor, hparams: HParams, generator: torch.Generator) -> Tensor:
        if AFFINE not in hparams:
            return x
        return learned_affine_copies(x, hparams[AFFINE], self.n_samples, generator)

    def predict(self, problem: Problem, params: Params, hparams: HParams, x: Tensor) -> Tensor:
        """Test-time logits: averaged over `test_samples` copies from the learned distribution
        (a fixed noise stream, so every evaluation of a state gives the same numbers)."""
        if AFFINE not in hparams:
            return problem.forward(params, x)
        return learned_affine_prediction(problem, params, hparams, x, self.test_samples)


register_task(
    RotatedDigitsTask(
        name="rotated_digits_mlp",
        description="digits 8×8 rotated by random angles, MLP 64-50-10 (tanh), learned affine "
        "invariance (6 magnitudes, S=4 copies, averaged logits)",
        hidden=(50,),
        epochs=10,
        batch_size=100,
        lr=0.05,
        tags=("small",),
    )
)
