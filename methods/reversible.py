"""Exact reversible learning (Maclaurin, Duvenaud and Adams, ICML 2015): hypergradients of the
validation loss after T steps of SGD with momentum, by running the steps backwards exactly."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import (
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    ProbeState,
    Reference,
    register_method,
)
from hgbench.contracts.seeding import derive_seed
from hgbench.contracts.task import Problem
from hgbench.numerics.functional import detach
from hgbench.numerics.reversible import (
    DENOMINATOR,
    ReversalResult,
    rational_value,
    rationalise,
    reversible_hypergradient,
)

LR_PREFIX = "sched.lr."  # log α_t, shape (T,), one schedule per parameter tensor
MOMENTUM_PREFIX = "sched.momentum."  # logit γ_t, shape (T,), one schedule per parameter tensor
INIT_PREFIX = "init.scale."  # log multiplier of the task's default init draw, per tensor
OWN_PREFIXES = (LR_PREFIX, MOMENTUM_PREFIX, INIT_PREFIX)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on CUDA for the duration of one forward + reverse pass only, so that
    recomputed gradients reproduce; restored afterwards (CPU kernels are deterministic already)."""
    if device.type != "cuda":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


class MetaIteration:
    """One meta-iteration's randomness (the stream's name seeds it): batches and augmentation.

    Batches come from one seeded permutation per epoch, regenerated on demand, so the reverse
    pass indexes exactly the forward pass's batches without storing T index tensors; the
    augmentation noise of step t comes from a generator seeded by (t), likewise reproducible.
    """

    def __init__(self, problem: Problem, stream: str, batch_size: int) -> None:
        self.problem, self.stream = problem, stream
        self.batch_size = min(batch_size, problem.n_train)
        self.steps_per_epoch = -(-problem.n_train // self.batch_size)

    def indices(self, t: int) -> Tensor | None:
        if self.batch_size >= self.problem.n_train:
            return None  # full batch
        # Regenerated at every call (about 20 µs), not cached: this runs inside torch.func
        # transforms, and a tensor kept from one transform's call must not enter another's.
        epoch, j = divmod(t, self.steps_per_epoch)
        gen = self.problem.generator(f"{self.stream}/batches/{epoch}")
        perm = torch.randperm(self.problem.n_train, device=self.problem.device, generator=gen)
        return perm[j * self.batch_size : (j + 1) * self.batch_size]

    def loss(self, params: Params, hparams: HParams, t: int) -> Tensor:
        d = self.problem.data
        idx = self.indices(t)
        x, y = (d.x_train, d.y_train) if idx is None else (d.x_train[idx], d.y_train[idx])
        gen = self.problem.generator(f"{self.stream}/augment/{t}")
        return self.problem.train_loss(params, hparams, x, y, gen)


def _init_draw(problem: Problem, stream: str) -> Params:
    """A fresh draw of the task's default initialisation for another stream (a new seed per
    meta-iteration; the first meta-iteration uses the draw every method shares)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(problem.task.name, problem.seed, stream, "init"))
        model = problem.task.make_model()
    model = model.to(device=problem.device, dtype=problem.dtype)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@register_method("reversible_sgd")
@dataclass
class ReversibleSGD(Method):
    """Exact reversible learning of step sizes, momenta, init scales and L2 by reversing SGD.

    Maclaurin, Duvenaud and Adams, "Gradient-based hyperparameter optimization through
    reversible learning", ICML 2015. Each meta-iteration trains T steps of SGD with momentum
    from a fresh initialisation (the task's default draw times exp(`init.scale.<tensor>`)),
    with per-step, per-tensor learning rates exp(`sched.lr.<tensor>`) and momenta
    sigmoid(`sched.momentum.<tensor>`), on the task's training loss (its `log_wd.*` L2, its
    augmentation), holding weights and velocity exactly in fixed point
    (hgbench.numerics.reversible). The reverse pass gives the hypergradient of the validation loss
    at w_T with respect to all of them, and Adam takes one step on the hparams.

    Budget: one meta-iteration is this method's unit (`epoch` in its rows counts
    meta-iterations, `step` forward SGD steps). With an epoch budget it runs one meta-iteration
    per epoch, at most `meta_iterations` (the default keeps a default-suite cell to seconds; the
    paper ran many more: set None, or give a budget in seconds, which runs until it is spent).

    `exact=False` stores the float trajectory instead of reversing it (O(T·P) memory), for
    comparison. Probe mode compares the reversal's hypergradient with autograd through the
    stored float trajectory at the same hparams and batches.
    """

    T: int = 100
    batch_size: int | None = None  # None: the task's batch size
    hyper_lr: float = 0.05
    exact: bool = True
    new_seed_per_meta: bool = True
    lr_init: float | None = None  # α; None: the task's lr / (1 − momentum), the same dynamics
    momentum_init: float | None = None  # γ; None: the task's momentum
    meta_iterations: int | None = 1  # with an epoch budget: at most this many (None: no cap)
    chunk_rows: int = 4  # the information buffer grows by this many 32-bit words per element

    family = Family.REVERSAL
    objective = Objective.VALIDATION
    probe_grid = ({}, {"exact": False})
    exact_settings = {}  # its reference is autograd through the same steps, stored

    def __post_init__(self) -> None:
        if self.T < 1:
            raise ValueError("T must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be positive")
        if self.hyper_lr <= 0:
            raise ValueError("hyper_lr must be positive")
        if self.lr_init is not None and self.lr_init <= 0:
            raise ValueError("lr_init must be positive")
        if self.momentum_init is not None and not 0 < self.momentum_init < 1:
            raise ValueError("momentum_init must be in (0, 1)")
        if self.meta_iterations is not None and self.meta_iterations < 1:
            raise ValueError("meta_iterations must be at least 1 (or None)")
        if self.chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")

    # --- hparams -------------------------------------------------------------------------------
    def init_hparams(self, problem: Problem) -> HParams:
        """The task's hparams, then the schedules and init scales of every parameter tensor."""
        task = problem.task
        lr = self.lr_init if self.lr_init is not None else problem.lr / (1 - task.momentum)
        gamma = self.momentum_init if self.momentum_init is not None else task.momentum
        hparams = problem.init_hparams()
        opts = {"device": problem.device, "dtype": problem.dtype}
        for name in problem.init_params():
            hparams[LR_PREFIX + name] = torch.full((self.T,), math.log(lr), **opts)
            hparams[MOMENTUM_PREFIX + name] = torch.full(
                (self.T,), math.log(gamma / (1 - gamma)), **opts
            )
            hparams[INIT_PREFIX + name] = torch.zeros((), **opts)
        return hparams

    @staticmethod
    def _task_hparams(hparams: HParams) -> HParams:
        return {k: v for k, v in hparams.items() if not k.startswith(OWN_PREFIXES)}

    def _schedules(self, names: list[str], hparams: HParams) -> tuple[Tensor, Tensor]:
        """(T, K) step sizes α and momenta γ, columns in parameter order."""
        lr = torch.stack([hparams[LR_PREFIX + k].detach() for k in names], 1).exp()
        gamma = torch.stack([hparams[MOMENTUM_PREFIX + k].detach() for k in names], 1).sigmoid()
        return lr, gamma

    # --- one meta-iteration -------------------------------------------------------------------
    def _meta_step(
        self, problem: Problem, base: Params, hparams: HParams, stream: str
    ) -> tuple[ReversalResult, dict[str, Tensor]]:
        """Forward T steps from base · exp(init scale) and reverse them: the hypergradient with
        respect to every hparam, by the chain rule from the engine's α, γ, w_0 derivatives."""
        names = list(base)
        lr, gamma = self._schedules(names, hparams)
        params0 = {k: base[k] * hparams[INIT_PREFIX + k].detach().exp() for k in names}
        velocity0 = {k: torch.zeros_like(v) for k, v in params0.items()}
        run = MetaIteration(problem, stream, self.batch_size or problem.task.batch_size)
        with _deterministic(problem.device):
            result = reversible_hypergradient(
                run.loss,
                lambda w: problem.val_loss(w),
                params0,
                velocity0,
                self._task_hparams(hparams),
                lr,
                gamma,
                exact=self.exact,
                chunk_rows=self.chunk_rows,
            )
        hg: dict[str, Tensor] = dict(result.d_hparams)
        d_logit = gamma * (1 - gamma)  # straight through the rationalisation of γ
        for j, k in enumerate(names):
            hg[LR_PREFIX + k] = result.d_lr[:, j] * lr[:, j]
            hg[MOMENTUM_PREFIX + k] = result.d_momentum[:, j] * d_logit[:, j]
            hg[INIT_PREFIX + k] = (result.d_params0[k] * params0[k]).sum()
        return result, {k: hg[k] for k in hparams}

    def _extra(self, result: ReversalResult) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "memory_bytes": result.memory_bytes,
            "stored_trajectory_bytes": result.stored_bytes,
            "memory_ratio": result.stored_bytes / result.memory_bytes,
        }
        if result.bit_exact is not None:
            extra["bit_exact"] = int(result.bit_exact)
            extra["buffer_bits_per_param_step"] = result.buffer_bits / self.T
        return extra

    def _schedule_extra(self, names: list[str], hparams: HParams) -> dict[str, Any]:
        lr, gamma = self._schedules(names, hparams)
        used = rational_value(rationalise(gamma), torch.float64)  # the γ the forward pass uses
        return {
            "lr_schedule": {k: lr[:, j].double().tolist() for j, k in enumerate(names)},
            "momentum_schedule": {k: used[:, j].tolist() for j, k in enumerate(names)},
        }

    # --- run mode ------------------------------------------------------------------------------
    def _done(self, meta: int, budget: Budget) -> bool:
        capped = budget.epochs is not None and self.meta_iterations is not None
        return budget.finished(meta) or (capped and meta >= self.meta_iterations)

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        hparams = {k: v.requires_grad_(True) for k, v in self.init_hparams(problem).items()}
        hyper_opt = torch.optim.Adam(list(hparams.values()), lr=self.hyper_lr)
        names = list(problem.init_params())
        base = problem.init_params()
        yield Checkpoint(base, detach(hparams), step=0, epoch=0.0)
        meta = 0
        while not self._done(meta, budget):
            stream = f"reversible/{meta if self.new_seed_per_meta else 0}"
            if meta > 0 and self.new_seed_per_meta:
                base = _init_draw(problem, stream)
            result, hg = self._meta_step(problem, base, hparams, stream)
            for k, v in hparams.items():
                v.grad = hg[k]
            hyper_opt.step()
            meta += 1
            extra = {**self._extra(result), "hg_norm": float(_norm(hg))}
            if self._done(meta, budget):  # the last checkpoint carries the learned schedules
                extra.update(self._schedule_extra(names, hparams))
            # as for every method, the row shows the tuner's hparams after its update
            yield Checkpoint(
                result.params,
                {k: v.detach().clone() for k, v in hparams.items()},
                step=meta * self.T,
                epoch=float(meta),
                objective=float(result.val_loss),
                extra=extra,
            )

    # --- probe mode ----------------------------------------------------------------------------
    def probe_reference(self, problem: Problem, hparams: HParams | None = None) -> Reference:
        """Autograd through the stored float trajectory (torch.autograd, create_graph) at the
        initial schedules with the task's `hparams` (None: initial), the first meta-iteration's
        init draw and batches."""
        own = self.init_hparams(problem)
        if hparams is not None:
            own.update(hparams)
        state = ProbeState(problem.init_params(), own)
        value, hg = stored_trajectory_hypergradient(self, problem, state)
        return Reference("autograd through the stored trajectory", state, hg, value)

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        result, hg = self._meta_step(problem, state.params, state.hparams, "reversible/0")
        return Estimate(hg, float(result.val_loss), self._extra(result))


def _norm(tree: dict[str, Tensor]) -> Tensor:
    return torch.sqrt(sum(v.detach().double().square().sum() for v in tree.values()))


def stored_trajectory_hypergradient(
    method: ReversibleSGD, problem: Problem, state: ProbeState, stream: str = "reversible/0"
) -> tuple[float, dict[str, Tensor]]:
    """The reference: the same T steps written as a plain differentiable unroll (every w_t, v_t
    kept in autograd's graph) and differentiated by torch.autograd. γ is the same rational n/d
    in the forward pass, with the derivative of the sigmoid passed straight through."""
    names = list(state.params)
    hparams = {k: v.detach().clone().requires_grad_(True) for k, v in state.hparams.items()}
    task_hparams = ReversibleSGD._task_hparams(hparams)
    run = MetaIteration(problem, stream, method.batch_size or problem.task.batch_size)
    w = {k: state.params[k] * hparams[INIT_PREFIX + k].exp() for k in names}
    v = {k: torch.zeros_like(p) for k, p in w.items()}
    for t in range(method.T):
        grads = torch.autograd.grad(
            run.loss(w, task_hparams, t), [w[k] for k in names], create_graph=True
        )
        for k, g in zip(names, grads, strict=True):
            logit = hparams[MOMENTUM_PREFIX + k][t]
            n = rationalise(logit.detach().sigmoid())
            gamma = n.to(logit.dtype) / DENOMINATOR + (logit.sigmoid() - logit.sigmoid().detach())
            v[k] = gamma * v[k] - (1 - gamma) * g
            w[k] = w[k] + hparams[LR_PREFIX + k][t].exp() * v[k]
    loss = problem.val_loss(w)
    grads = torch.autograd.grad(loss, list(hparams.values()), allow_unused=True)
    hg = {
        k: torch.zeros_like(h) if g is None else g
        for (k, h), g in zip(hparams.items(), grads, strict=True)
    }
    return float(loss.detach()), hg
