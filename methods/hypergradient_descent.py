"""Hypergradient descent (Baydin, Cornish, Martínez Rubio, Schmidt & Wood, ICLR 2018): the
learning rate, and the momentum, adapted online from successive gradients of the training loss.

With SGD with momentum in torch's form, v_t = μ v_{t−1} + g_t, w_t = w_{t−1} − α v_t, and
g_t = ∇f(w_{t−1}) on step t's minibatch, the derivative of f(w_{t−1}) with respect to the values
used one step earlier (holding everything before them fixed: Baydin et al.'s approximation) is

    ∂f(w_{t−1})/∂α_{t−1} = −g_t · v_{t−1},      ∂f(w_{t−1})/∂μ_{t−1} = −α_{t−1} g_t · v_{t−2},

and each is updated by a plain gradient step before step t: α_t = α_{t−1} + β g_t · v_{t−1}
(their SGD-HD rule, v = g without momentum), μ_t = μ_{t−1} + β_μ α_{t−1} g_t · v_{t−2}, μ kept in
[0, `max_momentum`]. The cost is two dot products per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import (
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    Periodic,
    ProbeState,
    Reference,
    register_method,
)
from hgbench.contracts.task import Problem
from hgbench.numerics.functional import detach, flatten
from hgbench.numerics.training import BatchStream, sgd_momentum_step

LR_KEY, MOMENTUM_KEY = "hd.lr", "hd.momentum"


def hd_update(
    lr: Tensor, momentum: Tensor, g: Tensor, v1: Tensor, v2: Tensor, beta: float, beta_m: float
) -> tuple[Tensor, Tensor]:
    """Baydin et al.'s additive updates of α and μ from g_t and the velocities v_{t−1}, v_{t−2}
    (flat): a gradient step on each, with the derivatives in the module docstring."""
    return lr + beta * (g @ v1), momentum + beta_m * lr * (g @ v2)


@register_method("hypergradient_descent")
@dataclass
class HypergradientDescent(Method):
    """Hypergradient descent (Baydin et al. 2018): online learning-rate and momentum adaptation.

    Trains the task's model with SGD with momentum at the task's fixed hparams, adapting α and μ
    every step from successive minibatch gradients (α starts at the task's learning rate, μ at
    its momentum); rows show them as the hparams `hd.lr` and `hd.momentum`. It tunes the
    optimiser, not the task's hparams (weight decay, augmentation). Probe mode: at the task's
    initial params and hparams (the training loss' gradient vanishes at a trained optimum, and
    so would these hypergradients), K full-batch steps at constant α and μ; HD's estimate of
    d f(w_K)/d(α, μ) keeps the last step's dependence only, and the reference is reverse mode
    through all K steps (exact for K = 1; the gap for K > 1 is the greedy approximation's bias).
    The objective is the training loss f, as in the paper.
    """

    beta: float = 1e-3
    beta_momentum: float = 1e-4
    max_momentum: float = 0.99
    K: int = 1  # probe mode: the horizon

    family = Family.UNROLLED
    objective = Objective.TRAINING  # its own reference: the training loss after K steps
    probe_grid = ({"K": 1}, {"K": 5}, {"K": 20})
    probe_quick = ({"K": 1}, {"K": 5})
    exact_settings = {"K": 1}  # one step: the greedy derivative is the whole derivative

    def __post_init__(self) -> None:
        if self.beta < 0 or self.beta_momentum < 0 or not 0 <= self.max_momentum < 1:
            raise ValueError("beta, beta_momentum >= 0 and max_momentum in [0, 1)")
        if self.K < 1:
            raise ValueError("K must be >= 1")

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, 1)  # a hyper-step at every step

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        task_hparams = problem.init_hparams()
        params = problem.init_params()
        opts = {"dtype": problem.dtype, "device": problem.device}
        lr = torch.tensor(problem.lr, **opts)
        momentum = torch.tensor(problem.task.momentum, **opts)
        v1 = flatten(params).new_zeros(flatten(params).shape)  # v_{t−1}
        v2 = v1.clone()  # v_{t−2}
        velocity = {k: torch.zeros_like(p) for k, p in params.items()}
        stream = BatchStream(problem, problem.task.batch_size)
        aug_gen = problem.generator("augment")

        def hparams() -> HParams:
            return {**task_hparams, LR_KEY: lr.clone(), MOMENTUM_KEY: momentum.clone()}

        yield Checkpoint(params, hparams(), step=0, epoch=0.0)
        while not budget.finished(stream.epoch):
            x, y = stream.next()
            g = grad(problem.train_loss)(params, task_hparams, x, y, aug_gen)
            lr, m = hd_update(lr, momentum, flatten(g), v1, v2, self.beta, self.beta_momentum)
            momentum = m.clamp(0.0, self.max_momentum)
            params, velocity = sgd_momentum_step(params, velocity, g, lr, momentum)
            v2, v1 = v1, flatten(velocity)
            if stream.at_epoch_end or budget.finished(stream.epoch):
                yield Checkpoint(detach(params), hparams(), stream.steps, stream.epoch)

    # --- probe mode ----------------------------------------------------------------------------
    def _state(self, problem: Problem, hparams: HParams | None) -> ProbeState:
        h = problem.init_hparams() if hparams is None else dict(hparams)
        opts = {"dtype": problem.dtype, "device": problem.device}
        h[LR_KEY] = torch.tensor(problem.lr, **opts)
        h[MOMENTUM_KEY] = torch.tensor(problem.task.momentum, **opts)
        return ProbeState(problem.init_params(), h)

    def _steps(self, problem: Problem, params: Params, hparams: HParams, lr, momentum):
        """K full-batch steps at constant α, μ: w_K and the last two velocities."""
        task_h = {k: v for k, v in hparams.items() if k not in (LR_KEY, MOMENTUM_KEY)}
        velocity = {k: torch.zeros_like(p) for k, p in params.items()}
        previous = velocity
        for _ in range(self.K):
            g = grad(problem.full_train_loss)(params, task_h)
            previous = velocity
            params, velocity = sgd_momentum_step(params, velocity, g, lr, momentum)
        return params, velocity, previous, task_h

    def probe_reference(self, problem: Problem, hparams: HParams | None = None) -> Reference:
        state = self._state(problem, hparams)

        def objective(lr: Tensor, momentum: Tensor) -> Tensor:
            w, _, _, task_h = self._steps(problem, state.params, state.hparams, lr, momentum)
            return problem.full_train_loss(w, task_h)

        h = state.hparams
        d_lr, d_m = grad(objective, argnums=(0, 1))(h[LR_KEY], h[MOMENTUM_KEY])
        name = f"reverse mode through {self.K} full-batch steps of the training loss"
        return Reference(name, state, {LR_KEY: d_lr, MOMENTUM_KEY: d_m})

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        h = state.hparams
        lr, momentum = h[LR_KEY], h[MOMENTUM_KEY]
        with torch.no_grad():
            w, v_k, v_prev, task_h = self._steps(problem, state.params, h, lr, momentum)
            g = flatten(grad(problem.full_train_loss)(w, task_h))
        # f(w_K) through the last step only: ∂/∂α_K = −g·v_K, ∂/∂μ_K = −α g·v_{K−1}
        return Estimate({LR_KEY: -(g @ flatten(v_k)), MOMENTUM_KEY: -lr * (g @ flatten(v_prev))})
