"""CIFAR-10 subsets × augmentation settings with Fixup networks (no BatchNorm).

Data comes from a directory: `--data-dir`, else the HGBENCH_DATA environment variable, else
`./data`; CIFAR-10 is read from that directory if it holds one of the two accepted layouts, else
from its `cifar10/` subfolder (downloaded there where a network exists). A subset of n labelled
images is split class-balanced into 90% training and 10% validation (50k: 45k/5k, as Lorraine et
al.), so every method sees the same n labelled images; the test set is the full 10k.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from hgbench.augment import (
    AFFINE,
    AveragedLogits,
    affine_hparam,
    augment_net,
    augnet_hparams,
    flip_crop,
    learned_affine_copies,
    learned_affine_prediction,
)
from hgbench.hparams import HParam, HParams, Params
from hgbench.seeding import derive_seed, make_generator
from hgbench.task import Problem, Splits, Task, register_task
from hgbench.tasks.cifar10_data import CifarArrays, find_layout, load_cifar10, train_val_split
from hgbench.tasks.models import FixupResNet, FixupWideResNet

MEAN = (0.4914, 0.4822, 0.4465)  # per-channel statistics of the CIFAR-10 training set
STD = (0.2470, 0.2435, 0.2616)
SUBSETS = {"1k": 1000, "5k": 5000, "10k": 10000, "20k": 20000, "50k": 50000}
AUGMENTATIONS = ("none", "flipcrop", "augnet", "learned_affine")


def cifar_dir() -> Path:
    root = Path(os.environ.get("HGBENCH_DATA", "data")).expanduser().resolve()
    return root if find_layout(root) is not None else root / "cifar10"


@functools.cache
def _arrays(directory: Path) -> CifarArrays:
    return load_cifar10(directory)


def _normalise(x: Tensor) -> Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


@dataclass(frozen=True)
class Cifar10Task(Task):
    """A class-balanced CIFAR-10 subset (train + validation) with a Fixup ResNet or WRN."""

    n_labelled: int = 1000
    val_fraction: float = 0.1
    # "none" | "flipcrop" | "augnet" (flip-crop, then a learned net) | "learned_affine" (lila:
    # S copies from six learned affine magnitudes, logits averaged, at training and test time)
    augmentation: str = "none"
    arch: str = "fixup_resnet8"  # "fixup_resnet8" (depth 8, width 16) | "fixup_wrn16_4"
    n_samples: int = 4  # learned_affine: S copies per example at training time (cost × S)
    test_samples: int = 8  # learned_affine: S at test time
    affine_init: float = 0.05  # learned_affine: initial value of all six magnitudes

    def check_available(self) -> None:
        _arrays(cifar_dir())  # raises DataUnavailableError naming the directory

    def load_data(self, seed: int) -> Splits:
        data = _arrays(cifar_dir())
        n_val = int(round(self.n_labelled * self.val_fraction))
        gen = make_generator(derive_seed("cifar10-split", self.n_labelled, seed))
        train, val = train_val_split(data.train_y, self.n_labelled - n_val, n_val, gen)
        return Splits(
            _normalise(data.train_x[train]),
            data.train_y[train],
            _normalise(data.train_x[val]),
            data.train_y[val],
            _normalise(data.test_x),
            data.test_y,
        )

    def make_model(self) -> nn.Module:
        if self.arch == "fixup_wrn16_4":
            net: nn.Module = FixupWideResNet(depth=16, widen=4, n_classes=10)
        else:
            net = FixupResNet(depth=8, width=16, n_classes=10)
        return AveragedLogits(net) if self.augmentation == "learned_affine" else net

    def extra_hparams(self) -> list[HParam]:
        if self.augmentation == "augnet":
            return augnet_hparams(channels=3)
        if self.augmentation == "learned_affine":
            return [affine_hparam(self.affine_init)]
        return []

    def augment(self, x: Tensor, hparams: HParams, generator: torch.Generator) -> Tensor:
        if self.augmentation == "learned_affine":
            return learned_affine_copies(x, hparams[AFFINE], self.n_samples, generator)
        if self.augmentation in ("flipcrop", "augnet"):
            x = flip_crop(x, generator)
        if self.augmentation == "augnet":
            x = augment_net(x, hparams, generator)
        return x

    def predict(self, problem: Problem, params: Params, hparams: HParams, x: Tensor) -> Tensor:
        """Test-time logits; with learned_affine averaged over `test_samples` copies from the
        learned distribution (a fixed noise stream: every evaluation of a state agrees)."""
        if self.augmentation != "learned_affine":
            return problem.forward(params, x)
        return learned_affine_prediction(problem, params, hparams, x, self.test_samples)


# Epochs shrink as subsets grow so each cell costs minutes on a GPU; --set task.epochs=N overrides.
EPOCHS = {"1k": 100, "5k": 60, "10k": 40, "20k": 30, "50k": 20}
for _size, _n in SUBSETS.items():
    for _aug in AUGMENTATIONS:
        _arch = "fixup_wrn16_4" if _n == 50000 else "fixup_resnet8"
        register_task(
            Cifar10Task(
                name=f"cifar10_{_size}_{_aug}",
                description=f"CIFAR-10 {_size} labelled images (90/10 train/val), augmentation "
                f"{_aug}, {_arch.replace('_', ' ')}",
                n_labelled=_n,
                augmentation=_aug,
                arch=_arch,
                epochs=EPOCHS[_size],
                batch_size=128,
                lr=0.1,
                momentum=0.9,
                tags=("cifar10",),
            )
        )
