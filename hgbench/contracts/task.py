"""Tasks: frozen descriptions of (data, model, hparam space, likelihood, default budget).

A `Task` is registered by name; `Task.build(seed, device, dtype)` instantiates it as a `Problem`,
which holds the data on the device as tensors and exposes the functional pieces every method uses:
`forward`, `train_loss`, `val_loss`, `evaluate`, seeded `init_params` and batch streams.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from hgbench.contracts.hparams import (
    HParam,
    HParams,
    HParamSpace,
    Params,
    WeightDecay,
    l2_penalty,
    weight_decay_space,
)
from hgbench.contracts.registry import Registry
from hgbench.contracts.seeding import derive_seed, make_generator


class Likelihood(str, Enum):
    CATEGORICAL = "categorical"  # softmax cross-entropy
    GAUSSIAN = "gaussian"  # unit-variance Gaussian on one-hot targets (ridge regression)


class LRSchedule(str, Enum):
    """The inner learning rate over training, the same for every method on a task."""

    CONSTANT = "constant"
    COSINE = "cosine"  # lr · ½(1 + cos(π t / T)), T = the task's epochs in steps; 0 after T


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
class Task(ABC):
    """Base task: a frozen description that `build` instantiates per seed as a `Problem`.

    Required hooks (abstract, so an incomplete task fails when it is constructed, before it can
    be registered): `load_data` and `make_model`. Optional hooks, with the defaults below:
    `check_available`, `extra_hparams`, `hparam_space`, `augment`, `loss_weights` (per-example
    training weights), `default_lr`, `predict` (test-time prediction), `optimum` and
    `exact_hypergradient` (closed forms the probe uses where a task has them).

    Fields are the task's settings and default budget: `epochs` of minibatch SGD with momentum at
    `lr` (following `lr_schedule`), `batch_size`. Hparams: log weight decay per tensor (or per
    weight) plus whatever `extra_hparams` declares (augmentation magnitudes). `eval_every` and
    `eval_test_subset` say how often and on what a run is evaluated (untimed, and the same for
    every method): every `eval_every` epochs, intermediate evaluations on a fixed subset of
    `eval_test_subset` test points (None: all), the last one always on the whole test split.
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
    lr_schedule: LRSchedule = LRSchedule.CONSTANT
    eval_every: int = 1
    eval_test_subset: int | None = None
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        """Range checks of the settings (a subclass with settings of its own extends this)."""
        object.__setattr__(self, "likelihood", Likelihood(self.likelihood))
        object.__setattr__(self, "weight_decay", WeightDecay(self.weight_decay))
        object.__setattr__(self, "lr_schedule", LRSchedule(self.lr_schedule))
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.n_classes >= 1, "n_classes must be at least 1"),
            (math.isfinite(self.lr) and self.lr > 0, "lr must be a positive number"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (math.isfinite(self.log_wd_init), "log_wd_init must be finite"),
            (self.eval_every >= 1, "eval_every must be at least 1"),
            (
                self.eval_test_subset is None or self.eval_test_subset >= 1,
                "eval_test_subset must be at least 1 (or None: the whole test split)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"task {self.name!r}: {message}")

    # --- hooks -----------------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise DataUnavailableError (before any work starts) if the data cannot be had."""
        return None

    @abstractmethod
    def load_data(self, seed: int) -> Splits:
        """The three splits for `seed` (any device; `build` moves them): the same data for the
        same seed, whichever method asks."""

    @abstractmethod
    def make_model(self) -> nn.Module:
        """The network, freshly initialised from torch's global generator (`build` seeds it)."""

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

    def loss_weights(self, hparams: HParams, x: Tensor) -> Tensor | None:
        """Per-example weights of the training loss on the batch x (learned data weights, as in
        data hyper-cleaning); None: every example counts once."""
        return None

    def predict(self, problem: Problem, params: Params, hparams: HParams, x: Tensor) -> Tensor:
        """Test-time outputs (e.g. averaged over augmented copies); the plain forward pass by
        default."""
        return problem.forward(params, x)

    def optimum(self, problem: Problem, hparams: HParams) -> Params | None:
        """The exact minimiser of the full training loss, where the task has a closed form;
        None: the probe finds one by L-BFGS (hgbench.numerics.optimum)."""
        return None

    def exact_hypergradient(self, problem: Problem, hparams: HParams) -> dict[str, Tensor] | None:
        """d(validation loss at the optimum)/d hparams in closed form, where the task has one;
        None: the probe solves the implicit system instead."""
        return None

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
        self._test_subset: Tensor | None = None
        # run options the harness sets (they change speed, not results): see
        # hgbench.numerics.training
        self.compile = False
        self.channels_last = False
        self.cuda_graphs = False  # the `fixed` and calibration steps as CUDA graphs (GPU only)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // self.task.batch_size)

    def lr_at(self, step: int) -> float:
        """The inner learning rate for optimiser step `step` (0-based) under the task's schedule;
        the cosine spans the task's `epochs` (also under a budget in seconds)."""
        if self.task.lr_schedule == LRSchedule.CONSTANT:
            return self.lr
        total = self.task.epochs * self.steps_per_epoch
        progress = min(step / total, 1.0)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

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

    def nll(self, f: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
        """Negative log-likelihood per datum: their mean, or each (`reduction="none"`)."""
        if self.task.likelihood == Likelihood.CATEGORICAL:
            return F.cross_entropy(f, y, reduction=reduction)
        target = F.one_hot(y, f.shape[-1]).to(f.dtype)
        each = 0.5 * (f - target).square().sum(-1) + 0.5 * f.shape[-1] * math.log(2 * math.pi)
        return each if reduction == "none" else each.mean()

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
        f = self.forward(params, self.task.augment(x, hparams, generator))
        weights = self.task.loss_weights(hparams, x)
        if weights is None:
            return self.nll(f, y)
        return (weights * self.nll(f, y, reduction="none")).mean()

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

    def test_subset(self) -> Tensor:
        """The fixed test points of intermediate evaluations (`eval_test_subset`): the first n
        of a seeded permutation, the same for every method."""
        if self._test_subset is None:
            n_test = self.data.y_test.shape[0]
            n = min(self.task.eval_test_subset or n_test, n_test)
            gen = make_generator(derive_seed(self.task.name, self.seed, "eval-test-subset"))
            self._test_subset = torch.randperm(n_test, generator=gen)[:n].sort().values
            self._test_subset = self._test_subset.to(self.device)
        return self._test_subset

    @torch.no_grad()
    def evaluate(
        self,
        params: Params,
        hparams: HParams,
        split: str = "test",
        chunk: int = 2000,
        subset: bool = False,
    ) -> dict[str, float]:
        """Accuracy and mean NLL on a split (with `subset`: on the test subset), in chunks
        (untimed: the runner calls it). No graph is built: a checkpoint's params may require
        grad, and an evaluation of 10k test images × S augmented copies would otherwise hold
        every activation."""
        x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        if subset:
            idx = self.test_subset()
            x, y = x[idx], y[idx]
        correct, nll = 0.0, 0.0
        for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True):
            f = self.task.predict(self, params, hparams, xs)
            correct += (f.argmax(-1) == ys).sum().item()
            nll += self.nll(f, ys).item() * ys.shape[0]
        return {f"{split}_acc": correct / y.shape[0], f"{split}_nll": nll / y.shape[0]}


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    TASKS.add(task.name, task)
    return task
