"""CIFAR-10 subsets × augmentation settings with Fixup networks (no BatchNorm).

Data comes from a directory: `--data-dir`, else the HGBENCH_DATA environment variable, else
`./data`; CIFAR-10 is read from that directory if it holds one of the two accepted layouts, else
from its `cifar10/` subfolder (downloaded there where a network exists). A subset of n labelled
images is split class-balanced into 90% training and 10% validation (50k: 45k/5k, as Lorraine et
al.), so every method sees the same n labelled images; the test set is the full 10k (or a fixed
class-balanced `n_test` of them).

Every CIFAR task's defaults are the authors' protocol (tasks/cifar10_protocol.py names the source
of each setting): epochs by subset as LILA's scripts (1k 600, 5k 400, 10k 300, 20k 250, 50k 200),
SGD with momentum 0.9, lr 0.1 with cosine decay over the task's epochs, batch 128 for every method
(ntk-marglik's CIFAR configurations; LILA's 250 is not used, see there why), and `learned_affine`
with 20 copies per image in training (LILA). Each run is evaluated every tenth of its epochs on the
whole test set (untimed; a GPU evaluates 10,000 images in well under a second), so the sanity
bar's last-tenth change in test accuracy compares like with like. The marginal-likelihood
methods' cadences are method settings: the `cifar10` suite passes them (`method_configs`). The
short protocol (`cifar10_protocol.short_sets(subset)`: its `--set` items) is the same shape at a
twentieth of the epochs.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hgbench.contracts.errors import UsageError
from hgbench.contracts.hparams import HParam, HParams, Params
from hgbench.contracts.schema import StrEnum
from hgbench.contracts.seeding import derive_seed, make_generator
from hgbench.contracts.task import LRSchedule, Problem, Splits, Task, register_task
from hgbench.numerics.augment import (
    AFFINE,
    AveragedLogits,
    affine_hparam,
    augment_net,
    augnet_hparams,
    flip_crop,
    learned_affine_copies,
    learned_affine_prediction,
)
from hgbench.tasks.cifar10_data import (
    CifarArrays,
    balanced_subset,
    find_layout,
    load_cifar10,
    train_val_split,
)
from hgbench.tasks.cifar10_protocol import (
    AFFINE_SAMPLES,
    BATCH_SIZE,
    LR,
    MOMENTUM,
    eval_every,
    subset_epochs,
)
from hgbench.tasks.models import FixupResNet, FixupWideResNet

MEAN = (0.4914, 0.4822, 0.4465)  # per-channel statistics of the CIFAR-10 training set
STD = (0.2470, 0.2435, 0.2616)
N_TRAIN, N_TEST = 50000, 10000  # CIFAR-10's training and test images
SUBSETS = {"1k": 1000, "5k": 5000, "10k": 10000, "20k": 20000, "50k": 50000}
# Images per forward pass at evaluation (copies included): big batches of a conv net are several
# times slower per image than small ones on a CPU (caches), while a GPU wants them big.
EVAL_BATCH = {"cpu": 128, "cuda": 4096}


class Augmentation(StrEnum):
    """Training-time augmentation of a CIFAR task."""

    NONE = "none"
    FLIPCROP = "flipcrop"  # random horizontal flip and 4-pixel crop, the CIFAR standard
    AUGNET = "augnet"  # flip-crop, then a learned augmentation network (every weight an hparam)
    # lila: S copies from six learned affine magnitudes, logits averaged, in training and testing
    LEARNED_AFFINE = "learned_affine"


class Arch(StrEnum):
    """The network: Fixup residual nets, no normalisation layers."""

    FIXUP_RESNET8 = "fixup_resnet8"  # depth 8, width 16: the subsets' model
    FIXUP_WRN16_4 = "fixup_wrn16_4"  # WRN-16-4: the full data set's model


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
    """A class-balanced CIFAR-10 subset (train + validation) with a Fixup ResNet or WRN.

    `n_labelled` images (a multiple of the 10 classes), of which the nearest multiple of 10 to
    `val_fraction` of them validate; `n_test` (None: all 10,000) test images, the same
    class-balanced draw for every seed and method.
    """

    n_labelled: int = 1000
    val_fraction: float = 0.1
    augmentation: Augmentation = Augmentation.NONE
    arch: Arch = Arch.FIXUP_RESNET8
    n_samples: int = AFFINE_SAMPLES  # learned_affine: S copies per image in training (cost × S)
    test_samples: int = 8  # learned_affine: S at test time
    affine_init: float = 0.05  # learned_affine: initial value of all six magnitudes
    n_test: int | None = None
    # the authors' schedule; every evaluation on the whole test set (the convergence check
    # compares the last two evaluations of a run, which must use the same images)
    lr_schedule: LRSchedule = LRSchedule.COSINE
    eval_test_subset: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "augmentation", Augmentation(self.augmentation))
        object.__setattr__(self, "arch", Arch(self.arch))
        c = self.n_classes
        checks = [
            (
                self.n_labelled >= 2 * c and self.n_labelled % c == 0,
                f"n_labelled must be a positive multiple of the {c} classes, at least {2 * c}",
            ),
            (
                self.n_labelled <= N_TRAIN,
                f"n_labelled={self.n_labelled} exceeds CIFAR-10's {N_TRAIN} training images",
            ),
            (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
            (self.n_samples >= 1, "n_samples must be at least 1"),
            (self.test_samples >= 1, "test_samples must be at least 1"),
            (
                math.isfinite(self.affine_init) and self.affine_init >= 0,
                "affine_init must be a finite number >= 0",
            ),
            (
                self.n_test is None or (0 < self.n_test <= N_TEST and self.n_test % c == 0),
                f"n_test must be a positive multiple of {c} up to {N_TEST} (or None: all)",
            ),
        ]
        if 0 < self.val_fraction < 1 and self.n_labelled >= 2 * c:
            n_train, n_val = self.split_sizes()
            checks.append(
                (
                    min(n_train, n_val) >= c,
                    f"n_labelled={self.n_labelled} with val_fraction={self.val_fraction} leaves "
                    f"{n_train} training and {n_val} validation images; each needs at least one "
                    "per class",
                )
            )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"task {self.name!r}: {message}")

    def split_sizes(self) -> tuple[int, int]:
        """(training, validation) images: the validation part is the multiple of the class count
        nearest to `val_fraction` of `n_labelled` (so both parts stay class-balanced)."""
        c = self.n_classes
        n_val = c * round(self.n_labelled * self.val_fraction / c)
        return self.n_labelled - n_val, n_val

    def check_available(self) -> None:
        """The data can be read (DataUnavailableError naming the directory otherwise) and holds
        enough images of every class for this subset and test size."""
        data = _arrays(cifar_dir())
        if len(data.classes) > self.n_classes:
            raise UsageError(
                f"task {self.name!r}: the data in {cifar_dir()} has {len(data.classes)} classes; "
                f"the model has {self.n_classes} outputs"
            )
        needs = [
            ("training", data.train_y, self.n_labelled // self.n_classes, "n_labelled"),
            ("test", data.test_y, (self.n_test or 0) // self.n_classes, "n_test"),
        ]
        for split, labels, per_class, setting in needs:
            counts = torch.bincount(labels, minlength=self.n_classes)
            fewest = int(counts.min())
            if per_class > fewest:
                raise UsageError(
                    f"task {self.name!r}: {setting}={per_class * self.n_classes} needs "
                    f"{per_class} {split} images of every class, but {cifar_dir()} holds only "
                    f"{fewest} of class {data.classes[int(counts.argmin())]!r}"
                )

    def load_data(self, seed: int) -> Splits:
        data = _arrays(cifar_dir())
        train, val = self.split_indices(data.train_y, seed)
        drawn = torch.cat([train, val])
        if data.train_present is not None and not bool(data.train_present[drawn].all()):
            raise UsageError(  # never train on the zeros a slice holds in place of images
                f"task {self.name!r} seed {seed}: {cifar_dir()} holds a slice of CIFAR-10's "
                "training images (benchmarks/cifar_slice_pack.py) without "
                f"{int((~data.train_present[drawn]).sum())} of the {len(drawn)} this cell draws"
            )
        test = torch.arange(len(data.test_y))
        if self.n_test is not None and self.n_test < len(data.test_y):
            # the same test images for every seed: seeds vary training, not the yardstick
            gen = make_generator(derive_seed("cifar10-test", self.n_test))
            test = balanced_subset(data.test_y, self.n_test, gen)
        splits = Splits(
            _normalise(data.train_x[train]),
            data.train_y[train],
            _normalise(data.train_x[val]),
            data.train_y[val],
            _normalise(data.test_x[test]),
            data.test_y[test],
        )
        return self.transform_splits(splits, seed, {"train": train, "val": val, "test": test})

    def split_indices(self, labels: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """The training and validation images' indices in CIFAR-10's training set for `seed`:
        a class-balanced draw from all of it that depends on `labels`, `n_labelled` and the seed
        only (every task of a subset draws the same images)."""
        n_train, n_val = self.split_sizes()
        gen = make_generator(derive_seed("cifar10-split", self.n_labelled, seed))
        return train_val_split(labels, n_train, n_val, gen)

    def transform_splits(self, splits: Splits, seed: int, indices: dict[str, Tensor]) -> Splits:
        """A hook for variants that transform the data itself (tasks/cifar10_lila.py):
        `indices[split]` are the split's images' indices in CIFAR-10's training set (`train`,
        `val`) or test set (`test`)."""
        return splits

    def make_model(self) -> nn.Module:
        if self.arch == Arch.FIXUP_WRN16_4:
            net: nn.Module = FixupWideResNet(depth=16, widen=4, n_classes=self.n_classes)
        else:
            net = FixupResNet(depth=8, width=16, n_classes=self.n_classes)
        return AveragedLogits(net) if self.augmentation == Augmentation.LEARNED_AFFINE else net

    def extra_hparams(self) -> list[HParam]:
        if self.augmentation == Augmentation.AUGNET:
            return augnet_hparams(channels=3)
        if self.augmentation == Augmentation.LEARNED_AFFINE:
            return [affine_hparam(self.affine_init)]
        return []

    def augment(self, x: Tensor, hparams: HParams, generator: torch.Generator) -> Tensor:
        if self.augmentation == Augmentation.LEARNED_AFFINE:
            return learned_affine_copies(x, hparams[AFFINE], self.n_samples, generator)
        if self.augmentation in (Augmentation.FLIPCROP, Augmentation.AUGNET):
            x = flip_crop(x, generator)
        if self.augmentation == Augmentation.AUGNET:
            x = augment_net(x, hparams, generator)
        return x

    def predict(self, problem: Problem, params: Params, hparams: HParams, x: Tensor) -> Tensor:
        """Test-time logits, in forward passes of at most `EVAL_BATCH[device]` images; with
        learned_affine averaged over `test_samples` copies from the learned distribution (a fixed
        noise stream: every evaluation of a state agrees)."""
        copies = self.test_samples if self.augmentation == Augmentation.LEARNED_AFFINE else 1
        batch = max(1, EVAL_BATCH.get(problem.device.type, 1024) // copies)
        outputs = []
        for xs in x.split(batch):
            if copies == 1:
                outputs.append(problem.forward(params, xs))
            else:
                outputs.append(learned_affine_prediction(problem, params, hparams, xs, copies))
        return torch.cat(outputs)


EPOCHS = {size: subset_epochs(size) for size in SUBSETS}  # the authors' protocol


def subset_arch(n_labelled: int) -> Arch:
    """Fixup ResNet-8 for subsets, WRN-16-4 for the whole training set (Immer et al. 2023)."""
    return Arch.FIXUP_WRN16_4 if n_labelled == N_TRAIN else Arch.FIXUP_RESNET8


def subset_protocol(size: str) -> dict[str, Any]:
    """The training of a subset under the authors' protocol (tasks/cifar10_protocol.py): its
    architecture, epochs and evaluation cadence, and the protocol's batch size, learning rate and
    momentum. The plain and the transformed (lila) tasks of a subset share it."""
    epochs = EPOCHS[size]
    return {
        "arch": subset_arch(SUBSETS[size]),
        "epochs": epochs,
        "eval_every": eval_every(epochs),
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "momentum": MOMENTUM,
    }


for _size, _n in SUBSETS.items():
    for _aug in Augmentation:
        _protocol = subset_protocol(_size)
        register_task(
            Cifar10Task(
                name=f"cifar10_{_size}_{_aug}",
                description=f"CIFAR-10 {_size} labelled images (90/10 train/val), augmentation "
                f"{_aug}, {_protocol['arch'].value.replace('_', ' ')}, {EPOCHS[_size]} epochs",
                n_labelled=_n,
                augmentation=_aug,
                tags=("cifar10",),
                **_protocol,
            )
        )
