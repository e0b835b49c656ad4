"""Tasks: frozen descriptions of (data, model, hparam space, likelihood, default budget).

A `Task` is registered by name; `Task.build(seed, device, dtype)` instantiates it as a `Problem`,
which holds the data on the device as tensors and exposes the functional pieces every method uses:
`forward`, `train_loss`, `val_loss`, `evaluate`, seeded `init_params` and batch streams.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from hgbench.hparams import (
    HParam,
    HParams,
    HParamSpace,
    Params,
    WeightDecay,
    l2_penalty,
    weight_decay_space,
)
from hgbench.registry import Registry
from hgbench.seeding import derive_seed, make_generator


class Likelihood(str, Enum):
    CATEGORICAL = "categorical"  # softmax cross-entropy
    GAUSSIAN = "gaussian"  # unit-variance Gaussian on one-hot targets (ridge regression)


@dataclass(frozen=True)
class Splits:
    """Inputs and integer class labels of the three splits (any device)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor

    def to(self, device, dtype: torch.dtype) -> Splits:
        def move(x: Tensor) -> Tensor:
            return x.to(device=device, dtype=dtype if x.is_floating_point() else None)

        return Splits(*(move(getattr(self, f)) for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class Task:
    """Base task. Subclasses override `load_data` and `make_model`; image tasks `augment` too.

    Fields are the task's settings and default budget: `epochs` of minibatch SGD with momentum at
    `lr`, `batch_size`. Hparams: log weight decay per tensor (or per weight) plus whatever
    `extra_hparams` declares (augmentation magnitudes).
    """

    name: str
    description: str = ""
    likelihood: Likelihood = Likelihood.CATEGORICAL
    n_classes: int = 10
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: WeightDecay = WeightDecay.TENSOR
    log_wd_init: float = -7.0
    tags: tuple[str, ...] = field(default=())

    # --- hooks -----------------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise DataUnavailableError (before any work starts) if the data cannot be had."""

    def load_data(self, seed: int) -> Splits:
        raise NotImplementedError

    def make_model(self) -> nn.Module:
        raise NotImplementedError

    def extra_hparams(self) -> list[HParam]:
        return []

    def hparam_space(self, params: Params) -> list[HParam]:
        """Log weight decay for every parameter tensor, then `extra_hparams`."""
        return (
            weight_decay_space(params, self.weight_decay, self.log_wd_init) + self.extra_hparams()
        )

    def augment(self, x: Tensor, hparams: HParams, generator: torch.Generator) -> Tensor:
        """Training-time augmentation, batched on x's device; identity by default."""
        return x

    def default_lr(self, splits: Splits) -> float:
        return self.lr

    # --- instantiation ---------------------------------------------------------------------
    def build(
        self, seed: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> Problem:
        device = torch.device(device)
        splits = self.load_data(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.name, seed, "init"))
            model = self.make_model()
        model = model.to(device=device, dtype=dtype)
        for p in model.parameters():
            p.requires_grad_(False)
        return Problem(self, seed, device, dtype, splits.to(device, dtype), model)


class Problem:
    """A task instantiated for one seed on one device: data, model template and the losses."""

    def __init__(
        self,
        task: Task,
        seed: int,
        device: torch.device,
        dtype: torch.dtype,
        data: Splits,
        model: nn.Module,
    ) -> None:
        self.task, self.seed, self.device, self.dtype = task, seed, device, dtype
        self.data, self.model = data, model
        self._init_params = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.space = HParamSpace(task.hparam_space(self._init_params))
        self.lr = task.default_lr(data)

    @property
    def n_train(self) -> int:
        return self.data.x_train.shape[0]

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self._init_params.values())

    def generator(self, purpose: str) -> torch.Generator:
        """A fresh generator on the device for a named random stream (same for every method)."""
        return make_generator(derive_seed(self.task.name, self.seed, purpose), self.device)

    def init_params(self, requires_grad: bool = False) -> Params:
        return {k: v.clone().requires_grad_(requires_grad) for k, v in self._init_params.items()}

    def init_hparams(self) -> HParams:
        return self.space.init(
            self.device, self.dtype, derive_seed(self.task.name, self.seed, "hp")
        )

    def sample_hparams(self, generator: torch.Generator) -> HParams:
        """A black-box draw from the space (random search)."""
        seed = derive_seed(self.task.name, self.seed, "hp")
        return self.space.sample(generator, self.device, self.dtype, seed)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        """One epoch of training-index batches from a device-side permutation."""
        perm = torch.randperm(self.n_train, device=self.device, generator=generator)
        yield from perm.split(batch_size)

    def warm_up(self) -> None:
        """One untimed training and evaluation step, so one-off costs (lazy kernel and allocator
        initialisation, autotuning) land on no method's clock."""
        params = self.init_params(requires_grad=True)
        hparams = self.init_hparams()
        d = self.data
        n = min(self.task.batch_size, self.n_train)
        loss = self.train_loss(params, hparams, d.x_train[:n], d.y_train[:n])
        loss.backward()
        torch.optim.SGD(list(params.values()), lr=0.0, momentum=0.9).step()
        self.evaluate(params, hparams, "test")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # --- functional model and losses -------------------------------------------------------
    def forward(self, params: Params | nn.Module, x: Tensor) -> Tensor:
        """f(x; params) through the task's model; a module holding its own params is called as
        it is (the fast path for plain training: functional_call costs ~10% on small models)."""
        if isinstance(params, nn.Module):
            return params(x)
        return functional_call(self.model, params, (x,))

    def bind(self, params: Params) -> nn.Module:
        """A private copy of the model whose parameters are trainable copies of `params`."""
        model = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name])
                p.requires_grad_(True)
        return model

    def nll(self, f: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood per datum."""
        if self.task.likelihood == Likelihood.CATEGORICAL:
            return F.cross_entropy(f, y)
        target = F.one_hot(y, f.shape[-1]).to(f.dtype)
        return 0.5 * (f - target).square().sum(-1).mean() + 0.5 * f.shape[-1] * math.log(
            2 * math.pi
        )

    def data_loss(
        self,
        params: Params | nn.Module,
        hparams: HParams,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Mean NLL on the (augmented) batch, without the weight-decay penalty.

        With `generator=None` augmentation noise is drawn from a fixed seed on every call, which
        makes the loss a deterministic function (what probe mode and exact references need).
        """
        if generator is None:
            generator = self.generator("fixed-augmentation-noise")
        return self.nll(self.forward(params, self.task.augment(x, hparams, generator)), y)

    def train_loss(
        self,
        params: Params,
        hparams: HParams,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The training objective: `data_loss` plus ½ Σ exp(log_wd) ⊙ params²."""
        return self.data_loss(params, hparams, x, y, generator) + l2_penalty(params, hparams)

    def val_loss(self, params: Params, x: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """Validation objective: mean NLL, no augmentation or penalty (full split by default)."""
        if x is None:
            x, y = self.data.x_val, self.data.y_val
        return self.nll(self.forward(params, x), y)

    def full_train_loss(self, params: Params, hparams: HParams) -> Tensor:
        return self.train_loss(params, hparams, self.data.x_train, self.data.y_train)

    @torch.no_grad()
    def evaluate(
        self, params: Params, hparams: HParams, split: str = "test", chunk: int = 2000
    ) -> dict[str, float]:
        """Accuracy and mean NLL on a split, in chunks (untimed: the runner calls it). No graph
        is built: a checkpoint's params may require grad, and an evaluation of 10k test images ×
        S augmented copies would otherwise hold every activation."""
        x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        correct, nll = 0.0, 0.0
        predict = getattr(self.task, "predict", None)  # e.g. test-time augmentation averaging
        for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True):
            with torch.no_grad():
                f = predict(self, params, hparams, xs) if predict else self.forward(params, xs)
            correct += (f.argmax(-1) == ys).sum().item()
            nll += self.nll(f, ys).item() * ys.shape[0]
        return {f"{split}_acc": correct / y.shape[0], f"{split}_nll": nll / y.shape[0]}


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    TASKS.add(task.name, task)
    return task
