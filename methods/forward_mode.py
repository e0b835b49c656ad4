"""Forward-mode hypergradients (Franceschi, Donini, Frasconi & Pontil, ICML 2017: RFHO / RTHO).

The tangents Z_t = dw_t/dλ and dv_t/dλ (one column per hparam) travel forward with the inner
steps, each step's tangent map by `torch.func.jvp` of the same differentiable SGD-with-momentum
step `unroll` differentiates backwards, batched over the hparam basis with `vmap`. The
hypergradient at step t is ∂L_V/∂λ + ∇_w L_V(w_t) · Z_t: exact for the unrolled objective, at a
cost (time and memory) that grows with the number of hparams, and memory independent of the
horizon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

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
from hgbench.methods._unrolled import (
    OnlineHyperSteps,
    full_batches,
    next_window,
    unrolled_reference,
    zeros_like,
)
from hgbench.numerics.functional import detach, unflatten
from hgbench.numerics.training import BatchStream, ValBatches, sgd_momentum_step
from hgbench.numerics.unroll import Batch

Tangents = tuple[Params, Params]  # (dw/dλ, dv/dλ): every tensor with a leading hparam axis


def hparam_basis(hparams: HParams) -> HParams:
    """The identity over the flattened hparams, as a dict of (n_h, *shape) tensors."""
    n = sum(v.numel() for v in hparams.values())
    eye = torch.eye(n, dtype=next(iter(hparams.values())).dtype)
    eye = eye.to(next(iter(hparams.values())).device)
    out, i = {}, 0
    for k, v in hparams.items():
        out[k] = eye[:, i : i + v.numel()].reshape(n, *v.shape)
        i += v.numel()
    return out


def zero_tangents(params: Params, n_hparams: int) -> Tangents:
    z = {k: v.new_zeros(n_hparams, *v.shape) for k, v in params.items()}
    return z, {k: v.clone() for k, v in z.items()}


def forward_steps(
    train_loss: Callable[..., Tensor],
    params: Params,
    velocity: Params,
    hparams: HParams,
    tangents: Tangents,
    batches: Sequence[Batch],
    lr: float,
    momentum: float,
    generator: torch.Generator | None = None,
) -> tuple[Params, Params, Tangents]:
    """len(batches) SGD-with-momentum steps carrying the tangents along (RTHO's forward pass).

    Each step's augmentation noise is drawn once: the generator's state is replayed so that the
    tangent map and the step itself see the same noise, and `vmap(randomness="same")` gives
    every hparam direction that noise too.
    """
    basis = hparam_basis(hparams)
    w, v = params, velocity
    w_dot, v_dot = tangents
    for x, y in batches:
        state = None if generator is None else generator.get_state()

        def step(w_, v_, h_, x=x, y=y, state=state):
            if state is not None:
                generator.set_state(state)
            g = grad(train_loss)(w_, h_, x, y, generator)
            return sgd_momentum_step(w_, v_, g, lr, momentum)

        def tangent(wd, vd, hd, w=w, v=v, step=step):
            return jvp(step, (w, v, hparams), (wd, vd, hd))[1]

        w_dot, v_dot = vmap(tangent, randomness="same")(w_dot, v_dot, basis)
        with torch.no_grad():
            w, v = step(w, v, hparams)
    return detach(w), detach(v), (w_dot, v_dot)


def tangent_hypergradient(
    val_loss: Callable[[Params, HParams], Tensor], params: Params, hparams: HParams, w_dot: Params
) -> tuple[dict[str, Tensor], Tensor]:
    """∂L_V/∂λ + ∇_w L_V(w) · dw/dλ, and the validation loss."""
    (g_w, g_h), loss = grad(lambda w, h: (val_loss(w, h),) * 2, argnums=(0, 1), has_aux=True)(
        params, hparams
    )
    flat = sum(w_dot[k].flatten(1) @ g_w[k].reshape(-1) for k in params)  # (n_h,)
    indirect = unflatten(flat, hparams)
    return {k: g_h[k] + indirect[k] for k in hparams}, loss.detach()


def _forward_ad_unsupported(problem: Problem) -> str | None:
    """Why torch's forward AD cannot run the task's training step (an op without a forward
    derivative, e.g. grid_sample in learned augmentation), or None: one tiny tangent step."""
    d = problem.data
    params, hparams = problem.init_params(), problem.init_hparams()
    try:
        jvp(
            lambda h: grad(problem.train_loss)(params, h, d.x_train[:2], d.y_train[:2]),
            (hparams,),
            (hparams,),
        )
    except NotImplementedError as exc:
        return f"torch forward-mode AD cannot differentiate this task's training step: {exc}"
    return None


@register_method("forward_mode")
@dataclass
class ForwardMode(Method):
    """Forward-mode hypergradients (Franceschi et al. 2017), RTHO joint with training.

    Run mode (RTHO): the tangents dw/dλ travel with training from the start (not reset at a
    hyper-step: RTHO treats λ as changing slowly), and every `period` steps the hypergradient
    of the validation loss on one validation minibatch updates the hparams with Adam. Probe
    mode (RFHO): K full-batch steps from the probe state with zero velocity and tangents; its
    reference is reverse-mode differentiation of the same K steps (`unroll` at that K), which
    it equals to rounding. Skips tasks with more than `max_hparams` hparams (time and memory
    grow with them: n_h tangent copies of the params).
    """

    K: int = 10  # probe mode: the horizon
    period: int = 10
    hyper_lr: float = 0.03
    val_batch_size: int = 200
    max_hparams: int = 256

    family = Family.UNROLLED
    objective = Objective.VALIDATION
    probe_grid = ({"K": 5}, {"K": 20}, {"K": 100})
    probe_quick = ({"K": 20},)
    exact_settings = {}  # forward and reverse mode through the same steps agree to rounding

    def __post_init__(self) -> None:
        if self.K < 1 or self.period < 1 or self.val_batch_size < 1 or self.max_hparams < 1:
            raise ValueError("K, period, val_batch_size and max_hparams must be >= 1")
        if self.hyper_lr <= 0:
            raise ValueError("hyper_lr must be positive")

    def skip_reason(self, problem: Problem) -> str | None:
        if problem.space.numel > self.max_hparams:
            return (
                f"forward mode carries one tangent per hparam: {problem.space.numel} hparams "
                f"exceed max_hparams={self.max_hparams}"
            )
        return _forward_ad_unsupported(problem)

    def periodic_work(self, problem: Problem) -> Periodic | None:
        return Periodic.steps(problem, self.period)

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        params = problem.init_params()
        velocity = zeros_like(params)
        hparams = {k: v.requires_grad_(True) for k, v in problem.init_hparams().items()}
        hyper = OnlineHyperSteps(hparams, self.hyper_lr)
        tangents = zero_tangents(params, problem.space.numel)
        stream = BatchStream(problem, problem.task.batch_size)
        val, aug_gen = ValBatches(problem, self.val_batch_size), problem.generator("augment")
        yield Checkpoint(params, hparams, step=0, epoch=0.0)
        while not budget.finished(stream.epoch):
            lr = problem.lr_at(stream.steps)
            batches = next_window(stream, budget, self.period)
            h = detach(hparams)
            params, velocity, tangents = forward_steps(
                problem.train_loss,
                params,
                velocity,
                h,
                tangents,
                batches,
                lr,
                problem.task.momentum,
                aug_gen,
            )
            hg, loss = tangent_hypergradient(val.loss(), params, h, tangents[0])
            hyper.step(hg, loss)
            if (point := hyper.checkpoint(params, stream, budget)) is not None:
                yield point

    def probe_reference(self, problem: Problem, hparams: HParams | None = None) -> Reference:
        return unrolled_reference(problem, hparams, self.K)

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        params = state.params
        n = sum(v.numel() for v in state.hparams.values())
        params, _, (w_dot, _) = forward_steps(
            problem.train_loss,
            params,
            zeros_like(params),
            state.hparams,
            zero_tangents(params, n),
            full_batches(problem, self.K),
            problem.lr,
            problem.task.momentum,
        )
        hg, loss = tangent_hypergradient(
            lambda w, h: problem.val_loss(w), params, state.hparams, w_dot
        )
        return Estimate(hg, extra={"val_loss": float(loss), "n_hparams": n})
