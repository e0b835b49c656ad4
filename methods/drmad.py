"""DrMAD (Fu, Luo, Feng, Low & Chua, IJCAI 2016): reverse-mode hypergradients through an
interpolated trajectory instead of the exact reversal, the cheap rival of `reversible_sgd`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, vjp

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.method import Estimate, ProbeState, Reference, register_method
from hgbench.contracts.task import Problem
from hgbench.methods._unrolled import rel_err
from hgbench.methods.reversible import (
    INIT_PREFIX,
    LR_PREFIX,
    MOMENTUM_PREFIX,
    MetaIteration,
    ReversibleSGD,
)
from hgbench.numerics.reversible import ReversalError, ReversalResult, rational_value, rationalise

StepLoss = Callable[[Params, HParams, int], Tensor]
Path = Callable[[int], tuple[Params, Params]]  # s ↦ (w_s, v_s), s = 0..T


def linear_path(w0: Params, wT: Params, lr: Tensor, names: list[str]) -> Path:
    """DrMAD's shortcut: w_s = w_0 + (s/T)(w_T − w_0), and the velocity that path implies,
    v_s = (w_s − w_{s−1}) / α_s (v_0 = 0: training starts at rest)."""
    steps = lr.shape[0]

    def path(s: int) -> tuple[Params, Params]:
        w = {k: w0[k] + (s / steps) * (wT[k] - w0[k]) for k in names}
        if s == 0:
            return w, {k: torch.zeros_like(w0[k]) for k in names}
        return w, {k: (wT[k] - w0[k]) / (steps * lr[s - 1, j]) for j, k in enumerate(names)}

    return path


def drmad_hypergradient(
    loss: StepLoss,
    val_loss: Callable[[Params], Tensor],
    params0: Params,
    hparams: HParams,
    lr: Tensor,
    momentum: Tensor,
    path: Callable[[Params, Params, list[str]], Path] | None = None,
) -> dict:
    """T = len(lr) steps of SGD with momentum (Maclaurin et al.'s form: v ← γv − (1−γ)∇L,
    w ← w + αv; α, γ of shape (T, K), per step and tensor) from params0 at rest, then the
    reverse pass with each step's Jacobian evaluated at the path's state instead of the true
    one: the chain rule through step t is one VJP of that step at (w̃_{t−1}, ṽ_{t−1}).

    `path(w_0, w_T, names)` gives the states (default: `linear_path`); with the true trajectory
    as the path the result is the exact hypergradient. Returns d_lr, d_momentum (T, K),
    d_params0, d_hparams, val_loss and params (w_T).
    """
    names = list(params0)
    hparams = {k: v.detach() for k, v in hparams.items()}

    def step(w: Params, v: Params, h: HParams, a: Tensor, c: Tensor, t: int):
        g = grad(loss)(w, h, t)
        v = {k: c[j] * v[k] - (1 - c[j]) * g[k] for j, k in enumerate(names)}
        return {k: w[k] + a[j] * v[k] for j, k in enumerate(names)}, v

    w, v = dict(params0), {k: torch.zeros_like(p) for k, p in params0.items()}
    with torch.no_grad():
        for t in range(lr.shape[0]):
            w, v = step(w, v, hparams, lr[t], momentum[t], t)
    states = linear_path(params0, w, lr, names) if path is None else path(params0, w, names)
    d_w, value = grad(lambda w_: (val_loss(w_),) * 2, has_aux=True)(w)
    d_v = {k: torch.zeros_like(p) for k, p in w.items()}
    d_h = {k: torch.zeros_like(p) for k, p in hparams.items()}
    d_lr, d_momentum = torch.zeros_like(lr), torch.zeros_like(lr)
    for t in reversed(range(lr.shape[0])):
        w_prev, v_prev = states(t)
        _, pullback = vjp(
            lambda w_, v_, h_, a_, c_, t=t: step(w_, v_, h_, a_, c_, t),
            w_prev,
            v_prev,
            hparams,
            lr[t],
            momentum[t],
        )
        d_w, d_v, dh_t, d_lr[t], d_momentum[t] = pullback((d_w, d_v))
        d_h = {k: d_h[k] + dh_t[k] for k in d_h}
    return {
        "d_lr": d_lr,
        "d_momentum": d_momentum,
        "d_params0": d_w,
        "d_hparams": d_h,
        "val_loss": value.detach(),
        "params": w,
    }


@register_method("drmad")
@dataclass
class DrMAD(ReversibleSGD):
    """DrMAD: hypergradients of step sizes, momenta, init scales and L2 through a linearly
    interpolated trajectory (Fu et al. 2016).

    The hparams, meta-iterations, run loop and probe reference are `reversible_sgd`'s (its
    docstring): T steps of SGD with momentum from a fresh init, then one Adam step on every
    hparam. Only the reverse pass differs: DrMAD keeps w_0 and w_T alone (O(P) memory, no
    information buffer) and walks back along w_s = w_0 + (s/T)(w_T − w_0), evaluating each
    step's gradient, Hessian-vector and mixed products there. Probe mode's reference is
    autograd through the stored trajectory (exact, as for `reversible_sgd`); `extra` adds the
    relative error against `reversible_sgd`'s exact reversal at the same state. (`exact` and
    `chunk_rows` belong to the exact reversal and are unused here.)
    """

    # T = 1 is exact (a one-step trajectory is its own straight line): the error grows with T
    probe_grid = ({"T": 1}, {"T": 10}, {"T": 30}, {"T": 100})
    exact_settings = None  # an interpolated path approximates the trajectory at every setting
    probe_quick = ({"T": 10}, {"T": 100})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._reversal: dict[str, Tensor] | None = None

    def _meta_step(
        self, problem: Problem, base: Params, hparams: HParams, stream: str
    ) -> tuple[ReversalResult, dict[str, Tensor]]:
        names = list(base)
        lr, gamma = self._schedules(names, hparams)
        # γ as the rational n/2^16 the exact reversal and its reference use: the same objective
        used = rational_value(rationalise(gamma), lr.dtype)
        params0 = {k: base[k] * hparams[INIT_PREFIX + k].detach().exp() for k in names}
        run = MetaIteration(problem, stream, self.batch_size or problem.task.batch_size)
        out = drmad_hypergradient(
            run.loss,
            lambda w: problem.val_loss(w),
            params0,
            self._task_hparams(hparams),
            lr,
            used,
        )
        hg: dict[str, Tensor] = dict(out["d_hparams"])
        d_logit = gamma * (1 - gamma)  # straight through the rationalisation, as reversible_sgd
        for j, k in enumerate(names):
            hg[LR_PREFIX + k] = out["d_lr"][:, j] * lr[:, j]
            hg[MOMENTUM_PREFIX + k] = out["d_momentum"][:, j] * d_logit[:, j]
            hg[INIT_PREFIX + k] = (out["d_params0"][k] * params0[k]).sum()
        size = sum(p.numel() * p.element_size() for p in params0.values())
        result = ReversalResult(
            val_loss=out["val_loss"],
            params=out["params"],
            d_lr=out["d_lr"],
            d_momentum=out["d_momentum"],
            d_params0=out["d_params0"],
            d_velocity0={k: torch.zeros_like(p) for k, p in params0.items()},
            d_hparams=out["d_hparams"],
            memory_bytes=3 * size,  # w_0, w_T, v_T
            stored_bytes=(self.T + 1) * 2 * size,
            bit_exact=None,
            buffer_bits=0.0,
            reversed_state=None,
        )
        return result, {k: hg[k] for k in hparams}

    def probe_reference(self, problem: Problem, hparams: HParams | None = None) -> Reference:
        ref = super().probe_reference(problem, hparams)
        exact = ReversibleSGD(**{k: v for k, v in self.method_params().items()})
        try:  # untimed: the exact reversal's estimate, for the error DrMAD adds over it
            _, self._reversal = exact._meta_step(
                problem, ref.state.params, ref.state.hparams, "reversible/0"
            )
        except ReversalError:
            self._reversal = None
        return ref

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        est = super().hypergradient(problem, state)
        if self._reversal is not None:
            est.extra["rel_err_vs_reversible_sgd"] = rel_err(est.hypergradient, self._reversal)
        return est
